"""The math environment: answers from \\boxed{} or an Answer line, compared as mathematics in the process pool."""

import asyncio

import pytest

from openk2.chat import Message
from openk2.gym import Task


def score(env, task: Task, reply: str):
    return asyncio.run(env.score(task, [*task.messages, Message(role="assistant", content=reply)]))


def gold_task(answer: str) -> Task:
    return Task(
        id="math/test/half",
        env="math",
        kind="math",
        messages=[{"role": "user", "content": "What is 1 divided by 2?"}],
        verification={"answer": answer, "check": "math"},
    )


def test_reference_answers_score_1_wrong_0_malformed_0_with_a_reason(math_env):
    tasks = math_env.tasks("test", n=6, seed=0)
    assert {task.metadata["source"] for task in tasks} == {"arithmetic", "algebra", "mmath"}
    for task in tasks:
        answer = task.verification["answer"]
        assert score(math_env, task, answer).value == 1.0, task.id
        assert score(math_env, task, f"Some reasoning.\n\\boxed{{{answer}}}").value == 1.0, task.id
        wrong = score(math_env, task, f"\\boxed{{{answer} + 1}}")
        assert wrong.value == 0.0 and wrong.components[0].passed is False
    malformed = score(math_env, tasks[0], "The answer is \\boxed{12")
    assert malformed.value == 0.0
    assert malformed.components[0].details["parse_error"] == "a \\boxed{ is never closed"
    not_math = score(math_env, tasks[0], "Answer: ???")
    assert (
        not_math.value == 0.0
        and "not a mathematical expression" in not_math.components[0].details["parse_error"]
    )


@pytest.mark.parametrize("gold", ["\\frac{1}{2}", "0.5", "1/2"])
def test_equivalent_forms_score_alike(math_env, gold):
    task = gold_task(gold)
    for form in ["\\boxed{\\frac{1}{2}}", "\\boxed{0.5}", "Answer: 1/2", "\\boxed{\\dfrac12}"]:
        assert score(math_env, task, form).value == 1.0, (gold, form)
    assert score(math_env, task, "\\boxed{0.25}").value == 0.0


def test_intervals_and_sets_compare_as_mathematics(math_env):
    interval = gold_task("(1, 2]")
    assert score(math_env, interval, "\\boxed{(1,2]}").value == 1.0
    assert score(math_env, interval, "\\boxed{[1,2]}").value == 0.0
    a_set = gold_task("\\{1, 2\\}")
    assert score(math_env, a_set, "\\boxed{\\{2, 1\\}}").value == 1.0


def test_competition_problems_come_from_mmath(math_env):
    test = math_env.tasks("test", n=None, seed=0)
    mmath = [task for task in test if task.metadata["source"] == "mmath"]
    assert {task.metadata["dataset"] for task in mmath} == {"MATH500", "AIME2024", "AIME2025", "CNMO"}


def test_difficulty_1_is_one_digit_addition():
    from openk2.gym import make

    env = make("math", difficulty=1, sources=["arithmetic"], verifier_workers=0)
    for task in env.tasks("train", n=20, seed=3):
        question = task.messages[0].text.splitlines()[0]
        left, right = question.removeprefix("Calculate ").rstrip(".").split(" + ")
        assert int(left) + int(right) == int(task.verification["answer"])
