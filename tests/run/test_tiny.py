"""`make run`'s recipe end to end (recipes/tiny.toml, about 20 minutes on 2 idle cores): every stage runs,
the report shows each of them, and the evaluation table has the RL stage's own held-out reward after SFT
and after RL. Long: `make test-long`."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from tests.run.micro import REPO, openk2_run, write_pipeline_recipe

STAGES = ["data", "pretrain", "eval-pretrain", "synth", "tasks", "sft", "eval-sft", "rl", "eval-rl"]


def reversal_accuracy(results: Path) -> float:
    suites = json.loads(results.read_text())["suites"]
    return next(suite for suite in suites if suite["suite"] == "reversal")["scores"][0]["value"]


@pytest.mark.long
def test_the_tiny_recipe_runs_end_to_end_into_one_report(tmp_path: Path) -> None:
    recipe = tomllib.loads((REPO / "recipes" / "tiny.toml").read_text())
    recipe["run"]["output_dir"] = str(tmp_path / "runs")
    completed = openk2_run(write_pipeline_recipe(tmp_path / "tiny.toml", recipe))
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    run = tmp_path / "runs" / "tiny"
    assert f"{len(STAGES)} stages run, 0 skipped as current" in completed.stdout
    assert f"openk2 serve --checkpoint {run}/rl/checkpoints/step_000020" in completed.stdout
    report = (run / "report.html").read_text()
    for stage in STAGES:
        assert f"<b>{stage}</b>" in report
    for heading in (
        "Pre-training",
        "Agentic data synthesis",
        "Supervised fine-tuning",
        "Reinforcement learning",
    ):
        assert f"<h2>{heading}" in report
    assert report.count("data:image/png;base64,") >= 9  # 4 pre-training, tool map, 2 SFT, 2 RL plots
    for column in ("pre-trained", "after SFT", "after RL"):
        assert column in report
    after_sft = reversal_accuracy(run / "eval" / "sft" / "results.json")
    after_rl = reversal_accuracy(run / "eval" / "rl" / "results.json")
    assert after_rl != after_sft  # RL moved the reward it trained on (its direction: docs/run.md)
