"""From a suite's scored trajectories to its metrics (headline first), each with its interval.

An item is one sample of one task; it passed when its gym reward is 1. Items whose verifier or
environment failed carry no reward: they are counted as errors by the runner and left out here,
never scored as 0. A task contributes to pass@k / pass^k only when all its samples were scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from openk2.eval.metrics import Score, mean_over_units, pass_at_k, pass_hat_k, proportion
from openk2.eval.profile import SuiteSettings
from openk2.gym import Trajectory

PASS_AT_K = (1, 5, 10, 20, 50, 100)  # pass@k is reported for each k up to the samples per task
ANNOTATION = "annotation"  # Trajectory.provenance key of a suite's extra per-item verdicts


@dataclass
class TaskOutcome:
    """The scored samples of one task, in sample order."""

    task_id: str
    samples: list[Trajectory]

    @property
    def rewards(self) -> list[float]:
        return [sample.reward for sample in self.samples if sample.reward is not None]

    @property
    def passes(self) -> int:
        return sum(reward >= 1.0 for reward in self.rewards)


Scorer = Callable[[Sequence[TaskOutcome], SuiteSettings], list[Score]]


def group_by_task(trajectories: Sequence[Trajectory]) -> list[TaskOutcome]:
    """Scored trajectories grouped by task, tasks in first-seen order."""
    groups: dict[str, TaskOutcome] = {}
    for trajectory in trajectories:
        if trajectory.reward is None:
            continue
        groups.setdefault(trajectory.task_id, TaskOutcome(trajectory.task_id, [])).samples.append(trajectory)
    return list(groups.values())


def parsed_share(tasks: Sequence[TaskOutcome]) -> Score:
    """Replies that held something to check (an answer, code, a call): the format a model must learn first."""
    return proportion(
        "parsed",
        [
            not any("parse_error" in component.details for component in sample.rewards)
            for task in tasks
            for sample in task.samples
        ],
    )


def marked_share(tasks: Sequence[TaskOutcome]) -> Score:
    """Answers given in the format the task asks for (`\\boxed{}`, "Answer:", a tag) rather than a reply
    taken whole: what SFT teaches first, long before the answers are right."""
    return proportion(
        "answer_marked",
        [
            sample.rewards[0].details.get("marker", "whole reply") != "whole reply"
            for task in tasks
            for sample in task.samples
            if sample.rewards
        ],
    )


def accuracy(metric: str, answer_format: bool = False) -> Scorer:
    """One greedy sample per task: a proportion (Wilson); several samples: Avg@k over tasks (bootstrap).
    `answer_format`: also the share of answers given with a marker (answer environments)."""

    def score(tasks: Sequence[TaskOutcome], settings: SuiteSettings) -> list[Score]:
        if settings.samples == 1:
            headline = proportion(metric, [task.passes == 1 for task in tasks])
        else:
            headline = avg_score(tasks, settings.samples)
        return [headline, parsed_share(tasks), *([marked_share(tasks)] if answer_format else [])]

    return score


def avg_score(tasks: Sequence[TaskOutcome], k: int) -> Score:
    """Avg@k: each task's mean reward over its samples, averaged over tasks."""
    return mean_over_units(f"avg@{k}", [sum(task.rewards) / len(task.rewards) for task in tasks])


def avg_at_k(tasks: Sequence[TaskOutcome], settings: SuiteSettings) -> list[Score]:
    return [avg_score(tasks, settings.samples), parsed_share(tasks), marked_share(tasks)]


def pass_at(tasks: Sequence[TaskOutcome], settings: SuiteSettings) -> list[Score]:
    """pass@1 (Wilson with one sample per task), and pass@k by the unbiased estimator (bootstrap)."""
    if settings.samples == 1:
        return [proportion("pass@1", [task.passes == 1 for task in tasks]), parsed_share(tasks)]
    complete = [task for task in tasks if len(task.rewards) == settings.samples]
    scores = [
        mean_over_units(f"pass@{k}", [pass_at_k(settings.samples, task.passes, k) for task in complete])
        for k in PASS_AT_K
        if k <= settings.samples
    ]
    return [*scores, parsed_share(tasks)]


def pass_hat(tasks: Sequence[TaskOutcome], settings: SuiteSettings) -> list[Score]:
    """tau-bench's pass^k for k = 1 .. trials; pass^1 is the mean success over trials (K2's Avg@4)."""
    complete = [task for task in tasks if len(task.rewards) == settings.samples]
    return [
        mean_over_units(f"pass^{k}", [pass_hat_k(settings.samples, task.passes, k) for task in complete])
        for k in range(1, settings.samples + 1)
    ]
