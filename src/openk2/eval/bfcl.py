"""BFCL (Berkeley Function Calling Leaderboard) single-turn categories as a gym environment, scored by
BFCL's own AST checker (the `bfcl-eval` package: its cases, its possible answers, its checker).

    case: question + Python function docs ─> OpenAI tools (BFCL's function-calling conversion)
    reply: tool calls ─> [{name: {arg: value}}] ─> ast_checker(docs, calls, possible answers)

A possible answer lists, per parameter, every acceptable value; "" among them marks an optional
parameter that may be left out. `simple` wants exactly the one call, `multiple` the right one of
several functions, `parallel` several calls of one function and `parallel_multiple` several calls of
several functions, in any order. A reply without a call scores 0 with the reason, as BFCL's decoder
failure does. The package is installed with `--no-deps` (its full install pulls a second torch);
its checker only needs `bfcl_eval.constants.model_config`, whose import pulls every model handler,
so that one module is replaced by the single entry the checker reads (see `ast_checker`).
"""

from __future__ import annotations

import copy
import json
import random
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

from openk2.chat import Message, ToolSpec
from openk2.gym import Environment, Reward, Source, Task
from openk2.gym.environment import EnvSettings, require
from openk2.gym.records import Split
from openk2.gym.verifiers import Verdict, VerifierPool, unparsed

BFCL = "bfcl-eval==2026.3.23 --no-deps"
BfclCategory = Literal["simple", "multiple", "parallel", "parallel_multiple"]
CATEGORY_FILES: dict[str, str] = {  # our name -> BFCL v4's test category
    "simple": "simple_python",
    "multiple": "multiple",
    "parallel": "parallel",
    "parallel_multiple": "parallel_multiple",
}
CHECKER_MODEL = "openk2"  # the model name the checker is told; see `ast_checker`
PYTHON_HINT = " Note that the provided function is in Python 3 syntax."  # BFCL adds it to every doc


@cache
def bfcl_cases(category: str) -> list[dict[str, Any]]:
    """BFCL v4 cases of a category, each with its `ground_truth` (the possible answers) joined in."""
    require("bfcl_eval", BFCL)
    data = resources.files("bfcl_eval").joinpath("data")
    name = f"BFCL_v4_{CATEGORY_FILES[category]}.json"
    cases = [json.loads(line) for line in data.joinpath(name).read_text().splitlines() if line.strip()]
    answers = {
        entry["id"]: entry["ground_truth"]
        for line in data.joinpath("possible_answer", name).read_text().splitlines()
        if line.strip()
        for entry in [json.loads(line)]
    }
    return [{**case, "ground_truth": answers[case["id"]]} for case in cases]


# --- function docs -> OpenAI tools, as BFCL's function-calling handlers build them --------------------


