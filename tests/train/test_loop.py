"""The pre-training loop on a small real corpus: accumulation, schedule, validation, checkpoints, report."""

from __future__ import annotations

import html
import os
import platform
import re
from pathlib import Path
from typing import Any

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from tokenizers import Tokenizer

from openk2.data import validation_batches
from openk2.model import K2Config, K2ForCausalLM
from openk2.train import RunSummary, load_recipe, pretrain
from openk2.train.balance import ExpertLoad
from openk2.train.environment import read_sessions
from openk2.train.loop import forward_backward
from openk2.train.metrics import StepRecord, read_metrics
from openk2.train.recipe import Recipe
from openk2.train.report import ReportPlot, qk_clip_summary, report_plots
from openk2.train.world import World
from tests.numerics import FP32_EPS, assert_close_in_norm
from tests.train.small_run import SEQ_LEN, SMALL_MODEL, recipe_sections, write_recipe


@pytest.mark.parametrize("aux_loss_alpha", [0.0, 0.01])
def test_k_micro_batches_of_b_equal_one_batch_of_k_times_b(aux_loss_alpha: float) -> None:
    config = K2Config(**SMALL_MODEL, aux_loss_alpha=aux_loss_alpha)
    torch.manual_seed(0)
    accumulated = K2ForCausalLM(config)
    whole = K2ForCausalLM(config)
    whole.load_state_dict(accumulated.state_dict())
    batch = torch.randint(0, 768, (6, SEQ_LEN), generator=torch.Generator().manual_seed(0))
    off = torch.autocast("cpu", enabled=False)
    loads = [ExpertLoad(accumulated.moe_modules()), ExpertLoad(whole.moe_modules())]
    three_by_two = forward_backward(accumulated, list(batch.split(2)), off, loads[0])
    one_by_six = forward_backward(whole, [batch], off, loads[1])
    assert_close_in_norm(three_by_two, one_by_six, 30 * FP32_EPS, "losses")
    assert (three_by_two[1] > 0) == (aux_loss_alpha > 0)
    for (name, a), (_, b) in zip(accumulated.named_parameters(), whole.named_parameters(), strict=True):
        assert_close_in_norm(a.grad, b.grad, 30 * FP32_EPS, name)
    single = World(rank=0, world_size=1)
    assert torch.equal(loads[0].take_global(single), loads[1].take_global(single))


@pytest.fixture(scope="module")
def finished_run(
    small_data: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, RunSummary]:
    recipe_path = write_recipe(
        tmp_path_factory.mktemp("recipe") / "small.toml",
        recipe_sections(
            tmp_path_factory.mktemp("runs"), small_data, run=dict(sample_prompt="KING. ", sample_tokens=8)
        ),
    )
    return recipe_path, pretrain(recipe_path, progress=False)


@pytest.fixture(scope="module")
def recipe_and_records(finished_run: tuple[Path, RunSummary]) -> tuple[Recipe, list[StepRecord]]:
    """The finished run's recipe and its metrics.jsonl records."""
    recipe_path, summary = finished_run
    return load_recipe(recipe_path), read_metrics(summary.run_dir / "metrics.jsonl")


def test_lr_of_every_step_is_the_wsd_schedule(finished_run: tuple[Path, RunSummary]) -> None:
    recipe_path, summary = finished_run
    schedule = load_recipe(recipe_path).lr_schedule()
    records = read_metrics(summary.run_dir / "metrics.jsonl")
    assert [r.step for r in records] == list(range(1, 13))
    assert [r.lr for r in records] == pytest.approx(
        [schedule.lr_at(step - 1) for step in range(1, 13)], rel=1e-12
    )
    assert records[2].lr == pytest.approx(3e-3) and records[-1].lr < 3e-3


def test_training_lowers_the_loss_and_validation_uses_the_held_out_split(
    finished_run: tuple[Path, RunSummary], recipe_and_records: tuple[Recipe, list[StepRecord]]
) -> None:
    _, summary = finished_run
    recipe, records = recipe_and_records
    assert records[-1].loss < records[0].loss - 0.3
    assert [r.step for r in records if r.val_loss is not None] == [6, 12]
    # recompute the last validation loss from the checkpoint on the first val_max_batches held-out batches
    model = K2ForCausalLM.from_pretrained(summary.checkpoint).eval()
    batches = validation_batches(recipe.data.shards_dir, seq_len=SEQ_LEN, batch_size=recipe.train.batch_size)
    with torch.no_grad():
        losses = [model(b, labels=b).loss.item() for b, _ in zip(batches, range(4), strict=False)]
    assert summary.final_val_loss == records[-1].val_loss
    assert records[-1].val_loss == pytest.approx(sum(losses) / len(losses), rel=1e-6)


