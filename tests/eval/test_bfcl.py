"""BFCL through the eval suites: the package's ground truth scores 100% in every category, perturbed
answers fail with the checker's reason, and our tool conversion is BFCL's own."""

import ast
import asyncio
import copy
import json
import re
from importlib import resources

import pytest

from openk2.chat import Message
from openk2.eval.bfcl import CATEGORY_FILES, BfclEnv, ast_checker, bfcl_cases, openai_tools
from tests.eval.conftest import run_suites
from tests.eval.oracles import bfcl_oracle, ground_truth_message

CATEGORIES = list(CATEGORY_FILES)


def test_ground_truth_answers_score_100_percent_in_every_category(tmp_path):
    results = run_suites(tmp_path, bfcl_oracle(CATEGORIES), "bfcl")
    by_suite = {suite.suite: suite for suite in results.suites}
    for category in CATEGORIES:
        suite = by_suite[f"bfcl-{category.replace('_', '-')}"]
        assert suite.items == suite.scored == len(bfcl_cases(category)), suite.error_examples
        assert suite.headline.metric == "ast_acc" and suite.headline.value == 1.0
        assert suite.headline.interval.method == "wilson" and suite.headline.interval.high == 1.0


def _score(env: BfclEnv, case, reply: Message):
    task = env.task_of(case)
    return asyncio.run(env.score(task, [*task.messages, reply]))


def _perturbed(case, change) -> Message:
    message = ground_truth_message(case)
    calls = [call.model_dump() for call in message.tool_calls]
    change(calls)
    return Message(role="assistant", content=None, tool_calls=calls)


def _first_scalar(arguments: dict) -> str | None:
    return next(
        (k for k, v in arguments.items() if isinstance(v, str | int | float) and not isinstance(v, bool)),
        None,
    )


def _wrong_value(calls) -> None:
    arguments = json.loads(calls[0]["function"]["arguments"])
    name = _first_scalar(arguments)
    value = arguments[name]
    arguments[name] = f"{value} (not this)" if isinstance(value, str) else value + 12345
    calls[0]["function"]["arguments"] = json.dumps(arguments)


def _extra_call(calls) -> None:
    calls.append(copy.deepcopy(calls[0]) | {"id": "functions.extra:99"})


@pytest.mark.parametrize("category", CATEGORIES)
def test_perturbed_answers_fail_with_the_checkers_reason(category):
    env = BfclEnv(category=category)
    cases = [case for case in bfcl_cases(category)[:40]]
    checked = {"wrong value": 0, "missing required": 0, "extra call": 0}
    for case in cases:
        truth = ground_truth_message(case)
        assert _score(env, case, truth).value == 1.0
        first = json.loads(truth.tool_calls[0].function.arguments)
        doc = next(
            f for f in case["function"] if f["name"].replace(".", "_") == truth.tool_calls[0].function.name
        )
        required = [name for name in doc["parameters"].get("required", []) if name in first]

        perturbations = {"extra call": (_extra_call, "wrong_count")}
        if _first_scalar(first) is not None:
            perturbations["wrong value"] = (_wrong_value, "value_error|type_error")
        if required:

            def drop(calls, name=required[0]):
                arguments = json.loads(calls[0]["function"]["arguments"])
                del arguments[name]
                calls[0]["function"]["arguments"] = json.dumps(arguments)

            perturbations["missing required"] = (drop, "missing_required")
        for label, (change, reason) in perturbations.items():
            reward = _score(env, case, _perturbed(case, change))
            details = reward.components[0].details
            assert reward.value == 0.0, (case["id"], label)
            assert details["errors"], (case["id"], label)  # the checker's own words are kept
            assert re.search(reason, json.dumps(details)), (case["id"], label, details)
            checked[label] += 1
    assert min(checked.values()) >= 10, checked  # each perturbation exercised on many cases


def test_a_reply_without_a_call_scores_0_with_the_reason():
    env = BfclEnv(category="simple")
    case = bfcl_cases("simple")[0]
    reward = _score(env, case, Message(role="assistant", content="The area is 25 square units."))
    assert reward.value == 0.0
    assert "makes no function call" in reward.components[0].details["parse_error"]


def _package_function(module_path: str, name: str, namespace: dict):
    """A function's source from the installed bfcl_eval, executed alone (its module imports SDKs we lack)."""
    source = resources.files("bfcl_eval").joinpath(module_path).read_text()
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == name)
    exec(compile(ast.Module(body=[node], type_ignores=[]), module_path, "exec"), namespace)
    return namespace[name]


def test_tool_conversion_equals_bfcl_function_calling_conversion_on_every_case():
    ast_checker()  # installs the model_config module the package's utils import
    from bfcl_eval.constants.enums import ModelStyle
    from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI
    from bfcl_eval.utils import _func_doc_language_specific_pre_processing

    namespace = {
        "copy": copy,
        "re": re,
        "json": json,
        "ModelStyle": ModelStyle,
        "GORILLA_TO_OPENAPI": GORILLA_TO_OPENAPI,
    }
    _package_function("model_handler/utils.py", "_cast_to_openai_type", namespace)
    convert_to_tool = _package_function("model_handler/utils.py", "convert_to_tool", namespace)
    compared = 0
    for category, file_category in CATEGORY_FILES.items():
        for case in bfcl_cases(category):
            documented = _func_doc_language_specific_pre_processing(
                copy.deepcopy(case["function"]), file_category
            )
            expected = convert_to_tool(documented, GORILLA_TO_OPENAPI, ModelStyle.OPENAI_COMPLETIONS)
            assert openai_tools(case["function"]) == expected, case["id"]
            compared += 1
    assert compared == 1000


def test_tool_choice_required_is_sent_when_the_suite_asks_for_it(tmp_path):
    oracle = bfcl_oracle(["simple"])
    answer = oracle.script

    def calls_only_when_required(request):  # a model that calls tools only under constrained decoding
        return answer(request) if request.tool_choice == "required" else "I would call a function."

    oracle.script = calls_only_when_required
    auto = run_suites(tmp_path / "auto", oracle, "bfcl-simple", {"n": 5})
    required = run_suites(tmp_path / "required", oracle, "bfcl-simple", {"n": 5, "tool_choice": "required"})
    assert auto.suites[0].headline.value == 0.0 and auto.suites[0].settings.tool_choice == "auto"
    assert required.suites[0].headline.value == 1.0
