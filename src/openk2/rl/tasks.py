"""Which prompts each iteration trains on: the recipe's task sources, their environments, budgets and order.

A source is a gym environment (its train split, generated or shipped) or a file of gym `Task` records; a
file's `open_ended` tasks have no verifier and are judged by the policy as its own critic (`critic.py`),
through `OpenEndedEnv`, which ends the episode after the reply. Each iteration draws
`groups_per_iteration` prompts: group n's source by the sources' weights (seeded by n), then that source's
next task in a per-epoch shuffle. The sampler's state is a counter per source, saved with the trainer's
checkpoints, so a resumed run draws exactly the groups it would have drawn.

Budget control (K2 report §3.2.3): every task gets the per-kind budget of `[rl.budget]`, else its own
`budget`, else `[rl].max_tokens`; the gym rollout ends a reply at it (`budget_exceeded`).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from openk2.chat import Message
from openk2.gym import Environment, Reward, RewardComponent, Task, iter_records, make
from openk2.gym.environment import Source
from openk2.gym.records import Split
from openk2.rl.recipe import RLSection, TaskSource

OPEN_ENDED = "open_ended"


class OpenEndedEnv(Environment):
    """Open-ended prompts: single-turn, no verifier; the group's critic gives the reward (`critic.py`)."""

    name = OPEN_ENDED
    kind = "open_ended"
    summary = "open-ended prompts judged pairwise by the policy as its own critic"
    sources = (Source(OPEN_ENDED, "the recipe's task file", "the file's"),)

    def tasks(self, split: Split, n: int | None = None, seed: int = 0) -> list[Task]:
        raise ValueError("open-ended tasks come from a file ([[rl.tasks]] file = ...)")

    async def score(self, task: Task, messages: Sequence[Message]) -> Reward:
        pending = RewardComponent(name="critic", score=0.0, details={"scored_by": "the group's critic"})
        return Reward.combine([pending])


@dataclass
class TaskPool:
    source: TaskSource
    tasks: list[Task]
    environments: dict[str, Environment]  # env name -> environment (a file may mix environments)

    def environment(self, task: Task) -> Environment:
        return self.environments[OPEN_ENDED if task.kind == "open_ended" else task.env]


def budgeted(task: Task, rl: RLSection) -> Task:
    return task.model_copy(update={"budget": rl.budget.get(task.kind, task.budget or rl.max_tokens)})


def load_pools(rl: RLSection) -> list[TaskPool]:
    """Every source's training tasks with their environments; a file names its own tasks' environments."""
    pools = []
    for index, source in enumerate(rl.tasks):
        where = f"[rl].tasks[{index}]"
        if source.env is not None:
            environment = make(source.env, **source.settings)
            tasks = environment.tasks("train", n=source.pool, seed=rl.seed)
            if not tasks:
                raise ValueError(f"{where}.env: {source.env} has no training tasks with these settings")
            environments = {source.env: environment}
        else:
            assert source.file is not None  # one of env and file, checked by the recipe
            tasks = list(iter_records(source.file, Task))
            if not tasks:
                raise ValueError(f"{where}.file: {source.file} holds no tasks")
            environments = _file_environments(tasks, source, where)
        pools.append(TaskPool(source, [budgeted(task, rl) for task in tasks], environments))
    return pools


def _file_environments(tasks: list[Task], source: TaskSource, where: str) -> dict[str, Environment]:
    environments: dict[str, Environment] = {}
    for line, task in enumerate(tasks, start=1):
        name = OPEN_ENDED if task.kind == "open_ended" else task.env
        if name in environments:
            continue
        if name == OPEN_ENDED:
            environments[name] = OpenEndedEnv()
            continue
        try:
            environments[name] = make(name, **source.settings)
        except ValueError as error:
            raise ValueError(f"{where}.file: {source.file}:{line}: env: {error}") from None
    return environments


def _seeded(*parts: Any) -> random.Random:
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class TaskSampler:
    """Group n's source by weight, then that source's next task in its per-epoch shuffle (resumable)."""

    def __init__(self, pools: list[TaskPool], seed: int) -> None:
        self.pools = pools
        self.seed = seed
        self.drawn = 0  # groups drawn so far, all sources
        self.taken = [0] * len(pools)  # tasks taken from each source

    def draw(self) -> tuple[int, Task]:
        """(source index, task) of the next group."""
        weights = [pool.source.weight for pool in self.pools]
        source = _seeded(self.seed, "source", self.drawn).choices(range(len(self.pools)), weights)[0]
        pool = self.pools[source]
        epoch, position = divmod(self.taken[source], len(pool.tasks))
        order = list(range(len(pool.tasks)))
        _seeded(self.seed, "order", source, epoch).shuffle(order)
        self.drawn += 1
        self.taken[source] += 1
        return source, pool.tasks[order[position]]

    def state_dict(self) -> dict[str, Any]:
        return {"drawn": self.drawn, "taken": list(self.taken), "sizes": [len(p.tasks) for p in self.pools]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        sizes = [len(pool.tasks) for pool in self.pools]
        if state["sizes"] != sizes:
            raise ValueError(
                f"task sampler state: the sources held {state['sizes']} tasks, now {sizes}; resuming would "
                "draw other prompts"
            )
        self.drawn, self.taken = state["drawn"], list(state["taken"])


def held_out_tasks(pools: list[TaskPool], rl: RLSection, per_source: int) -> list[tuple[int, Task]]:
    """Held-out tasks of every environment source (the test split), for greedy evaluation."""
    held_out = []
    for index, pool in enumerate(pools):
        if pool.source.env is None:
            continue
        environment = pool.environments[pool.source.env]
        tasks = environment.tasks("test", n=per_source, seed=rl.seed)
        held_out += [(index, budgeted(task, rl)) for task in tasks]
    return held_out
