"""`openk2 sft --recipe R [--resume] [--strict]`: the verb's arguments and what it prints."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recipe", type=Path, required=True, help="an SFT recipe TOML ([run] [init] [sft] [optim] ...)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    parser.add_argument(
        "--strict", action="store_true", help="refuse the run on any unusable record instead of skipping it"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from openk2.sft.run import sft
    from openk2.train.world import leave_world

    result = sft(args.recipe, resume=args.resume, strict=args.strict)
    data = result.data
    result.run.print_once(
        f"; skipped {data.skipped}, truncated {data.truncated}, too long {data.too_long} conversations"
    )
    leave_world()
