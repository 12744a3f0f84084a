"""SFT resumes bit-exactly: SIGKILL mid-run, then --resume, reproduces the uninterrupted run step by step."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openk2.train import find_checkpoints
from openk2.train.metrics import read_metrics
from tests.sft.sft_data import small_mixture
from tests.sft.sft_recipe import sft_sections, write_sft_recipe
from tests.train.test_resume import assert_same_checkpoint

REPO = Path(__file__).resolve().parents[2]
STEPS = 20  # the run is still going when the step-8 checkpoint appears
KILL_AFTER = "step_000008"


def _start(recipe: Path, resume: bool) -> subprocess.Popen[bytes]:
    """`sft` in a fresh interpreter, one thread, so two runs side by side do not slow each other."""
    code = (
        "from pathlib import Path; from openk2.sft.run import sft; "
        f"sft(Path({str(recipe)!r}), resume={resume}, progress=False)"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _finish(process: subprocess.Popen[bytes]) -> None:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output.decode()


@pytest.mark.slow  # two SFT runs of 20 steps side by side, and a third to resume
def test_sigkill_mid_run_then_resume_reproduces_the_uninterrupted_run(
    pretrained_checkpoint: Path, tmp_path: Path
) -> None:
    sources = small_mixture(tmp_path)

    def recipe(name: str) -> Path:
        run = dict(steps=STEPS, checkpoint_every=4, val_every=10)
        sections = sft_sections(tmp_path, pretrained_checkpoint, name=name, run=run, sft=dict(seq_len=256))
        return write_sft_recipe(tmp_path / f"{name}.toml", sections, sources)

    uninterrupted = _start(recipe("uninterrupted"), resume=False)
    killed = _start(recipe("killed"), resume=False)
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.monotonic() + 300
    while not (checkpoints / KILL_AFTER).exists():
        assert killed.poll() is None and time.monotonic() < deadline, (
            "no step-8 checkpoint before the run ended"
        )
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    survived = find_checkpoints(tmp_path / "killed").valid
    assert survived and survived[-1].name < f"step_{STEPS:06d}", "the run finished before it was killed"

    _finish(_start(recipe("killed"), resume=True))
    _finish(uninterrupted)
    expected = read_metrics(tmp_path / "uninterrupted" / "metrics.jsonl")
    resumed = read_metrics(tmp_path / "killed" / "metrics.jsonl")
    assert [r.step for r in resumed] == list(range(1, STEPS + 1))
    computed = ("loss", "lr", "grad_norm", "trained_tokens", "tokens_seen", "max_logit_per_layer", "val_loss")
    computed += ("expert_load_max", "expert_bias_min")
    assert [[getattr(r, f) for f in computed] for r in resumed] == [
        [getattr(r, f) for f in computed] for r in expected
    ]
    final = f"checkpoints/step_{STEPS:06d}"
    assert_same_checkpoint(tmp_path / "killed" / final, tmp_path / "uninterrupted" / final)
