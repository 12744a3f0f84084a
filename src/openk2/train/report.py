"""`<run_dir>/report.html`: the run's curves as PNGs (matplotlib) from metrics.jsonl, plus a summary.

Plots: train/val loss, learning rate, max attention logit per layer with τ (K2 report §2.1, Fig. 2),
fraction of heads QK-Clip rescaled, expert load and routing bias per MoE layer, tokens/s. The same report for
every stage; a stage adds its own summary lines (SFT: the data it read, skipped and truncated).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from openk2.model import count_parameters
from openk2.train.metrics import METRICS_FILE, StepRecord, read_metrics
from openk2.train.recipe import TrainingRecipe
from openk2.train.stage import Stage

REPORT_FILE = "report.html"
PLOTS_DIR = "report"


Plots = dict[str, tuple[str, Callable[[Axes], None]]]  # file name -> (title, draws its curve on an Axes)


def write_report(stage: Stage, checkpoint: Path, sample: str | None) -> Path:
    recipe = stage.recipe
    run_dir = recipe.run.run_dir
    records = read_metrics(run_dir / METRICS_FILE)
    if not records:
        raise ValueError(f"{run_dir / METRICS_FILE}: no records to report")
    return write_report_page(
        run_dir,
        f"{stage.title}: {recipe.run.name}",
        summary_rows(stage, records, checkpoint),
        report_plots(records, recipe),
        sample,
        recipe,
    )


def write_report_page(
    run_dir: Path,
    heading: str,
    rows: list[tuple[str, str]],
    plots: Plots,
    sample: str | None,
    recipe: TrainingRecipe,
    x_label: str = "step",
) -> Path:
    """`<run_dir>/report.html`: a summary table, the sample, one PNG per plot, and the recipe; any stage."""
    plots_dir = run_dir / PLOTS_DIR
    plots_dir.mkdir(parents=True, exist_ok=True)
    for name, (title, draw) in plots.items():
        _save_plot(plots_dir / name, title, draw, x_label)
    path = run_dir / REPORT_FILE
    path.write_text(_html(heading, rows, sample, list(plots), recipe), encoding="utf-8")
    return path


def report_plots(records: list[StepRecord], recipe: TrainingRecipe) -> Plots:
    """The loss, the optimizer's curves and the throughput."""
    return {
        "loss.png": ("Loss", lambda axes: _plot_loss(axes, records)),
        **optimizer_plots(records, recipe),
        "throughput.png": ("Throughput", lambda axes: _plot_throughput(axes, records)),
    }


def optimizer_plots(records: list[StepRecord], recipe: TrainingRecipe) -> Plots:
    """What every stage's optimizer steps record: learning rate, max logits and QK-Clip, expert balance."""
    return {
        "lr.png": ("Learning rate", lambda axes: _plot_lr(axes, records)),
        "max_logit.png": (
            "Max attention logit per layer",
            lambda axes: _plot_max_logit(axes, records, recipe),
        ),
        "heads_clipped.png": ("Heads clipped by QK-Clip", lambda axes: _plot_clipped(axes, records)),
        "expert_load.png": ("Expert load per MoE layer", lambda axes: _plot_expert_load(axes, records)),
        "expert_bias.png": ("Routing bias per MoE layer", lambda axes: _plot_expert_bias(axes, records)),
    }


def _save_plot(path: Path, title: str, draw: Callable[[Axes], None], x_label: str) -> None:
    figure, axes = plt.subplots(figsize=(7, 3.6), dpi=100)
    draw(axes)
    axes.set_title(title)
    axes.set_xlabel(x_label)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _steps(records: list[StepRecord]) -> list[int]:
    return [r.step for r in records]


def _plot_loss(axes: Axes, records: list[StepRecord]) -> None:
    axes.plot(_steps(records), [r.loss for r in records], label="train", linewidth=1)
    evaluated = [(r.step, r.val_loss) for r in records if r.val_loss is not None]
    axes.plot(
        [step for step, _ in evaluated], [loss for _, loss in evaluated], "o-", label="validation (held-out)"
    )
    axes.set_ylabel("cross-entropy (nats)")


def _plot_lr(axes: Axes, records: list[StepRecord]) -> None:
    axes.plot(_steps(records), [r.lr for r in records])
    axes.set_ylabel("learning rate")


