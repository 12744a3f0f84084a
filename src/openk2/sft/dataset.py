"""The SFT data of a recipe: every source read, checked, held out, tokenized and counted, before training starts.

A record lands in validation when a hash of (seed, its split key) falls below the source's val_fraction, so
the split does not depend on file order, and a task's trajectories, or a preference pair's two orders, stay
together. A gym Task that names its split keeps it ("test" is held out). Everything that happened to the
data is counted in `DataSummary` (skipped by reason, filtered, truncated, too long): nothing is silent.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict
from tokenizers import Tokenizer

from openk2.sft.conversation import Conversation, Problem
from openk2.sft.examples import TrainingExample, training_example
from openk2.sft.recipe import SFTRecipe
from openk2.sft.sources import read_source

STRICT_PROBLEMS_SHOWN = 10


class SourceSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str
    path: str
    weight: float
    records: int  # non-blank lines
    skipped: dict[str, int]  # unusable records by reason (skipped.jsonl names each)
    filtered: int  # trajectories below min_reward
    train_conversations: int
    val_conversations: int
    truncated: int  # cut by whole turns to fit seq_len
    too_long: int  # not even the first turn fits: dropped
    train_tokens: int
    train_assistant_tokens: int

    def line(self) -> str:
        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(self.skipped.items()))
        return (
            f"{self.kind} {self.path} (weight {self.weight:g}): {self.records} records -> "
            f"{self.train_conversations} train / {self.val_conversations} held-out conversations; "
            f"skipped {skipped}{f' ({reasons})' if reasons else ''}, filtered {self.filtered}, "
            f"truncated {self.truncated}, too long {self.too_long}"
        )


class DataSummary(BaseModel):
    """`<run_dir>/data_summary.json`."""

    model_config = ConfigDict(extra="forbid")

    seq_len: int
    template: str
    sources: list[SourceSummary]

    @property
    def skipped(self) -> int:
        return sum(sum(source.skipped.values()) for source in self.sources)

    @property
    def truncated(self) -> int:
        return sum(source.truncated for source in self.sources)

    @property
    def too_long(self) -> int:
        return sum(source.too_long for source in self.sources)


@dataclass
class SFTData:
    train: list[list[TrainingExample]]  # per source, in file order
    validation: list[TrainingExample]  # every source's held-out conversations, in order
    problems: list[Problem]
    summary: DataSummary
    sha256: str  # of the training examples: a resumed loader must see the same ones


def is_held_out(conversation: Conversation, seed: int, fraction: float) -> bool:
    if conversation.held_out is not None:
        return conversation.held_out
    digest = hashlib.sha256(f"{seed}\0{conversation.split_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def build_sft_data(recipe: SFTRecipe, tokenizer: Tokenizer, strict: bool = False) -> SFTData:
    """Read, check, split and tokenize every source; under `strict` any unusable record refuses the run."""
    settings = recipe.sft
    train: list[list[TrainingExample]] = []
    validation: list[TrainingExample] = []
    problems: list[Problem] = []
    summaries = []
    digest = hashlib.sha256()
    for source in settings.sources:
        read = read_source(source)
        problems += read.problems
        fraction = settings.val_fraction if source.val_fraction is None else source.val_fraction
        source_train: list[TrainingExample] = []
        counts: Counter[str] = Counter()
        for conversation in read.conversations:
            example = training_example(
                tokenizer, conversation, settings.seq_len, settings.template, settings.declaration_style
            )
            if example is None:
                counts["too_long"] += 1
                continue
            counts["truncated"] += example.truncated
            if is_held_out(conversation, settings.seed, fraction):
                validation.append(example)
                counts["val"] += 1
            else:
                source_train.append(example)
                digest.update(example.ids.tobytes() + example.assistant_mask.tobytes())
        train.append(source_train)
        summaries.append(
            SourceSummary(
                kind=source.kind,
                path=str(source.path),
                weight=source.weight,
                records=read.records,
                skipped=dict(Counter(problem.kind for problem in read.problems)),
                filtered=read.filtered,
                train_conversations=len(source_train),
                val_conversations=counts["val"],
                truncated=counts["truncated"],
                too_long=counts["too_long"],
                train_tokens=sum(len(example) for example in source_train),
                train_assistant_tokens=sum(int(example.assistant_mask.sum()) for example in source_train),
            )
        )
    if strict and problems:
        shown = "; ".join(str(problem) for problem in problems[:STRICT_PROBLEMS_SHOWN])
        more = (
            f" (and {len(problems) - STRICT_PROBLEMS_SHOWN} more)"
            if len(problems) > STRICT_PROBLEMS_SHOWN
            else ""
        )
        raise ValueError(f"--strict: {len(problems)} unusable records: {shown}{more}")
    for index, counted in enumerate(summaries):
        if counted.train_conversations == 0:
            raise ValueError(f"[sft].sources[{index}]: no training conversations ({counted.line()})")
    if not validation:
        raise ValueError("[sft]: no held-out conversations for the validation loss; raise [sft].val_fraction")
    summary = DataSummary(seq_len=settings.seq_len, template=settings.template, sources=summaries)
    return SFTData(train, validation, problems, summary, digest.hexdigest())
