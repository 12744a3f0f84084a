"""Run suites on a model: every item a gym rollout, kept as it finishes, scored, and written out.

    for each suite:  tasks x samples ─(at most `concurrency` in flight)─> rollout(env, task, model)
                     ─> Trajectory, appended to items.jsonl (fsync'd) ─> metrics with intervals
    results.json + results.html (atomic)

Resume: a rerun with the same --output skips every item already scored in items.jsonl and asks the
model nothing it has answered before (the reply cache); it must use the same model and the same
settings for the suites it shares with the first run (run.json), and may add suites. When the model
stops answering (`ModelUnavailable`: unreachable, timed out, overloaded after retries) the run stops
at once with a resume hint; finished items stay. A request the model can never serve is handled per
item: tools refused -> the suite is marked unsupported; a prompt beyond the context -> the item
scores 0 as `context_overflow`; a reply cap beyond the context -> the item reruns with the cap
clipped to the context (recorded); anything else -> an error item (not scored, retried on resume).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai
from rich.console import Console

from openk2.chat import ChatFormatError
from openk2.eval.model import ModelIdentity, context_length, identity_before_loading
from openk2.eval.profile import EvalProfile, SuiteSettings
from openk2.eval.reply_cache import CachedLLM
from openk2.eval.report import render_html
from openk2.eval.results import (
    HTML_FILE,
    ITEMS_FILE,
    MANIFEST_FILE,
    REPLIES_FILE,
    RESULTS_FILE,
    EvalResults,
    SuiteResult,
)
from openk2.eval.scoring import ANNOTATION, group_by_task
from openk2.eval.suites import Suite
from openk2.gym import Environment, MessageMeta, RewardComponent, Task, Trajectory, rollout
from openk2.io import JsonlLog, ReplyCache, atomic_write_text
from openk2.llm import LLM, LLMConfig, ModelUnavailable, SamplingParams, load_concurrent_llm
from openk2.progress import ProgressReport, log_console


class EvalStopped(RuntimeError):
    """The model (or the helper model) stopped answering; the message says how to resume."""


class SuiteUnsupported(RuntimeError):
    """The model cannot take this suite's requests at all (e.g. a back end that refuses tools)."""


@dataclass
class EvalRequest:
    """What to evaluate. A model is a configuration to load, or an `LLM` already loaded (a notebook's,
    a test's scripted model), which the run uses as it is and does not close."""

    model_spec: str
    model: LLMConfig | LLM
    suites: list[tuple[Suite, SuiteSettings]]
    output: Path
    profile: EvalProfile = field(default_factory=EvalProfile)
    concurrency: int = 8
    helper_spec: str | None = None  # the user simulator and judge for tau2; None: the evaluated model
    helper: LLMConfig | LLM | None = None
    progress: bool = True


def item_id(suite: Suite, task: Task, sample: int) -> str:
    return f"{suite.name}:{task.id}#{sample}"


def evaluate(request: EvalRequest) -> EvalResults:
    """Evaluate, resuming what `request.output` already holds; returns (and writes) the results."""
    started = time.monotonic()
    request.output.mkdir(parents=True, exist_ok=True)
    identity = _identity(request.model_spec, request.model)
    needs_helper = any(suite.needs_helper for suite, _ in request.suites)
    helper_identity = None
    if needs_helper and request.helper is not None:
        helper_identity = _identity(request.helper_spec or "helper", request.helper)
    log = JsonlLog(request.output / ITEMS_FILE)
    check_manifest(
        request, identity, started_suites={record["provenance"]["suite"] for record in log.records}
    )
    latest: dict[str, Trajectory] = {}
    for record in log.records:  # the last record of an item wins (an error item rerun later)
        latest[record["id"]] = Trajectory.model_validate(record)
    cache = ReplyCache(request.output / REPLIES_FILE)

    def hint() -> str:
        return resume_hint(request, log)

    opened: list[LLM] = []
    try:
        model = CachedLLM(
            _open(request.model, request.concurrency, hint, opened), cache, json.dumps(_resume_key(identity))
        )
        helper = model
        if helper_identity is not None and request.helper is not None:
            loaded = _open(request.helper, request.concurrency, hint, opened)
            helper = CachedLLM(loaded, cache, "helper:" + json.dumps(_resume_key(helper_identity)))
            helper_identity = helper_identity.model_copy(update={"name": helper.model_name})
        identity = identity.model_copy(
            update={"name": model.model_name, "context_length": context_length(model.inner)}
        )
        console = log_console(quiet=not request.progress)
        session = _Session(model, helper, identity.context_length, log, latest, console, hint)
        outcomes = asyncio.run(_run_suites(request, session))
    finally:
        for llm in opened:
            llm.close()
    results = EvalResults(
        model=identity,
        profile=request.profile,
        helper=(helper_identity or identity) if needs_helper else None,
        concurrency=request.concurrency,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        elapsed_s=round(time.monotonic() - started, 1),
        notes=[f"reply cache: {cache.hits} hits, {cache.misses} misses in this session"],
        suites=[outcome.result(latest) for outcome in outcomes],
    )
    atomic_write_text(request.output / RESULTS_FILE, results.model_dump_json(indent=1) + "\n")
    atomic_write_text(request.output / HTML_FILE, render_html([results]))
    return results


