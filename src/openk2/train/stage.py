"""A training stage: everything that differs between pre-training and SFT, handed to the one loop.

The loop (`train/loop.py`) owns the step, checkpoints, resume, metrics, validation and the report. A stage
brings where the batches come from (and so which tokens carry the loss), the held-out batches, the weights it
starts from, the tokenizer its checkpoints carry, the report's sample, and a few lines for the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from openk2.model import K2Config
from openk2.train.batch import BatchSource, TokenBatch
from openk2.train.recipe import TrainingRecipe


@dataclass
class Stage:
    title: str  # "pre-training", "SFT": the progress bar's label and the report's heading
    recipe: TrainingRecipe
    config: K2Config
    batches: BatchSource  # this rank's training micro-batches, resumable
    # this rank's held-out micro-batches; every rank yields the same number (sharded models gather per forward)
    validation_batches: Callable[[], Iterable[torch.Tensor | TokenBatch]]
    tokenizer: Path  # tokenizer.json, copied into every checkpoint
    initial_weights: Path | None  # a checkpoint directory to start from; None: a fresh init from [run].seed
    model_description: str  # the report's "model" line
    sample: Callable[[Path], str] | None = None  # the report's sample, from the final checkpoint
    report_rows: list[tuple[str, str]] = field(default_factory=list)  # stage-specific summary lines
    # False: no report.md or plots (a sweep of many short runs reads metrics.jsonl; plotting would cost more)
    write_report: bool = True
