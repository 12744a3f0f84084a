"""Resuming is bit-exact: after SIGKILL mid-run, and past a damaged newest checkpoint."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from openk2.model.checkpoint import read_sharded_tensors
from openk2.train import find_checkpoints, pretrain
from openk2.train.environment import read_sessions
from openk2.train.metrics import StepRecord, read_metrics
from openk2.train.sharded import METADATA, MODEL_DIR, OPTIMIZER_DIR
from tests.train.small_run import recipe_sections, write_recipe

REPO = Path(__file__).resolve().parents[2]
STEPS = 24  # long enough that the run is still going when the step-8 checkpoint appears
KILL_AFTER = "step_000008"


def _start(recipe: Path, resume: bool) -> subprocess.Popen[bytes]:
    """`pretrain` in a fresh interpreter; one thread each, so two runs side by side do not slow each other."""
    code = f"from pathlib import Path; from openk2.train import pretrain; pretrain(Path({str(recipe)!r}), resume={resume})"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _finish(process: subprocess.Popen[bytes]) -> None:
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output.decode()


def _trajectory(records: list[StepRecord]) -> list[tuple[Any, ...]]:
    """Everything a step computed (not its timing)."""
    return [
        (
            r.step,
            r.loss,
            r.lr,
            r.grad_norm,
            r.max_logit_per_layer,
            r.expert_load_max,
            r.expert_bias_min,
            r.val_loss,
        )
        for r in records
    ]


def test_sigkill_mid_run_then_resume_reproduces_the_uninterrupted_losses(
    small_data: dict[str, Any], tmp_path: Path
) -> None:
    def recipe(name: str) -> Path:
        run = dict(steps=STEPS, checkpoint_every=4, val_every=10, val_max_batches=2)
        return write_recipe(
            tmp_path / f"{name}.toml", recipe_sections(tmp_path, small_data, name=name, run=run)
        )

    uninterrupted = _start(recipe("uninterrupted"), resume=False)
    killed = _start(recipe("killed"), resume=False)
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.monotonic() + 120
    while not (checkpoints / KILL_AFTER).exists():
        assert killed.poll() is None and time.monotonic() < deadline, (
            "no step-8 checkpoint before the run ended"
        )
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    survived = find_checkpoints(tmp_path / "killed").valid
    assert survived and survived[-1].name < f"step_{STEPS:06d}", "the run finished before it was killed"

    _finish(_start(recipe("killed"), resume=True))
    _finish(uninterrupted)
    expected = read_metrics(tmp_path / "uninterrupted" / "metrics.jsonl")
    resumed = read_metrics(tmp_path / "killed" / "metrics.jsonl")
    assert [r.step for r in resumed] == list(range(1, STEPS + 1))
    assert [r.loss for r in resumed] == [r.loss for r in expected]  # exactly equal, every step
    assert _trajectory(resumed) == _trajectory(expected)
    final = f"checkpoints/step_{STEPS:06d}"
    assert_same_checkpoint(tmp_path / "killed" / final, tmp_path / "uninterrupted" / final)


def assert_same_checkpoint(actual: Path, expected: Path) -> None:
    """Equal weights, optimizer state (every shard's tensors) and data position."""
    assert (actual / "loader.json").read_bytes() == (expected / "loader.json").read_bytes()
    for part in (MODEL_DIR, OPTIMIZER_DIR):
        tensors = [read_sharded_tensors(d / part) for d in (actual, expected)]
        assert tensors[0].keys() == tensors[1].keys(), part
        for name, tensor in tensors[1].items():
            assert torch.equal(tensors[0][name], tensor), (part, name)


def test_resume_skips_a_damaged_newest_checkpoint_and_leftover_temp_dirs(
    small_data: dict[str, Any], tmp_path: Path
) -> None:
    recipe = write_recipe(tmp_path / "r.toml", recipe_sections(tmp_path, small_data, name="r"))
    pretrain(recipe, progress=False)
    run_dir = tmp_path / "r"
    expected = read_metrics(run_dir / "metrics.jsonl")
    checkpoints = run_dir / "checkpoints"
    (checkpoints / "step_000012" / OPTIMIZER_DIR / METADATA).unlink()  # as if copied or deleted half-way
    leftover = checkpoints / ".step_000016.tmp"  # a save killed before its rename
    shutil.copytree(checkpoints / "step_000008", leftover)
    (leftover / "trainer_state.json").unlink()
    scan = find_checkpoints(run_dir)
    assert [p.name for p in scan.valid] == ["step_000004", "step_000008"]
    assert [(p.name, why) for p, why in scan.invalid] == [
        ("step_000012", f"missing ['{OPTIMIZER_DIR}/{METADATA}']")
    ]

    summary = pretrain(recipe, resume=True, progress=False)
    resumed = read_metrics(run_dir / "metrics.jsonl")
    assert _trajectory(resumed) == _trajectory(expected)  # steps 9-12 retrained from step 8, identically
    assert summary.checkpoint == checkpoints / "step_000012"
    assert (summary.checkpoint / OPTIMIZER_DIR / METADATA).is_file() and not leftover.exists()
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step_000004", "step_000008", "step_000012"]


def test_resuming_a_finished_run_trains_nothing_rewrites_the_report_and_prints_the_runs_numbers(
    small_data: dict[str, Any], tmp_path: Path
) -> None:
    recipe = write_recipe(
        tmp_path / "f.toml",
        recipe_sections(tmp_path, small_data, name="f", run=dict(steps=4), schedule=dict(warmup_steps=1)),
    )
    first = pretrain(recipe, progress=False)
    first.report.unlink()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(REPO)}
    again = subprocess.run(  # a second `make run`
        [sys.executable, "-m", "openk2", "pretrain", "--recipe", str(recipe), "--resume"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    # the finished run's own numbers, from its metrics: nothing was trained in this session
    assert again.stdout == (
        f"4 steps, {first.tokens_seen:,} tokens: loss {first.final_loss:.4f}, val {first.final_val_loss:.4f}; "
        f"checkpoint {first.checkpoint}; report {first.report}\n"
    )
    assert first.report.is_file()
    assert read_metrics(first.run_dir / "metrics.jsonl")[-1].loss == first.final_loss
    assert len(read_sessions(first.run_dir)) == 1  # a session that trains nothing is not one


@pytest.mark.parametrize("truncated", [True, False])
def test_metrics_reader_drops_only_a_line_cut_short_by_a_kill(tmp_path: Path, truncated: bool) -> None:
    record = StepRecord(
        step=1, loss=5.0, lr=1e-3, grad_norm=1.0, tokens_seen=8, tokens_per_second=1.0, elapsed_seconds=1.0,
        max_logit=1.0, max_logit_per_layer=[1.0], heads_clipped=0, heads_total=2, expert_load_min=[1.0],
        expert_load_max=[1.0], expert_load_mean=[1.0], expert_bias_min=[0.0], expert_bias_max=[0.0],
    )  # fmt: skip
    line = record.model_dump_json()
    path = tmp_path / "metrics.jsonl"
    path.write_text(line + "\n" + line[:20] + ("" if truncated else "\n"))
    if truncated:
        assert read_metrics(path) == [record]
    else:
        with pytest.raises(ValueError, match=re.escape(f"{path}:2: not a metrics record")):
            read_metrics(path)
