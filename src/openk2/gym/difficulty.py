"""The difficulty filter (K2 report §3.2.1, "moderate difficulty"): K2 keeps the problems whose pass@k
under the SFT model is neither zero nor certain. Any `openk2.llm` back end can be the judge of that.

    for each task: k rollouts ──score──> c passes (reward >= pass_threshold)
    keep when min_passes <= c <= max_passes          (default 1 <= c <= k-1: sometimes, not always)

Per-task results go to `<output>.progress.jsonl` as they finish (fsync'd lines), so a killed run resumes
where it stopped; the filtered task file is written atomically at the end, each kept task carrying its
measurement in `metadata["difficulty_filter"]`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import comb
from pathlib import Path

from openk2.gym.environment import Environment
from openk2.gym.records import Task, Trajectory
from openk2.gym.rollout import rollout
from openk2.io import JsonlLog, atomic_write_text
from openk2.llm import LLM, SamplingParams


def pass_at(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimate from c passes among n samples (Chen et al., 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


@dataclass(frozen=True)
class FilterSettings:
    samples: int = 8  # k rollouts per task
    min_passes: int = 1
    max_passes: int | None = None  # None: samples - 1
    pass_threshold: float = 1.0  # a rollout passes when its reward reaches this
    max_concurrency: int = 8

    def keeps(self, passes: int) -> bool:
        high = self.samples - 1 if self.max_passes is None else self.max_passes
        return self.min_passes <= passes <= high


@dataclass(frozen=True)
class FilterSummary:
    measured: int
    kept: int
    with_errors: int  # tasks left out because a rollout or its verifier failed
    output: Path


def _measurement(
    task: Task, trajectories: Sequence[Trajectory], settings: FilterSettings
) -> dict[str, object]:
    errors = [
        t.error or next((c.error for c in t.rewards if c.error), None)
        for t in trajectories
        if t.reward is None
    ]
    passes = sum(t.reward is not None and t.reward >= settings.pass_threshold for t in trajectories)
    n = len(trajectories)
    return {
        "task_id": task.id,
        "samples": n,
        "passes": passes,
        "pass@1": passes / n,
        f"pass@{n}": pass_at(n, passes, n),
        "errors": [error for error in errors if error],
    }


async def filter_by_difficulty(
    env: Environment,
    tasks: Sequence[Task],
    llm: LLM,
    sampling: SamplingParams,
    output: Path,
    settings: FilterSettings = FilterSettings(),
    on_progress: Callable[[int, int], None] | None = None,
) -> FilterSummary:
    """Measure every task (resuming `output`'s progress log) and write the moderate ones to `output`."""
    if settings.samples < 1 or settings.max_concurrency < 1:
        raise ValueError(
            f"samples, max_concurrency: expected >= 1, got {settings.samples}, {settings.max_concurrency}"
        )
    ids = [task.id for task in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError("tasks: ids must be unique to resume a filter run")
    output.parent.mkdir(parents=True, exist_ok=True)
    log = JsonlLog(output.with_name(output.name + ".progress.jsonl"))
    measured = {record["task_id"]: record for record in log.records}
    pending = [task for task in tasks if task.id not in measured]
    gate = asyncio.Semaphore(settings.max_concurrency)

    async def sample(task: Task, index: int) -> Trajectory:
        seeded = (
            sampling if sampling.seed is None else sampling.model_copy(update={"seed": sampling.seed + index})
        )
        async with gate:
            return await rollout(env, task, llm, seeded, trajectory_id=f"{task.id}#{index}", group_id=task.id)

    async def measure(task: Task) -> None:
        trajectories = await asyncio.gather(*(sample(task, index) for index in range(settings.samples)))
        record = _measurement(task, trajectories, settings)
        log.append(record)
        measured[task.id] = record
        if on_progress is not None:
            on_progress(len(measured), len(tasks))

    await asyncio.gather(*(measure(task) for task in pending))
    kept, with_errors = [], 0
    for task in tasks:
        record = measured[task.id]
        if record["errors"]:
            with_errors += 1
        elif settings.keeps(int(record["passes"])):  # type: ignore[call-overload]
            metadata = task.metadata | {"difficulty_filter": record | {"model": llm.model_name}}
            kept.append(task.model_copy(update={"metadata": metadata}))
    atomic_write_text(output, "".join(task.model_dump_json(exclude_none=True) + "\n" for task in kept))
    return FilterSummary(measured=len(tasks), kept=len(kept), with_errors=with_errors, output=output)
