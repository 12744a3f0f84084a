"""The report's curves when a logged step recorded no per-layer values (an RL iteration in which every group
had one reward for all its samples trains nothing, and records no max logit)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from openk2.train.metrics import StepRecord
from openk2.train.recipe import load_recipe
from openk2.train.report import optimizer_plots

REPO = Path(__file__).resolve().parents[2]


def record(step: int, per_layer: list[float]) -> StepRecord:
    layers = [1.0] * (len(per_layer) > 0)
    return StepRecord(
        step=step, loss=1.0, lr=1e-3, grad_norm=1.0, tokens_seen=step, tokens_per_second=1.0,
        elapsed_seconds=step, max_logit=max(per_layer, default=0.0), max_logit_per_layer=per_layer,
        heads_clipped=0, heads_total=4 * (len(per_layer) > 0), expert_load_min=layers, expert_load_max=layers,
        expert_load_mean=layers, expert_bias_min=layers, expert_bias_max=layers,
    )  # fmt: skip


def test_the_max_logit_curve_leaves_out_a_step_without_per_layer_values() -> None:
    recipe = load_recipe(REPO / "recipes" / "pretrain-tiny.toml")
    records = [record(1, [2.0, 5.0]), record(2, []), record(3, [3.0, 6.0])]
    figure = plt.figure()
    optimizer_plots(records, recipe)["max_logit.png"].draw(figure)
    lines = [line for line in figure.axes[0].get_lines() if line.get_label().startswith("layer")]
    assert [list(line.get_xdata()) for line in lines] == [[1, 3], [1, 3]]
    assert [list(line.get_ydata()) for line in lines] == [[2.0, 3.0], [5.0, 6.0]]
    plt.close(figure)
