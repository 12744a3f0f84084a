"""`openk2 rephrase`: K2's chunk-wise autoregressive rephrasing with fidelity verification (report §2.2).

Fig. 4 of the report: a document is split into ~256-token chunks; each chunk is rewritten by the
rewrite model with the preceding context passed along, in order, and the rewritten chunks are
concatenated. What the context holds is not stated; here it is both the source text before the chunk
and the end of the rewrite so far (the autoregressive part). Every rewritten chunk must pass the
deterministic fidelity checks and the LLM judge, else it is sampled again (up to `max_attempts`) and
finally the document is rejected; the stitched document is checked once more as a whole.
"""

import asyncio
import hashlib
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openk2.chat import ChatFormatError
from openk2.data.corpus import CorpusFile, Document, file_sha256, read_documents
from openk2.io import JsonlLog, ReplyCache, atomic_write_text
from openk2.llm import LLM, ModelUnavailable, SamplingParams, chat_request, load_concurrent_llm
from openk2.progress import ProgressReport, log_console
from openk2.recipes import validate_recipe
from openk2.rephrase.chunking import Chunk, chunk_document, stitch
from openk2.rephrase.config import RephraseConfig
from openk2.rephrase.fidelity import FidelitySettings, check_fidelity
from openk2.rephrase.judge import JUDGE_SAMPLING, Verdict, parse_verdict
from openk2.rephrase.prompts import (
    JudgePrompts,
    ModePrompts,
    Style,
    library_digest,
    load_judge_prompts,
    load_mode_prompts,
)
from openk2.rephrase.records import (
    ACCEPTED_FILE,
    CACHE_FILE,
    REJECTS_FILE,
    SUMMARY_FILE,
    check_run_manifest,
)
from openk2.rephrase.summary import RephraseSummary, summarize
from openk2.rephrase.token_counter import TokenCounter

# A reply longer than the length check's maximum fails anyway, so generation stops a little after it
# (the margin covers a counting tokenizer other than the model's own).
REPLY_BUDGET_MARGIN = 1.25
REPLY_BUDGET_SLACK_TOKENS = 16
# Documents started per request slot: while one document waits for its reply, others queue their next
# request, and the slots go round them in turn, so a 2,000-chunk document delays short ones by a turn
# each, not by its whole length.
DOCUMENTS_PER_REQUEST_SLOT = 4


class RephraseStopped(RuntimeError):
    """The model became unavailable (e.g. the endpoint went away); what was finished is kept for a resume."""


class RephraseInterrupted(KeyboardInterrupt):
    """Ctrl-C: the running requests were cancelled; the finished documents are kept for a resume."""


@dataclass(frozen=True)
class WorkItem:
    """One rephrasing to produce: a document's variant k (its own style)."""

    document: Document
    variant: int
    mode: str

    @property
    def id(self) -> str:
        return f"{self.document.source}#{self.mode}-{self.variant}"


@dataclass
class Outcome:
    accepted: bool
    record: dict[str, Any]
    warning: str | None = None  # printed as the document finishes


@dataclass(frozen=True)
class RunPrompts:
    """The mode's prompts, the judge's and the fidelity settings, checked before any model is loaded."""

    rewrite: ModePrompts
    judge: JudgePrompts
    checks: FidelitySettings

    @classmethod
    def load(cls, config: RephraseConfig) -> "RunPrompts":
        rewrite = load_mode_prompts(config.prompt_library, config.mode)
        settings = {**rewrite.checks.model_dump(), **config.checks}
        checks = validate_recipe(FidelitySettings, settings, None, within="rephrase.checks")
        if config.variants > len(rewrite.styles):
            raise ValueError(
                f"[rephrase].variants: {config.variants} variants need as many styles, but the "
                f"{config.mode} prompts have {len(rewrite.styles)}"
            )
        return cls(rewrite, load_judge_prompts(config.prompt_library), checks)


