"""`<run_dir>/report.html`: the run's curves as PNGs (matplotlib) from metrics.jsonl, plus a summary.

Plots: train/val loss, learning rate, max attention logit per layer with τ (K2 report §2.1, Fig. 2),
fraction of heads QK-Clip rescaled (saying so when it never fired, and why), expert load and routing bias as
heatmaps of experts × steps, one panel per MoE layer, and tokens/s. The summary states the machine, threads
and library versions of every session. The same report for every stage; a stage adds its own summary lines
(SFT: the data it read, skipped and truncated).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import CenteredNorm, TwoSlopeNorm
from matplotlib.figure import Figure

from openk2.model import count_parameters
from openk2.train.environment import read_sessions
from openk2.train.metrics import METRICS_FILE, StepRecord, read_metrics
from openk2.train.recipe import TrainingRecipe
from openk2.train.stage import Stage

REPORT_FILE = "report.html"
PLOTS_DIR = "report"
WIDTH_INCHES, CURVE_HEIGHT_INCHES, HEATMAP_ROW_INCHES = 7.0, 3.6, 1.6
DPI = 100


@dataclass(frozen=True)
class ReportPlot:
    title: str
    draw: Callable[[Figure], None]  # fills a figure with its axes
    height_inches: float = CURVE_HEIGHT_INCHES


Plots = dict[str, ReportPlot]  # file name -> how to draw it


def write_report(stage: Stage, checkpoint: Path, sample: str | None) -> Path:
    recipe = stage.recipe
    run_dir = recipe.run.run_dir
    records = read_metrics(run_dir / METRICS_FILE, StepRecord)
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
) -> Path:
    """`<run_dir>/report.html`: a summary table, the sample, one PNG per plot, and the recipe; any stage."""
    plots_dir = run_dir / PLOTS_DIR
    plots_dir.mkdir(parents=True, exist_ok=True)
    for name, plot in plots.items():
        _save_plot(plots_dir / name, plot)
    path = run_dir / REPORT_FILE
    path.write_text(_html(heading, rows, sample, list(plots), recipe), encoding="utf-8")
    return path


def report_plots(records: list[StepRecord], recipe: TrainingRecipe) -> Plots:
    """The loss, the optimizer's curves and the throughput."""
    return {
        "loss.png": ReportPlot("Loss", curve(lambda axes: _plot_loss(axes, records))),
        **optimizer_plots(records, recipe),
        "throughput.png": ReportPlot("Throughput", curve(lambda axes: _plot_throughput(axes, records))),
    }


def optimizer_plots(records: Sequence[StepRecord], recipe: TrainingRecipe, x_label: str = "step") -> Plots:
    """What every stage's optimizer steps record: learning rate, max logits and QK-Clip, expert balance."""
    steps = list(records)
    layers = len(steps[0].expert_load) if steps and steps[0].expert_load else 1
    heatmap_height = 0.8 + HEATMAP_ROW_INCHES * layers
    return {
        "lr.png": ReportPlot("Learning rate", curve(lambda axes: _plot_lr(axes, steps), x_label)),
        "max_logit.png": ReportPlot(
            "Max attention logit per layer",
            curve(lambda axes: _plot_max_logit(axes, steps, recipe), x_label),
        ),
        "heads_clipped.png": ReportPlot(
            "Heads clipped by QK-Clip", curve(lambda axes: _plot_clipped(axes, steps, recipe), x_label)
        ),
        "expert_load.png": ReportPlot(
            "Expert load (tokens routed ÷ the layer's mean; 1 is balanced)",
            lambda figure: _plot_expert_heatmaps(figure, steps, "expert_load", x_label),
            heatmap_height,
        ),
        "expert_bias.png": ReportPlot(
            "Routing bias per expert (e_score_correction_bias)",
            lambda figure: _plot_expert_heatmaps(figure, steps, "expert_bias", x_label),
            heatmap_height,
        ),
    }


def curve(draw: Callable[[Axes], None], x_label: str = "step") -> Callable[[Figure], None]:
    """A figure of one pair of axes over the steps (RL: the iterations)."""

    def draw_figure(figure: Figure) -> None:
        axes = figure.subplots()
        draw(axes)
        axes.set_xlabel(x_label)
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)

    return draw_figure


def _save_plot(path: Path, plot: ReportPlot) -> None:
    figure = plt.figure(figsize=(WIDTH_INCHES, plot.height_inches), dpi=DPI, layout="constrained")
    plot.draw(figure)
    figure.suptitle(plot.title)
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
    recorded = [r for r in records if r.max_logit_per_layer]  # an RL iteration that updated nothing has none
    for layer in range(len(recorded[0].max_logit_per_layer) if recorded else 0):
        axes.plot(_steps(recorded), [r.max_logit_per_layer[layer] for r in recorded], label=f"layer {layer}")
    if recipe.optim.optimizer == "muonclip":
        axes.axhline(
            recipe.optim.qk_clip_tau, color="black", linestyle="--", label=f"τ = {recipe.optim.qk_clip_tau:g}"
        )
    axes.set_ylabel("max scaled q·k")


