"""`openk2 serve` under load: continuous vs static batching, and prefix caching on an agent loop.

The server runs as its own process (`openk2 serve`) on a loopback port; clients are the official
async openai client, each sending its next request as soon as the last one returns.

1. Mixed reply lengths: request i asks for REPLY_LENGTHS[i % 10] tokens (7 × 16, 2 × 64, 1 × 256; the
   end tokens are biased away, so every reply runs its length). Requests/s and p50/p99 latency
   at 1/8/32/64 clients, for `--batching continuous` and `--batching static` (a batch runs until its
   longest request ends, new requests wait: the baseline), in the same run.
2. An agent loop: a 10-turn conversation with tool declarations, each turn resending everything so
   far plus one new exchange; per-turn latency and the prefix-cache hit rate, against a server
   started with `--prefix-cache-tokens 0`.

Without --checkpoint, a randomly initialised `tiny` preset with the tiny recipe's tokenizer is written
to a temporary directory. Usage: python bench/serve.py [--checkpoint DIR] [--concurrency 1 8 32 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import openai
import torch
from rich.console import Console
from rich.table import Table

from openk2.model import K2Config, K2ForCausalLM

REPO = Path(__file__).resolve().parent.parent
TINY_TOKENIZER = REPO / "runs" / "pretrain-tiny" / "data" / "tokenizer.json"
QUESTION = [{"role": "user", "content": "Tell me about the weather in Paris today."}]
REPLY_LENGTHS = [16, 16, 64, 16, 16, 256, 16, 64, 16, 16]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather of a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city"],
        },
    },
}


def random_tiny_checkpoint(directory: Path) -> Path:
    if not TINY_TOKENIZER.is_file():
        raise SystemExit(f"{TINY_TOKENIZER}: run `openk2 tokenize --recipe recipes/pretrain-tiny.toml` first")
    torch.manual_seed(0)
    directory.mkdir()
    K2ForCausalLM(K2Config.preset("tiny")).save_pretrained(directory)
    (directory / "tokenizer.json").write_bytes(TINY_TOKENIZER.read_bytes())
    return directory


@contextmanager
def served(
    model: list[str], port: int, max_batch_size: int, threads: int, extra: tuple[str, ...] = ()
) -> Iterator[tuple[str, str]]:
    """`openk2 serve` in its own process until the block ends; yields (base URL, served model name).

    `model` is ["--checkpoint", DIR] or ["--teacher"].
    """
    command = [
        str(Path(sys.executable).parent / "openk2"), "serve", *model, "--port", str(port),
        "--max-batch-size", str(max_batch_size), "--max-pending", "1024", "--threads", str(threads), *extra,
    ]  # fmt: skip
    environment = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    server = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        yield f"{base}/v1", wait_until_healthy(base, server)
    finally:
        server.terminate()
        server.wait(timeout=60)


def wait_until_healthy(base: str, server: subprocess.Popen[bytes], timeout_s: float = 120.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited: {server.stderr.read().decode() if server.stderr else ''}")
        try:
            return httpx.get(f"{base}/health", timeout=1).json()["model"]
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"server at {base} not healthy after {timeout_s} s")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def mixed_load(
    base_url: str, model: str, clients: int, requests: int, end_ids: dict[str, float]
) -> dict[str, float]:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=600)
    latencies: list[float] = []
    tokens = 0
    next_request = 0

    async def one_client() -> None:
        nonlocal tokens, next_request
        while next_request < requests:
            length = REPLY_LENGTHS[next_request % len(REPLY_LENGTHS)]
            next_request += 1
            started = time.perf_counter()
            response = await client.chat.completions.create(
                model=model,
                messages=QUESTION,
                max_tokens=length,
                temperature=0.6,
                logit_bias=end_ids,
            )
            latencies.append(time.perf_counter() - started)
            tokens += response.usage.completion_tokens

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    await client.close()
    return {
        "requests_per_s": len(latencies) / elapsed,
        "tokens_per_s": tokens / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * percentile(latencies, 0.99),
    }


def agent_turns(turns: int) -> list[list[dict[str, object]]]:
    """The requests of a tool-using agent loop: every turn resends the conversation plus one exchange."""
    dialogue: list[dict[str, object]] = [
        {"role": "system", "content": "You plan trips."},
        {"role": "user", "content": "Plan ten days in France; check the weather of each stop."},
    ]
    cities = ["Paris", "Lyon", "Nice", "Lille", "Nantes", "Bordeaux", "Dijon", "Rouen", "Metz", "Tours"]
    requests = []
    for turn, city in enumerate(cities[:turns]):
        requests.append(list(dialogue))
        call_id = f"functions.get_weather:{turn}"
        dialogue += [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": f'{{"city": "{city}"}}'}}
            ]},
            {"role": "tool", "tool_call_id": call_id, "content": f"sunny, {14 + turn}C"},
        ]  # fmt: skip
    return requests


async def agent_turn(
    client: openai.AsyncOpenAI, model: str, messages: list[dict[str, object]]
) -> tuple[float, float]:
    """(time to the first generated token, time to the end of the reply) of one turn, streamed."""
    started = time.perf_counter()
    first = None
    stream = await client.chat.completions.create(
        model=model,
        messages=messages,
        tools=[WEATHER_TOOL],
        max_tokens=8,
        temperature=0.6,
        stream=True,  # type: ignore[arg-type]
    )
    async for chunk in stream:
        delta = chunk.choices[0].delta if chunk.choices else None
        if (
            first is None
            and delta is not None
            and (delta.content or delta.tool_calls or chunk.choices[0].finish_reason)
        ):
            first = time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started


def gauge(base_url: str, name: str) -> float:
    """One gauge of the server's /metrics."""
    metrics = httpx.get(f"{base_url.removesuffix('/v1')}/metrics").text
    line = next(line for line in metrics.splitlines() if line.startswith(f"{name} "))
    return float(line.split()[1])


