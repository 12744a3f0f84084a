"""The Gym-like environment interface (K2 report §3.2.1, §3.3 "a unified Gym-like interface").

    env = openk2.gym.make("math", difficulty=1)
    tasks = env.tasks("train", n=100, seed=0)          # deterministic; train and test never share a task
    episode = await env.start(task)                      # per-episode state (a tool database, a user)
    turn = await episode.respond(messages)               # tool results, the simulated user, or done
    reward = await env.score(task, messages)             # named components, each with its error

Single-turn environments answer the first assistant turn with `done`; multi-turn ones answer with tool
results or a simulated user's reply until the user or the agent ends the dialogue. Scoring is a pure
function of the task and the finished conversation, so a stored trajectory can be re-scored.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from openk2.chat import Message
from openk2.gym.records import MessageMeta, Reward, Split, Task, TaskKind, Termination
from openk2.recipes import describe_errors

# name -> "module:Class"; imported on first use so that `import openk2.gym` stays light
ENVIRONMENTS: dict[str, str] = {
    "math": "openk2.gym.envs.math:MathEnv",
    "logic": "openk2.gym.envs.logic:LogicEnv",
    "instruction": "openk2.gym.envs.instruction:InstructionEnv",
    "code": "openk2.gym.envs.code:CodeEnv",
    "tool": "openk2.gym.envs.tool:ToolEnv",
    "safety": "openk2.gym.envs.safety:SafetyEnv",
    "faithfulness": "openk2.gym.envs.faithfulness:FaithfulnessEnv",
}
TEST_FRACTION = 0.2  # procedural and single-pool sources hold out this share of their tasks
GIVE_UP_AFTER = 5000  # generated candidates in a row without a new task: the generator is exhausted


class MissingDependency(ImportError):
    """An optional package an environment needs is not installed; the message says what to install."""


def require(module: str, install: str) -> Any:
    """Import `module`, or fail naming the package to install (`install` is the pip argument)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(f"{module}: not installed; run `pip install {install}`") from None


@dataclass(frozen=True)
class Source:
    """Where an environment's tasks come from, for `openk2 gym list` and docs/gym.md."""

    name: str
    origin: str  # the package or the generator
    licence: str


@dataclass
class Turn:
    """The environment's answer to an assistant turn."""

    messages: list[Message] = field(default_factory=list)
    meta: list[MessageMeta] = field(default_factory=list)
    done: bool = False
    termination: Termination | None = None

    @classmethod
    def end(cls, termination: Termination = "agent_stop") -> Turn:
        return cls(done=True, termination=termination)


class Episode:
    """One run of one task. This default serves single-turn tasks: any assistant turn ends it."""

    async def respond(self, messages: Sequence[Message]) -> Turn:
        return Turn.end()

    @property
    def final_state(self) -> dict[str, Any] | None:
        """What the trajectory keeps as `env_final` (e.g. the tool database's hash)."""
        return None

    async def close(self) -> None:
        return None


class EnvSettings(BaseModel):
    """Settings every environment takes; each environment extends them. Unknown names are errors."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class Environment(ABC):
    """A family of tasks with their verifier. Subclasses set `name`, `kind`, `sources`, `Settings`."""

    name: ClassVar[str]
    kind: ClassVar[TaskKind]
    summary: ClassVar[str]
    sources: ClassVar[tuple[Source, ...]]
    Settings: ClassVar[type[EnvSettings]] = EnvSettings

    def __init__(self, **settings: Any) -> None:
        try:
            self.settings = self.Settings(**settings)
        except ValidationError as error:
            raise ValueError(f"{self.name}: {describe_errors(error, within='')}") from None

    @abstractmethod
    def tasks(self, split: Split, n: int | None = None, seed: int = 0) -> list[Task]:
        """`n` tasks of `split` (None: the environment's default amount), the same for the same seed."""

    async def start(self, task: Task) -> Episode:
        """A fresh episode of `task` (the default: single-turn, no state)."""
        return Episode()

    @abstractmethod
    async def score(self, task: Task, messages: Sequence[Message]) -> Reward:
        """The finished conversation's reward; a verifier that failed gives a component with `error`."""

    async def aclose(self) -> None:
        """Stop worker processes and servers."""
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def environment_class(name: str) -> type[Environment]:
    if name not in ENVIRONMENTS:
        raise ValueError(f"environment {name!r}: unknown; known environments: {', '.join(ENVIRONMENTS)}")
    module, _, attribute = ENVIRONMENTS[name].partition(":")
    environment: type[Environment] = getattr(importlib.import_module(module), attribute)
    return environment


def make(name: str, **settings: Any) -> Environment:
    """The environment called `name`; bad settings are errors naming the setting."""
    return environment_class(name)(**settings)


# --- deterministic splits ---------------------------------------------------------------------------


def content_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def split_of(key: str) -> Split:
    """The split a task belongs to, from a hash of its content: the same task is never in both."""
    return "test" if int(content_hash("split", key)[:8], 16) < TEST_FRACTION * 0x1_0000_0000 else "train"


def sample_split(
    items: Sequence[Any], key: Callable[[Any], str], split: Split, n: int | None, seed: int
) -> list[Any]:
    """The items of a fixed pool that fall in `split`, `n` of them in a seeded order (all when n is None)."""
    chosen = [item for item in items if split_of(key(item)) == split]
    random.Random(seed).shuffle(chosen)
    return chosen if n is None else chosen[:n]


def generate_split(
    generate: Callable[[int], Any], key: Callable[[Any], str], split: Split, n: int, seed: int
) -> list[Any]:
    """`n` distinct generated items of `split`: candidates from seeds derived from `seed`, filtered by split.

    A tiny task space (one-digit sums) cannot fill `n`; that is an error naming the shortfall.
    """
    found: dict[str, Any] = {}
    since_new = 0
    for attempt in itertools.count():
        if len(found) == n:
            return list(found.values())
        if since_new >= GIVE_UP_AFTER:  # the space of distinct tasks is exhausted
            break
        item = generate(int(content_hash("seed", str(seed), str(attempt))[:12], 16))
        item_key = key(item)
        since_new += 1
        if split_of(item_key) == split and item_key not in found:
            found[item_key] = item
            since_new = 0
    raise ValueError(f"n: only {len(found)} distinct {split} tasks exist at this difficulty, asked for {n}")


def split_counts(n: int, parts: int) -> list[int]:
    """`n` spread over `parts` as evenly as possible, earlier parts first."""
    return [n // parts + (1 if index < n % parts else 0) for index in range(parts)]
