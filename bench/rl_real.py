"""RL of a real model: the embedded SmolLM2-135M-Instruct (`policy = "teacher"`, a transformers causal LM)
trained by `openk2 rl` with the K1.5 objective on the gym's one-step arithmetic (math env, `arithmetic`
source, difficulty 2: "Calculate 41 - 52. Put your final answer within \\boxed{}.") for a fixed number of
iterations. Held-out greedy reward on test-split tasks before (the teacher as shipped, the baseline) and
after, with 95% Wilson intervals.

Usage: python bench/rl_real.py [--iterations 10] [--held-out 100] [--lr 2e-5]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the recipe writer is the tests'
import common  # noqa: F401  (sets OMP_WAIT_POLICY before torch starts its threads)
from rich.console import Console
from rich.table import Table

import openk2.gym
from openk2.llm import LLM
from openk2.llm.teacher import load_teacher
from openk2.llm.transformers_engine import TransformersLLM
from openk2.rl.evaluate import HeldOutResult, held_out_reward
from openk2.rl.metrics import IterationRecord
from openk2.rl.trainer import rl
from openk2.train.metrics import read_metrics
from tests.rl.rl_setup import rl_sections, write_rl_recipe

ARITHMETIC = dict(difficulty=2, sources=["arithmetic"], verifier_workers=0)
BUDGET = 64  # tokens per reply


def held_out(llm: LLM, count: int) -> HeldOutResult:
    environment = openk2.gym.make("math", **ARITHMETIC)
    tasks = [
        task.model_copy(update={"budget": BUDGET}) for task in environment.tasks("test", n=count, seed=0)
    ]
    try:
        return asyncio.run(held_out_reward(llm, [(environment, task) for task in tasks], max_concurrency=32))
    finally:
        llm.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--held-out", type=int, default=100)
    parser.add_argument("--lr", type=float, default=2e-5)
    args = parser.parse_args()
    console = Console()
    before = held_out(load_teacher(max_batch_size=32), args.held_out)
    with tempfile.TemporaryDirectory(prefix="bench-rl-real-") as scratch:
        root = Path(scratch)
        sections = rl_sections(
            root, "teacher", name="real",
            run=dict(steps=args.iterations, checkpoint_every=args.iterations),
            optim=dict(lr=args.lr, weight_decay=0.0),
            schedule=dict(warmup_steps=0, decay_fraction=0.0, final_lr=args.lr),
            train=dict(batch_size=8),
            rl=dict(groups_per_iteration=8, samples_per_group=4, budget={"math": BUDGET}, eval={"every": 0},
                    temperature={"start": 1.0, "end": 0.7, "decay_iterations": args.iterations},
                    max_batch_size=32),
            tasks=[dict(env="math", settings=ARITHMETIC, pool=400)],
        )  # fmt: skip
        started = time.perf_counter()
        summary = rl(write_rl_recipe(root / "real.toml", sections), progress=True)
        seconds = time.perf_counter() - started
        records = read_metrics(root / "real" / "metrics.jsonl", IterationRecord)
        after = held_out(
            TransformersLLM.from_pretrained(summary.checkpoint, max_batch_size=32), args.held_out
        )

    table = Table(title=f"SmolLM2-135M-Instruct, K1.5, {args.iterations} iterations of 8 prompts × 4 samples")
    for column in ("policy", f"held-out greedy reward ({args.held_out} tasks)", "95% interval"):
        table.add_column(column)
    for label, result in (("as shipped (baseline)", before), ("after RL", after)):
        low, high = result.interval("math")
        table.add_row(label, f"{result.mean()['math']:.3f}", f"[{low:.3f}, {high:.3f}]")
    console.print(table)
    rewards = " ".join(f"{r.reward_mean:.2f}" for r in records if r.reward_mean is not None)
    console.print(f"training reward per iteration: {rewards}; RL took {seconds:.0f} s", highlight=False)


if __name__ == "__main__":
    main()
