"""`openk2 synth --recipe R [tools | tasks | run]`: the stages of K2 report Fig. 8, or all of them.

    openk2 synth --recipe recipes/synth-tiny.toml            # tools, tasks, trajectories, summary, report
    openk2 synth --recipe recipes/synth-tiny.toml tools      # stage 1 only (then `tasks`, then `run`)

A rerun into the same output directory resumes: finished stages are kept, finished episodes are not
replayed, and every model reply comes from the run's cache. Nothing heavy is imported before a verb runs.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from rich.markup import escape

from openk2.progress import log_console

INTERRUPTED = 130  # the shell's exit status for a command stopped by Ctrl-C (128 + SIGINT)


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
    console = log_console(stderr=False)
    try:
        summary = synthesise(recipe, stages, progress=not args.no_progress)
    except SynthStopped as stopped:
        log_console().print(f"[red]error:[/red] {escape(str(stopped))}", soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:  # finished episodes are committed; the rerun plays the rest
        log_console().print(
            f"interrupted; resume with: {shlex.join(['openk2', *sys.argv[1:]])}",
            highlight=False,
            markup=False,
        )
        sys.exit(INTERRUPTED)
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
