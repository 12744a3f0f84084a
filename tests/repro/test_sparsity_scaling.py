"""repro/sparsity_scaling.py (K2 report Fig. 5) in its reduced form: 2 and 4 experts, 2 active."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.repro.conftest import run_quick

HIDDEN, MOE_LAYERS, EXPERT_WIDTH = 128, 3, 64  # the tiny preset


@pytest.mark.long  # the script run end to end in its quick form
def test_more_experts_at_the_same_activated_flops(tmp_path: Path, quick_data_root: Path) -> None:
    results = run_quick("sparsity_scaling", tmp_path, quick_data_root, "--seeds", "1")
    two, four = results["arms"]["2"], results["arms"]["4"]
    assert (two["sparsity"], four["sparsity"]) == (1, 2)
    # two more routed experts (gate, up, down) and two more router rows in each MoE layer; only the router's
    # rows add activated FLOPs
    router_rows = MOE_LAYERS * 2 * HIDDEN
    experts = MOE_LAYERS * 2 * 3 * HIDDEN * EXPERT_WIDTH
    assert four["total_parameters"] - two["total_parameters"] == experts + router_rows
    assert four["activated_flops_per_token"] - two["activated_flops_per_token"] == 2 * router_rows
    for arm in (two, four):
        assert all(0 < loss < math.log(768) + 1 for loss in arm["final_val_loss"])
        assert len(arm["val_loss"][0]) == len(arm["val_steps"])
    drop = two["mean_std"][0] - four["mean_std"][0]
    assert results["loss_drop_lowest_to_highest_sparsity"] == pytest.approx(drop)
