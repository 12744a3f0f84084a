"""The `openk2` command: one thin function per verb; the work lives in the stage packages.

Heavy imports (torch, the stages' pipelines) happen inside the verbs, so `openk2 --help` and every verb's
`--help` answer without them.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.markup import escape

from openk2.progress import log_console

console = log_console(stderr=False)
# `openk2.model.PRESETS` by name: the model package imports torch, which `--help` must not (tests/test_cli.py)
PRESET_NAMES = ("tiny", "small", "moonlight-16b-a3b", "kimi-k2")
DEVICE_NAMES = ("auto", "cpu", "cuda")  # openk2.train.device.DeviceName, without importing torch here


def model_info(args: argparse.Namespace) -> None:
    """Total and activated parameters of a preset or a checkpoint's config, counted on the meta device."""
    from rich.table import Table

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
    from openk2.data import tokenize_corpus
    from openk2.train.recipe import load_data_section

    config = load_data_section(args.recipe)
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

    run_pretraining(args.recipe, resume=args.resume, device=args.device).print_once()
    leave_world()


def export(args: argparse.Namespace) -> None:
    """A training checkpoint (sharded by any number of ranks) as config.json + model.safetensors + tokenizer.json."""
    from openk2.train.export import export_checkpoint

    console.print(f"exported {args.checkpoint} to {export_checkpoint(args.checkpoint, args.output)}")


def generate(args: argparse.Namespace) -> None:
    """Continue a text prompt with a checkpoint; with --ids, token ids in and out (a random preset has no
    tokenizer, so it takes ids only)."""
    from openk2.train.device import resolve_device

    if not args.ids:
        if args.checkpoint is None:
            raise ValueError(
                "--preset: a randomly initialised model has no tokenizer; pass --ids with token ids"
            )
        from openk2.train.sample import sample_text

        text = sample_text(
            args.checkpoint,
            args.prompt,
            args.max_new_tokens,
            args.seed,
            args.temperature,
            args.top_p,
            device=resolve_device(args.device),
        )
        print(text)
        return
    import torch

    from openk2.model import K2Config, K2ForCausalLM
    from openk2.train.device import build_on_device

    device = resolve_device(args.device)  # before the checkpoint is read: a missing GPU is refused first
    try:
        prompt = [int(token) for token in args.prompt.split(",")]
    except ValueError:
        raise ValueError(f"--ids: expected comma-separated integers, got {args.prompt!r}") from None
    torch.manual_seed(args.seed)
    if args.checkpoint:
        model = K2ForCausalLM.from_pretrained(args.checkpoint, device=device)
    else:
        model = build_on_device(K2Config.preset(args.preset), device)
    if not all(0 <= token < model.config.vocab_size for token in prompt):
        raise ValueError(f"--ids: every id must be in [0, {model.config.vocab_size})")
    generator = torch.Generator(device).manual_seed(args.seed)
    output = model.eval().generate(
        torch.tensor([prompt], device=device),
        args.max_new_tokens,
        args.temperature,
        args.top_p,
        eos_token_id=model.config.eos_token_id,
        generator=generator,
    )
    print(",".join(str(token) for token in output[0, len(prompt) :].tolist()))


