"""Bad RL recipes are refused before any work starts, with the file and the field named: an unknown
environment, a negative reward weight, a budget of 0, an unknown key, and through the real `openk2 rl`
command one clean error line (exit status 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from openk2.rl.recipe import load_rl_recipe
from tests.rl.rl_setup import REVERSAL, rl_sections, write_rl_recipe

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """Enough of an OpenK2 checkpoint for the recipe's checks (nothing is loaded)."""
    directory = tmp_path / "policy"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"model_type": "deepseek_v3"}))
    return directory


def _recipe(tmp_path: Path, policy: Path, **sections: Any) -> Path:
    return write_rl_recipe(tmp_path / "rl.toml", rl_sections(tmp_path, policy, **sections))


def test_the_test_recipe_itself_is_valid(tmp_path: Path, policy_dir: Path) -> None:
    recipe = load_rl_recipe(_recipe(tmp_path, policy_dir))
    assert recipe.rl.budget == {"logic": 8} and recipe.rl.tasks[0].env == "logic"


def test_the_shipped_recipe_is_valid_given_its_policy(tmp_path: Path, policy_dir: Path) -> None:
    text = (REPO / "recipes" / "rl-tiny.toml").read_text()
    shipped = 'policy = "runs/rl-warm/warm/checkpoints/step_000160"'
    assert shipped in text
    path = tmp_path / "rl-tiny.toml"
    path.write_text(text.replace(shipped, f'policy = "{policy_dir}"'))
    recipe = load_rl_recipe(path)
    assert recipe.rl.objective == "k15" and recipe.rl.tasks[0].env == "logic"
    path.write_text(text.replace(shipped, f'policy = "{policy_dir}"').replace("tau = 1.0", 'tau = "1.0"'))
    with pytest.raises(ValueError, match=r"\[rl\]\.tau: Input should be a valid number"):
        load_rl_recipe(path)


@pytest.mark.parametrize(
    ("sections", "field", "message"),
    [
        (dict(tasks=[dict(env="chess", settings={})]), "[rl].tasks[0].env", "unknown environment 'chess'"),
        (dict(rl=dict(rewards={"critic": -1.0})), "[rl].rewards.critic", "greater than or equal to 0"),
        (dict(rl=dict(rewards={"budget_penalty": -0.5})), "[rl].rewards.budget_penalty", ">= 0"),
        (dict(rl=dict(budget={"logic": 0})), "[rl].budget", "logic: a budget is a positive number of tokens"),
        (dict(rl=dict(budget={"poetry": 10})), "[rl].budget", "poetry: not a task kind"),
        (dict(rl=dict(tau=0.0)), "[rl].tau", "greater than 0"),
        (dict(rl=dict(samples_per_group=1)), "[rl].samples_per_group", "greater than or equal to 2"),
        (dict(rl=dict(groups=4)), "[rl].groups", "Extra inputs are not permitted"),
        (
            dict(tasks=[dict(env="logic", settings={**REVERSAL, "difficulty": 9})]),
            "[rl].tasks[0]",
            "less than or equal to 5",
        ),
        (dict(rl=dict(rollout="endpoint")), "[rl]", "endpoint: required exactly when rollout is 'endpoint'"),
    ],
)
def test_a_bad_field_is_refused_by_name(
    tmp_path: Path, policy_dir: Path, sections: dict[str, Any], field: str, message: str
) -> None:
    path = _recipe(tmp_path, policy_dir, **sections)
    with pytest.raises(ValueError) as refused:
        load_rl_recipe(path)
    text = str(refused.value)
    assert text.startswith(f"{path}: "), text
    assert field in text and message.replace(">= 0", "") in text, text


def test_openk2_rl_prints_one_clean_line_for_a_bad_recipe(tmp_path: Path, policy_dir: Path) -> None:
    path = _recipe(tmp_path, policy_dir, rl=dict(budget={"logic": 0}))
    completed = subprocess.run(
        [sys.executable, "-m", "openk2", "rl", "--recipe", str(path)],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2, completed.stderr
    [line] = completed.stderr.strip().splitlines()
    assert line.startswith("error: ") and "[rl].budget" in line and "logic" in line, line
    assert not (tmp_path / "rl").exists()  # refused before a run directory was made
