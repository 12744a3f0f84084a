"""The `openk2` command: one thin function per verb; the work lives in the stage packages."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from openk2.eval.cli import add_arguments as add_eval_arguments
from openk2.eval.cli import run as run_eval
from openk2.gym.cli import add_arguments as add_gym_arguments
from openk2.gym.cli import run as run_gym
from openk2.rephrase.prompts import MODES
from openk2.serve.cli import add_chat_arguments, add_serve_arguments

console = Console()


def model_info(args: argparse.Namespace) -> None:
    """Total and activated parameters of a preset or a checkpoint's config, counted on the meta device."""
    from openk2.model import K2Config, count_parameters

    config = K2Config.from_pretrained(args.config) if args.config else K2Config.preset(args.preset)
    counts = count_parameters(config)
    table = Table(title=f"OpenK2 model: {args.config or args.preset}")
    table.add_column("parameters")
    table.add_column("count", justify="right")
    table.add_column("", justify="right")
    for label, value in [
        ("total", counts.total),
        ("total without input embedding", counts.total_without_embedding),
        ("activated per token", counts.activated),
        ("activated without input embedding", counts.activated_without_embedding),
        ("input embedding", counts.input_embedding),
        ("lm_head", counts.lm_head),
    ]:
        table.add_row(label, f"{value:,}", _human(value))
    console.print(table)
    shape = (
        f"{config.num_hidden_layers} layers ({config.first_k_dense_replace} dense), hidden {config.hidden_size}, "
        f"{config.num_attention_heads} heads, MLA q_lora {config.q_lora_rank} kv_lora {config.kv_lora_rank}, "
        f"{config.n_routed_experts} experts top-{config.num_experts_per_tok} + {config.n_shared_experts} shared, "
        f"vocab {config.vocab_size}"
    )
    console.print(shape)


def tokenize(args: argparse.Namespace) -> None:
    """Corpus -> K2-style BPE tokenizer + train/val token shards + manifest (the recipe's [data] section)."""
    from openk2.data import load_data_config, tokenize_corpus

    config = load_data_config(args.recipe)
    manifest = tokenize_corpus(config)
    console.print(
        f"{config.shards_dir}: vocab {manifest.vocab_size}, train {manifest.train.num_tokens:,} tokens "
        f"({manifest.train.num_documents} docs), val {manifest.val.num_tokens:,} tokens "
        f"({manifest.val.num_documents} docs)"
    )


def pretrain(args: argparse.Namespace) -> None:
    """MuonClip pre-training from a recipe; --resume continues from the newest complete checkpoint, bit-exactly."""
    from openk2.train import pretrain as run_pretraining
    from openk2.train.world import leave_world

    summary = run_pretraining(args.recipe, resume=args.resume)
    console.print(
        f"{summary.steps} steps, {summary.tokens_seen:,} tokens: loss {summary.final_loss}, "
        f"val {summary.final_val_loss}; {summary.checkpoint}; {summary.report}"
    )
    leave_world()


def rephrase(args: argparse.Namespace) -> None:
    """Chunk-wise autoregressive rephrasing with fidelity checks (the recipe's [rephrase] section + flags)."""
    from openk2.rephrase import RephraseStopped, load_rephrase_config, print_summary, rephrase_corpus

    if args.to is not None and args.mode not in (None, "translate"):
        raise ValueError(f"--to: the target language applies to --mode translate, not {args.mode}")
    overrides = {
        "mode": "translate" if args.to is not None else args.mode,
        "language": args.to,
        "variants": args.variants,
        "concurrency": args.concurrency,
        "chunk_tokens": args.chunk_tokens,
    }
    config = load_rephrase_config(args.recipe, overrides)
    try:
        summary = rephrase_corpus(config, args.input, args.output)
    except RephraseStopped as stopped:
        console.print(f"[red]error:[/red] {escape(str(stopped))}")
        sys.exit(1)
    print_summary(summary, console)
    console.print(
        f"{args.output}: rephrased.jsonl (the corpus for `openk2 tokenize`), rejects.jsonl, summary.json"
    )


