"""The RL run's `report.html`: reward (per environment, and held out), reply length and truncation, KL to
π_old, critic agreement, weight-sync time, throughput and temperature per iteration, then the optimizer's
curves every stage shares (learning rate, max logits and QK-Clip, expert balance)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.axes import Axes

from openk2.rl.metrics import IterationRecord
from openk2.rl.recipe import RLRecipe
from openk2.train.metrics import METRICS_FILE, read_metrics
from openk2.train.report import Plots, ReportPlot, curve, optimizer_plots, session_rows, write_report_page

ITERATION = "iteration"  # the x axis of every curve


def write_rl_report(
    recipe: RLRecipe, checkpoint: Path, rows: list[tuple[str, str]], sample: str | None = None
) -> Path:
    run_dir = recipe.run.run_dir
    records = read_metrics(run_dir / METRICS_FILE, IterationRecord)
    if not records:
        raise ValueError(f"{run_dir / METRICS_FILE}: no records to report")
    last = records[-1]
    rewards = [r.reward_mean for r in records if r.reward_mean is not None]
    evaluated = [r for r in records if r.eval_reward]
    syncs = sorted(r.weight_sync_seconds for r in records)
    summary = [
        *rows,
        ("iterations", f"{last.step:,}"),
        ("reward (first / last iteration)", f"{rewards[0]:.3f} / {rewards[-1]:.3f}" if rewards else "none"),
        (
            "held-out greedy reward (first / last evaluation)",
            f"{_env_values(evaluated[0].eval_reward)} / {_env_values(evaluated[-1].eval_reward)}"
            if evaluated
            else "not evaluated",
        ),
        ("samples excluded (reward errors)", f"{sum(r.samples_excluded for r in records):,}"),
        ("weight sync per iteration (median)", f"{syncs[len(syncs) // 2]:.4f} s"),
        ("token-exact", "yes" if all(r.token_exact for r in records) else "no (re-tokenised messages)"),
        ("training time", f"{last.elapsed_seconds:,.0f} s"),
        (
            "checkpoint",
            str(checkpoint.relative_to(run_dir) if checkpoint.is_relative_to(run_dir) else checkpoint),
        ),
        *session_rows(run_dir),
    ]
    return write_report_page(
        run_dir,
        f"RL: {recipe.run.name}",
        summary,
        rl_plots(records, recipe),
        sample,
        recipe,
    )


def _env_values(values: dict[str, float] | None) -> str:
    return ", ".join(f"{env} {value:.3f}" for env, value in (values or {}).items())


def rl_plots(records: list[IterationRecord], recipe: RLRecipe) -> Plots:
    return {
        "reward.png": ReportPlot("Reward", curve(lambda axes: _plot_reward(axes, records), ITERATION)),
        "reply_length.png": ReportPlot(
            "Reply length and truncation", curve(lambda axes: _plot_length(axes, records), ITERATION)
        ),
        "kl.png": ReportPlot(
            "KL to π_old and log-prob agreement", curve(lambda axes: _plot_kl(axes, records), ITERATION)
        ),
        "critic.png": ReportPlot(
            "Critic agreement with verified outcomes",
            curve(lambda axes: _plot_critic(axes, records), ITERATION),
        ),
        "loss.png": ReportPlot("Losses", curve(lambda axes: _plot_losses(axes, records), ITERATION)),
        "weight_sync.png": ReportPlot(
            "Weight sync per iteration", curve(lambda axes: _plot_sync(axes, records), ITERATION)
        ),
        "throughput.png": ReportPlot(
            "Throughput", curve(lambda axes: _plot_throughput(axes, records), ITERATION)
        ),
        "temperature.png": ReportPlot(
            "Sampling temperature", curve(lambda axes: _plot_temperature(axes, records), ITERATION)
        ),
        **optimizer_plots(records, recipe, ITERATION),
    }


def _iterations(records: list[IterationRecord]) -> list[int]:
    return [r.step for r in records]


def _plot_reward(axes: Axes, records: list[IterationRecord]) -> None:
    trained = [(r.step, r.reward_mean) for r in records if r.reward_mean is not None]
    axes.plot([s for s, _ in trained], [v for _, v in trained], label="mean (trained samples)", linewidth=1.5)
    environments = sorted({env for r in records for env in r.reward_per_env})
    if len(environments) > 1:
        for env in environments:
            points = [(r.step, r.reward_per_env[env]) for r in records if env in r.reward_per_env]
            axes.plot([s for s, _ in points], [v for _, v in points], label=env, linewidth=1)
    for env in sorted({env for r in records for env in r.eval_reward or {}}):
        points = [(r.step, r.eval_reward[env]) for r in records if r.eval_reward and env in r.eval_reward]
        axes.plot([s for s, _ in points], [v for _, v in points], "o--", label=f"{env} held-out, greedy")
    axes.set_ylabel("reward")


def _plot_length(axes: Axes, records: list[IterationRecord]) -> None:
    points = [(r.step, r.reply_tokens_mean) for r in records if r.reply_tokens_mean is not None]
    axes.plot([s for s, _ in points], [v for _, v in points], label="sampled tokens per reply")
    axes.set_ylabel("tokens")
    twin = axes.twinx()
    rates = [(r.step, r.truncation_rate) for r in records if r.truncation_rate is not None]
    twin.plot([s for s, _ in rates], [v for _, v in rates], color="tab:red", linewidth=1, label="truncated")
    twin.set_ylabel("share truncated at budget", color="tab:red")
    twin.set_ylim(-0.02, 1.02)


def _plot_kl(axes: Axes, records: list[IterationRecord]) -> None:
    for name in ("kl_to_old", "logprob_mismatch"):
        points = [(r.step, getattr(r, name)) for r in records if getattr(r, name) is not None]
        axes.plot([s for s, _ in points], [v for _, v in points], label=name.replace("_", " "))
    axes.set_ylabel("nats per token")


def _plot_critic(axes: Axes, records: list[IterationRecord]) -> None:
    points = [(r.step, r.critic_agreement) for r in records if r.critic_agreement is not None]
    if not points:  # no verified pair was judged (critic.verified_pairs_per_group = 0, or every call failed)
        axes.text(
            0.5, 0.5, "no critic judgements in this run", ha="center", va="center", transform=axes.transAxes
        )
        return
    axes.plot([s for s, _ in points], [v for _, v in points], "o-", label="agreement (0.5: chance)")
    axes.axhline(0.5, color="black", linestyle="--", linewidth=0.8)
    axes.set_ylim(-0.02, 1.02)


def _plot_losses(axes: Axes, records: list[IterationRecord]) -> None:
    axes.plot(_iterations(records), [r.policy_loss for r in records], label="policy objective")
    for name in ("ptx_loss", "critic_loss"):
        points = [(r.step, getattr(r, name)) for r in records if getattr(r, name) is not None]
        if points:
            axes.plot([s for s, _ in points], [v for _, v in points], label=name.replace("_", " "))


def _plot_sync(axes: Axes, records: list[IterationRecord]) -> None:
    axes.plot(_iterations(records), [r.weight_sync_seconds for r in records])
    axes.set_ylabel("seconds")


def _plot_throughput(axes: Axes, records: list[IterationRecord]) -> None:
    axes.plot(
        _iterations(records), [r.rollout_tokens_per_second for r in records], label="generated tokens/s"
    )
    axes.plot(_iterations(records), [r.tokens_per_second for r in records], label="trained tokens/s")
    axes.set_ylabel("tokens / s")


def _plot_temperature(axes: Axes, records: list[IterationRecord]) -> None:
    axes.plot(_iterations(records), [r.temperature for r in records])
    axes.set_ylabel("T")