class Rephraser:
    """Rewrites one document variant chunk by chunk; every LLM reply goes through the reply cache."""

    def __init__(
        self,
        config: RephraseConfig,
        prompts: RunPrompts,
        rewriter: LLM,
        judge: LLM,
        count_tokens: TokenCounter,
        cache: ReplyCache,
    ) -> None:
        self.config = config
        self.prompts = prompts.rewrite
        self.judge_prompts = prompts.judge
        self.checks = prompts.checks
        self.rewriter = rewriter
        self.judge = judge
        self.count_tokens = count_tokens
        self.cache = cache
        # at temperature 0 another attempt would return the same reply
        self.attempts = config.max_attempts if config.temperature > 0 else 1
        # every model request waits here, first come first served: documents take turns
        self.request_slots = asyncio.Semaphore(config.concurrency)

    def style(self, source_id: str, variant: int) -> Style:
        """A per-document order of the styles: variants differ, and documents spread over all styles."""
        styles = self.prompts.styles
        order = sorted(styles, key=lambda style: hashlib.sha256(f"{source_id}\0{style.id}".encode()).digest())
        return order[variant]

    async def rephrase(self, item: WorkItem) -> Outcome:
        document, config = item.document, self.config
        style = self.style(document.source, item.variant)
        instructions = self.prompts.instructions(style, config.language)
        record: dict[str, Any] = {
            "id": item.id,
            "source_id": document.source,
            "variant": item.variant,
            "mode": config.mode,
            "style": style.id,
            "model": self.rewriter.model_name,
            "judge_model": self.judge.model_name,
            "chunks": 0,
            "attempts": [],
        }
        source_tokens = self.count_tokens(document.text)
        if source_tokens > config.max_document_tokens:
            reason = (
                f"{source_tokens:,} tokens exceed [rephrase].max_document_tokens = "
                f"{config.max_document_tokens:,}; split it, or raise the limit"
            )
            outcome = self._reject(record, document, {"document": reason})
            outcome.warning = f"warning: {item.id} rejected: {reason}"
            return outcome
        chunks = chunk_document(document.text, config.chunk_tokens, self.count_tokens)
        record["chunks"] = len(chunks)
        if not chunks:
            return self._reject(record, document, {"document": "the document has no text"})
        rewrites: list[str] = []
        for index in range(len(chunks)):
            try:
                rewrite = await self._rewrite_chunk(
                    record, document, chunks, index, rewrites, style, instructions
                )
            except ChatFormatError as error:  # a request the model can never serve, e.g. beyond its context
                return self._reject(record, document, {f"chunk {index}": f"request: {error}"})
            if rewrite is None:
                last_failure = record["attempts"][-1]["failed"]
                reasons = "; ".join(f"{check}: {detail}" for check, detail in last_failure.items())
                return self._reject(record, document, {f"chunk {index}": reasons})
            rewrites.append(rewrite)
        text = stitch(rewrites, chunks)
        document_failures = self._failed_checks(document.text.strip(), text, instructions)
        if not document_failures and len(chunks) > 1:  # a one-chunk document was judged as its chunk
            document_failures |= await self._judge_document(record, document.text.strip(), text)
        record["document_failed"] = document_failures
        if document_failures:
            record["rewrite"] = text
            return self._reject(record, document, document_failures)
        record["text"] = text
        record["source_tokens"] = source_tokens
        record["tokens"] = self.count_tokens(text)
        record["judge_scores"] = [
            attempt["judge_score"] for attempt in record["attempts"] if not attempt["failed"]
        ]
        return Outcome(True, record)

    async def _rewrite_chunk(
        self,
        record: dict[str, Any],
        document: Document,
        chunks: list[Chunk],
        index: int,
        rewrites: list[str],
        style: Style,
        instructions: list[str],
    ) -> str | None:
        chunk, config = chunks[index], self.config
        source_context = self.count_tokens.tail(document.text[: chunk.start].strip(), config.context_tokens)
        rewrite_so_far = self.count_tokens.tail(stitch(rewrites, chunks[:index]), config.context_tokens)
        messages = self.prompts.messages(
            style, config.language, chunk.text, source_context, rewrite_so_far, first=index == 0
        )
        longest_passing = self.checks.max_length_ratio * self.count_tokens(chunk.text)
        budget = math.ceil(REPLY_BUDGET_MARGIN * longest_passing) + REPLY_BUDGET_SLACK_TOKENS
        sampling = SamplingParams(temperature=config.temperature, max_tokens=budget)
        for attempt in range(self.attempts):
            reply = await self._ask(self.rewriter, messages, sampling, attempt)
            rewrite = reply["text"].strip()
            failed = {}
            if reply["finish_reason"] != "stop":
                failed["complete"] = f"the reply ended with finish_reason {reply['finish_reason']!r}"
            failed |= self._failed_checks(chunk.text, rewrite, instructions)
            verdict = None
            if not failed:  # the judge is asked only about rewrites that pass the cheap checks
                verdict = await self._judge(chunk.text, rewrite)
                failed |= self._judge_failure(verdict)
            entry: dict[str, Any] = {"chunk": index, "attempt": attempt, "failed": failed}
            if verdict is not None:
                entry |= {"judge_score": verdict.score, "judge_reason": verdict.reason}
            if failed:
                entry["rewrite"] = rewrite  # kept for inspection; accepted rewrites live in the text
            record["attempts"].append(entry)
            if not failed:
                return rewrite
        return None

    async def _judge_document(self, record: dict[str, Any], source: str, rewrite: str) -> dict[str, str]:
        """The judge on the stitched document: a chunk-by-chunk pass can still drift as a whole."""
        try:
            verdict = await self._judge(source, rewrite)
        except ChatFormatError as error:  # longer than the judge's context: the chunk verdicts stand
            record["document_judge_reason"] = f"not asked: {error}"
            return {}
        record["document_judge_score"] = verdict.score
        record["document_judge_reason"] = verdict.reason
        return self._judge_failure(verdict)

    async def _judge(self, source: str, rewrite: str) -> Verdict:
        note = self.prompts.judge_note.format(language=self.config.language)
        messages = self.judge_prompts.messages(source, rewrite, note)
        reply = await self._ask(self.judge, messages, JUDGE_SAMPLING)
        verdict = parse_verdict(reply["text"])
        if verdict.score is None and reply["finish_reason"] == "length":
            return Verdict(None, f"the judge's reply was cut at {JUDGE_SAMPLING.max_tokens} tokens")
        return verdict

    def _judge_failure(self, verdict: Verdict) -> dict[str, str]:
        if verdict.score is not None and verdict.score >= self.config.judge_threshold:
            return {}
        return {"judge": f"score {verdict.score} < {self.config.judge_threshold}: {verdict.reason}"}

    def _failed_checks(self, source: str, rewrite: str, instructions: list[str]) -> dict[str, str]:
        results = check_fidelity(source, rewrite, self.checks, instructions, self.count_tokens)
        return {result.name: result.detail for result in results if not result.passed}

    async def _ask(
        self, llm: LLM, messages: list[dict[str, str]], sampling: SamplingParams, attempt: int = 0
    ) -> dict[str, Any]:
        key = ReplyCache.key(
            model=llm.model_name,
            messages=messages,
            sampling=sampling.model_dump(mode="json"),
            attempt=attempt,
        )
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        async with self.request_slots:
            completion = await llm.achat(chat_request(messages, sampling=sampling))
        reply = {"text": completion.message.text, "finish_reason": completion.finish_reason}
        self.cache.put(key, reply)
        return reply

    def _reject(self, record: dict[str, Any], document: Document, reasons: dict[str, str]) -> Outcome:
        record["rejected"] = reasons
        record["source_text"] = document.text
        return Outcome(False, record)


