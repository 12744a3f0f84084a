"""The acceptance summary of a rephrasing run: per check, per document, judge scores and throughput."""

from collections import Counter
from typing import Any

from pydantic import BaseModel, computed_field
from rich.console import Console
from rich.table import Table

from openk2.io import ReplyCache
from openk2.rephrase.fidelity import CHECK_NAMES

# "complete": the reply ended by itself (not at its token budget); "judge": the LLM judge's score
CHUNK_CHECKS = ("complete", *CHECK_NAMES, "judge")


class CheckTally(BaseModel):
    evaluated: int = 0
    passed: int = 0

    # @computed_field over @property needs this ignore under mypy, as pydantic's documentation shows
    @computed_field  # type: ignore[prop-decorator]
    @property
    def rate(self) -> float:
        return self.passed / self.evaluated if self.evaluated else float("nan")


class RephraseSummary(BaseModel):
    items: int  # documents × variants
    accepted: int
    rejected: int
    chunk_checks: dict[str, CheckTally]  # over every rewrite attempt of every chunk
    document_checks: dict[str, CheckTally]  # over the stitched documents whose chunks all passed
    judge_scores: dict[int, int]  # score -> how many judged chunk rewrites got it
    source_tokens: int  # of the accepted documents
    rephrased_tokens: int
    processed_this_run: int
    elapsed_s: float
    cache_hits: int
    cache_misses: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.items if self.items else float("nan")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def documents_per_minute(self) -> float:
        return 60 * self.processed_this_run / self.elapsed_s if self.elapsed_s else float("nan")


def summarize(
    accepted: list[dict[str, Any]],
    rejected: list[dict[str, Any]],
    items: int,
    processed_this_run: int,
    elapsed_s: float,
    cache: ReplyCache,
) -> RephraseSummary:
    chunk_checks = {name: CheckTally() for name in CHUNK_CHECKS}
    document_checks = {name: CheckTally() for name in (*CHECK_NAMES, "judge")}
    judge_scores: Counter[int] = Counter()
    for record in accepted + rejected:
        for attempt in record["attempts"]:
            judged = "judge_score" in attempt
            for name, tally in chunk_checks.items():
                if name == "judge" and not judged:
                    continue
                tally.evaluated += 1
                tally.passed += name not in attempt["failed"]
            if judged and attempt["judge_score"] is not None:
                judge_scores[attempt["judge_score"]] += 1
        if "document_failed" in record:
            for name, tally in document_checks.items():
                if name == "judge" and "document_judge_score" not in record:
                    continue  # one-chunk documents, and documents the cheap checks already rejected
                tally.evaluated += 1
                tally.passed += name not in record["document_failed"]
    return RephraseSummary(
        items=items,
        accepted=len(accepted),
        rejected=len(rejected),
        chunk_checks=chunk_checks,
        document_checks=document_checks,
        judge_scores=dict(sorted(judge_scores.items())),
        source_tokens=sum(record["source_tokens"] for record in accepted),
        rephrased_tokens=sum(record["tokens"] for record in accepted),
        processed_this_run=processed_this_run,
        elapsed_s=elapsed_s,
        cache_hits=cache.hits,
        cache_misses=cache.misses,
    )


def print_summary(summary: RephraseSummary, console: Console) -> None:
    table = Table(title="fidelity checks: pass rate")
    table.add_column("check")
    table.add_column("chunk rewrites", justify="right")
    table.add_column("documents", justify="right")
    for name in CHUNK_CHECKS:
        cells = []
        for tallies in (summary.chunk_checks, summary.document_checks):
            tally = tallies.get(name)
            cells.append(
                f"{tally.passed}/{tally.evaluated} ({tally.rate:.0%})" if tally and tally.evaluated else "-"
            )
        table.add_row(name, *cells)
    console.print(table)
    console.print(
        f"accepted {summary.accepted}/{summary.items} ({summary.acceptance_rate:.0%}); judge scores "
        f"{summary.judge_scores or '-'}; {summary.source_tokens:,} source -> {summary.rephrased_tokens:,} "
        f"rephrased tokens; this run: {summary.processed_this_run} in {summary.elapsed_s:.0f} s "
        f"({summary.documents_per_minute:.1f} docs/min), cache {summary.cache_hits} hits / "
        f"{summary.cache_misses} misses"
    )
