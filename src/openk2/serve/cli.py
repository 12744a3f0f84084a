"""The `openk2 serve` and `openk2 chat` verbs: their arguments and the functions they run.

`add_serve_arguments` / `add_chat_arguments` set `run` to `serve_command` / `chat_command` (see openk2/cli.py).
"""

import argparse
import os
import sys
from pathlib import Path

from openk2.llm import LLM, LLMConfig, ModelUnavailable, SamplingParams, load_llm
from openk2.llm.types import RECOMMENDED_TEMPERATURE


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="a checkpoint directory holding its tokenizer.json")
    source.add_argument("--teacher", action="store_true", help="serve the embedded SmolLM2-135M-Instruct")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch-size", type=int, default=32, help="requests generated at once")
    parser.add_argument("--max-pending", type=int, default=256, help="queued requests before answering 429")
    parser.add_argument(
        "--prefix-cache-tokens", type=int, default=65_536, help="tokens of prefix cache kept (0: none)"
    )
    parser.add_argument(
        "--batching", choices=["continuous", "static"], default="continuous",
        help="static: a batch runs until its longest request ends, finished rows included (bench/serve.py's baseline)",
    )  # fmt: skip
    parser.add_argument(
        "--api-key", default=os.environ.get("OPENK2_API_KEY"),
        help="require `Authorization: Bearer KEY` (default: $OPENK2_API_KEY)",
    )  # fmt: skip
    parser.add_argument("--max-body-mb", type=float, default=8.0, help="larger request bodies get 413")
    parser.add_argument(
        "--drain-timeout", type=float, default=10.0, help="seconds SIGTERM waits for running requests"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.set_defaults(run=serve_command)


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def serve_command(args: argparse.Namespace) -> None:
    """Load the model, then serve the OpenAI API until SIGTERM/SIGINT (which drains within --drain-timeout)."""
    import torch
    import uvicorn

    from openk2.llm.engine import InProcessEngine
    from openk2.serve.app import create_app

    if args.threads:
        torch.set_num_threads(args.threads)
    options = {
        "max_batch_size": args.max_batch_size,
        "max_pending": args.max_pending,
        "prefix_cache_tokens": args.prefix_cache_tokens,
        "policy": args.batching,
    }
    engine: InProcessEngine
    if args.checkpoint:
        from openk2.llm.k2_engine import K2Engine

        engine = K2Engine.from_checkpoint(args.checkpoint, **options)
    else:
        from openk2.llm.teacher import TEACHER_NAME, teacher_checkpoint
        from openk2.llm.transformers_engine import TransformersLLM

        engine = TransformersLLM.from_pretrained(teacher_checkpoint(), name=TEACHER_NAME, **options)
    if args.api_key is None and args.host not in LOOPBACK:
        print(
            f"warning: serving on {args.host} without --api-key: anyone who reaches the port can use the model",
            file=sys.stderr,
        )
    app = create_app(engine, api_key=args.api_key, max_body_bytes=int(args.max_body_mb * 2**20))
    print(f"serving {engine.model_name} at http://{args.host}:{args.port}/v1", file=sys.stderr)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        timeout_graceful_shutdown=int(args.drain_timeout),
    )
    try:
        uvicorn.Server(config).run()
    finally:
        engine.close()


def add_chat_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="a checkpoint directory holding its tokenizer.json")
    source.add_argument("--teacher", action="store_true", help="the embedded SmolLM2-135M-Instruct")
    source.add_argument("--endpoint", help="an OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", help="the endpoint's model name (default: the first it serves)")
    parser.add_argument("--api-key-env", help="environment variable holding the endpoint's API key")
    parser.add_argument("--system", help="a system prompt")
    parser.add_argument("--temperature", type=float, default=RECOMMENDED_TEMPERATURE)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--seed", type=int)
    parser.set_defaults(run=chat_command)


def chat_llm(args: argparse.Namespace) -> LLM:
    if args.checkpoint:
        return load_llm(LLMConfig(backend="checkpoint", checkpoint=args.checkpoint))
    if args.endpoint:
        config = LLMConfig(
            backend="endpoint", base_url=args.endpoint, model=args.model, api_key_env=args.api_key_env
        )
        return load_llm(config)
    return load_llm(LLMConfig(backend="teacher"))


def chat_command(args: argparse.Namespace) -> None:
    """A terminal conversation on stdin/stdout."""
    from openk2.serve.terminal_chat import run_terminal_chat

    sampling = SamplingParams(
        temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens, seed=args.seed
    )
    try:
        run_terminal_chat(chat_llm(args), sampling, sys.stdin, sys.stdout, system=args.system)
    except ModelUnavailable as error:
        raise ValueError(f"cannot reach the model ({error}); is `openk2 serve` running there?") from None
