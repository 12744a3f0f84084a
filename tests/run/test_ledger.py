"""When a stage is current, interrupted or to be redone: the key covers its command, its recipe and the
digests of its inputs; the output's digest is checked too. Fast: files only."""

from __future__ import annotations

import json
from pathlib import Path

from openk2.run.ledger import StageRecord, mark_finished, mark_started, output_digest, stage_key, stage_status


def started(directory: Path, output: Path, key: str) -> StageRecord:
    directory.mkdir(parents=True, exist_ok=True)
    record = StageRecord(stage="sft", key=key, command=["openk2 sft"], inputs={}, output=output)
    mark_started(directory, record)
    return record


def test_a_stage_goes_from_new_to_interrupted_to_current(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    key = stage_key(["openk2 tasks"], {"n": 4}, {})
    assert stage_status(tmp_path / "stage", key) == ("new", None)
    record = started(tmp_path / "stage", output, key)
    assert stage_status(tmp_path / "stage", key) == ("interrupted", None)
    output.write_text("a\n")
    finished = mark_finished(tmp_path / "stage", record, seconds=3.0)
    status, read = stage_status(tmp_path / "stage", key)
    assert status == "current" and read == finished and read.seconds == 3.0


def test_a_changed_setting_command_or_input_makes_a_new_key() -> None:
    key = stage_key(["openk2 sft --recipe r"], {"optim": {"lr": 3e-3}}, {"pretrain": "abc"})
    assert key != stage_key(["openk2 sft --recipe r"], {"optim": {"lr": 1e-3}}, {"pretrain": "abc"})
    assert key != stage_key(["openk2 sft --recipe r"], {"optim": {"lr": 3e-3}}, {"pretrain": "abd"})
    assert key != stage_key(["openk2 sft --recipe s"], {"optim": {"lr": 3e-3}}, {"pretrain": "abc"})
    assert key == stage_key(["openk2 sft --recipe r"], {"optim": {"lr": 3e-3}}, {"pretrain": "abc"})


def test_a_finished_stage_whose_output_changed_or_vanished_is_not_current(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    output.write_text("a\n")
    mark_finished(tmp_path / "stage", started(tmp_path / "stage", output, "k"), seconds=1.0)
    output.write_text("b\n")
    assert stage_status(tmp_path / "stage", "k")[0] == "new"
    output.unlink()
    assert stage_status(tmp_path / "stage", "k")[0] == "new"


def test_a_finished_stage_with_another_key_is_redone_not_resumed(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    output.write_text("a\n")
    mark_finished(tmp_path / "stage", started(tmp_path / "stage", output, "old"), seconds=1.0)
    assert stage_status(tmp_path / "stage", "new-key")[0] == "new"


def test_a_checkpoint_is_identified_by_its_models_entries_in_its_manifest(tmp_path: Path) -> None:
    checkpoint = tmp_path / "step_000004"
    checkpoint.mkdir()
    assert output_digest(checkpoint) is None  # no manifest yet: incomplete

    def manifest(weights: str, state: str) -> str | None:
        files = {
            "config.json": {"sha256": "c"},
            "model/__0_0.distcp": {"sha256": weights},
            "trainer_state.json": {"sha256": state},  # holds times: differs between identical runs
        }
        (checkpoint / "manifest.json").write_text(json.dumps({"files": files}))
        return output_digest(checkpoint)

    first = manifest("aa", "s1")
    assert first is not None and manifest("aa", "s2") == first
    assert manifest("ab", "s1") != first
