"""The `reversal` suite is the held-out split RL measures itself on: the same 64 test tasks of the gym's
digit reversal, with the settings of the tiny pipeline's RL task."""

from __future__ import annotations

import tomllib
from pathlib import Path

import openk2.gym
from openk2.eval import SUITES, EvalProfile

REPO = Path(__file__).resolve().parents[2]


def test_the_reversal_suite_holds_the_tasks_rl_measures_its_held_out_reward_on() -> None:
    rl_task = tomllib.loads((REPO / "recipes" / "tiny.toml").read_text())["rl"]["rl"]["tasks"][0]
    rl_settings = {k: v for k, v in rl_task["settings"].items() if k != "verifier_workers"}
    suite = SUITES["reversal"]
    settings = suite.settings(EvalProfile())
    assert settings.env == rl_settings and rl_task["env"] == suite.env
    held_out = openk2.gym.make("logic", **rl_settings).tasks("test", n=64, seed=0)  # as openk2.rl draws them
    drawn = suite.tasks(suite.make_env(settings, None), settings)
    assert [task.messages for task in drawn] == [task.messages for task in held_out]
    assert {task.split for task in drawn} == {"test"}