def rephrase_corpus(
    config: RephraseConfig,
    input_path: Path,
    output_dir: Path,
    progress: bool = True,
    rewriter: LLM | None = None,
    judge: LLM | None = None,
) -> RephraseSummary:
    """Rephrase every document of `input_path` into `output_dir`; a rerun resumes where a kill left off."""
    if not input_path.is_file():
        raise ValueError(f"--input: {input_path} is not a file")
    documents = read_documents(CorpusFile(path=input_path, name=input_path.name))
    sources = [document.source for document in documents]
    repeated = sorted(source for source, count in Counter(sources).items() if count > 1)
    if repeated:
        raise ValueError(f"{input_path}: document ids repeat: {repeated[:5]}")
    prompts = RunPrompts.load(config)
    count_tokens = TokenCounter.load(config.tokenizer)
    manifest = {
        "input": {"name": input_path.name, "sha256": file_sha256(input_path)},
        "prompt_library_sha256": library_digest(config.prompt_library, config.mode),
        "tokenizer_sha256": count_tokens.digest(),
        "settings": config.output_settings(),
    }
    check_run_manifest(output_dir, manifest, partial=True)  # a refused resume loads no model
    loaded: list[LLM] = []  # the models this call loads, and so closes
    if rewriter is None:
        rewriter = load_concurrent_llm(config.rewriter, config.concurrency)
        loaded.append(rewriter)
    if judge is None and config.judge is not None:
        judge = load_concurrent_llm(config.judge, config.concurrency)
        loaded.append(judge)
    judge = judge or rewriter
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        check_run_manifest(
            output_dir, {**manifest, "rewriter": rewriter.model_name, "judge": judge.model_name}
        )
        cache = ReplyCache(output_dir / CACHE_FILE)
        rephraser = Rephraser(config, prompts, rewriter, judge, count_tokens, cache)
        accepted_log, rejects_log = JsonlLog(output_dir / ACCEPTED_FILE), JsonlLog(output_dir / REJECTS_FILE)
        items = [
            WorkItem(document, variant, config.mode)
            for document in documents
            for variant in range(config.variants)
        ]
        done = {record["id"] for record in accepted_log.records + rejects_log.records}
        started = time.perf_counter()
        todo = [item for item in items if item.id not in done]
        report = ProgressReport("rephrasing", len(items), "documents", log_console(quiet=not progress))
        try:
            asyncio.run(_rephrase_all(rephraser, todo, accepted_log, rejects_log, report))
        except* ModelUnavailable as failures:
            finished = len(accepted_log.records) + len(rejects_log.records)
            raise RephraseStopped(
                f"rephrasing stopped: {failures.exceptions[0]!r}; the {finished} finished documents are kept "
                f"in {output_dir}; rerun the same command to resume"
            ) from failures
        except* KeyboardInterrupt:  # asyncio.run has cancelled every request by now
            finished = len(accepted_log.records) + len(rejects_log.records)
            raise RephraseInterrupted(
                f"interrupted: {finished} of {len(items)} documents are finished and kept in {output_dir}"
            ) from None
        elapsed = time.perf_counter() - started
    finally:
        for llm in loaded:
            llm.close()
    order = {item.id: position for position, item in enumerate(items)}
    accepted_log.rewrite_sorted(order)
    rejects_log.rewrite_sorted(order)
    summary = summarize(
        accepted_log.records,
        rejects_log.records,
        len(items),
        len(items) - len(done),
        elapsed,
        rephraser.cache,
    )
    atomic_write_text(output_dir / SUMMARY_FILE, summary.model_dump_json(indent=2) + "\n")
    return summary


async def _rephrase_all(
    rephraser: Rephraser,
    items: list[WorkItem],
    accepted_log: JsonlLog,
    rejects_log: JsonlLog,
    report: ProgressReport,
) -> None:
    documents_in_flight = asyncio.Semaphore(DOCUMENTS_PER_REQUEST_SLOT * rephraser.config.concurrency)
    counts = {"accepted": len(accepted_log.records), "rejected": len(rejects_log.records)}

    async def one(item: WorkItem) -> None:
        async with documents_in_flight:
            outcome = await rephraser.rephrase(item)
        # the line is the commit point: once written, a resumed run skips this item
        (accepted_log if outcome.accepted else rejects_log).append(outcome.record)
        counts["accepted" if outcome.accepted else "rejected"] += 1
        if outcome.warning is not None:
            report.note(outcome.warning)
        report.update(sum(counts.values()), f"{counts['accepted']} accepted, {counts['rejected']} rejected")

    with report:
        report.start_from(sum(counts.values()))
        async with asyncio.TaskGroup() as group:
            for item in items:
                group.create_task(one(item))
