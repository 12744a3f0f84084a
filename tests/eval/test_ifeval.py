"""IFEval-style strict and loose accuracy, on the gym's own constraint checkers.

Loose accuracy, as IFEval defines it, forgives a preamble line, a closing line and markdown emphasis:
a constraint broken only by those is followed loosely, not strictly.
"""

import asyncio

import pytest

from openk2.chat import Message
from openk2.eval.ifeval import annotate, ifeval_scores, loose_variants
from openk2.eval.profile import SuiteSettings
from openk2.eval.scoring import ANNOTATION, TaskOutcome
from openk2.gym import Task, Trajectory, make, rollout
from openk2.llm import SamplingParams
from tests.gym.scripted import fixed

LOWERCASE = {"id": "change_case:english_lowercase", "kwargs": {}}
NO_COMMA = {"id": "punctuation:no_comma", "kwargs": {}}
QUOTED = {"id": "startend:quotation", "kwargs": {}}


@pytest.fixture(scope="module")
def env():
    environment = make("instruction", verifier_workers=0)
    yield environment
    asyncio.run(environment.aclose())


def verdicts(env, constraints, reply):
    task = Task(
        id="t",
        env="instruction",
        kind="instruction",
        messages=[Message(role="user", content="Write about gardens.")],
        verification={"constraints": constraints, "soft": []},
    )
    trajectory = asyncio.run(rollout(env, task, fixed(reply), SamplingParams(temperature=0)))
    return trajectory, asyncio.run(annotate(env, task, trajectory))


def test_the_eight_variants_drop_the_first_and_last_lines_and_emphasis():
    variants = loose_variants("Sure, here:\n**body** text\nHope it helps!")
    assert variants[0] == "Sure, here:\n**body** text\nHope it helps!"
    assert set(variants[1:4]) == {
        "**body** text\nHope it helps!",
        "Sure, here:\n**body** text",
        "**body** text",
    }
    assert variants[4:] == [variant.replace("*", "") for variant in variants[:4]] and len(variants) == 8


def test_a_preamble_line_fails_strictly_and_passes_loosely(env):
    trajectory, verdict = verdicts(
        env, [LOWERCASE, NO_COMMA], "Sure! Here it is:\ngardens grow slowly and quietly"
    )
    assert trajectory.reward == 0.0  # the gym's strict reward
    assert verdict["strict"] == [False, True] and verdict["loose"] == [True, True]


def test_markdown_emphasis_is_forgiven_loosely(env):
    _, verdict = verdicts(env, [QUOTED], '**"Gardens are quiet places."**')
    assert verdict["strict"] == [False] and verdict["loose"] == [True]


def test_a_reply_breaking_a_constraint_in_its_body_fails_both_ways(env):
    _, verdict = verdicts(env, [NO_COMMA], "intro\ngardens, parks, and fields\noutro")
    assert verdict["strict"] == verdict["loose"] == [False]
    _, empty = verdicts(env, [NO_COMMA], "   ")
    assert empty["strict"] == empty["loose"] == [False]  # IFEval: an empty reply follows nothing


def test_prompt_and_instruction_level_scores():
    def sample(strict, loose):
        return Trajectory(
            id="i",
            task_id="t",
            messages=[],
            meta=[],
            reward=1.0,
            provenance={ANNOTATION: {"strict": strict, "loose": loose, "hack_check_passed": True}},
        )

    tasks = [
        TaskOutcome("a", [sample([True, True], [True, True])]),
        TaskOutcome("b", [sample([False, True], [True, True])]),
        TaskOutcome("c", [sample([False, False, True], [False, True, True])]),
    ]
    scores = {score.metric: score for score in ifeval_scores(tasks, SuiteSettings())}
    assert scores["prompt_strict"].value == pytest.approx(1 / 3)
    assert scores["prompt_loose"].value == pytest.approx(2 / 3)
    assert scores["instruction_strict"].value == pytest.approx(4 / 7)
    assert scores["instruction_loose"].value == pytest.approx(6 / 7)
    assert scores["instruction_strict"].interval.method == "bootstrap"  # instructions cluster in prompts