def test_checkpoint_is_self_contained_and_carries_the_balanced_bias(
    finished_run: tuple[Path, RunSummary], small_data: dict[str, Any]
) -> None:
    recipe_path, summary = finished_run
    checkpoint = summary.checkpoint
    assert checkpoint.name == "step_000012"
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == [
        "step_000004",
        "step_000008",
        "step_000012",
    ]
    model = K2ForCausalLM.from_pretrained(checkpoint)
    same_shape = {"exclude": {"num_key_value_heads"}}  # config.json spells out MLA's implied value
    assert model.config.model_dump(**same_shape) == load_recipe(recipe_path).model_config_k2().model_dump(
        **same_shape
    )
    tokenizer_path = Path(small_data["shards_dir"]) / "tokenizer.json"
    assert (checkpoint / "tokenizer.json").read_bytes() == tokenizer_path.read_bytes()
    Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    # 12 updates of ±u each: every bias is a multiple of u within ±12u, and balancing moved them
    bias = model.moe_modules()[0].gate.e_score_correction_bias
    in_units = bias.double() / 1e-3
    assert torch.allclose(in_units, in_units.round(), atol=1e-3)
    assert in_units.abs().max() <= 12 + 1e-3 and (in_units.round() != 0).any()
    assert summary.sample is not None and summary.sample.startswith("KING.")


def test_report_shows_seven_rendered_plots_and_the_runs_numbers(
    finished_run: tuple[Path, RunSummary],
) -> None:
    recipe_path, summary = finished_run
    assert summary.report == summary.run_dir / "report.html"
    page = summary.report.read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert sorted(images) == sorted(f"report/{name}" for name in report_plots([], load_recipe(recipe_path)))
    records = read_metrics(summary.run_dir / "metrics.jsonl")
    moe_layers = len(records[-1].expert_load)
    assert moe_layers == 1  # the small model: one dense layer, one MoE layer
    for image in images:
        pixels = matplotlib.image.imread(summary.run_dir / image)  # [height, width, RGBA] in [0, 1]
        heatmap = image.endswith(("expert_load.png", "expert_bias.png"))
        # 7 in wide at 100 dpi; a curve is 3.6 in high, a heatmap 0.8 in plus 1.6 in per MoE layer
        assert pixels.shape == ((80 + 160 * moe_layers) if heatmap else 360, 700, 4), image
        # axes, ticks and text are grey; the curves are in matplotlib's colour cycle, heatmaps in red-blue
        rgb = pixels[..., :3]
        coloured = (rgb.max(axis=-1) - rgb.min(axis=-1) > 0.1).mean()
        assert 0.002 < coloured < (0.9 if heatmap else 0.5), (image, coloured)
    assert f"<th>final train loss</th><td>{records[-1].loss:.4f}</td>" in page
    assert f"<th>final validation loss</th><td>{records[-1].val_loss:.4f}</td>" in page
    assert f"<th>steps</th><td>{records[-1].step}</td>" in page and "KING." in page


def test_report_states_the_machine_threads_and_versions_of_the_session(
    finished_run: tuple[Path, RunSummary],
) -> None:
    _, summary = finished_run
    [session] = read_sessions(summary.run_dir)
    assert session.from_step == 0 and session.processes == 1 and session.torch_threads >= 1
    assert session.versions["torch"] == torch.__version__
    assert session.versions["python"] == platform.python_version() and session.cpu_cores == os.cpu_count()
    assert f"<th>machine</th><td>{html.escape(session.describe())}</td>" in summary.report.read_text()


def drawn(plot: ReportPlot) -> Figure:
    figure = plt.figure()
    plot.draw(figure)
    return figure


def test_report_curves_plot_the_metrics(recipe_and_records: tuple[Recipe, list[StepRecord]]) -> None:
    recipe, records = recipe_and_records
    steps = [r.step for r in records]
    evaluated = [r for r in records if r.val_loss is not None]
    layers = len(records[0].max_logit_per_layer)
    expected_lines = {
        "loss.png": [
            (steps, [r.loss for r in records]),
            ([r.step for r in evaluated], [r.val_loss for r in evaluated]),
        ],
        "lr.png": [(steps, [r.lr for r in records])],
        "max_logit.png": [
            (steps, [r.max_logit_per_layer[layer] for r in records]) for layer in range(layers)
        ],
        "throughput.png": [(steps, [r.tokens_per_second for r in records])],
    }
    plots = report_plots(records, recipe)
    for name, lines in expected_lines.items():
        figure = drawn(plots[name])
        [axes] = figure.axes
        lines_drawn = [(list(line.get_xdata()), list(line.get_ydata())) for line in axes.lines[: len(lines)]]
        plt.close(figure)
        assert lines_drawn == lines, name
    figure = drawn(plots["max_logit.png"])
    assert list(figure.axes[0].lines[layers].get_ydata()) == [recipe.optim.qk_clip_tau] * 2  # the τ line
    plt.close(figure)