def generate(args: argparse.Namespace) -> None:
    """Generate from a checkpoint (or a randomly initialised preset) given prompt token ids."""
    from openk2.model import K2Config, K2ForCausalLM

    torch.manual_seed(args.seed)
    if args.checkpoint:
        model = K2ForCausalLM.from_pretrained(args.checkpoint)
    else:
        model = K2ForCausalLM(K2Config.preset(args.preset))
    try:
        prompt = [int(token) for token in args.prompt_ids.split(",")]
    except ValueError:
        raise SystemExit(
            f"--prompt-ids: expected comma-separated integers, got {args.prompt_ids!r}"
        ) from None
    if not all(0 <= token < model.config.vocab_size for token in prompt):
        raise SystemExit(f"--prompt-ids: every id must be in [0, {model.config.vocab_size})")
    generator = torch.Generator().manual_seed(args.seed)
    output = model.eval().generate(
        torch.tensor([prompt]), args.max_new_tokens, args.temperature, args.top_p, generator=generator
    )
    console.print(f"prompt:    {prompt}")
    console.print(f"generated: {output[0, len(prompt) :].tolist()}")


def _human(value: int) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= size:
            return f"{value / size:.3f}{unit}"
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openk2", description="The Kimi K2 training system, runnable on a laptop."
    )
    verbs = parser.add_subparsers(dest="verb", required=True)

    info = verbs.add_parser(
        "model-info", help="parameter counts of a preset or config (no weights allocated)"
    )
    source = info.add_mutually_exclusive_group()
    source.add_argument("--preset", default="tiny")
    source.add_argument("--config", help="a directory holding a config.json")
    info.set_defaults(run=model_info)

    tok = verbs.add_parser("tokenize", help="train the K2-style BPE tokenizer and write token shards")
    tok.add_argument("--recipe", type=Path, required=True, help="a recipe TOML with a [data] section")
    tok.set_defaults(run=tokenize)

    pre = verbs.add_parser(
        "pretrain", help="MuonClip pre-training (WSD, expert balancing, checkpoints, report)"
    )
    pre.add_argument(
        "--recipe", type=Path, required=True, help="a recipe TOML ([run] [model] [data] [optim] ...)"
    )
    pre.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    pre.set_defaults(run=pretrain)

    rep = verbs.add_parser(
        "rephrase", help="rewrite documents chunk by chunk (knowledge / math notes / translation), verified"
    )
    rep.add_argument("--recipe", type=Path, help="a recipe TOML with a [rephrase] section (else defaults)")
    rep.add_argument(
        "--input", type=Path, required=True, help="a .jsonl (field 'text', optional 'id') or .txt"
    )
    rep.add_argument("--output", type=Path, required=True, help="the run directory; a rerun resumes it")
    rep.add_argument("--mode", choices=MODES)
    rep.add_argument("--to", metavar="LANG", help="translate into LANG (implies --mode translate)")
    rep.add_argument("--variants", type=int, help="rephrasings per document, each in another style")
    rep.add_argument("--concurrency", type=int, help="documents in flight at once")
    rep.add_argument("--chunk-tokens", type=int, help="about this many tokens per chunk (default 256)")
    rep.set_defaults(run=rephrase)

    gen = verbs.add_parser("generate", help="generate token ids from a checkpoint or a random preset")
    source = gen.add_mutually_exclusive_group()
    source.add_argument("--preset", default="tiny")
    source.add_argument("--checkpoint", help="a checkpoint directory (HF layout)")
    gen.add_argument("--prompt-ids", required=True, help="comma-separated token ids")
    gen.add_argument("--max-new-tokens", type=int, default=16)
    gen.add_argument("--temperature", type=float, default=0.0)
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--seed", type=int, default=0)
    gen.set_defaults(run=generate)

    gym = verbs.add_parser(
        "gym", help="verifiable-reward environments: list, show tasks, filter by difficulty"
    )
    add_gym_arguments(gym)
    gym.set_defaults(run=run_gym)

    evaluation = verbs.add_parser(
        "eval", help="measure a model on Table-3-style suites (K2 settings); compare result files"
    )
    add_eval_arguments(evaluation)
    evaluation.set_defaults(run=run_eval)

    add_serve_arguments(verbs.add_parser("serve", help="OpenAI-compatible server with K2 tool calling"))
    add_chat_arguments(
        verbs.add_parser("chat", help="chat in the terminal with a checkpoint, the teacher or an endpoint")
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], None] = args.run
    try:
        run(args)
    except (ValueError, FileNotFoundError) as error:
        console.print(f"[red]error:[/red] {escape(str(error))}")  # "[data].field" is not markup
        sys.exit(2)