def _plot_clipped(axes: Axes, records: list[StepRecord], recipe: TrainingRecipe) -> None:
    axes.plot(_steps(records), [r.heads_clipped / r.heads_total if r.heads_total else 0.0 for r in records])
    axes.set_ylim(-0.02, 1.02)
    axes.set_ylabel("fraction of heads")
    if not any(r.heads_clipped for r in records):  # a flat line at 0 needs its reason beside it
        axes.text(
            0.5,
            0.5,
            qk_clip_summary(records, recipe),
            transform=axes.transAxes,
            ha="center",
            va="center",
            wrap=True,
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "grey"},
        )


def qk_clip_summary(records: list[StepRecord], recipe: TrainingRecipe) -> str:
    """Whether QK-Clip rescaled any head, and why not when it did not: the largest max logit against τ."""
    peak = max(r.max_logit for r in records)
    if recipe.optim.optimizer != "muonclip":
        return f"AdamW run: QK-Clip is off (the max logit peaked at {peak:.1f})"
    tau = recipe.optim.qk_clip_tau
    clipped = [r for r in records if r.heads_clipped]
    if not clipped:
        return f"QK-Clip never fired: the max logit peaked at {peak:.1f}, below τ = {tau:g}"
    most = max(r.heads_clipped for r in clipped)
    return (
        f"QK-Clip fired at {len(clipped)} of {len(records)} logged steps (at most {most} of "
        f"{clipped[0].heads_total} heads at once); the max logit peaked at {peak:.1f} (τ = {tau:g})"
    )


def expert_heatmap_values(records: list[StepRecord], field: str) -> tuple[list[int], list[np.ndarray]]:
    """(steps, one [experts, steps] array per MoE layer) of `field`; the load as a share of the layer's
    mean (1 = balanced), the bias as it is. Steps without per-expert records are left out."""
    recorded = [r for r in records if getattr(r, field)]
    if not recorded:
        return [], []
    per_layer = np.array([getattr(r, field) for r in recorded], dtype=np.float64).transpose(1, 2, 0)
    if field == "expert_load":
        mean = per_layer.mean(axis=1, keepdims=True)
        per_layer = np.divide(per_layer, mean, out=np.zeros_like(per_layer), where=mean > 0)
    return [r.step for r in recorded], list(per_layer)


def _plot_expert_heatmaps(
    figure: Figure, records: list[StepRecord], field: str, x_label: str = "step"
) -> None:
    steps, layers = expert_heatmap_values(records, field)
    if not layers:
        axes = figure.subplots()
        axes.set_axis_off()
        axes.text(0.5, 0.5, "no per-expert records in this run's metrics", ha="center", va="center")
        return
    # each step's column spans half-way to its neighbours, so unevenly logged steps keep their place
    centres = np.array(steps, dtype=np.float64)
    inner = (centres[1:] + centres[:-1]) / 2
    first_gap = centres[1] - centres[0] if len(centres) > 1 else 1.0
    last_gap = centres[-1] - centres[-2] if len(centres) > 1 else 1.0
    x_edges = np.concatenate([[centres[0] - first_gap / 2], inner, [centres[-1] + last_gap / 2]])
    if field == "expert_load":
        largest = max(2.0, max(float(values.max()) for values in layers))
        norm: TwoSlopeNorm | CenteredNorm = TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=largest)
        label = "load ÷ mean"
    else:
        largest = max(float(np.abs(values).max()) for values in layers)
        norm = CenteredNorm(vcenter=0.0, halfrange=largest or 1e-12)
        label = "bias"
    all_axes = figure.subplots(len(layers), 1, sharex=True, squeeze=False)[:, 0]
    for layer, (axes, values) in enumerate(zip(all_axes, layers, strict=True)):
        y_edges = np.arange(values.shape[0] + 1) - 0.5
        mesh = axes.pcolormesh(x_edges, y_edges, values, cmap="RdBu_r", norm=norm)
        axes.set_ylabel(f"MoE layer {layer}\nexpert", fontsize=8)
        axes.invert_yaxis()  # expert 0 on top, as in a table
        figure.colorbar(mesh, ax=axes, label=label)
    all_axes[-1].set_xlabel(x_label)


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
        ("QK-Clip", qk_clip_summary(records, recipe)),
        (
            "checkpoint",
            str(checkpoint.relative_to(run_dir) if checkpoint.is_relative_to(run_dir) else checkpoint),
        ),
        *stage.report_rows,
        *session_rows(run_dir),
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


def session_rows(run_dir: Path) -> list[tuple[str, str]]:
    sessions = read_sessions(run_dir)
    if not sessions:
        return [("machine", "not recorded (the run predates session records)")]
    return [
        (
            "machine" if session.from_step == 0 else f"machine from step {session.from_step}",
            session.describe(),
        )
        for session in sessions
    ]
