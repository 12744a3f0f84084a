"""`openk2 run` end to end on the micro recipe (tests/run/micro.py): real stages, each its own command.

A changed setting reruns its stage and every stage after it, and skips the stages before it. In CI: an SFT
setting (the last stage; ~45 s of CPU, mostly eight processes importing torch). Under `make test-long`: a
pre-training setting, which also reruns SFT."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.run.micro import micro_recipe, openk2_run, write_pipeline_recipe

STAGES = ("data", "pretrain", "sft")


def stage_records(root: Path) -> dict[str, dict]:
    return {stage: json.loads((root / stage / "stage.json").read_text()) for stage in STAGES}


def rerun_after(tmp_path: Path, change: Callable[[dict[str, Any]], None], rerun: tuple[str, ...]) -> None:
    recipe = micro_recipe(tmp_path, tasks_stage=False)
    first = openk2_run(write_pipeline_recipe(tmp_path / "recipe.toml", recipe))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    root = tmp_path / "runs" / "micro"
    before = stage_records(root)
    assert (root / "sft" / "log.txt").read_text().startswith("$ openk2 sft --recipe")

    change(recipe)
    second = openk2_run(write_pipeline_recipe(tmp_path / "recipe.toml", recipe))
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    after = stage_records(root)
    skipped = [stage for stage in STAGES if stage not in rerun]
    for stage in skipped:
        assert f"── {stage}: current, skipped" in second.stdout
        assert after[stage] == before[stage]
    for stage in rerun:
        assert f"── {stage}: current" not in second.stdout
        assert after[stage]["key"] != before[stage]["key"]
        assert after[stage]["output_digest"] != before[stage]["output_digest"]  # other weights
    assert after["sft"]["inputs"]["pretrain"] == after["pretrain"]["output_digest"]
    assert f"{len(rerun)} stages run, {len(skipped)} skipped as current" in second.stdout
    report = (root / "report.html").read_text()
    assert report.count("skipped: current") == len(skipped) and report.count(">ran<") == len(rerun)


@pytest.mark.slow
def test_a_changed_sft_setting_reruns_sft_and_skips_the_data_and_pre_training(tmp_path: Path) -> None:
    def change(recipe: dict[str, Any]) -> None:
        recipe["sft"]["optim"]["lr"] = 1e-3

    rerun_after(tmp_path, change, rerun=("sft",))
    assert "lr = 0.001" in (tmp_path / "runs" / "micro" / "sft" / "recipe.toml").read_text()


@pytest.mark.long
def test_a_changed_pre_training_setting_reruns_pre_training_and_sft_not_the_data(tmp_path: Path) -> None:
    def change(recipe: dict[str, Any]) -> None:
        recipe["pretrain"]["optim"]["lr"] = 1e-3

    rerun_after(tmp_path, change, rerun=("pretrain", "sft"))
