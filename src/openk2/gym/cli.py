"""`openk2 gym list | show | filter`: the environments, their tasks, and the difficulty filter.

    openk2 gym list
    openk2 gym show math --split test -n 3 --set difficulty=1
    openk2 gym filter math --split train -n 200 --samples 8 --checkpoint runs/sft/final --output moderate.jsonl

`--set name=value` passes an environment setting (values are read as JSON when they parse, e.g.
`--set sources='["arithmetic"]'`). Nothing here imports torch until a model is loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from openk2.gym.environment import ENVIRONMENTS, MissingDependency, environment_class, make
from openk2.gym.records import Task, read_records
from openk2.gym.sandbox import SandboxUnavailable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="gym_action", required=True)
    actions.add_parser("list", help="the environments, their task sources and licences")

    show = actions.add_parser("show", help="print tasks of an environment")
    _task_arguments(show)
    show.add_argument("--json", action="store_true", help="one Task record per line (JSONL)")

    filtering = actions.add_parser("filter", help="keep tasks of moderate difficulty by a model's pass@k")
    _task_arguments(filtering)
    filtering.add_argument(
        "--tasks", type=Path, help="a task JSONL file to filter instead of generating tasks"
    )
    filtering.add_argument("--output", type=Path, required=True, help="the filtered task file (JSONL)")
    model = filtering.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", type=Path, help="an OpenK2 checkpoint directory")
    model.add_argument("--teacher", action="store_true", help="the embedded SmolLM2-135M-Instruct")
    model.add_argument("--endpoint", help="an OpenAI-compatible base URL")
    filtering.add_argument("--model", help="the endpoint's model name")
    filtering.add_argument("--samples", type=int, default=8, help="rollouts per task (the k of pass@k)")
    filtering.add_argument("--min-passes", type=int, default=1)
    filtering.add_argument("--max-passes", type=int, help="default: samples - 1")
    filtering.add_argument("--temperature", type=float, default=1.0)
    filtering.add_argument("--max-tokens", type=int, default=512)
    filtering.add_argument("--concurrency", type=int, default=8, help="rollouts in flight")
    filtering.add_argument(
        "--helper", choices=["teacher", "policy"], help="the model for judges and user simulators, if needed"
    )
    parser.set_defaults(run=run)


def _task_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("env", choices=list(ENVIRONMENTS), metavar="ENV", help=", ".join(ENVIRONMENTS))
    parser.add_argument("--split", choices=["train", "test"], default="train")
    parser.add_argument("-n", type=int, help="how many tasks (default: the environment's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="an environment setting"
    )


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name:
            raise ValueError(f"--set: expected NAME=VALUE, got {pair!r}")
        try:
            settings[name] = json.loads(value)
        except json.JSONDecodeError:
            settings[name] = value
    return settings


def run(args: argparse.Namespace) -> None:
    action = {"list": list_environments, "show": show_tasks, "filter": filter_tasks}[args.gym_action]
    try:
        action(args)
    except (MissingDependency, SandboxUnavailable) as error:
        raise ValueError(str(error)) from None  # the CLI reports ValueErrors as one-line errors


def list_environments(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="OpenK2 gym environments (K2 report §3.2.1)")
    for column in ("env", "kind", "what", "sources (licence)"):
        table.add_column(column)
    for name in ENVIRONMENTS:
        environment = environment_class(name)
        sources = "\n".join(f"{source.origin} ({source.licence})" for source in environment.sources)
        table.add_row(name, environment.kind, environment.summary, sources)
    Console().print(table)


def show_tasks(args: argparse.Namespace) -> None:
    env = make(args.env, **parse_settings(args.set))
    try:
        tasks = env.tasks(args.split, args.n, args.seed)
    finally:
        asyncio.run(env.aclose())
    for task in tasks:
        if args.json:
            print(task.model_dump_json(exclude_none=True))
            continue
        print(f"== {task.id} ({task.kind}, {task.split})")
        for message in task.messages:
            print(f"[{message.role}] {_shortened(message.text)}")
        if task.tools:
            print(f"[tools] {', '.join(tool.function.name for tool in task.tools)}")
        if "answer" in task.verification:
            print(f"[answer] {_shortened(str(task.verification['answer']))}")
        print()


def _shortened(text: str, limit: int = 600) -> str:
    return text if len(text) <= limit else text[:limit] + f" … ({len(text)} characters)"


def filter_tasks(args: argparse.Namespace) -> None:
    from openk2.gym.difficulty import FilterSettings, filter_by_difficulty
    from openk2.llm import LLMConfig, SamplingParams, load_concurrent_llm
    from openk2.progress import ProgressReport, log_console

    if args.checkpoint:
        config = LLMConfig(backend="checkpoint", checkpoint=args.checkpoint)
    elif args.endpoint:
        config = LLMConfig(backend="endpoint", base_url=args.endpoint, model=args.model)
    else:
        config = LLMConfig(backend="teacher")
    settings = FilterSettings(
        samples=args.samples,
        min_passes=args.min_passes,
        max_passes=args.max_passes,
        max_concurrency=args.concurrency,
    )
    env_settings = parse_settings(args.set)
    llm = load_concurrent_llm(config, args.concurrency)
    helper = llm
    try:
        if args.helper:
            if args.helper == "teacher":
                helper = load_concurrent_llm(LLMConfig(backend="teacher"), args.concurrency)
            fields = environment_class(args.env).Settings.model_fields
            env_settings |= {name: helper for name in ("judge", "user_llm") if name in fields}
        env = make(args.env, **env_settings)
        tasks: list[Task] = (
            read_records(args.tasks, Task) if args.tasks else env.tasks(args.split, args.n, args.seed)
        )
        sampling = SamplingParams(temperature=args.temperature, max_tokens=args.max_tokens)
        report = ProgressReport("measuring", len(tasks), "tasks", log_console())

        def progress(done: int, total: int) -> None:
            report.update(done)

        async def measure() -> Any:
            try:
                with report:
                    return await filter_by_difficulty(
                        env, tasks, llm, sampling, args.output, settings, progress
                    )
            finally:
                await env.aclose()

        summary = asyncio.run(measure())
    finally:
        llm.close()
        if helper is not llm:
            helper.close()
    print(
        f"{summary.output}: kept {summary.kept} of {summary.measured} tasks "
        f"({summary.with_errors} left out for errors); per-task pass counts in {summary.output}.progress.jsonl"
    )
