"""`openk2 synth --recipe R [tools | tasks | run]`: the stages of K2 report Fig. 8, or all of them.

    openk2 synth --recipe recipes/synth-tiny.toml            # tools, tasks, trajectories, summary, report
    openk2 synth --recipe recipes/synth-tiny.toml tools      # stage 1 only (then `tasks`, then `run`)

A rerun into the same output directory resumes: finished stages are kept, finished episodes are not
replayed, and every model reply comes from the run's cache. Nothing heavy is imported before a verb runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", type=Path, required=True, help="a recipe TOML with a [synth] section")
    parser.add_argument(
        "--output", type=Path, help="the run directory (default: the recipe's [synth].output)"
    )
    parser.add_argument("--concurrency", type=int, help="episodes and generator calls in flight")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or lines")
    parser.add_argument(
        "stage",
        nargs="?",
        choices=["tools", "tasks", "run"],
        help="tools: the repository; tasks: agents and rubric tasks; run: trajectories (default: all three)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from openk2.synth.pipeline import STAGES, SynthStopped, synthesise
    from openk2.synth.recipe import load_synth_recipe

    recipe = load_synth_recipe(args.recipe, {"output": args.output, "concurrency": args.concurrency})
    stages = STAGES if args.stage is None else (args.stage,)
    console = Console()
    try:
        summary = synthesise(recipe, stages, progress=not args.no_progress)
    except SynthStopped as stopped:
        console.print(f"[red]error:[/red] {escape(str(stopped))}")
        sys.exit(1)
    tools, tasks, trajectories = summary["tools"], summary["tasks"], summary["trajectories"]
    console.print(
        f"tools: {tools['real']} real, {tools['synthetic']} synthetic in {tools['categories']} categories; "
        f"tasks: {tasks['tasks']} for {tasks['agents']} agents; trajectories: {trajectories['kept']} kept, "
        f"{trajectories['rejected']} rejected of {trajectories['tasks']}",
        highlight=False,
    )
    console.print(
        f"{recipe.output}: tools.jsonl tasks.jsonl trajectories.jsonl rejects.jsonl summary.json report.html"
    )
