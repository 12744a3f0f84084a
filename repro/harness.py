"""What every reproduction shares: the command line, the Shakespeare shards, runs on the project's own
training loop, seeds, and the plot and JSON a script leaves behind.

Every training run is `openk2.train.train(pretraining_stage(recipe))` with a recipe built in Python: the same
loop, optimizer and metrics as `openk2 pretrain`, without its report (metrics.jsonl is what is read). A run
directory that already holds a finished run of the same recipe is read back instead of trained again (so an
interrupted script continues with the run it was in); a run that did not finish is trained again from its
start.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from openk2.data import DataConfig
from openk2.data.corpus import EMBEDDED_SHAKESPEARE, corpus_files
from openk2.data.tokenize_corpus import tokenize_corpus
from openk2.io import atomic_write_text
from openk2.recipes import validate_recipe
from openk2.train.metrics import METRICS_FILE, StepRecord, read_metrics
from openk2.train.pretraining import pretraining_stage
from openk2.train.recipe import Recipe

DONE_FILE = "repro_run.json"  # written after a run finished: its recipe and wall time
QUICK_PLAYS = 3  # the reduced form tokenizes three plays only
QUICK_VOCAB = 768  # 512 BPE ids above the bytes + K2's 256 reserved tokens


@dataclass(frozen=True)
class Corpus:
    """Token shards of the embedded Shakespeare corpus at one vocabulary size."""

    shards_dir: Path
    vocab_size: int
    corpus: str | list[str]
    val_fraction: float

    def data_section(self, seq_len: int) -> dict[str, Any]:
        return dict(
            corpus=self.corpus,
            vocab_size=self.vocab_size,
            val_fraction=self.val_fraction,
            seed=0,
            shards_dir=str(self.shards_dir),
            seq_len=seq_len,
        )


def shakespeare(data_root: Path, vocab_size: int, quick: bool) -> Corpus:
    """The embedded corpus (35 First Folio plays, 1.4M tokens at vocab 2048) or, quick, its first plays."""
    if quick:
        vocab_size = QUICK_VOCAB
        corpus: str | list[str] = [str(f.path) for f in corpus_files(EMBEDDED_SHAKESPEARE)[:QUICK_PLAYS]]
    else:
        corpus = EMBEDDED_SHAKESPEARE
    name = f"shakespeare-{'quick' if quick else 'full'}-v{vocab_size}"
    return tokenized(data_root / name, corpus, vocab_size)


def tokenized(
    shards_dir: Path, corpus: str | list[str], vocab_size: int, val_fraction: float = 0.05
) -> Corpus:
    """`openk2 tokenize` of `corpus` into `shards_dir` (a no-op when it is up to date)."""
    config = DataConfig(
        corpus=corpus, vocab_size=vocab_size, shards_dir=shards_dir, val_fraction=val_fraction
    )
    tokenize_corpus(config, progress=False)
    return Corpus(shards_dir, vocab_size, corpus, val_fraction)


def tiny_model(vocab_size: int, **overrides: Any) -> dict[str, Any]:
    """[model] of the `tiny` preset (K2's structure: MLA, 1 dense + 3 MoE layers) at `vocab_size`."""
    return dict(
        preset="tiny",
        overrides=dict(vocab_size=vocab_size, bos_token_id=vocab_size - 256, eos_token_id=vocab_size - 255)
        | overrides,
    )


@dataclass(frozen=True)
class RunResult:
    name: str
    records: list[StepRecord]
    seconds: float  # training time (the loop's own clock: no validation, checkpoints or report)
    checkpoint: Path | None = None  # the final checkpoint, when the run was asked to keep it

    @property
    def val_steps(self) -> list[int]:
        return [r.step for r in self.records if r.val_loss is not None]

    @property
    def val_losses(self) -> list[float]:
        return [r.val_loss for r in self.records if r.val_loss is not None]

    @property
    def final_val_loss(self) -> float:
        return self.val_losses[-1]

    @property
    def tokens_per_step(self) -> int:
        return self.records[0].tokens_seen

    def series(self, field: str) -> list[float]:
        return [float(getattr(r, field)) for r in self.records]


def pretraining_run(
    run_dir: Path, recipe_sections: dict[str, Any], keep_checkpoint: bool = False
) -> RunResult:
    """Train (or read back) one run on `openk2.train`; unless kept, its checkpoint is removed once it has
    finished (10-30 MB each: the metrics are what the reproductions read)."""
    run = recipe_sections["run"]
    sections = recipe_sections | dict(
        run=dict(
            name=run_dir.name,
            output_dir=str(run_dir.parent),
            checkpoint_every=run["steps"],  # one checkpoint, at the end (a kill mid-run restarts the run)
            keep_checkpoints=1,
            log_every=1,
            sample_tokens=0,
        )
        | run
    )
    recipe = validate_recipe(Recipe, sections, origin=f"{run_dir}'s recipe")
    recipe_json = recipe.model_dump(mode="json")
    done = run_dir / DONE_FILE
    checkpoint = run_dir / "checkpoints" / f"step_{run['steps']}"
    if done.exists():
        saved = json.loads(done.read_text())
        if saved["recipe"] == recipe_json and (checkpoint.is_dir() or not keep_checkpoint):
            print(f"{run_dir}: finished earlier with the same recipe, read back")
            kept = checkpoint if keep_checkpoint else None
            return RunResult(run_dir.name, read_metrics(run_dir / METRICS_FILE), saved["seconds"], kept)
        print(f"{run_dir}: holds a run of another recipe (or without its checkpoint), training it again")
    if run_dir.exists():  # an unfinished or outdated run: start again from scratch
        shutil.rmtree(run_dir)
    print(f"{run_dir}: training {run['steps']} steps")
    from openk2.train import train  # heavy: the loop, checkpoints, report

    # no report.md: its plots would cost more than a short run's training; metrics.jsonl is what is read
    stage = dataclasses.replace(pretraining_stage(recipe), write_report=False)
    summary = train(stage, resume=False)  # openk2.progress: plain lines off a terminal
    if not keep_checkpoint:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    atomic_write_text(done, json.dumps(dict(recipe=recipe_json, seconds=summary.elapsed_seconds)))
    kept = summary.checkpoint if keep_checkpoint else None
    return RunResult(run_dir.name, read_metrics(run_dir / METRICS_FILE), summary.elapsed_seconds, kept)


# -- the script's command line, numbers and plot ---------------------------------------------------------


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return round(time.perf_counter() - self.started, 1)


@dataclass
class Experiment:
    """One reproduction script's invocation: where its runs, plot and JSON go, how many seeds, which size."""

    claim: str
    out: Path
    data_root: Path
    seeds: int
    quick: bool
    clock: Stopwatch
    args: argparse.Namespace  # the command line, with any script-specific options

    @property
    def name(self) -> str:
        """The reduced form writes beside the full one, never over it."""
        return f"{self.claim}-quick" if self.quick else self.claim

    def run_dir(self, run: str) -> Path:
        return self.out / self.name / run

    def write(self, results: dict[str, Any], figure: plt.Figure) -> tuple[Path, Path]:
        """<out>/<name>.json (with the runtime and the machine) and <out>/<name>.png (100 dpi, small)."""
        results = results | dict(runtime_seconds=self.clock.seconds, machine=machine())
        self.out.mkdir(parents=True, exist_ok=True)
        json_path, png_path = self.out / f"{self.name}.json", self.out / f"{self.name}.png"
        atomic_write_text(json_path, json.dumps(results, indent=2) + "\n")
        figure.tight_layout()
        figure.savefig(png_path, dpi=100)
        plt.close(figure)
        print(f"wrote {json_path} and {png_path} ({results['runtime_seconds']:.0f} s)")
        return json_path, png_path


def experiment(
    claim: str,
    doc: str,
    default_seeds: int,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> Experiment:
    """Parse the command line every reproduction script shares (plus the script's own options)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/repro"), help="run directories, plot and JSON")
    parser.add_argument(
        "--data-root", type=Path, default=None, help="token shards (default: <out>/data, shared by scripts)"
    )
    parser.add_argument("--seeds", type=int, default=default_seeds, help="model-initialisation seeds 0..N-1")
    parser.add_argument(
        "--quick", action="store_true", help="the reduced form CI runs (seconds, not minutes)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds: expected at least 1")
    torch.set_num_threads(args.threads)
    data_root = args.data_root if args.data_root is not None else args.out / "data"
    return Experiment(claim, args.out, data_root, args.seeds, args.quick, Stopwatch(), args)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def machine() -> dict[str, Any]:
    return dict(
        cpu=platform.processor() or platform.machine(),
        cores=os.cpu_count(),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
    )


def band(axes: plt.Axes, x: Sequence[float], runs: Sequence[Sequence[float]], label: str, color: str) -> None:
    """Mean over seeds as a line, min–max over seeds as a shaded band."""
    columns = list(zip(*runs, strict=True))
    mean = [statistics.fmean(c) for c in columns]
    axes.plot(x, mean, color=color, label=label, linewidth=1.4)
    if len(runs) > 1:
        axes.fill_between(x, [min(c) for c in columns], [max(c) for c in columns], color=color, alpha=0.2)