def _human(value: int) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= size:
            return f"{value / size:.3f}{unit}"
    return str(value)


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The `openk2` parser. A verb whose arguments live in its package gets them only when it is `verb`
    (None: every verb), so that its imports (FastAPI for `serve`) wait until that verb is asked for."""
    parser = argparse.ArgumentParser(
        prog="openk2", description="The Kimi K2 training system, runnable on a laptop."
    )
    verbs = parser.add_subparsers(dest="verb", required=True)

    info = verbs.add_parser(
        "model-info", help="parameter counts of a preset or config (no weights allocated)"
    )
    source = info.add_mutually_exclusive_group()
    source.add_argument(
        "--preset", default="tiny", choices=PRESET_NAMES, metavar="PRESET", help=", ".join(PRESET_NAMES)
    )
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
    pre.add_argument(
        "--device",
        choices=DEVICE_NAMES,
        help="replaces the recipe's [train].device (auto: a GPU if torch sees one)",
    )
    pre.set_defaults(run=pretrain)

    exp = verbs.add_parser(
        "export", help="a training checkpoint as one Hugging Face directory (config, safetensors, tokenizer)"
    )
    exp.add_argument("--checkpoint", type=Path, required=True, help="a checkpoints/step_N directory")
    exp.add_argument("--output", type=Path, required=True, help="a new directory to write")
    exp.set_defaults(run=export)

    package_verb = functools.partial(_add_package_verb, verbs, verb)
    package_verb(
        "sft",
        "supervised fine-tuning on chat, trajectory, preference and task data",
        "openk2.sft.cli:add_arguments",
    )
    package_verb(
        "rl",
        "reinforcement learning: K1.5 objective, gym and self-critique rewards, colocated rollouts",
        "openk2.rl.cli:add_arguments",
    )
    package_verb(
        "rephrase",
        "rewrite documents chunk by chunk (knowledge / math notes / translation), verified",
        "openk2.rephrase.cli:add_arguments",
    )

    gen = verbs.add_parser(
        "generate",
        help="continue a text prompt with a checkpoint (token ids with --ids, e.g. a random preset)",
    )
    gen.add_argument("prompt", help="the text to continue; with --ids, comma-separated token ids")
    source = gen.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint",
        type=Path,
        help="a checkpoint directory (a training checkpoint, or config.json + model.safetensors + tokenizer.json)",
    )
    source.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        metavar="PRESET",
        help=f"a randomly initialised model, no tokenizer (needs --ids): {', '.join(PRESET_NAMES)}",
    )
    gen.add_argument(
        "--ids", action="store_true", help="the prompt is token ids, and the continuation is printed as ids"
    )
    gen.add_argument("--max-new-tokens", type=int, default=32)
    gen.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--device", choices=DEVICE_NAMES, default="auto", help="auto: a GPU if torch sees one")
    gen.set_defaults(run=generate)

    package_verb(
        "gym",
        "verifiable-reward environments: list, show tasks, filter by difficulty",
        "openk2.gym.cli:add_arguments",
    )
    package_verb(
        "eval",
        "measure a model on Table-3-style suites under K2's settings; compare result files",
        "openk2.eval.cli:add_arguments",
    )
    package_verb(
        "synth",
        "agentic data synthesis: tool repository, agents and rubric tasks, judged trajectories",
        "openk2.synth.cli:add_arguments",
    )
    package_verb(
        "run",
        "the whole K2 recipe: pre-train, synthesise, SFT, RL, evaluate, one report (skips current stages)",
        "openk2.run.cli:add_arguments",
    )
    package_verb(
        "serve", "OpenAI-compatible server with K2 tool calling", "openk2.serve.cli:add_serve_arguments"
    )
    package_verb(
        "chat",
        "chat in the terminal with a checkpoint, the teacher or an endpoint",
        "openk2.serve.cli:add_chat_arguments",
    )
    return parser


def _add_package_verb(
    verbs: argparse._SubParsersAction, wanted: str | None, name: str, help: str, add_arguments: str
) -> None:
    """`add_arguments` ("module:function") fills in the verb's arguments and sets its `run`."""
    parser = verbs.add_parser(name, help=help)
    if wanted is None or wanted == name:
        module, function = add_arguments.split(":")
        getattr(importlib.import_module(module), function)(parser)


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(verb=argv[0] if argv else "").parse_args(argv)
    run: Callable[[argparse.Namespace], None] = args.run
    try:
        run(args)
    except (ValueError, FileNotFoundError) as error:
        # one line on stderr, never wrapped; "[data].field" is not markup
        log_console().print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)
        sys.exit(2)
