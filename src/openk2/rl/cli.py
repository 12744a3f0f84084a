"""`openk2 rl --recipe R [--resume]`: the verb's arguments and what it prints."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recipe",
        type=Path,
        required=True,
        help="an RL recipe TOML ([run] [init] [rl] [[rl.tasks]] [optim] ...)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from openk2.progress import log_console
    from openk2.rl.trainer import rl
    from openk2.train.world import join_world, leave_world

    summary = rl(args.recipe, resume=args.resume)
    last = summary.last
    reward = (
        "no iteration run" if last is None or last.reward_mean is None else f"reward {last.reward_mean:.3f}"
    )
    if join_world().is_main:  # the closing line once, not once per torchrun rank
        log_console(stderr=False).print(
            f"{summary.iterations} iterations, {reward}; checkpoint {summary.checkpoint}; report {summary.report}",
            highlight=False,
            markup=False,
        )
    leave_world()
