"""The `openk2 rephrase` verb: its arguments and the function it runs.

Only the prompt library's modes are read to build the arguments; the pipeline (and the models it loads)
is imported when the verb runs, so `openk2 rephrase --help` stays fast.
"""

import argparse
import shlex
import sys
from pathlib import Path

from rich.markup import escape

from openk2.progress import log_console
from openk2.rephrase.prompts import MODES

INTERRUPTED = 130  # the shell's exit status for a command stopped by Ctrl-C (128 + SIGINT)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", type=Path, help="a recipe TOML with a [rephrase] section (else defaults)")
    parser.add_argument(
        "--input", type=Path, required=True, help="a .jsonl (field 'text', optional 'id') or .txt"
    )
    parser.add_argument("--output", type=Path, required=True, help="the run directory; a rerun resumes it")
    parser.add_argument("--mode", choices=MODES)
    parser.add_argument("--to", metavar="LANG", help="translate into LANG (implies --mode translate)")
    parser.add_argument("--variants", type=int, help="rephrasings per document, each in another style")
    parser.add_argument("--concurrency", type=int, help="documents in flight at once")
    parser.add_argument("--chunk-tokens", type=int, help="about this many tokens per chunk (default 256)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    """Chunk-wise autoregressive rephrasing with fidelity checks (the recipe's [rephrase] section + flags)."""
    from openk2.rephrase.config import load_rephrase_config
    from openk2.rephrase.pipeline import RephraseStopped, rephrase_corpus
    from openk2.rephrase.summary import print_summary

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
    console = log_console(stderr=False)
    try:
        summary = rephrase_corpus(config, args.input, args.output)
    except RephraseStopped as stopped:
        log_console().print(f"[red]error:[/red] {escape(str(stopped))}", soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt as interrupt:  # also while the model loads, before any document started
        log_console().print(
            f"{interrupt or 'interrupted before any document finished'}; resume with: "
            f"{shlex.join(['openk2', *sys.argv[1:]])}",
            highlight=False,
            markup=False,
        )
        sys.exit(INTERRUPTED)
    print_summary(summary, console)
    console.print(
        f"{args.output}: rephrased.jsonl (the corpus for `openk2 tokenize`), rejects.jsonl, summary.json"
    )