def _identity(spec: str, model: LLMConfig | LLM) -> ModelIdentity:
    if isinstance(model, LLM):
        return ModelIdentity(spec=spec, backend="given", name=model.model_name)
    return identity_before_loading(spec, model)


def _open(model: LLMConfig | LLM, concurrency: int, hint: Callable[[], str], opened: list[LLM]) -> LLM:
    """The loaded model (kept in `opened` to be closed), or the given one as it is."""
    if isinstance(model, LLM):
        return model
    try:
        loaded = load_concurrent_llm(model, concurrency)
    except (openai.APIConnectionError, openai.APIStatusError, ModelUnavailable) as error:
        raise EvalStopped(f"{model.base_url}: cannot list the served models ({error}). {hint()}") from None
    opened.append(loaded)
    return loaded


def resume_hint(request: EvalRequest, log: JsonlLog) -> str:
    kept = sum(1 for record in log.records if record.get("reward") is not None)
    return (
        f"{kept} finished items are kept in {request.output / ITEMS_FILE}; rerun the same command when the "
        "model answers again to resume"
    )


# --- the manifest a resumed run must match --------------------------------------------------------------


def _resume_key(identity: ModelIdentity) -> dict[str, Any]:
    """What makes two runs the same model: not how --model was spelled, but the resolved checkpoint and its
    weights, the endpoint and its model name, or the teacher."""
    return identity.model_dump(mode="json", exclude={"spec", "context_length"})


def check_manifest(request: EvalRequest, identity: ModelIdentity, started_suites: set[str]) -> None:
    """Refuse a resume with another model, or with other settings for a suite that has finished items;
    record the settings of the suites of this run."""
    path = request.output / MANIFEST_FILE
    model = _resume_key(identity)
    suites = {suite.name: settings.model_dump(mode="json") for suite, settings in request.suites}
    if path.is_file():
        manifest = json.loads(path.read_text())
        if manifest["model"] != model:
            raise ValueError(
                f"{path}: this output holds an evaluation of {manifest['model']}, not of {model}; "
                "use another --output"
            )
        for name, settings in suites.items():
            before = manifest["suites"].get(name)
            if before is not None:  # settings added since the first run count at their defaults
                before = SuiteSettings.model_validate(before).model_dump(mode="json")
            if name in started_suites and before is not None and before != settings:
                changed = sorted(key for key in settings if settings[key] != before.get(key))
                details = ", ".join(
                    f"{name}.{key}: {before.get(key)!r} then, {settings[key]!r} now" for key in changed
                )
                raise ValueError(
                    f"{path}: {details}; a resumed suite keeps its settings (use the same ones or another --output)"
                )
        suites = {**manifest["suites"], **suites}
    atomic_write_text(path, json.dumps({"model": model, "suites": suites}, indent=1) + "\n")


# --- suites and items ------------------------------------------------------------------------------------


