"""repro/muon_vs_adamw.py (Moonlight's ≈2× token efficiency): tokens-to-target and the reduced script."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from harness import RunResult
from muon_vs_adamw import tokens_to_target

from openk2.train.metrics import StepRecord
from tests.repro.conftest import run_quick


def validated_run(val_losses: dict[int, float], tokens_per_step: int = 100) -> RunResult:
    def record(step: int) -> StepRecord:
        return StepRecord(
            step=step,
            loss=1.0,
            lr=1e-3,
            grad_norm=1.0,
            tokens_seen=step * tokens_per_step,
            tokens_per_second=1.0,
            elapsed_seconds=1.0,
            max_logit=1.0,
            max_logit_per_layer=[1.0],
            heads_clipped=0,
            heads_total=4,
            expert_load_min=[],
            expert_load_max=[],
            expert_load_mean=[],
            expert_bias_min=[],
            expert_bias_max=[],
            val_loss=val_losses.get(step),
        )

    return RunResult("run", [record(step) for step in range(1, max(val_losses) + 1)], seconds=1.0)


def test_tokens_to_target_interpolates_between_evaluations() -> None:
    run = validated_run({10: 5.0, 20: 4.0, 30: 3.5})
    assert tokens_to_target(run, 4.5) == pytest.approx(15 * 100)  # halfway from 5.0 at step 10 to 4.0 at 20
    assert tokens_to_target(run, 4.0) == pytest.approx(20 * 100)
    assert tokens_to_target(run, 5.5) == pytest.approx(10 * 100)  # already below at the first evaluation
    assert tokens_to_target(run, 3.0) is None


@pytest.mark.long  # the script run end to end in its quick form
def test_both_optimizers_reach_the_target_at_their_best_rate(tmp_path: Path, quick_data_root: Path) -> None:
    results = run_quick("muon_vs_adamw", tmp_path, quick_data_root, "--seeds", "1")
    lrs = results["settings"]["lrs"]
    budget = results["settings"]["steps"] * results["tokens_per_step"]
    for name, arm in results["arms"].items():
        assert set(arm["sweep_final_val_loss"]) == {f"{lr:g}" for lr in lrs}
        assert arm["best_lr"] in lrs
        assert arm["final_val_loss"][0] == min(arm["sweep_final_val_loss"].values())
        assert 0 < arm["tokens_to_target"][0] <= budget, name
    assert results["target_val_loss"] == max(arm["final_val_loss"][0] for arm in results["arms"].values())
    assert results["arms"]["adamw"]["heads_clipped_steps"] == 0  # AdamW measures logits but never clips
    ratio = (
        results["arms"]["adamw"]["tokens_to_target"][0] / results["arms"]["muonclip"]["tokens_to_target"][0]
    )
    assert math.isfinite(ratio) and results["token_efficiency_muon_over_adamw"] == pytest.approx(ratio)
