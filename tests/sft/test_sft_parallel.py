"""SFT under real torchrun (2 processes on gloo, FSDP2) equals the single-process run on the same global batch:
ranks take alternate packed rows, each divides its summed loss by its share of the step's assistant tokens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from openk2.train.metrics import read_metrics
from tests.sft.sft_data import small_mixture
from tests.sft.sft_recipe import sft_sections, write_sft_recipe

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.long  # torchrun start-up and two FSDP2 processes
def test_two_data_parallel_ranks_reproduce_one_process_with_twice_the_rows(
    pretrained_checkpoint: Path, tmp_path: Path
) -> None:
    sources = small_mixture(tmp_path)

    def recipe(name: str, batch_size: int, dp: int) -> Path:
        sections = sft_sections(
            tmp_path,
            pretrained_checkpoint,
            name=name,
            train=dict(batch_size=batch_size),
            parallel=dict(dp=dp),
        )
        return write_sft_recipe(tmp_path / f"{name}.toml", sections, sources)

    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(REPO)}
    env.pop("WORLD_SIZE", None)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    for command in (
        [*torchrun, "-m", "openk2", "sft", "--recipe", str(recipe("two_ranks", 2, 2))],
        [sys.executable, "-m", "openk2", "sft", "--recipe", str(recipe("one_process", 4, 1))],
    ):
        completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert completed.returncode == 0, completed.stderr[-4000:]
        # one closing line for the run (rank 0's), with the run's numbers: none is missing
        [summary] = completed.stdout.splitlines()
        assert summary.startswith("6 steps, ") and "None" not in summary, completed.stdout

    two, one = (read_metrics(tmp_path / name / "metrics.jsonl") for name in ("two_ranks", "one_process"))
    assert [r.step for r in two] == [r.step for r in one] == list(range(1, 7))
    for parallel, single in zip(two, one, strict=True):
        assert (parallel.tokens_seen, parallel.trained_tokens) == (single.tokens_seen, single.trained_tokens)
        assert parallel.loss == pytest.approx(single.loss, rel=1e-5)
        assert parallel.grad_norm == pytest.approx(single.grad_norm, rel=1e-4)
        assert parallel.expert_load_max == single.expert_load_max
        if single.val_loss is not None:
            assert parallel.val_loss == pytest.approx(single.val_loss, rel=1e-5)
