"""`openk2 eval`: evaluate a model on suites, compare result files, list the suites.

    openk2 eval --model runs/sft/final --suite core --output runs/eval/sft
    openk2 eval --model teacher --suite humaneval,math500 --max-tokens 512 --n 20
    openk2 eval --model http://127.0.0.1:8000/v1 --suite bfcl-simple --set bfcl-simple.n=50
    openk2 eval compare runs/eval/pretrain runs/eval/sft runs/eval/rl --html stages.html
    openk2 eval list

A rerun with the same --output resumes. Nothing here imports torch until a model is loaded.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from openk2.gym.cli import parse_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="eval_action", metavar="{compare,list}")
    compare = actions.add_parser("compare", help="result files side by side (Table 3 layout)")
    compare.add_argument("results", nargs="+", type=Path, help="results.json files or their run directories")
    compare.add_argument("--html", type=Path, help="also write the table as an HTML page")
    compare.add_argument(
        "--all-metrics", action="store_true", help="a row for every metric, not only each suite's headline"
    )
    actions.add_parser("list", help="the suites: area, data source and licence, metric, defaults")

    parser.add_argument("--model", help="a checkpoint directory, 'teacher', or an OpenAI-compatible base URL")
    parser.add_argument("--endpoint-model", help="the endpoint's model name (default: the first it serves)")
    parser.add_argument("--api-key-env", help="the environment variable holding the endpoint's API key")
    parser.add_argument("--suite", help="suites and groups, comma-separated, e.g. core or humaneval,math500")
    parser.add_argument(
        "--output", type=Path, help="the run directory (default runs/eval/<model>); reruns resume"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="items in flight at once")
    parser.add_argument(
        "--split", choices=["test", "all"], help="the gym's held-out split (default) or every task"
    )
    parser.add_argument("--n", type=int, help="at most this many tasks per suite")
    parser.add_argument("--samples", type=int, help="samples per task for every suite (k of Avg@k, pass@k)")
    parser.add_argument(
        "--max-tokens", type=int, help="the reply cap (K2: 8192), clipped to the model's context"
    )
    parser.add_argument("--temperature", type=float, help="the sampling temperature of every suite")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SUITE.FIELD=VALUE",
        help="a suite setting, e.g. aime2024.samples=8 or logic.env.difficulty=1",
    )
    parser.add_argument(
        "--user-model", help="the tau2 user simulator and judge (default: the evaluated model)"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per endpoint request")
    parser.add_argument("--max-retries", type=int, default=2, help="endpoint retries before the run stops")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or lines")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from openk2.gym import MissingDependency
    from openk2.gym.sandbox import SandboxUnavailable

    try:
        if args.eval_action == "compare":
            from openk2.eval.compare import compare

            compare(args.results, args.html, args.all_metrics)
        elif args.eval_action == "list":
            list_suites()
        else:
            evaluate_command(args)
    except (MissingDependency, SandboxUnavailable) as error:
        raise ValueError(str(error)) from None  # the CLI reports ValueErrors as one-line errors


def list_suites() -> None:
    from rich.console import Console
    from rich.table import Table

    from openk2.eval.profile import EvalProfile
    from openk2.eval.suites import AREAS, GROUPS, SUITES

    profile = EvalProfile()
    table = Table(title="openk2 eval suites (K2 report §4, Table 3 areas)")
    for column in ("suite", "area", "benchmark", "metric", "defaults", "data (licence)"):
        table.add_column(column)
    for suite in SUITES.values():
        settings = suite.settings(profile)
        defaults = f"{settings.samples} × T={settings.temperature:g}, split {settings.split}"
        table.add_row(
            suite.name,
            AREAS[suite.area],
            suite.benchmark,
            suite.metric_label(settings),
            defaults,
            suite.source,
        )
    console = Console()
    console.print(table)
    console.print("groups: " + "; ".join(f"{name} = {', '.join(names)}" for name, names in GROUPS.items()))


def suite_overrides(
    args: argparse.Namespace, names: list[str]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(--n/--samples/--max-tokens/--temperature for every suite, --set SUITE.FIELD=VALUE per suite)."""
    common = {
        field: value
        for field, value in (
            ("n", args.n),
            ("samples", args.samples),
            ("max_tokens", args.max_tokens),
            ("temperature", args.temperature),
        )
        if value is not None
    }
    per_suite: dict[str, dict[str, Any]] = {}
    for key, value in parse_settings(args.set).items():
        suite, separator, field = key.partition(".")
        if not separator or suite not in names:
            raise ValueError(f"--set {key}: expected SUITE.FIELD=VALUE with SUITE one of {', '.join(names)}")
        overrides = per_suite.setdefault(suite, {})
        if field.startswith("env."):
            overrides.setdefault("env", {})[field.removeprefix("env.")] = value
        else:
            overrides[field] = value
    return common, per_suite


def default_output(spec: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", spec.rstrip("/").split("://")[-1]).strip("-")
    return Path("runs") / "eval" / (Path(spec).name if Path(spec).is_dir() else slug)


def evaluate_command(args: argparse.Namespace) -> None:
    from rich.markup import escape

    from openk2.eval.compare import comparison_table
    from openk2.eval.model import model_config
    from openk2.eval.profile import EvalProfile
    from openk2.eval.results import HTML_FILE, RESULTS_FILE
    from openk2.eval.runner import EvalRequest, EvalStopped, evaluate
    from openk2.eval.suites import configured_suites, resolve_suites
    from openk2.progress import log_console

    if not args.model:
        raise ValueError("--model: required (a checkpoint directory, 'teacher', or an endpoint URL)")
    if not args.suite:
        raise ValueError(
            "--suite: required (suites and groups, comma-separated; `openk2 eval list` shows them)"
        )
    if args.concurrency < 1:
        raise ValueError(f"--concurrency: expected >= 1, got {args.concurrency}")
    profile = EvalProfile(**({"split": args.split} if args.split else {}))
    names = [suite.name for suite in resolve_suites(args.suite)]
    common, per_suite = suite_overrides(args, names)
    chosen = configured_suites(args.suite, profile, common, per_suite)
    endpoint_options = {"timeout_s": args.timeout, "max_retries": args.max_retries}
    request = EvalRequest(
        model_spec=args.model,
        model=model_config(args.model, args.endpoint_model, args.api_key_env, **endpoint_options),
        suites=chosen,
        output=args.output or default_output(args.model),
        profile=profile,
        concurrency=args.concurrency,
        helper_spec=args.user_model,
        helper=model_config(args.user_model, **endpoint_options) if args.user_model else None,
        progress=not args.no_progress,
    )
    console = log_console(stderr=False)
    try:
        results = evaluate(request)
    except EvalStopped as stopped:  # an error, so on stderr as every CLI error
        log_console().print(f"[red]stopped:[/red] {escape(str(stopped))}", highlight=False, soft_wrap=True)
        sys.exit(3)
    console.print(comparison_table([results]))
    console.print(f"{request.output / RESULTS_FILE}, {request.output / HTML_FILE}")
