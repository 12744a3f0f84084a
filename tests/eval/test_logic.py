"""The logic suite end to end: a fixed panel of five held-out tasks from each of the nine puzzle families,
scored by each family's own checker; reference answers in `<answer>` tags score 100%.

The model is a scripted stand-in that answers from the tasks' reference answers (a pipeline test).
"""

import asyncio
from collections import Counter

import pytest

from openk2.eval import SUITES, EvalProfile
from tests.eval.conftest import run_suites
from tests.gym.scripted import ScriptedLLM


@pytest.mark.slow  # the panel is generated twice (~7 s of CPU each)
def test_the_logic_panel_is_fixed_and_reference_answers_score_100_percent(tmp_path):
    suite = SUITES["logic"]
    settings = suite.settings(EvalProfile())
    env = suite.make_env(settings, None)
    tasks = suite.tasks(env, settings)
    asyncio.run(env.aclose())
    assert Counter(task.metadata["source"] for task in tasks) == {
        family: 5
        for family in (
            "puzzle24", "sudoku", "cryptarithm", "cipher", "morse", "zebra", "tabular", "sorting",
            "digit_reversal",
        )
    }  # fmt: skip
    answers = {task.messages[-1].text: task.verification["answer"] for task in tasks}
    oracle = ScriptedLLM(
        lambda request: f"<answer>{answers[request.messages[-1].text]}</answer>", "logic-oracle"
    )

    [result] = run_suites(tmp_path, oracle, "logic").suites
    assert [trajectory.task_id for trajectory in result.trajectories] == [task.id for task in tasks]
    scores = {score.metric: score.value for score in result.scores}
    assert result.scored == 45 and scores == {"acc": 1.0, "parsed": 1.0, "answer_marked": 1.0}
