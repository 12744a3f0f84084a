"""Held-out reward: each test-split task once, greedy, through the same gym rollout and verifier as training.

Used by the trainer every `[rl.eval].every` iterations and by the tests and benchmarks on checkpoints; any
`openk2.llm` back end can be measured the same way.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass

from openk2.gym import Environment, Task, rollout
from openk2.llm import LLM, SamplingParams


@dataclass(frozen=True)
class HeldOutResult:
    rewards: dict[str, list[float | None]]  # per environment, per task (None: its reward errored)

    def mean(self) -> dict[str, float]:
        means = {}
        for env, values in self.rewards.items():
            scored = [value for value in values if value is not None]
            means[env] = sum(scored) / len(scored) if scored else math.nan
        return means

    def interval(self, env: str, z: float = 1.96) -> tuple[float, float]:
        """Wilson score interval of the pass rate (reward ≥ 1 counts as a pass), 95% by default."""
        passes = [value is not None and value >= 1.0 for value in self.rewards[env]]
        n = len(passes)
        if n == 0:
            return math.nan, math.nan
        p = sum(passes) / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return centre - half, centre + half


async def held_out_reward(
    llm: LLM, tasks: Sequence[tuple[Environment, Task]], max_concurrency: int = 64
) -> HeldOutResult:
    gate = asyncio.Semaphore(max_concurrency)

    async def one(environment: Environment, task: Task) -> tuple[str, float | None]:
        sampling = SamplingParams(temperature=0.0, max_tokens=task.budget)
        async with gate:
            trajectory = await rollout(environment, task, llm, sampling, trajectory_id=f"eval/{task.id}")
        return environment.name, trajectory.reward

    results = await asyncio.gather(*(one(environment, task) for environment, task in tasks))
    rewards: dict[str, list[float | None]] = {}
    for env, reward in results:
        rewards.setdefault(env, []).append(reward)
    return HeldOutResult(rewards)
