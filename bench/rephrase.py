"""`openk2 rephrase` against a local OpenAI-compatible server: documents per minute at 1, 4 and 16 in flight.

The server is `openk2 serve --teacher` (the embedded SmolLM2-135M-Instruct) in its own process on a
loopback port, batching up to 16 requests; the rephraser sends each document's chunk rewrites and judge
calls through the async HTTP back end. Every concurrency level starts from an empty output directory
(no reply cache). The baseline is concurrency 1, measured in the same run.
Usage: python bench/rephrase.py [--input samples/knowledge.jsonl] [--variants 3] [--concurrency 1 4 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table
from serve import served

from openk2.llm import LLMConfig
from openk2.rephrase.config import RephraseConfig
from openk2.rephrase.pipeline import rephrase_corpus

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=REPO / "samples" / "knowledge.jsonl")
    parser.add_argument("--variants", type=int, default=3, help="rephrasings per document (styles differ)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="the server's torch threads")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()

    with served(["--teacher"], args.port, args.max_batch_size, args.threads) as (base_url, model):
        endpoint = LLMConfig(backend="endpoint", base_url=base_url, timeout_s=600)
        table = Table(
            title=f"openk2 rephrase -> openk2 serve --teacher ({model}), {args.input.name} x "
            f"{args.variants} variants, server batch {args.max_batch_size}, {args.threads} thread(s), "
            f"load average {os.getloadavg()[0]:.1f} at start"
        )
        for column in ("in flight", "documents", "accepted", "LLM calls", "seconds", "docs/min", "vs 1"):
            table.add_column(column, justify="right")
        baseline = None
        for concurrency in args.concurrency:
            config = RephraseConfig(variants=args.variants, concurrency=concurrency, rewriter=endpoint)
            with tempfile.TemporaryDirectory() as output:
                result = rephrase_corpus(config, args.input, Path(output), progress=False)
            rate = result.documents_per_minute
            baseline = baseline or rate
            table.add_row(
                str(concurrency),
                str(result.items),
                str(result.accepted),
                str(result.cache_misses),
                f"{result.elapsed_s:.0f}",
                f"{rate:.1f}",
                f"{rate / baseline:.2f}x",
            )
        Console().print(table)


if __name__ == "__main__":
    main()
