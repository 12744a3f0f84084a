"""`openk2 run --recipe R`: the whole K2 recipe in one command (openk2.run.pipeline).

    openk2 run --recipe recipes/tiny.toml      # plan, stages, runs/tiny/report.html, how to serve the result

A rerun skips the stages whose output is current, resumes an interrupted one and redoes the ones whose
settings or inputs changed. Nothing heavy is imported before the verb runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.markup import escape

from openk2.progress import log_console

INTERRUPTED = 130  # the shell's exit status for a command stopped by Ctrl-C (128 + SIGINT)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recipe", type=Path, required=True, help="a pipeline recipe TOML (recipes/tiny.toml)"
    )
    parser.add_argument("--plan", action="store_true", help="print the plan and stop (validates the recipe)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from openk2.run.pipeline import StageFailed, plan_lines, run_stages, serve_lines
    from openk2.run.recipe import load_pipeline_recipe
    from openk2.run.report import outcomes_final_checkpoint, write_run_report
    from openk2.run.stages import plan

    started = time.monotonic()
    recipe = load_pipeline_recipe(args.recipe)
    stages, not_run = plan(recipe)
    console = log_console(stderr=False)
    for line in plan_lines(recipe, stages, not_run):
        console.print(line, highlight=False, markup=False)
    if args.plan:
        return
    try:
        outcomes = run_stages(stages, console)
    except StageFailed as failure:
        log_console().print(f"[red]error:[/red] {escape(str(failure))}", soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        log_console().print(
            f"interrupted; `openk2 run --recipe {args.recipe}` resumes (finished stages are skipped)",
            highlight=False,
            markup=False,
        )
        sys.exit(INTERRUPTED)
    report = write_run_report(recipe, outcomes, not_run, time.monotonic() - started)
    ran = sum(outcome.action != "skipped" for outcome in outcomes)
    console.print(
        f"{ran} stages run, {len(outcomes) - ran} skipped as current; report: {report}", highlight=False
    )
    final = outcomes_final_checkpoint(outcomes)
    for line in serve_lines(final) if final else []:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
