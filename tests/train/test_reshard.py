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
    sections = recipe_sections(
        Path("runs"),  # relative: every run's [run] section is the same, its working directory is not
        small_data,
        name="reshard",
        run=dict(steps=STEPS, checkpoint_every=SAVED_AT, val_every=STEPS, val_max_batches=1),
        schedule=dict(warmup_steps=2),
        train=dict(batch_size=batch_size, grad_accum=grad_accum),
        parallel=dict(dp=dp, ep=ep),
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


@pytest.mark.long
def test_a_dp2_checkpoint_resumes_at_dp4_and_at_dp1_as_the_uninterrupted_dp2_run(
    small_data: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = {split: tmp_path / split for split in SPLITS}
    for split, directory in runs.items():
        split_recipe(directory, small_data, split)
    torchrun_pretrain(runs["dp2"], processes=2, resume=False)
    resumable_copy(runs["dp2"], runs["dp4"])
    resumable_copy(runs["dp2"], runs["dp1"])
    torchrun_pretrain(runs["dp4"], processes=4, resume=True)
    monkeypatch.chdir(runs["dp1"])
    pretrain(Path("recipe.toml"), resume=True, progress=False)

    expected = trajectory(runs["dp2"])
    final = Path("runs", "reshard", "checkpoints", f"step_{STEPS:06d}")
    expected_weights = read_checkpoint_tensors(runs["dp2"] / final)
    for split in ("dp4", "dp1"):
        resumed = trajectory(runs[split])
        assert torch.equal(resumed[:SAVED_AT], expected[:SAVED_AT])  # the copied steps
        for step in range(SAVED_AT, STEPS):
            assert_close_in_norm(resumed[step], expected[step], TOLERANCE, f"{split} step {step + 1}")
        weights = read_checkpoint_tensors(runs[split] / final)
        assert weights.keys() == expected_weights.keys()
        for name, tensor in expected_weights.items():
            assert_close_in_norm(weights[name], tensor, TOLERANCE, f"{split} {name}")
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