@dataclass
class SuiteOutcome:
    suite: Suite
    settings: SuiteSettings
    tasks: int
    item_ids: list[str]
    unsupported: str | None = None
    notes: list[str] = field(default_factory=list)

    def result(self, latest: dict[str, Trajectory]) -> SuiteResult:
        trajectories = [latest[item] for item in self.item_ids if item in latest]
        scored = [trajectory for trajectory in trajectories if trajectory.reward is not None]
        problems = [_problem(trajectory) for trajectory in trajectories if trajectory.reward is None]
        notes = list(self.notes)
        overflow = sum(trajectory.termination == "context_overflow" for trajectory in scored)
        if overflow:
            notes.append(f"{overflow} items did not fit the model's context and score 0 (context_overflow)")
        clipped = sum(
            "max_tokens_clipped" in trajectory.provenance and trajectory.termination != "context_overflow"
            for trajectory in scored
        )
        if clipped:
            notes.append(f"{clipped} items ran with the reply cap clipped to the model's context")
        return SuiteResult(
            suite=self.suite.name,
            benchmark=self.suite.benchmark,
            area=self.suite.area,
            metric=self.suite.metric_label(self.settings),
            source=self.suite.source,
            scores=[] if self.unsupported else self.suite.score(group_by_task(scored), self.settings),
            settings=self.settings,
            tasks=self.tasks,
            items=len(self.item_ids),
            scored=len(scored),
            errors=0 if self.unsupported else len(self.item_ids) - len(scored),
            error_examples=sorted(set(problems))[:3],
            unsupported=self.unsupported,
            notes=notes,
            trajectories=trajectories,
        )


def _problem(trajectory: Trajectory) -> str:
    failed = [f"{c.name}: {c.error}" for c in trajectory.rewards if c.error is not None]
    return (trajectory.error or (failed[0] if failed else f"not scored ({trajectory.termination})"))[:300]


@dataclass
class _Session:
    """What every suite of one run shares: the models, the item log, the display."""

    model: CachedLLM
    helper: CachedLLM
    context: int | None  # the model's context in tokens, when known
    log: JsonlLog
    latest: dict[str, Trajectory]  # item id -> its last record
    console: Console  # where progress goes (a bar per suite on a terminal, plain lines otherwise)
    hint: Callable[[], str]  # how to resume, with the count of kept items


async def _run_suites(request: EvalRequest, session: _Session) -> list[SuiteOutcome]:
    return [
        await _SuiteRun(suite, settings, session).run(request.concurrency)
        for suite, settings in request.suites
    ]


