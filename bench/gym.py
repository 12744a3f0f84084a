"""Gym throughput: verifiers in the process pool vs one process, the sandbox's runs/s and start-up cost.

    python bench/gym.py [--tasks 48] [--workers 2] [--repeats 3]

Per environment, the same replies (each task's reference and a wrong one) are scored by an environment
checking in this process (`verifier_workers=0`, one check at a time) and by one with a pool of worker
processes (checks concurrent); both are warmed up first, so pool start-up is not counted. The code
environment compares one sandbox at a time with `--workers` at once. The sandbox start-up cost is a
sandboxed `pass` against a plain `python -I -S -c pass` subprocess, the baseline, alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import summary, time_alternating

from openk2.chat import Message
from openk2.gym import Environment, Task, make
from openk2.gym.sandbox import run_python

ENVIRONMENTS: dict[str, Callable[[int], dict]] = {
    "math": lambda workers: {"verifier_workers": workers, "difficulty": 3},
    "logic": lambda workers: {"verifier_workers": workers, "difficulty": 2},
    "instruction": lambda workers: {"verifier_workers": workers},
}


def replies(tasks: list[Task]) -> list[tuple[Task, list[Message]]]:
    pairs = []
    for task in tasks:
        reference = task.verification.get("answer", "* one\n* two\nI used exactly 2 bullet points.")
        for text in (reference, "Answer: 7"):
            pairs.append((task, [*task.messages, Message(role="assistant", content=text)]))
    return pairs


async def score_all(env: Environment, pairs: list[tuple[Task, list[Message]]]) -> float:
    """Seconds to score every pair, all submitted at once (the environment bounds its concurrency)."""
    started = time.perf_counter()
    rewards = await asyncio.gather(*(env.score(task, messages) for task, messages in pairs))
    elapsed = time.perf_counter() - started
    errors = [reward.error for reward in rewards if reward.error]
    if errors:
        raise RuntimeError(f"{env.name}: {len(errors)} verifier errors, first: {errors[0]}")
    return elapsed


async def compare(
    baseline: Environment, candidate: Environment, pairs: list, repeats: int
) -> tuple[list[float], list[float]]:
    """Seconds per round for each environment, alternating; a warm-up round first (workers start)."""
    await score_all(baseline, pairs[:4])
    await score_all(candidate, pairs[:8])
    seconds: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        seconds[0].append(await score_all(baseline, pairs))
        seconds[1].append(await score_all(candidate, pairs))
    await baseline.aclose()
    await candidate.aclose()
    return seconds


def verifier_rows(n_tasks: int, workers: int, repeats: int) -> list[str]:
    rows = []
    for name, settings in ENVIRONMENTS.items():
        inline, pooled = make(name, **settings(0)), make(name, **settings(workers))
        pairs = replies(inline.tasks("test", n_tasks, seed=0))
        rows.append(_row(name, len(pairs), *asyncio.run(compare(inline, pooled, pairs, repeats))))
    one, many = make("code", max_concurrency=1), make("code", max_concurrency=workers)
    pairs = replies(one.tasks("test", n_tasks, seed=0))
    rows.append(_row("code (sandboxes)", len(pairs), *asyncio.run(compare(one, many, pairs, repeats))))
    return rows


def _row(name: str, count: int, baseline: list[float], candidate: list[float]) -> str:
    base, cand = min(baseline), min(candidate)
    return (
        f"| {name} | {count} | {count / base:,.1f} / {count / statistics.median(baseline):,.1f} | "
        f"{count / cand:,.1f} / {count / statistics.median(candidate):,.1f} | {base / cand:.2f}× |"
    )


def sandbox_rows(workers: int, repeats: int) -> list[str]:
    python = f"{sys.base_prefix}/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    seconds = time_alternating(
        {
            "plain subprocess": lambda: subprocess.run([python, "-I", "-S", "-c", "pass"], check=True),
            "sandbox": lambda: run_python("pass"),
        },
        repeats=max(10, 5 * repeats),
    )
    plain, sandboxed = summary(seconds["plain subprocess"]), summary(seconds["sandbox"])
    runs = 20 * workers
    started = time.perf_counter()
    for _ in range(runs):
        run_python("pass")
    sequential = runs / (time.perf_counter() - started)
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda _: run_python("pass"), range(runs)))
    concurrent = runs / (time.perf_counter() - started)
    return [
        f"| start-up: `python -I -S -c pass` (baseline) | {plain[0] * 1e3:.1f} / {plain[1] * 1e3:.1f} ms | 1.00× |",
        f"| start-up: sandboxed `pass` | {sandboxed[0] * 1e3:.1f} / {sandboxed[1] * 1e3:.1f} ms | "
        f"{sandboxed[1] / plain[1]:.2f}× (+{(sandboxed[1] - plain[1]) * 1e3:.1f} ms) |",
        f"| sandbox runs/s, one at a time | {sequential:.1f} | |",
        f"| sandbox runs/s, {workers} at a time | {concurrent:.1f} | {concurrent / sequential:.2f}× |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=48)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"## Verifier throughput: replies/s (best / median of {args.repeats}), {args.workers} workers")
    print("| environment | replies | one process | pool | speed-up |\n|---|---|---|---|---|")
    for row in verifier_rows(args.tasks, args.workers, args.repeats):
        print(row, flush=True)
    print("\n## Sandbox (best / median)\n| measurement | value | vs baseline |\n|---|---|---|")
    for row in sandbox_rows(args.workers, args.repeats):
        print(row, flush=True)


if __name__ == "__main__":
    main()
