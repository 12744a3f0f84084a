"""Sharded checkpoints resume on another number of ranks and continue as the uninterrupted run.

The proof (long): `torchrun -m openk2 pretrain` at dp=2 trains 6 steps with a checkpoint at step 3; copies of
that run resume from step 3 at dp=4 (torchrun, the routed experts also split over ep=2) and at dp=1 (this
process). Every run splits the same global batch of 4 sequences: 2 ranks × 2, 4 × 1, and 1 × 2 × 2
micro-batches. Each run lives in its own working
directory under the same relative [run] output_dir, so the resumed recipes differ only in that split. The
checkpoint the 4 ranks wrote is then exported; transformers reads the export with OpenK2's logits.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from openk2.model import K2ForCausalLM
from openk2.model.checkpoint import read_checkpoint_tensors
from openk2.train import pretrain
from openk2.train.checkpoint import this_ranks_share
from openk2.train.export import export_checkpoint
from openk2.train.metrics import read_metrics
from openk2.train.world import World
from tests.numerics import FP32_EPS, assert_close_in_norm
from tests.train.small_run import SEQ_LEN, VOCAB, recipe_sections, write_recipe

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-5  # the FSDP2 tests' bound (test_parallel.py), relative in norm
STEPS, SAVED_AT = 6, 3
# ([parallel].dp, [parallel].ep, [train].batch_size, [train].grad_accum): 4 sequences per step in every run;
# at dp=4 the routed experts are also split over ep=2 ranks (expert parallelism), a layout dp=2 did not have
SPLITS = {"dp2": (2, 1, 2, 1), "dp4": (4, 2, 1, 1), "dp1": (1, 1, 2, 2)}


def split_recipe(directory: Path, small_data: dict[str, Any], split: str) -> Path:
    dp, ep, batch_size, grad_accum = SPLITS[split]
    return reshard_recipe(
        directory, small_data, dict(dp=dp, ep=ep), dict(batch_size=batch_size, grad_accum=grad_accum)
    )


def reshard_recipe(
    directory: Path, small_data: dict[str, Any], parallel: dict[str, Any], train: dict[str, Any]
) -> Path:
    """The run every test here trains and resumes, with this [parallel] and [train] split."""
    sections = recipe_sections(
        Path("runs"),  # relative: every run's [run] section is the same, its working directory is not
        small_data,
        name="reshard",
        run=dict(steps=STEPS, checkpoint_every=SAVED_AT, val_every=STEPS, val_max_batches=1),
        schedule=dict(warmup_steps=2),
        train=train,
        parallel=parallel,
    )
    directory.mkdir(parents=True, exist_ok=True)
    return write_recipe(directory / "recipe.toml", sections)


def torchrun_pretrain(directory: Path, processes: int, resume: bool) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(REPO)}
    env.pop("WORLD_SIZE", None)
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
    ]
    command = [*torchrun, "-m", "openk2", "pretrain", "--recipe", "recipe.toml", *(["--resume"] * resume)]
    completed = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-4000:]


def resumable_copy(saved: Path, directory: Path) -> None:
    """The dp=2 run as it stood after its step-3 checkpoint."""
    shutil.copytree(saved / "runs", directory / "runs")
    shutil.rmtree(directory / "runs" / "reshard" / "checkpoints" / f"step_{STEPS:06d}")


def trajectory(directory: Path) -> torch.Tensor:
    """[steps, 2]: each step's loss and gradient norm."""
    records = read_metrics(directory / "runs" / "reshard" / "metrics.jsonl")
    assert [r.step for r in records] == list(range(1, STEPS + 1))
    return torch.tensor([[r.loss, r.grad_norm] for r in records], dtype=torch.float64)


def train_and_resume_copies(
    runs: dict[str, Path],
    saved: str,
    under_torchrun: tuple[str, int],
    in_this_process: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Train runs[saved] on 2 processes; resume copies of it after its step-SAVED_AT checkpoint in the runs
    named by under_torchrun (on that many processes) and in_this_process, each with its own recipe."""
    torchrun_pretrain(runs[saved], processes=2, resume=False)
    resumed, processes = under_torchrun
    for copy in (resumed, in_this_process):
        resumable_copy(runs[saved], runs[copy])
    torchrun_pretrain(runs[resumed], processes=processes, resume=True)
    monkeypatch.chdir(runs[in_this_process])
    pretrain(Path("recipe.toml"), resume=True, progress=False)


def assert_continues_as_uninterrupted(resumed: Path, uninterrupted: Path, label: str) -> None:
    """The copy in `resumed`, resumed from step SAVED_AT, trained as the run in `uninterrupted` did: the same
    losses and gradient norms, the same final weights (TOLERANCE, relative in norm)."""
    expected, got = trajectory(uninterrupted), trajectory(resumed)
    assert torch.equal(got[:SAVED_AT], expected[:SAVED_AT])  # the copied steps
    for step in range(SAVED_AT, STEPS):
        assert_close_in_norm(got[step], expected[step], TOLERANCE, f"{label} step {step + 1}")
    final = Path("runs", "reshard", "checkpoints", f"step_{STEPS:06d}")
    weights, expected_weights = (read_checkpoint_tensors(run / final) for run in (resumed, uninterrupted))
    assert weights.keys() == expected_weights.keys()
    for name, tensor in expected_weights.items():
        assert_close_in_norm(weights[name], tensor, TOLERANCE, f"{label} {name}")


@pytest.mark.long
def test_a_dp2_checkpoint_resumes_at_dp4_and_at_dp1_as_the_uninterrupted_dp2_run(
    small_data: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = {split: tmp_path / split for split in SPLITS}
    for split, directory in runs.items():
        split_recipe(directory, small_data, split)
    train_and_resume_copies(runs, "dp2", ("dp4", 4), "dp1", monkeypatch)

    final = Path("runs", "reshard", "checkpoints", f"step_{STEPS:06d}")
    for split in ("dp4", "dp1"):
        assert_continues_as_uninterrupted(runs[split], runs["dp2"], split)
        loader = json.loads((runs[split] / final / "loader.json").read_text())
        assert loader[0] == json.loads((runs["dp2"] / final / "loader.json").read_text())[0]

    # the export of the checkpoint 4 ranks wrote, read by transformers, against OpenK2 reading the shards
    from transformers import DeepseekV3ForCausalLM

    exported = export_checkpoint(runs["dp4"] / final, tmp_path / "hf")
    reference = DeepseekV3ForCausalLM.from_pretrained(exported, attn_implementation="eager").eval()
    ours = K2ForCausalLM.from_pretrained(runs["dp4"] / final).eval()
    ids = torch.randint(0, VOCAB, (2, SEQ_LEN), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert_close_in_norm(reference(ids).logits, ours(ids).logits, 30 * FP32_EPS, "export")


def test_per_rank_state_that_differs_between_ranks_resumes_only_on_as_many_ranks(tmp_path: Path) -> None:
    saved = [{"position": 8}, {"position": 8}]
    assert this_ranks_share(saved, World(rank=3, world_size=4), tmp_path, "data positions", dict.__eq__) == {
        "position": 8
    }
    differing = [{"rank": 0}, {"rank": 1}]
    assert this_ranks_share(differing, World(rank=1, world_size=2), tmp_path, "x", dict.__eq__) == {"rank": 1}
    with pytest.raises(ValueError, match="the 2 ranks that saved it hold different data positions, so it "
                       "resumes on 2 ranks only, not on 4"):  # fmt: skip
        this_ranks_share(differing, World(rank=0, world_size=4), tmp_path, "data positions", dict.__eq__)
