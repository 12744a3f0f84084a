"""`openk2 synth run` against a local OpenAI-compatible server: episodes per minute at 1, 4 and 16 in flight.

The server is `openk2 serve --teacher` (the embedded SmolLM2-135M-Instruct) in its own process on a
loopback port, batching up to 16 requests; every role (agent, user simulator, tool simulator, judge)
is that endpoint. Tools and tasks are made once (stages 1 and 2, with the same endpoint as generator);
each concurrency level then plays the same tasks from an empty reply cache. The baseline is
concurrency 1, measured in the same run.
Usage: python bench/synth.py [--tasks 12] [--concurrency 1 4 16]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from serve import served

from openk2.llm import LLMConfig
from openk2.recipes import validate_recipe
from openk2.synth import SynthRecipe, synthesise


def recipe(output: Path, endpoint: LLMConfig, tasks: int, concurrency: int) -> SynthRecipe:
    return validate_recipe(
        SynthRecipe,
        {
            "output": str(output),
            "concurrency": concurrency,
            "models": dict.fromkeys(
                ("generator", "agent", "user", "tool_simulator", "judge"), endpoint.model_dump(mode="json")
            ),
            "tools": {
                "builtin_servers": ["time"],
                "categories": ["smart_home", "financial_trading"],
                "domains_per_category": 3,
                "model_domains": False,
                "evolution_rounds": 0,
            },
            "tasks": {
                "agents": (tasks + 1) // 2,
                "tasks_per_agent": 2,
                "levels": [1, 2],
                "real_tool_share": 0.5,
            },
            "run": {"max_turns": 2, "reply_tokens": 48, "force_tool_calls": True},
        },
        "bench/synth.py",
        within="synth",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=12, help="episodes per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="the server's torch threads")
    parser.add_argument("--port", type=int, default=8767)
    args = parser.parse_args()

    with served(["--teacher"], args.port, args.max_batch_size, args.threads) as (base_url, model):
        endpoint = LLMConfig(backend="endpoint", base_url=base_url, timeout_s=600)
        with tempfile.TemporaryDirectory() as scratch:
            prepared = Path(scratch) / "prepared"
            started = time.perf_counter()
            made = synthesise(recipe(prepared, endpoint, args.tasks, 16), ("tools", "tasks"), progress=False)
            console = Console()
            console.print(
                f"stages 1-2: {made['tools']['synthetic']} synthetic + {made['tools']['real']} real tools, "
                f"{made['tasks']['tasks']} tasks in {time.perf_counter() - started:.0f} s"
            )
            table = Table(
                title=f"openk2 synth run -> openk2 serve --teacher ({model}), {made['tasks']['tasks']} episodes "
                f"(<= 2 agent turns), server batch {args.max_batch_size}, {args.threads} thread(s), "
                f"load average {os.getloadavg()[0]:.1f} at start"
            )
            for column in (
                "in flight",
                "episodes",
                "kept",
                "LLM calls",
                "tool calls",
                "seconds",
                "episodes/min",
                "vs 1",
            ):
                table.add_column(column, justify="right")
            baseline = None
            for concurrency in args.concurrency:
                output = Path(scratch) / f"run-{concurrency}"
                output.mkdir()
                for name in (
                    "synth.json",
                    "tools.jsonl",
                    "tool_rejects.jsonl",
                    "repository.json",
                    "agents.jsonl",
                    "tasks.jsonl",
                    "task_rejects.jsonl",
                ):
                    shutil.copy(prepared / name, output / name)
                started = time.perf_counter()
                summary = synthesise(
                    recipe(output, endpoint, args.tasks, concurrency), ("run",), progress=False
                )
                elapsed = time.perf_counter() - started
                played = summary["trajectories"]["played"]
                rate = 60 * played / elapsed
                baseline = baseline or rate
                calls = sum(role["calls"] for role in summary["models"].values())
                table.add_row(
                    str(concurrency),
                    str(played),
                    str(summary["trajectories"]["kept"]),
                    str(calls),
                    str(summary["trajectories"]["tool_calls"]),
                    f"{elapsed:.0f}",
                    f"{rate:.2f}",
                    f"{rate / baseline:.2f}x",
                )
            console.print(table)


if __name__ == "__main__":
    main()
