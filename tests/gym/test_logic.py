"""The logic environment: every puzzle family scores its reference 1, a wrong answer 0, a malformed one 0."""

import asyncio

import pytest

from openk2.chat import Message
from openk2.gym.envs.logic import LogicEnv

SOURCES = [source.name for source in LogicEnv.problem_sources]


def score(env, task, reply):
    return asyncio.run(env.score(task, [*task.messages, Message(role="assistant", content=reply)]))


@pytest.mark.parametrize("source", SOURCES)
def test_each_puzzle_family_scores_reference_1_and_wrong_0(logic_env, source):
    env = LogicEnv(sources=[source], difficulty=1, verifier_workers=0)
    [task] = env.tasks("train", n=1, seed=0)
    answer = task.verification["answer"]
    assert score(env, task, answer).value == 1.0
    assert score(env, task, f"Let me think.\nAnswer: {answer}").value == 1.0
    assert score(env, task, "Answer: 0000").value == 0.0


def test_a_malformed_reply_scores_0_with_a_parse_reason(logic_env):
    [task] = logic_env.tasks("train", n=1, seed=0)
    for reply, reason in [("<answer>12", "an <answer> tag is never closed"), ("   ", "the reply is empty")]:
        reward = score(logic_env, task, reply)
        assert reward.value == 0.0 and reward.components[0].details["parse_error"] == reason


def test_the_24_game_accepts_any_correct_expression():
    env = LogicEnv(sources=["puzzle24"], difficulty=1, verifier_workers=0)
    [task] = env.tasks("test", n=1, seed=1)
    numbers = task.verification["entry"]["metadata"]["numbers"]
    assert score(env, task, "Answer: " + task.verification["answer"]).value == 1.0
    uses_all_but_wrong = " + ".join(str(number) for number in numbers)
    if eval(uses_all_but_wrong) != 24:
        assert score(env, task, f"Answer: {uses_all_but_wrong}").value == 0.0


def test_difficulty_sets_the_size():
    easy = LogicEnv(sources=["digit_reversal"], difficulty=1, verifier_workers=0).tasks("train", n=10, seed=0)
    hard = LogicEnv(sources=["digit_reversal"], difficulty=5, verifier_workers=0).tasks("train", n=10, seed=0)
    assert max(len(task.verification["answer"]) for task in easy) <= 3
    assert min(len(task.verification["answer"]) for task in hard) >= 12
