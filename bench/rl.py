"""RL (K2 report §3.2–3.3) of the tiny warm policy on digit reversal: objectives, budget control, partial
rollouts and weight sync, each against a named baseline measured in the same run.

The policy is the tiny pre-trained K2 warmed up by `openk2 sft` on demonstrations that end in a stray "." 70%
of the time (tests/rl/rl_setup.py): it reverses, but its greedy replies fail the exact check.

- objectives: held-out greedy reward (64 test tasks) of K1.5 against GRPO, and of two broken K1.5 variants
  (the loss's sign flipped; log-probs at T = 1 while sampling at T > 1), same task, seeds and iterations;
- budget control: a 4-token budget with a 0.5 penalty against a 64-token budget without one, sampled at
  T = 1.8 so that some replies ramble: mean sampled reply length and held-out reward;
- partial rollouts: rollout tokens/s with at most 8 tokens per episode per iteration against none, on the
  pre-trained (not warmed) policy at a 48-token budget, whose replies run on to the budget;
- weight sync: seconds per iteration, colocated (the engine samples the trained module) against an
  `openk2 serve` endpoint told to load the new weights (`/update_weights_from_disk`).

Usage: python bench/rl.py [--policy DIR --pretrained DIR] [--iterations 12] [--only objectives,budget,...]
       python bench/rl.py --write-policy runs/rl-warm     (the warm policy recipes/rl-tiny.toml starts from)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the task set and recipes are the tests'
import common  # noqa: F401  (sets OMP_WAIT_POLICY before torch starts its threads)
from rich.console import Console
from rich.table import Table

import openk2.rl.losses as losses
import openk2.rl.update as update
from openk2.rl.metrics import IterationRecord
from openk2.rl.trainer import RLRunSummary, rl
from openk2.train.metrics import read_metrics
from tests.rl.rl_setup import rl_sections, warm_up, write_rl_recipe
from tests.sft.sft_recipe import pretrain_small

PARTS = ("objectives", "budget", "partial", "sync")


@contextmanager
def broken(variant: str) -> Iterator[None]:
    """K1.5 with a flipped sign, or scored at T = 1 whatever the sampling temperature."""
    original_objective, original_logprobs = losses.K15Objective.__call__, update.token_logprobs
    if variant == "sign":
        losses.K15Objective.__call__ = lambda self, lp, g: -original_objective(self, lp, g)  # type: ignore[method-assign]
    if variant == "temperature":
        update.token_logprobs = lambda logits, targets, temperature: original_logprobs(logits, targets, 1.0)  # type: ignore[assignment]
    try:
        yield
    finally:
        losses.K15Objective.__call__ = original_objective  # type: ignore[method-assign]
        update.token_logprobs = original_logprobs  # type: ignore[assignment]


def run(
    root: Path, policy: Path, name: str, **sections: Any
) -> tuple[RLRunSummary, list[IterationRecord], float]:
    started = time.perf_counter()
    summary = rl(
        write_rl_recipe(root / f"{name}.toml", rl_sections(root, policy, name=name, **sections)),
        progress=False,
    )
    return (
        summary,
        read_metrics(root / name / "metrics.jsonl", IterationRecord),
        time.perf_counter() - started,
    )


def objectives(root: Path, policy: Path, iterations: int, console: Console) -> None:
    table = Table(title=f"Held-out greedy reward, {iterations} iterations (64 test tasks, exact match)")
    for column in ("objective", "before", "evaluations (every 4)", "final", "vs K1.5", "seconds"):
        table.add_column(column)
    variants: list[tuple[str, str, dict[str, Any]]] = [
        ("K1.5 (τ = 1)", "", {}),
        ("GRPO (ε = 0.2)", "", {"objective": "grpo"}),
        ("K1.5, sign flipped", "sign", {}),
        ("K1.5, log-probs at T = 1", "temperature", {}),
    ]
    baseline = None
    for label, variant, rl_fields in variants:
        with broken(variant):
            summary, records, seconds = run(
                root, policy, f"objective-{len(table.rows)}", run=dict(steps=iterations), rl=rl_fields
            )
        evaluations = [r.eval_reward["logic"] for r in records if r.eval_reward]
        before = (summary.initial_eval or {}).get("logic", float("nan"))
        baseline = evaluations[-1] if baseline is None else baseline
        table.add_row(
            label, f"{before:.2f}", " ".join(f"{v:.2f}" for v in evaluations), f"{evaluations[-1]:.2f}",
            f"{evaluations[-1] / baseline:.2f}x" if baseline else "-", f"{seconds:.0f}",
        )  # fmt: skip
    console.print(table)


def budget(root: Path, policy: Path, iterations: int, console: Console) -> None:
    table = Table(title=f"Budget control, {iterations} iterations at T = 1.8")
    for column in (
        "budget",
        "reply tokens (first 2 → last 2 iterations)",
        "truncated (last 2)",
        "held-out",
        "length vs baseline",
    ):
        table.add_column(column)
    hot = {"start": 1.8, "end": 1.8}
    rows = []
    for label, fields in (
        ("64 tokens, no penalty (baseline)", {"budget": {"logic": 64}, "rewards": {"budget_penalty": 0.0}}),
        ("4 tokens, penalty 0.5", {"budget": {"logic": 4}, "rewards": {"budget_penalty": 0.5}}),
    ):
        _, records, _ = run(
            root,
            policy,
            f"budget-{len(rows)}",
            run=dict(steps=iterations),
            rl=dict(temperature=hot, **fields),
        )
        lengths = [r.reply_tokens_mean or 0.0 for r in records]
        truncated = [r.truncation_rate or 0.0 for r in records[-2:]]
        held_out = [r.eval_reward["logic"] for r in records if r.eval_reward][-1]
        rows.append((label, sum(lengths[:2]) / 2, sum(lengths[-2:]) / 2, sum(truncated) / 2, held_out))
    for label, first, last, truncated, held_out in rows:
        table.add_row(
            label,
            f"{first:.2f} → {last:.2f}",
            f"{truncated:.2f}",
            f"{held_out:.2f}",
            f"{last / rows[0][2]:.2f}x",
        )
    console.print(table)


def partial(root: Path, pretrained: Path, iterations: int, console: Console) -> None:
    table = Table(title=f"Partial rollouts, {iterations} iterations, 48-token budget, the pre-trained policy")
    for column in ("rollouts", "generated tokens", "rollout seconds", "tokens/s", "vs whole replies"):
        table.add_column(column)
    baseline = None
    for label, tokens in (
        ("whole replies (baseline)", 0),
        ("partial, 8 tokens per episode per iteration", 8),
    ):
        _, records, _ = run(
            root, pretrained, f"partial-{tokens}", run=dict(steps=iterations),
            rl=dict(budget={"logic": 48}, eval={"every": 0}, partial={"tokens_per_iteration": tokens},
                    temperature={"start": 1.0, "end": 1.0}, max_batch_size=16),
        )  # fmt: skip
        generated = sum(r.generated_tokens for r in records)
        seconds = sum(
            r.generated_tokens / r.rollout_tokens_per_second for r in records if r.rollout_tokens_per_second
        )
        rate = generated / seconds
        baseline = baseline or rate
        table.add_row(label, f"{generated:,}", f"{seconds:.1f}", f"{rate:,.0f}", f"{rate / baseline:.2f}x")
    console.print(table)


def sync(root: Path, policy: Path, iterations: int, console: Console) -> None:
    from openk2.llm.k2_engine import K2Engine
    from openk2.serve.app import create_app
    from openk2.serve.background import BackgroundServer

    table = Table(title="Weight sync per iteration (median)")
    for column in ("sampler", "seconds", "vs colocated", "token-exact"):
        table.add_column(column)
    _, colocated, _ = run(
        root, policy, "sync-colocated", run=dict(steps=iterations), rl=dict(eval={"every": 0})
    )
    engine = K2Engine.from_checkpoint(policy, max_batch_size=64, max_pending=4096)
    try:
        with BackgroundServer(create_app(engine)) as server:  # type: ignore[arg-type]
            endpoint_fields = dict(
                rollout="endpoint", endpoint={"base_url": server.base_url}, eval={"every": 0}
            )
            _, served, _ = run(root, policy, "sync-endpoint", run=dict(steps=iterations), rl=endpoint_fields)
    finally:
        engine.close()
    base = median(r.weight_sync_seconds for r in colocated)
    for label, records in (
        ("colocated, one module (baseline)", colocated),
        ("openk2 serve, /update_weights_from_disk", served),
    ):
        seconds = median(r.weight_sync_seconds for r in records)
        table.add_row(
            label, f"{seconds:.4f}", f"{seconds / base:,.0f}x" if base else "-", str(records[0].token_exact)
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pretrained", type=Path, help="the tiny pre-trained checkpoint (default: pre-train one)"
    )
    parser.add_argument("--policy", type=Path, help="the warm policy (default: warm the pre-trained one up)")
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {PARTS}")
    parser.add_argument("--write-policy", type=Path, help="only pre-train and warm up the policy, into DIR")
    args = parser.parse_args()
    console = Console()
    if args.write_policy:  # what recipes/rl-tiny.toml starts from
        policy = warm_up(pretrain_small(args.write_policy / "pretrained"), args.write_policy)
        console.print(f"warm policy: {policy}")
        return
    with tempfile.TemporaryDirectory(prefix="bench-rl-") as scratch:
        root = Path(scratch)
        pretrained = args.pretrained or pretrain_small(root / "pretrained")
        policy = args.policy or warm_up(pretrained, root / "warm")
        parts: dict[str, Callable[[], None]] = {
            "objectives": lambda: objectives(root, policy, args.iterations, console),
            "budget": lambda: budget(root, policy, args.iterations, console),
            "partial": lambda: partial(root, pretrained, min(args.iterations, 6), console),
            "sync": lambda: sync(root, policy, min(args.iterations, 4), console),
        }
        for part in args.only.split(","):
            parts[part]()


if __name__ == "__main__":
    main()