def test_expert_heatmaps_are_experts_by_steps_per_moe_layer(
    recipe_and_records: tuple[Recipe, list[StepRecord]],
) -> None:
    recipe, records = recipe_and_records
    plots = report_plots(records, recipe)
    experts = SMALL_MODEL["n_routed_experts"]
    for name, field in (("expert_load.png", "expert_load"), ("expert_bias.png", "expert_bias")):
        figure = drawn(plots[name])
        panels = [axes for axes in figure.axes if axes.get_label() != "<colorbar>"]
        assert len(panels) == len(records[0].expert_load)  # one panel per MoE layer
        for layer, axes in enumerate(panels):
            [mesh] = axes.collections
            expected = [[getattr(r, field)[layer][expert] for r in records] for expert in range(experts)]
            if field == "expert_load":  # as a share of the step's mean load: 1 is balanced
                expected = [
                    [
                        value / (sum(r.expert_load[layer]) / experts)
                        for value, r in zip(row, records, strict=True)
                    ]
                    for row in expected
                ]
            np.testing.assert_allclose(mesh.get_array().reshape(experts, len(records)), expected, rtol=1e-12)
        plt.close(figure)
    # the loads really moved: top-2 routing of a step's tokens over 8 experts is never exactly even here
    assert any(min(r.expert_load[0]) != max(r.expert_load[0]) for r in records)
    assert all(len(r.expert_bias[0]) == experts for r in records)


def test_a_heads_clipped_plot_flat_at_zero_says_qk_clip_never_fired_and_why(
    finished_run: tuple[Path, RunSummary], recipe_and_records: tuple[Recipe, list[StepRecord]]
) -> None:
    _, summary = finished_run
    recipe, records = recipe_and_records
    assert not any(r.heads_clipped for r in records)  # the small run's logits stay far below τ = 100
    peak = max(r.max_logit for r in records)
    reason = f"QK-Clip never fired: the max logit peaked at {peak:.1f}, below τ = 100"
    figure = drawn(report_plots(records, recipe)["heads_clipped.png"])
    assert [text.get_text() for text in figure.axes[0].texts] == [reason]
    plt.close(figure)
    assert f"<th>QK-Clip</th><td>{html.escape(reason)}</td>" in summary.report.read_text()
    clipped = [r.model_copy(update={"heads_clipped": 1}) if r.step == 3 else r for r in records]
    assert qk_clip_summary(clipped, recipe).startswith("QK-Clip fired at 1 of 12 logged steps (at most 1 of")
    figure = drawn(report_plots(clipped, recipe)["heads_clipped.png"])
    assert list(figure.axes[0].texts) == []  # the curve itself shows when it fired
    plt.close(figure)


def test_a_second_run_without_resume_refuses_to_overwrite(finished_run: tuple[Path, RunSummary]) -> None:
    recipe_path, summary = finished_run
    with pytest.raises(ValueError, match=re.escape(f"{summary.run_dir}: already holds checkpoints")):
        pretrain(recipe_path, progress=False)


def test_resume_refuses_a_changed_recipe(finished_run: tuple[Path, RunSummary], tmp_path: Path) -> None:
    recipe_path, _ = finished_run
    changed = tmp_path / "changed.toml"
    changed.write_text(recipe_path.read_text().replace("lr = 0.003", "lr = 0.002"))
    with pytest.raises(
        ValueError, match=re.escape("the recipe changed since this checkpoint in ['[optim].lr']")
    ):
        pretrain(changed, resume=True, progress=False)


def test_bf16_autocast_trains_fp32_weights_with_a_close_loss() -> None:
    torch.manual_seed(0)
    model = K2ForCausalLM(K2Config(**SMALL_MODEL))
    batch = torch.randint(0, 768, (2, SEQ_LEN), generator=torch.Generator().manual_seed(0))
    expert_load = ExpertLoad(model.moe_modules())
    fp32 = forward_backward(model, [batch], torch.autocast("cpu", enabled=False), expert_load)
    model.zero_grad()
    bf16 = forward_backward(model, [batch], torch.autocast("cpu", dtype=torch.bfloat16), expert_load)
    assert abs(bf16[0] - fp32[0]) < 0.05 and bf16[0] != fp32[0]  # the forward did run in bf16
    assert all(p.dtype == p.grad.dtype == torch.float32 for p in model.parameters() if p.grad is not None)
