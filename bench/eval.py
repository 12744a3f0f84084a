"""`openk2 eval` against `openk2 serve`: items/s at 1, 4 and 16 items in flight, and the real-model measurement.

    python bench/eval.py throughput [--checkpoint DIR] [--suite ifeval-style] [--n 16] [--max-tokens 48]
    python bench/eval.py teacher [--output runs/eval/teacher] [--max-tokens 512]

`throughput`: the server runs as its own process (`openk2 serve`, batches of up to 16); each
concurrency evaluates the same items into a fresh run directory (no reply cache), so the only
difference is how many items are in flight. The baseline is concurrency 1, measured in the same run.
Without --checkpoint the model is the embedded SmolLM2-135M-Instruct (`--teacher`).

`teacher`: the embedded SmolLM2-135M-Instruct served by `openk2 serve --teacher` and evaluated over
HTTP on HumanEval, the MATH500 subset, IFEval-style and BFCL simple (100 of its cases, once with tools
offered as BFCL offers them and once with the call required), K2's profile except the reply cap
(8,192 tokens of a 135M model on two CPU cores would take hours per suite). A rerun resumes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from rich.console import Console
from rich.table import Table
from serve import served

from openk2.eval import EvalProfile, EvalRequest, evaluate, model_config
from openk2.eval.compare import comparison_table
from openk2.eval.suites import configured_suites

TEACHER_SUITES = "humaneval,math500,ifeval-style,bfcl-simple"
BFCL_CASES = 100  # of BFCL's 400 simple cases: two modes of a slow model on two CPU cores


def run(
    url: str,
    output: Path,
    spec: str,
    overrides: dict,
    concurrency: int,
    profile: EvalProfile,
    per_suite: dict | None = None,
):
    request = EvalRequest(
        model_spec=url,
        model=model_config(url, timeout_s=3600),
        suites=configured_suites(spec, profile, overrides, per_suite),
        output=output,
        profile=profile,
        concurrency=concurrency,
        progress=True,
    )
    return evaluate(request)


def throughput(args: argparse.Namespace) -> None:
    model = ["--checkpoint", str(args.checkpoint)] if args.checkpoint else ["--teacher"]
    overrides = {"n": args.n, "max_tokens": args.max_tokens}
    rows = []
    with served(model, args.port, args.max_batch_size, args.threads) as (url, name):
        for concurrency in args.concurrency:
            with tempfile.TemporaryDirectory() as scratch:
                started = time.perf_counter()
                results = run(url, Path(scratch), args.suite, overrides, concurrency, EvalProfile())
                seconds = time.perf_counter() - started
            items = sum(suite.scored for suite in results.suites)
            rows.append((concurrency, items, seconds, items / seconds))
    baseline = rows[0][3]
    table = Table(
        title=f"openk2 eval over HTTP: {name}, {args.suite} (n={args.n}, max_tokens={args.max_tokens})"
    )
    for column in ("items in flight", "items", "seconds", "items/s", "vs 1 in flight"):
        table.add_column(column, justify="right")
    for concurrency, items, seconds, rate in rows:
        table.add_row(
            str(concurrency), str(items), f"{seconds:.1f}", f"{rate:.3f}", f"{rate / baseline:.2f}x"
        )
    Console().print(table)


def teacher(args: argparse.Namespace) -> None:
    """BFCL simple with the tool call required (constrained decoding, the only way this model calls
    tools) into `<output>-required`, then the four suites as BFCL sends tools (tool_choice auto)."""
    profile = EvalProfile(max_tokens=args.max_tokens)
    bfcl = {"n": BFCL_CASES}
    required = args.output.with_name(f"{args.output.name}-required")
    with served(["--teacher"], args.port, args.max_batch_size, args.threads) as (url, _):
        forced = run(
            url, required, "bfcl-simple", {}, args.concurrency_teacher, profile,
            {"bfcl-simple": bfcl | {"tool_choice": "required"}},
        )  # fmt: skip
        results = run(
            url, args.output, TEACHER_SUITES, {}, args.concurrency_teacher, profile, {"bfcl-simple": bfcl}
        )
    console = Console()
    console.print(comparison_table([results, forced], [args.output.name, required.name], all_metrics=True))
    console.print(f"{args.output}/results.json, {required}/results.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["throughput", "teacher"])
    parser.add_argument(
        "--checkpoint", type=Path, help="throughput: serve this checkpoint instead of the teacher"
    )
    parser.add_argument("--suite", default="ifeval-style")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, help="default: 48 (throughput), 512 (teacher)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--concurrency-teacher", type=int, default=16)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--port", type=int, default=8731)
    parser.add_argument("--output", type=Path, default=Path("runs/eval/teacher"))
    args = parser.parse_args()
    if args.mode == "throughput":
        args.max_tokens = args.max_tokens or 48
        throughput(args)
    else:
        args.max_tokens = args.max_tokens or 512
        teacher(args)


if __name__ == "__main__":
    main()
