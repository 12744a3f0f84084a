"""SFT (K2 report §3.1) of the tiny pre-trained model: what it learns, MuonClip against the AdamW baseline.

Held-out measurements before and after `openk2 sft` on a mixture of procedural digit-reversal tasks (prompt ->
reference answer, exact match) and tool-use trajectories (well-formed K2 tool calls at the first tool turn, and
calls matching the reference), each optimizer on the same data, steps, learning rate and seed. Test tasks and
test trajectories are distinct from every training one.
Usage: python bench/sft.py [--checkpoint runs/pretrain-tiny/checkpoints/step_000300] [--steps 300]
       python bench/sft.py --write-samples runs/sft-data   (the procedural files recipes/sft-tiny.toml reads)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the data builders are the tests' (tests/sft)
import common  # noqa: F401  (sets OMP_WAIT_POLICY before torch starts its threads)
from rich.console import Console
from rich.table import Table

from openk2.gym import Task, Trajectory
from openk2.llm.k2_engine import K2Engine
from openk2.sft.evaluate import exact_match_rate, tool_call_rates
from openk2.sft.run import sft
from tests.sft.sft_data import reversal_tasks, tool_trajectories, write_jsonl
from tests.sft.sft_recipe import write_sft_recipe

REPO = Path(__file__).resolve().parents[1]
SAMPLE_TASKS, SAMPLE_TEST_TASKS, SAMPLE_TRAJECTORIES = 400, 50, 160


def write_samples(directory: Path) -> tuple[list[Task], list[Trajectory]]:
    """tasks.jsonl (train and test Task records) and trajectories.jsonl; returns the test tasks and trajectories."""
    directory.mkdir(parents=True, exist_ok=True)
    train, test = reversal_tasks(SAMPLE_TASKS, SAMPLE_TEST_TASKS, seed=0, digits=(3, 4))
    write_jsonl(directory / "tasks.jsonl", train + test)
    write_jsonl(
        directory / "trajectories.jsonl", tool_trajectories(SAMPLE_TRAJECTORIES, seed=0, prefix="train")
    )
    return test, tool_trajectories(60, seed=0, prefix="test")


def measure(checkpoint: Path, tasks: list[Task], trajectories: list[Trajectory]) -> dict[str, float]:
    engine = K2Engine.from_checkpoint(checkpoint)
    rates = tool_call_rates(engine, trajectories)
    return {
        "held-out exact match (digit reversal)": exact_match_rate(engine, tasks),
        "well-formed tool calls (held-out tasks)": rates.well_formed,
        "tool calls matching the reference": rates.matching,
    }


def run_sft(
    optimizer: str, checkpoint: Path, data: Path, scratch: Path, steps: int, lr: float
) -> tuple[Path, float, float]:
    """(final checkpoint, final validation loss, training seconds)."""
    sections = {
        "run": dict(
            name=optimizer, output_dir=str(scratch), steps=steps, checkpoint_every=steps, val_every=steps
        ),
        "init": dict(checkpoint=str(checkpoint)),
        "sft": dict(seq_len=512, val_fraction=0.05, seed=0),
        "optim": dict(optimizer=optimizer, lr=lr, weight_decay=0.0),
        "schedule": dict(kind="cosine", warmup_steps=10, final_lr=lr / 10),
        "train": dict(batch_size=8),
    }
    sources = [
        dict(kind="tasks", path=data / "tasks.jsonl", weight=4.0),
        dict(kind="trajectories", path=data / "trajectories.jsonl", weight=1.0),
    ]
    recipe = write_sft_recipe(scratch / f"{optimizer}.toml", sections, sources)
    result = sft(recipe, progress=False).run
    return result.checkpoint, result.final_val_loss or float("nan"), result.elapsed_seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--checkpoint", type=Path, default=REPO / "runs/pretrain-tiny/checkpoints/step_000300"
    )
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--write-samples", type=Path, help="only write the procedural sample files here")
    args = parser.parse_args()
    if args.write_samples:
        write_samples(args.write_samples)
        return
    if not (args.checkpoint / "config.json").is_file():
        raise SystemExit(f"{args.checkpoint}: no checkpoint; `make run` pre-trains the tiny model first")

    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        test_tasks, test_trajectories = write_samples(scratch / "data")
        columns = {"pre-trained (before SFT)": measure(args.checkpoint, test_tasks, test_trajectories)}
        losses, seconds = {}, {}
        for optimizer in ("adamw", "muonclip"):
            final, losses[optimizer], seconds[optimizer] = run_sft(
                optimizer, args.checkpoint, scratch / "data", scratch, args.steps, args.lr
            )
            columns[optimizer] = measure(final, test_tasks, test_trajectories)

    table = Table(
        title=f"SFT of {args.checkpoint}: {args.steps} steps, lr {args.lr:g}, cosine, same data and seed"
    )
    for column in (
        "held-out measure",
        "before SFT",
        "SFT AdamW (baseline)",
        "SFT MuonClip",
        "MuonClip / AdamW",
    ):
        table.add_column(column, justify="right")
    before, adamw, muon = columns.values()
    for name in before:
        ratio = f"{muon[name] / adamw[name]:.2f}x" if adamw[name] else "-"
        table.add_row(name, f"{before[name]:.3f}", f"{adamw[name]:.3f}", f"{muon[name]:.3f}", ratio)
    table.add_row(
        "validation loss (assistant tokens)", "", f"{losses['adamw']:.4f}", f"{losses['muonclip']:.4f}", ""
    )
    table.add_row("training seconds", "", f"{seconds['adamw']:.0f}", f"{seconds['muonclip']:.0f}", "")
    Console().print(table)


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - start:.0f} s")
