"""SFT teaches the tiny pre-trained model what it could not do: reverse held-out digit sequences (a procedural
gym-style task file: prompt -> reference answer) and call tools in K2's format on held-out tool tasks.

Measured on this set-up (250 steps, 4 packed rows of 512 tokens per step): held-out exact match 0.00 -> 1.00,
well-formed tool calls 0.00 -> 1.00 (docs/sft.md). The bounds leave room for other CPUs' rounding.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from openk2.llm.k2_engine import K2Engine
from openk2.sft.evaluate import exact_match_rate, tool_call_rates
from openk2.sft.run import sft
from tests.sft.sft_data import reversal_tasks, tool_trajectories, write_jsonl
from tests.sft.sft_recipe import sft_sections, write_sft_recipe

STEPS = 250


@pytest.mark.slow  # ~1 minute of SFT on one core
def test_sft_raises_held_out_exact_match_and_well_formed_tool_calls(
    pretrained_checkpoint: Path, tmp_path: Path
) -> None:
    train_tasks, test_tasks = reversal_tasks(600, 50, seed=0, digits=(3, 3))
    test_trajectories = tool_trajectories(40, seed=0, prefix="test")
    sources = [
        dict(kind="tasks", path=write_jsonl(tmp_path / "tasks.jsonl", train_tasks + test_tasks), weight=4.0),
        dict(
            kind="trajectories", path=write_jsonl(tmp_path / "traj.jsonl", tool_trajectories(200, 0, "train"))
        ),
    ]
    sections = sft_sections(
        tmp_path,
        pretrained_checkpoint,
        run=dict(steps=STEPS, checkpoint_every=STEPS, val_every=STEPS, log_every=50),
        sft=dict(seq_len=512, val_fraction=0.05),
        optim=dict(lr=1e-2, weight_decay=0.0),
        schedule=dict(warmup_steps=10, decay="cosine", decay_fraction=0.3, final_lr=1e-3),
        train=dict(batch_size=4, grad_accum=1),
    )
    result = sft(write_sft_recipe(tmp_path / "sft.toml", sections, sources), progress=False)

    def measure(checkpoint: Path) -> tuple[float, float, float]:
        engine = K2Engine.from_checkpoint(checkpoint)
        rates = tool_call_rates(engine, test_trajectories)
        return exact_match_rate(engine, test_tasks), rates.well_formed, rates.matching

    exact_before, well_formed_before, matching_before = measure(pretrained_checkpoint)
    exact_after, well_formed_after, matching_after = measure(result.run.checkpoint)
    print(
        f"exact match {exact_before:.2f} -> {exact_after:.2f}, well-formed tool calls {well_formed_before:.2f} -> "
        f"{well_formed_after:.2f}, matching the reference {matching_before:.2f} -> {matching_after:.2f}"
    )
    assert exact_before <= 0.05 and exact_after >= 0.5
    assert well_formed_before <= 0.05 and well_formed_after >= 0.6