def openai_tools(functions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """BFCL's conversion for OpenAI-style function calling: the Python hint appended to each description,
    BFCL types mapped to JSON Schema (float also marked in the description), dots in names made
    underscores (OpenAI names allow no dots; the checker maps them back)."""
    from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI

    tools = []
    for function in copy.deepcopy(list(functions)):
        function["description"] = function["description"] + PYTHON_HINT
        function["name"] = function["name"].replace(".", "_")
        function["parameters"]["type"] = "object"
        function["parameters"]["properties"] = _openapi_types(
            function["parameters"]["properties"], GORILLA_TO_OPENAPI
        )
        tools.append({"type": "function", "function": function})
    return tools


def _openapi_types(properties: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """BFCL's `_cast_to_openai_type`: nested lists and dicts of properties are converted too."""
    for value in properties.values():
        if "type" not in value:
            value["type"] = "string"
        else:
            if value["type"] == "float":
                value["format"] = "float"
                value["description"] += " This is a float type value."
            value["type"] = mapping.get(value["type"], "string")
        if value["type"] in ("array", "object"):
            if "properties" in value:
                value["properties"] = _openapi_types(value["properties"], mapping)
            elif "items" in value:
                items = value["items"]
                items["type"] = mapping[items["type"]]
                if items["type"] == "array" and "items" in items:
                    items["items"]["type"] = mapping[items["items"]["type"]]
                elif items["type"] == "object" and "properties" in items:
                    items["properties"] = _openapi_types(items["properties"], mapping)
    return properties


# --- the checker --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CheckerModelConfig:
    underscore_to_dot: bool  # the model saw dotted names with underscores (OpenAI-style tools)


@cache
def ast_checker() -> Any:
    """`bfcl_eval`'s `ast_checker`, importable without the package's model handlers.

    The checker reads one thing from `bfcl_eval.constants.model_config`: whether the model was given
    dotted function names with underscores. Importing the real module imports every model handler
    and their SDKs, so the module is provided with that single entry for CHECKER_MODEL.
    """
    require("bfcl_eval", BFCL)
    module = "bfcl_eval.constants.model_config"
    if module not in sys.modules:
        stub = types.ModuleType(module)
        stub.MODEL_CONFIG_MAPPING = {CHECKER_MODEL: _CheckerModelConfig(underscore_to_dot=True)}  # type: ignore[attr-defined]
        sys.modules[module] = stub
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker as checker

    return checker


def check_calls(
    functions: list[dict[str, Any]],
    calls: list[dict[str, dict[str, Any]]],
    ground_truth: list[dict[str, Any]],
    category: str,
) -> Verdict:
    """BFCL's verdict on `calls` ([{name: {arg: value}}], names as the model saw them)."""
    from bfcl_eval.constants.enums import Language

    result = ast_checker()(
        functions, calls, ground_truth, Language.PYTHON, CATEGORY_FILES[category], CHECKER_MODEL
    )
    details = {"calls": calls}
    if not result["valid"]:
        details |= {"error_type": result.get("error_type"), "errors": result.get("error")}
    return Verdict(1.0 if result["valid"] else 0.0, details)


def calls_of(message: Message) -> list[dict[str, dict[str, Any]]]:
    """The assistant message's tool calls as BFCL's decoded output."""
    return [{call.function.name: json.loads(call.function.arguments)} for call in message.tool_calls or []]


class BfclSettings(EnvSettings):
    category: BfclCategory = "simple"
    verifier_workers: int = 0  # the checker is pure Python and fast: in process by default
    verifier_timeout_s: float = 10.0


class BfclEnv(Environment):
    """BFCL single-turn function calling; evaluation data only (every case is in the `test` split)."""

    name = "bfcl"
    kind = "tool_use"
    summary = "BFCL v4 simple / multiple / parallel / parallel_multiple, BFCL's AST checker"
    sources = (Source("bfcl", "bfcl-eval (BFCL v4 cases and possible answers)", "Apache-2.0"),)
    Settings = BfclSettings
    settings: BfclSettings

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.verifiers = VerifierPool(self.settings.verifier_workers, self.settings.verifier_timeout_s)

    def tasks(self, split: Split, n: int | None = None, seed: int = 0) -> list[Task]:
        if split != "test":
            raise ValueError("split: BFCL is evaluation data; its cases are all in the 'test' split")
        cases = list(bfcl_cases(self.settings.category))
        random.Random(seed).shuffle(cases)
        return [self.task_of(case) for case in cases[:n]]

    def task_of(self, case: dict[str, Any]) -> Task:
        return Task(
            id=f"bfcl/{case['id']}",
            env=self.name,
            kind="tool_use",
            split="test",
            messages=[Message.model_validate(message) for message in case["question"][0]],
            tools=[ToolSpec.model_validate(tool) for tool in openai_tools(case["function"])],
            verification={
                "category": self.settings.category,
                "functions": case["function"],
                "ground_truth": case["ground_truth"],
            },
            metadata={"source": "bfcl", "bfcl_id": case["id"], "licence": "Apache-2.0"},
        )

    async def score(self, task: Task, messages: Sequence[Message]) -> Reward:
        replies = [message for message in messages if message.role == "assistant"]
        if not replies:
            return unparsed("ast", "no reply")
        if not replies[-1].tool_calls:  # BFCL: the decoder finds no function call
            return unparsed("ast", f"the reply makes no function call: {replies[-1].text[:200]!r}")
        spec = task.verification
        component = await self.verifiers.check(
            "ast",
            check_calls,
            spec["functions"],
            calls_of(replies[-1]),
            spec["ground_truth"],
            spec["category"],
        )
        return Reward.combine([component])

    async def aclose(self) -> None:
        self.verifiers.close()
