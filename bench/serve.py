"""`openk2 serve` under load: requests/s and p50/p99 latency at 1, 8 and 32 concurrent clients.

The server runs as its own process (the `openk2 serve` code path, `serve_command`) on a loopback
port; clients are the official async openai client, each sending its next request as soon as the
last one returns. Every request is the same chat prompt with a fixed `max_tokens`, so every request
does the same work. Without --checkpoint, a randomly initialised `tiny` preset with the tiny
recipe's tokenizer is written to a temporary directory: it never emits <|im_end|>, so each reply
is exactly max_tokens long.
Usage: python bench/serve.py [--checkpoint DIR] [--max-tokens 32] [--concurrency 1 8 32] [--repeats 3]
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
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import torch
from rich.console import Console
from rich.table import Table

from openk2.model import K2Config, K2ForCausalLM

REPO = Path(__file__).resolve().parent.parent
TINY_TOKENIZER = REPO / "runs" / "tiny" / "data" / "tokenizer.json"
QUESTION = [{"role": "user", "content": "Tell me about the weather in Paris today."}]


def random_tiny_checkpoint(directory: Path) -> Path:
    if not TINY_TOKENIZER.is_file():
        raise SystemExit(f"{TINY_TOKENIZER}: run `openk2 tokenize --recipe recipes/tiny.toml` first")
    torch.manual_seed(0)
    directory.mkdir()
    K2ForCausalLM(K2Config.preset("tiny")).save_pretrained(directory)
    (directory / "tokenizer.json").write_bytes(TINY_TOKENIZER.read_bytes())
    return directory


@contextmanager
def served(model: list[str], port: int, max_batch_size: int, threads: int) -> Iterator[tuple[str, str]]:
    """`openk2 serve` in its own process until the block ends; yields (base URL, served model name).

    `model` is ["--checkpoint", DIR] or ["--teacher"].
    """
    launch = (
        "import argparse, sys; from openk2.serve.cli import add_serve_arguments; "
        "parser = argparse.ArgumentParser(); add_serve_arguments(parser); "
        "args = parser.parse_args(sys.argv[1:]); args.run(args)"
    )
    command = [
        sys.executable, "-c", launch, *model, "--port", str(port),
        "--max-batch-size", str(max_batch_size), "--max-pending", "256", "--threads", str(threads),
    ]  # fmt: skip
    environment = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    server = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        yield f"{base}/v1", wait_until_healthy(base, server)
    finally:
        server.terminate()
        server.wait(timeout=30)


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


async def load(
    base_url: str, model: str, clients: int, requests_per_client: int, max_tokens: int
) -> dict[str, float]:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=300)
    latencies: list[float] = []
    tokens = 0

    async def one_client() -> None:
        nonlocal tokens
        for _ in range(requests_per_client):
            started = time.perf_counter()
            response = await client.chat.completions.create(
                model=model, messages=QUESTION, max_tokens=max_tokens, temperature=0.6, seed=None
            )
            latencies.append(time.perf_counter() - started)
            tokens += response.usage.completion_tokens

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    await client.close()
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "requests_per_s": len(latencies) / elapsed,
        "tokens_per_s": tokens / elapsed,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", type=Path, help="default: a random `tiny` preset, written to a temp dir"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests-per-client", type=int, default=0, help="default: max(4, 64 / clients)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per concurrency; the median run is shown"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temporary:
        checkpoint = args.checkpoint or random_tiny_checkpoint(Path(temporary) / "tiny-random")
        model_arguments = ["--checkpoint", str(checkpoint)]
        with served(model_arguments, args.port, args.max_batch_size, args.threads) as (base_url, model):
            asyncio.run(load(base_url, model, 1, 2, args.max_tokens))  # warm-up
            table = Table(
                title=f"openk2 serve: {model}, max_tokens {args.max_tokens}, max batch {args.max_batch_size}, "
                f"{args.threads} thread(s), load average {os.getloadavg()[0]:.1f} at start, "
                f"median of {args.repeats} runs"
            )
            for column in ("clients", "requests", "requests/s (min-max)", "tokens/s", "p50 ms", "p99 ms"):
                table.add_column(column, justify="right")
            for clients in args.concurrency:
                per_client = args.requests_per_client or max(4, 64 // clients)
                runs = [
                    asyncio.run(load(base_url, model, clients, per_client, args.max_tokens))
                    for _ in range(args.repeats)
                ]
                result = sorted(runs, key=lambda run: run["requests_per_s"])[len(runs) // 2]
                table.add_row(
                    str(clients),
                    str(int(result["requests"])),
                    f"{result['requests_per_s']:.1f} ({min(r['requests_per_s'] for r in runs):.1f}-"
                    f"{max(r['requests_per_s'] for r in runs):.1f})",
                    f"{result['tokens_per_s']:.0f}",
                    f"{result['p50_ms']:.0f}",
                    f"{result['p99_ms']:.0f}",
                )
            Console().print(table)


if __name__ == "__main__":
    main()