def _plot_max_logit(axes: Axes, records: list[StepRecord], recipe: TrainingRecipe) -> None:
    for layer in range(len(records[0].max_logit_per_layer)):
        axes.plot(_steps(records), [r.max_logit_per_layer[layer] for r in records], label=f"layer {layer}")
    if recipe.optim.optimizer == "muonclip":
        axes.axhline(
            recipe.optim.qk_clip_tau, color="black", linestyle="--", label=f"τ = {recipe.optim.qk_clip_tau:g}"
        )
    axes.set_ylabel("max scaled q·k")


def _plot_clipped(axes: Axes, records: list[StepRecord]) -> None:
    axes.plot(_steps(records), [r.heads_clipped / r.heads_total if r.heads_total else 0.0 for r in records])
    axes.set_ylim(-0.02, 1.02)
    axes.set_ylabel("fraction of heads")


def _plot_expert_load(axes: Axes, records: list[StepRecord]) -> None:
    steps = _steps(records)
    for layer in range(len(records[0].expert_load_mean)):
        (line,) = axes.plot(
            steps, [r.expert_load_mean[layer] for r in records], label=f"MoE layer {layer} mean"
        )
        low = [r.expert_load_min[layer] for r in records]
        high = [r.expert_load_max[layer] for r in records]
        axes.fill_between(
            steps, low, high, color=line.get_color(), alpha=0.15, label=f"MoE layer {layer} min–max"
        )
    axes.set_ylabel("tokens per expert per step")


def _plot_expert_bias(axes: Axes, records: list[StepRecord]) -> None:
    steps = _steps(records)
    for layer in range(len(records[0].expert_bias_min)):
        low = [r.expert_bias_min[layer] for r in records]
        high = [r.expert_bias_max[layer] for r in records]
        axes.fill_between(steps, low, high, alpha=0.3, label=f"MoE layer {layer} min–max")
    axes.set_ylabel("e_score_correction_bias")


def _plot_throughput(axes: Axes, records: list[StepRecord]) -> None:
    axes.plot(_steps(records), [r.tokens_per_second for r in records])
    axes.set_ylabel("tokens / s")


def summary_rows(stage: Stage, records: list[StepRecord], checkpoint: Path) -> list[tuple[str, str]]:
    recipe, run_dir = stage.recipe, stage.recipe.run.run_dir
    last = records[-1]
    evaluated = [r for r in records if r.val_loss is not None]
    counts = count_parameters(stage.config)
    clip = (
        f"τ = {recipe.optim.qk_clip_tau:g}" if recipe.optim.optimizer == "muonclip" else "AdamW, no QK-Clip"
    )
    return [
        ("model", stage.model_description),
        ("parameters", f"{counts.total:,} total, {counts.activated:,} activated per token"),
        ("optimizer", recipe.optim.optimizer),
        ("steps", f"{last.step:,}"),
        ("tokens seen", f"{last.tokens_seen:,}"),
        ("training time", f"{last.elapsed_seconds:,.0f} s"),
        ("final train loss", f"{last.loss:.4f}"),
        ("final validation loss", f"{evaluated[-1].val_loss:.4f}" if evaluated else "not evaluated"),
        ("median tokens/s", f"{sorted(r.tokens_per_second for r in records)[len(records) // 2]:,.0f}"),
        ("max attention logit (last step)", f"{last.max_logit:.2f} ({clip})"),
        (
            "checkpoint",
            str(checkpoint.relative_to(run_dir) if checkpoint.is_relative_to(run_dir) else checkpoint),
        ),
        *stage.report_rows,
    ]


def _html(
    heading: str, rows: list[tuple[str, str]], sample: str | None, plots: list[str], recipe: TrainingRecipe
) -> str:
    table = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    sample_html = f"<h2>Sample</h2>\n<pre>{html.escape(sample)}</pre>" if sample else ""
    images = "\n".join(f'<img src="{PLOTS_DIR}/{name}" alt="{name}">' for name in plots)
    recipe_json = html.escape(recipe.model_dump_json(indent=2))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>OpenK2 run {html.escape(recipe.run.name)}</title>
<style>body{{font-family:sans-serif;max-width:1500px;margin:2em auto}}img{{width:700px;margin:4px}}
th{{text-align:left;padding-right:2em}}pre{{background:#f4f4f4;padding:1em;white-space:pre-wrap}}</style></head>
<body><h1>OpenK2 {html.escape(heading)}</h1>
<table>{table}</table>
{sample_html}
<h2>Curves</h2>
{images}
<details><summary>recipe</summary><pre>{recipe_json}</pre></details>
</body></html>
"""
