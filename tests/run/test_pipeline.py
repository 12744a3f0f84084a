"""`openk2 run` end to end on the micro recipe (tests/run/micro.py): real stages, each its own command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.run.micro import micro_recipe, openk2_run, write_pipeline_recipe


def stage_records(root: Path, stages: tuple[str, ...]) -> dict[str, dict]:
    return {stage: json.loads((root / stage / "stage.json").read_text()) for stage in stages}


@pytest.mark.slow
def test_a_changed_setting_reruns_its_stage_and_the_later_ones_not_the_earlier(tmp_path: Path) -> None:
    recipe = micro_recipe(tmp_path, tasks_stage=False)
    first = openk2_run(write_pipeline_recipe(tmp_path / "recipe.toml", recipe))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    root = tmp_path / "runs" / "micro"
    stages = ("data", "pretrain", "sft")
    before = stage_records(root, stages)
    assert "── pretrain: pre-training with MuonClip" in first.stdout
    assert (root / "sft" / "log.txt").read_text().startswith("$ openk2 sft --recipe")

    recipe["pretrain"]["optim"]["lr"] = 1e-3  # a pre-training setting, not the data's
    second = openk2_run(write_pipeline_recipe(tmp_path / "recipe.toml", recipe))
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    after = stage_records(root, stages)
    for stage in ("data",):
        assert f"── {stage}: current, skipped" in second.stdout
        assert after[stage] == before[stage]
    for stage in ("pretrain", "sft"):
        assert f"── {stage}: current" not in second.stdout
        assert after[stage]["key"] != before[stage]["key"]
        assert after[stage]["output_digest"] != before[stage]["output_digest"]  # other weights
    assert after["sft"]["inputs"]["pretrain"] == after["pretrain"]["output_digest"]
    assert "2 stages run, 1 skipped as current" in second.stdout
    report = (root / "report.html").read_text()
    assert report.count("skipped: current") == 1 and report.count(">ran<") == 2
    assert "lr = 0.001" in (root / "pretrain" / "recipe.toml").read_text()
