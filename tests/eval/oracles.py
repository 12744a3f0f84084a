"""Scripted stand-in models that answer from the benchmarks' own reference answers (pipeline tests).

They are not models: they look the task up by its prompt and reply with its ground truth, so that a
suite run end to end must score 100%. Any loss is the pipeline's (conversion, parsing, scoring).
"""

import json
from typing import Any

from openk2.chat import Message, format_call_id
from openk2.eval.bfcl import bfcl_cases
from openk2.gym.envs.code import human_eval_problems
from openk2.llm import ChatRequest
from tests.gym.scripted import ScriptedLLM


def oracle_arguments(parameters: dict[str, list[Any]], required: set[str] = frozenset()) -> dict[str, Any]:
    """The minimal ground-truth arguments: a parameter whose acceptable values include "" (may be left
    out) is left out unless the function requires it; any other takes its first acceptable value.

    Possible answers nest: a dict parameter's answer maps each key to its own list of acceptable values.
    """
    arguments = {}
    for name, values in parameters.items():
        given = [value for value in values if value != ""]
        if given and (name in required or len(given) == len(values)):
            arguments[name] = _realise(given[0])
    return arguments


def _realise(value: Any) -> Any:
    if isinstance(value, dict):
        return oracle_arguments(value)
    if isinstance(value, list):
        return [_realise(item) if isinstance(item, dict) else item for item in value]
    return value


def ground_truth_message(case: dict[str, Any]) -> Message:
    required = {
        function["name"]: set(function["parameters"].get("required", [])) for function in case["function"]
    }
    calls = []
    for index, call in enumerate(case["ground_truth"]):
        [(name, parameters)] = call.items()
        model_name = name.replace(".", "_")  # the tool names the model was given
        calls.append(
            {
                "id": format_call_id(model_name, index),
                "type": "function",
                "function": {
                    "name": model_name,
                    "arguments": json.dumps(oracle_arguments(parameters, required[name])),
                },
            }
        )
    return Message(role="assistant", content=None, tool_calls=calls)


def _prompt_key(messages: Any, tool_names: list[str]) -> str:
    return json.dumps([[message.text for message in messages], sorted(tool_names)])


def bfcl_oracle(categories: list[str]) -> ScriptedLLM:
    answers = {}
    for category in categories:
        for case in bfcl_cases(category):
            messages = [Message.model_validate(message) for message in case["question"][0]]
            names = [function["name"].replace(".", "_") for function in case["function"]]
            answers[_prompt_key(messages, names)] = ground_truth_message(case)

    def script(request: ChatRequest) -> Message:
        return answers[_prompt_key(request.messages, [tool.function.name for tool in request.tools or ()])]

    return ScriptedLLM(script, "bfcl-oracle")


def humaneval_oracle() -> ScriptedLLM:
    """Replies with each problem's canonical solution as a fenced block, as a model would."""
    solutions = {problem["prompt"]: problem["canonical_solution"] for problem in human_eval_problems()}

    def script(request: ChatRequest) -> str:
        text = request.messages[-1].text
        prompt = next(prompt for prompt in solutions if text.endswith(prompt))
        return f"Here is the function.\n\n```python\n{prompt}{solutions[prompt]}```\n"

    return ScriptedLLM(script, "humaneval-oracle")