def measured_load(
    base_url: str, model: str, clients: int, requests: int, end_ids: dict[str, float]
) -> dict[str, float]:
    """`mixed_load` plus the decoding steps the server ran for it (a measure no CPU speed changes)."""
    steps = gauge(base_url, "openk2:decoding_steps")
    result = asyncio.run(mixed_load(base_url, model, clients, requests, end_ids))
    return {**result, "steps_per_request": (gauge(base_url, "openk2:decoding_steps") - steps) / requests}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", type=Path, help="default: a random `tiny` preset, written to a temp dir"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument(
        "--requests", type=int, default=0, help="requests per level (default: max(20, 4 x clients))"
    )
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--conversations", type=int, default=5, help="runs of the 10-turn agent loop")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per level and server; the median is shown"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    console = Console(width=160)
    with tempfile.TemporaryDirectory() as temporary, ExitStack() as servers:
        checkpoint = args.checkpoint or random_tiny_checkpoint(Path(temporary) / "tiny-random")
        model_arguments = ["--checkpoint", str(checkpoint)]
        # every compared server runs at once; the load goes to one at a time, alternating
        variants = {
            "continuous": ("--batching", "continuous"),
            "static": ("--batching", "static"),
            "no prefix cache": ("--prefix-cache-tokens", "0"),
        }
        urls = {}
        for port, (label, extra) in enumerate(variants.items(), start=args.port):
            urls[label], model = servers.enter_context(
                served(model_arguments, port, args.max_batch_size, args.threads, extra)
            )
        base = urls["continuous"].removesuffix("/v1")
        # both end tokens are biased away, so that every reply runs exactly its length
        end_ids = {}
        for end in ("<|im_end|>", "[EOS]"):
            tokens = httpx.post(f"{base}/tokenize", json={"prompt": end}).json()["tokens"]
            if len(tokens) == 1:
                end_ids[str(tokens[0])] = -100.0
        results: dict[str, dict[int, dict[str, float]]] = {"continuous": {}, "static": {}}
        load_at_start = os.getloadavg()[0]
        for policy in results:
            asyncio.run(mixed_load(urls[policy], model, 2, 4, end_ids))  # warm-up
        for clients in args.concurrency:
            runs: dict[str, list[dict[str, float]]] = {policy: [] for policy in results}
            for _ in range(args.repeats):  # alternating, so that machine noise hits both alike
                for policy in results:
                    requests = args.requests or max(20, 4 * clients)
                    runs[policy].append(measured_load(urls[policy], model, clients, requests, end_ids))
            for policy in results:
                ordered = sorted(runs[policy], key=lambda run: run["requests_per_s"])
                low, high = ordered[0]["requests_per_s"], ordered[-1]["requests_per_s"]
                results[policy][clients] = {**ordered[len(ordered) // 2], "low": low, "high": high}
        table = Table(
            title=f"openk2 serve: {model}, reply lengths {sorted(set(REPLY_LENGTHS))} tokens (7:2:1), max batch "
            f"{args.max_batch_size}, {args.threads} thread(s), median of {args.repeats} alternating runs, load "
            f"average {load_at_start:.1f} at start, {os.getloadavg()[0]:.1f} at the end"
        )
        columns = (
            "clients",
            "batching",
            "requests/s",
            "tokens/s",
            "p50 ms",
            "p99 ms",
            "steps/request",
            "requests/s vs static",
        )
        for column in columns:
            table.add_column(column, justify="right")
        for clients in args.concurrency:
            for policy in results:
                result = results[policy][clients]
                ratio = result["requests_per_s"] / results["static"][clients]["requests_per_s"]
                table.add_row(
                    str(clients), policy, f"{result['requests_per_s']:.2f} ({result['low']:.2f}-{result['high']:.2f})",
                    f"{result['tokens_per_s']:.0f}",
                    f"{result['p50_ms']:.0f}", f"{result['p99_ms']:.0f}", f"{result['steps_per_request']:.1f}", f"{ratio:.2f}x",
                )  # fmt: skip
        console.print(table)
        agent_loop(urls, model, args.conversations, console)


def agent_loop(urls: dict[str, str], model: str, conversations: int, console: Console) -> None:
    """The 10-turn loop on the prefix-cached server and the uncached one, conversation by conversation."""
    compared = {"prefix cache": urls["continuous"], "no prefix cache": urls["no prefix cache"]}

    async def conversation(url: str) -> list[tuple[float, float]]:
        client = openai.AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0, timeout=600)
        timings = [await agent_turn(client, model, messages) for messages in agent_turns(10)]
        await client.close()
        return timings

    before = {
        label: (gauge(url, "openk2:prefilled_tokens"), gauge(url, "openk2:admitted_prompt_tokens"))
        for label, url in compared.items()
    }
    timings: dict[str, list[list[tuple[float, float]]]] = {label: [] for label in compared}
    for _ in range(conversations):
        for label, url in compared.items():
            timings[label].append(asyncio.run(conversation(url)))
    table = Table(
        title=f"10-turn agent loop with a tool, {conversations} conversations alternating, median per turn (ms)"
    )
    table.add_column("turn", justify="right")
    for label in compared:
        table.add_column(f"{label}: first token", justify="right")
        table.add_column(f"{label}: reply", justify="right")
    for turn in range(10):
        cells = []
        for label in compared:
            cells.append(f"{1000 * statistics.median(run[turn][0] for run in timings[label]):.0f}")
            cells.append(f"{1000 * statistics.median(run[turn][1] for run in timings[label]):.0f}")
        table.add_row(str(turn + 1), *cells)
    totals = {
        label: [
            sum(statistics.median(run[turn][part] for run in timings[label]) for turn in range(10))
            for part in (0, 1)
        ]
        for label in compared
    }
    table.add_row("sum", *[f"{1000 * totals[label][part]:.0f}" for label in compared for part in (0, 1)])
    console.print(table)
    for label, url in compared.items():
        computed = gauge(url, "openk2:prefilled_tokens") - before[label][0]
        looked_up = gauge(url, "openk2:admitted_prompt_tokens") - before[label][1]
        console.print(
            f"{label}: {computed:.0f} of {looked_up:.0f} prompt tokens computed ({1 - computed / looked_up:.1%} from the cache)"
        )
    speedup = [totals["no prefix cache"][part] / totals["prefix cache"][part] for part in (0, 1)]
    console.print(
        f"prefix cache vs none: first token {speedup[0]:.2f}x faster, whole turns {speedup[1]:.2f}x"
    )


if __name__ == "__main__":
    main()