class _SuiteRun:
    def __init__(self, suite: Suite, settings: SuiteSettings, session: _Session) -> None:
        self.suite, self.settings = suite, settings
        self.model, self.helper = session.model, session.helper
        self.log, self.latest, self.console, self.hint = (
            session.log,
            session.latest,
            session.console,
            session.hint,
        )
        self.notes: list[str] = []
        self.max_tokens = settings.max_tokens
        context = session.context
        if context is not None and settings.max_tokens is not None and settings.max_tokens >= context:
            self.max_tokens = None  # "up to the end of the context": the largest cap that fits
            self.notes.append(
                f"max_tokens {settings.max_tokens} is not below the model's context of {context} tokens: "
                "each reply may use the rest of the context after its prompt"
            )
        if suite.needs_helper:
            self.notes.append(f"user simulator and judge: {self.helper.model_name}")
        if settings.split == "all":
            self.notes.append("split 'all' includes the gym's train split, which OpenK2's own RL trains on")

    async def run(self, concurrency: int) -> SuiteOutcome:
        env = self.suite.make_env(self.settings, self.helper)
        try:
            tasks = self.suite.tasks(env, self.settings)
            items = [(task, sample) for task in tasks for sample in range(self.settings.samples)]
            ids = [item_id(self.suite, task, sample) for task, sample in items]
            todo = [
                (task, sample, identifier)
                for (task, sample), identifier in zip(items, ids, strict=True)
                if self.latest.get(identifier) is None or self.latest[identifier].reward is None
            ]
            outcome = SuiteOutcome(self.suite, self.settings, len(tasks), ids, notes=self.notes)
            gate = asyncio.Semaphore(concurrency)
            kept = [self.latest[identifier] for identifier in ids if identifier in self.latest]
            counts = {
                "passed": sum(
                    trajectory.reward is not None and trajectory.reward >= 1.0 for trajectory in kept
                )
            }
            counts["not scored"] = 0  # in this session; a resumed run tries such items again
            with ProgressReport(self.suite.name, len(items), "items", self.console) as report:
                if len(todo) < len(items):
                    report.start_from(len(items) - len(todo))
                    report.note(
                        f"{self.suite.name}: {len(items) - len(todo)} of {len(items)} items kept from before"
                    )

                async def one(task: Task, sample: int, identifier: str) -> None:
                    async with gate:
                        trajectory = await self.item(env, task, sample, identifier)
                    self.log.append(trajectory.model_dump(mode="json", exclude_none=True))
                    self.latest[identifier] = trajectory
                    counts["passed"] += trajectory.reward is not None and trajectory.reward >= 1.0
                    counts["not scored"] += trajectory.reward is None
                    report.advance(detail=", ".join(f"{count} {what}" for what, count in counts.items()))

                running = [asyncio.create_task(one(*item)) for item in todo]
                try:
                    for finished in asyncio.as_completed(running):
                        await finished
                except SuiteUnsupported as unsupported:
                    outcome.unsupported = str(unsupported)
                    report.note(f"{self.suite.name}: not measurable: {unsupported}")
                finally:
                    for pending in running:
                        pending.cancel()
                    await asyncio.gather(*running, return_exceptions=True)
            return outcome
        finally:
            await env.aclose()

    async def item(self, env: Environment, task: Task, sample: int, identifier: str) -> Trajectory:
        trajectory = await self.episode(env, task, sample, identifier)
        unavailable = self.model.unavailable or self.helper.unavailable
        if unavailable is not None and trajectory.status == "failed":
            raise EvalStopped(f"the model stopped answering ({unavailable}). {self.hint()}")
        if self.suite.annotate is not None and trajectory.reward is not None:
            trajectory.provenance[ANNOTATION] = await self.suite.annotate(env, task, trajectory)
        return trajectory

    async def episode(self, env: Environment, task: Task, sample: int, identifier: str) -> Trajectory:
        """The rollout, or the record of why the model could not be asked."""
        provenance: dict[str, Any] = {"suite": self.suite.name, "sample": sample}
        sampling = SamplingParams(
            temperature=self.settings.temperature, top_p=self.settings.top_p, max_tokens=self.max_tokens
        )
        while True:
            try:
                return await rollout(
                    env,
                    task,
                    self.model.for_sample(sample, self.settings.tool_choice),
                    sampling,
                    max_turns=self.settings.max_turns,
                    trajectory_id=identifier,
                    group_id=task.id,
                    provenance=provenance,
                )
            except ChatFormatError as error:
                message = str(error)
                if message.startswith("tools"):
                    raise SuiteUnsupported(f"{self.model.model_name} takes no tools ({message})") from None
                if "context" not in message.lower():
                    return _not_answered(task, env, identifier, sampling, provenance, message, False)
                if sampling.max_tokens is None or message.startswith(
                    "messages"
                ):  # the prompt alone is too long
                    return _not_answered(task, env, identifier, sampling, provenance, message, True)
                provenance["max_tokens_clipped"] = message
                sampling = sampling.model_copy(update={"max_tokens": None})


def _not_answered(
    task: Task,
    env: Environment,
    identifier: str,
    sampling: SamplingParams,
    provenance: dict[str, Any],
    why: str,
    beyond_context: bool,
) -> Trajectory:
    """An item whose request the model could not take: the task's messages only. A prompt beyond the
    context is a task the model cannot read, so it fails it (0, with the reason); any other refusal is
    an error item (not scored, retried on resume)."""
    record: dict[str, Any] = {
        "id": identifier,
        "task_id": task.id,
        "env": env.name,
        "group_id": task.id,
        "tools": task.tools,
        "messages": task.messages,
        "meta": [MessageMeta(author="dataset") for _ in task.messages],
        "sampling": sampling,
        "provenance": provenance,
    }
    if beyond_context:
        component = RewardComponent(name="context", score=0.0, passed=False, details={"reason": why})
        return Trajectory(
            **record, termination="context_overflow", status="aborted", rewards=[component], reward=0.0
        )
    return Trajectory(**record, termination="aborted", status="failed", error=f"ChatFormatError: {why}")
