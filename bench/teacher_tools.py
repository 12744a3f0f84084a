"""The embedded teacher (SmolLM2-135M-Instruct) as a tool caller: prompted only vs constrained decoding.

Cases: the first N of BFCL v4 `simple_python` (one question, one function, its gold arguments), from
the `bfcl-eval` package (installed with --no-deps; its AST checker is used as BFCL uses it). Each
case is asked twice in the same run, greedy, through `TransformersLLM.chat_batch`:

- prompted: tools described in the system prompt, `tool_choice="auto"`: the model must write the
  `<tool_call>[...]</tool_call>` list by itself (the baseline);
- constrained: `tool_choice="required"`: a grammar writes the list, the model picks the tool and fills
  the arguments, which the tool's JSON Schema then accepts by construction.

Columns: a call was made; it is valid (one call, to the declared tool, arguments that the schema
accepts: checked by `jsonschema`); it is correct (BFCL's AST checker against the gold answers).
Usage: python bench/teacher_tools.py [--cases 50] [--max-tokens 96]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types
from collections import defaultdict
from collections.abc import Callable
from importlib.resources import files
from typing import Any

import jsonschema
import torch
from rich.console import Console
from rich.table import Table

from openk2.llm import SamplingParams, chat_request
from openk2.llm.teacher import load_teacher

# BFCL types -> JSON Schema (the benchmark writes Python's names)
_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": None}


def json_schema(bfcl: dict[str, Any]) -> dict[str, Any]:
    schema = {key: value for key, value in bfcl.items() if key not in ("type", "properties", "items")}
    kind = _TYPES.get(bfcl.get("type", "any"), bfcl.get("type"))
    if kind is not None:
        schema["type"] = kind
    if "properties" in bfcl:
        schema["properties"] = {name: json_schema(value) for name, value in bfcl["properties"].items()}
    if "items" in bfcl:
        schema["items"] = json_schema(bfcl["items"])
    if kind == "object":
        schema.setdefault("required", [])
    return schema


def load_cases(count: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    data = files("bfcl_eval") / "data"
    questions = [json.loads(line) for line in (data / "BFCL_v4_simple_python.json").read_text().splitlines()]
    answers = {
        record["id"]: record
        for record in map(
            json.loads, (data / "possible_answer" / "BFCL_v4_simple_python.json").read_text().splitlines()
        )
    }
    return [(case, answers[case["id"]]) for case in questions[:count]]


def ast_checker() -> Callable[[list[Any], list[Any], list[Any]], dict[str, Any]]:
    """BFCL's AST checker; its model registry (which imports every provider SDK) is stubbed out."""
    registry = defaultdict(lambda: types.SimpleNamespace(underscore_to_dot=False))
    sys.modules["bfcl_eval.constants.model_config"] = types.SimpleNamespace(MODEL_CONFIG_MAPPING=registry)  # type: ignore[assignment]
    from bfcl_eval.constants.enums import Language
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker as check

    return lambda functions, output, answer: check(
        functions, output, answer, Language.PYTHON, "simple_python", "openk2"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    check = ast_checker()
    cases = load_cases(args.cases)
    teacher = load_teacher(max_batch_size=len(cases))
    sampling = SamplingParams(temperature=0, max_tokens=args.max_tokens)
    rows = []
    try:
        for mode, choice in (("prompted (auto)", "auto"), ("constrained (required)", "required")):
            requests, renamed = [], []
            for case, _ in cases:
                function = case["function"][0]
                name = function["name"].replace(".", "_")  # OpenAI names allow no dots
                tool = {"type": "function", "function": {"name": name, "description": function["description"],
                        "parameters": json_schema(function["parameters"])}}  # fmt: skip
                requests.append(chat_request(case["question"][0], [tool], sampling, choice))
                renamed.append((name, function["name"], tool["function"]["parameters"]))
            started = time.perf_counter()
            replies = teacher.chat_batch(requests)
            seconds = time.perf_counter() - started
            called = valid = correct = cut_off = 0
            for reply, (case, answer), (name, original, schema) in zip(replies, cases, renamed, strict=True):
                cut_off += reply.finish_reason == "length"
                calls = reply.message.tool_calls or []
                called += bool(calls)
                if len(calls) != 1 or calls[0].function.name != name:
                    continue
                arguments = json.loads(calls[0].function.arguments)
                try:
                    jsonschema.validate(arguments, schema)
                except jsonschema.ValidationError:
                    continue
                valid += 1
                verdict = check(case["function"], [{original: arguments}], answer["ground_truth"])
                correct += bool(verdict["valid"])
            rows.append((mode, called, valid, correct, cut_off, seconds))
    finally:
        teacher.close()
    table = Table(
        title=f"SmolLM2-135M-Instruct on BFCL v4 simple_python (first {len(cases)} cases), greedy, "
        f"{args.threads} thread(s), load average {os.getloadavg()[0]:.1f}"
    )
    columns = (
        "mode",
        "made a call",
        "valid call (schema)",
        "correct (BFCL AST)",
        "cut off by max_tokens",
        "seconds",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for mode, called, valid, correct, cut_off, seconds in rows:
        table.add_row(
            mode, f"{called}/{len(cases)}", f"{valid}/{len(cases)} ({valid / len(cases):.0%})",
            f"{correct}/{len(cases)} ({correct / len(cases):.0%})", str(cut_off), f"{seconds:.0f}",
        )  # fmt: skip
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
