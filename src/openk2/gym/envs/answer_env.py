"""Environments whose tasks have one reference answer (math, logic): shared task building and scoring."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pydantic import Field

from openk2.chat import Message
from openk2.gym.environment import Environment, EnvSettings, content_hash, split_counts
from openk2.gym.envs.checks import check_answer
from openk2.gym.envs.problems import Problem, ProblemSource
from openk2.gym.records import Reward, Split, Task
from openk2.gym.verifiers import VerifierPool, unparsed


class AnswerSettings(EnvSettings):
    sources: list[str] | None = None  # None: every source of the environment
    difficulty: int = Field(default=3, ge=1, le=5)  # 1: very easy (a tiny model can learn it) .. 5: hard
    verifier_workers: int = Field(default=2, ge=0)  # 0: check in this process (no timeout)
    verifier_timeout_s: float = Field(default=10.0, gt=0)
    # how the question asks for the answer; None: the environment's own, "": none (compact prompts)
    instruction: str | None = None


def last_reply(messages: Sequence[Message]) -> str | None:
    """The text of the last assistant message, None when the agent never answered."""
    replies = [message for message in messages if message.role == "assistant"]
    return replies[-1].text if replies else None


class AnswerEnv(Environment):
    """Tasks from named problem sources, scored by `checks.check_answer` in a verifier pool."""

    Settings = AnswerSettings
    settings: AnswerSettings
    problem_sources: ClassVar[tuple[ProblemSource, ...]]
    instruction: ClassVar[str]  # how to state the answer, appended to every question
    preload: ClassVar[tuple[str, ...]] = ()  # what verifier workers import before their first check

    def __init__(self, **settings: object) -> None:
        super().__init__(**settings)
        known = {source.name: source for source in self.problem_sources}
        chosen = self.settings.sources or list(known)
        unknown = [name for name in chosen if name not in known]
        if unknown:
            raise ValueError(f"{self.name}: sources: unknown {unknown}; known sources: {', '.join(known)}")
        self.chosen_sources = [known[name] for name in chosen]
        self.verifiers = VerifierPool(
            self.settings.verifier_workers, self.settings.verifier_timeout_s, preload=self.preload
        )

    def tasks(self, split: Split, n: int | None = None, seed: int = 0) -> list[Task]:
        counts = (
            split_counts(n, len(self.chosen_sources)) if n is not None else [None] * len(self.chosen_sources)
        )
        tasks = []
        for source, count in zip(self.chosen_sources, counts, strict=True):
            if count == 0:
                continue
            for problem in source.problems(split, count, seed, self.settings.difficulty):
                tasks.append(self.task_of(problem, split))
        return tasks

    def task_of(self, problem: Problem, split: Split) -> Task:
        return Task(
            id=f"{self.name}/{problem.source}/{content_hash(problem.question)[:12]}",
            env=self.name,
            kind=self.kind,
            split=split,
            messages=[Message(role="user", content=self.question_text(problem.question))],
            verification={"answer": problem.answer, **problem.verification},
            metadata={"source": problem.source, "difficulty": self.settings.difficulty, **problem.metadata},
        )

    def question_text(self, question: str) -> str:
        instruction = self.instruction if self.settings.instruction is None else self.settings.instruction
        return f"{question}\n\n{instruction}" if instruction else question

    async def score(self, task: Task, messages: Sequence[Message]) -> Reward:
        reply = last_reply(messages)
        if reply is None:
            return unparsed("answer", "no reply")
        return Reward.combine([await self.verifiers.check("answer", check_answer, reply, task.verification)])

    async def aclose(self) -> None:
        self.verifiers.close()
