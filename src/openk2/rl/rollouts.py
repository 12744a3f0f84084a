"""An iteration's rollouts: every episode through `openk2.gym.rollout`, many at once, logged group by group.

Episodes run concurrently (at most `[rl].max_concurrency` in flight; the in-process engine batches their
decoding continuously). A group of K episodes is complete when all K have finished, possibly over several
iterations when partial rollouts paused some; it is then appended to `rollouts.jsonl` in one fsync'd line
(`GroupRecord`), before any training on it, so a SIGKILL loses no finished rollout: a resumed iteration
reads its complete groups back instead of sampling them again. A group with an unfinished episode carries
all K episode states into the next iteration; the finished ones replay there without generating.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from openk2.gym import Task, Trajectory, rollout
from openk2.llm import LLM
from openk2.rl.episodes import EpisodeLLM, EpisodePaused, EpisodeState
from openk2.rl.tasks import TaskPool


class GroupRecord(BaseModel):
    """One line of rollouts.jsonl: a complete group and the iteration that trained on it."""

    model_config = ConfigDict(extra="forbid")

    iteration: int
    rank: int
    group_id: str
    source: int
    task: Task
    trajectories: list[Trajectory]


@dataclass
class RolloutPhase:
    groups: list[GroupRecord]  # complete groups, ordered by id
    paused: list[EpisodeState]  # every episode of the groups that are not complete yet
    generated_tokens: int  # sampled this iteration
    seconds: float
    reused: int  # groups read back from rollouts.jsonl (a resumed iteration)


def with_versions(trajectory: Trajectory, state: EpisodeState) -> Trajectory:
    """Each policy reply's token span with the version of the weights that sampled each of its tokens."""
    replies = iter(state.reply_versions)
    meta = []
    for entry in trajectory.meta:
        if entry.author == "policy" and entry.tokens is not None:
            versions = next(replies, None)
            if versions is not None:
                several = len(set(versions)) > 1
                span = entry.tokens.model_copy(
                    update={
                        "policy_version": versions[0] if versions else None,
                        "policy_versions": versions if several else None,
                    }
                )
                entry = entry.model_copy(update={"tokens": span})
        meta.append(entry)
    return trajectory.model_copy(update={"meta": meta})


async def run_rollouts(
    states: list[EpisodeState],
    llm_for: Callable[[EpisodeState], LLM],
    pools: list[TaskPool],
    *,
    iteration: int,
    rank: int,
    max_turns: int,
    max_concurrency: int,
    on_group: Callable[[GroupRecord], None],
) -> RolloutPhase:
    """Run (or continue) every episode of `states`; `on_group` is called as each group completes."""
    started = time.perf_counter()
    gate = asyncio.Semaphore(max_concurrency)
    members: dict[str, list[EpisodeState]] = {}
    for state in states:
        members.setdefault(state.group_id, []).append(state)
    finished: dict[str, dict[str, Trajectory]] = {group: {} for group in members}
    complete: list[GroupRecord] = []
    paused_groups: set[str] = set()
    generated = 0

    async def one(state: EpisodeState) -> None:
        nonlocal generated
        llm = llm_for(state)
        pool = pools[state.source]
        async with gate:
            try:
                trajectory = await rollout(
                    pool.environment(state.task),
                    state.task,
                    llm,
                    state.sampling,
                    max_turns=max_turns,
                    trajectory_id=state.id,
                    group_id=state.group_id,
                    policy_version=state.version,
                    provenance={"start_iteration": state.start_iteration},
                )
            except EpisodePaused:
                paused_groups.add(state.group_id)
                return
            finally:
                generated += llm.generated if isinstance(llm, EpisodeLLM) else 0
        if not isinstance(llm, EpisodeLLM):  # an endpoint: count what its replies used
            generated += sum(
                (meta.usage.completion_tokens if meta.usage else 0)
                for meta in trajectory.meta
                if meta.author == "policy"
            )
        finished[state.group_id][state.id] = with_versions(trajectory, state)
        group = members[state.group_id]
        if len(finished[state.group_id]) == len(group) and state.group_id not in paused_groups:
            record = GroupRecord(
                iteration=iteration,
                rank=rank,
                group_id=state.group_id,
                source=group[0].source,
                task=group[0].task,
                trajectories=[finished[state.group_id][member.id] for member in group],
            )
            complete.append(record)
            on_group(record)

    await asyncio.gather(*(one(state) for state in states))
    paused = [state for group in sorted(members) if group in paused_groups for state in members[group]]
    complete.sort(key=lambda record: record.group_id)
    return RolloutPhase(complete, paused, generated, time.perf_counter() - started, reused=0)
