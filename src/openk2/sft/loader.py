"""SFT's batch source: mixed, packed conversations for the shared training loop, resumable to the exact batch.

Every rank draws the same mixture (mixture.py) and packs the same rows (packing.py); rank r of w keeps rows
r, r + w, r + 2w, ..., so the ranks' rows are disjoint and together are the single-process sequence. The
state is the mixture's counters, the conversation waiting for the next row, and the number of rows made;
it names the data it was made from, so a resume onto other conversations is refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict

from openk2.sft.examples import TrainingExample
from openk2.sft.mixture import SourceMixture
from openk2.sft.packing import GreedyPacker, pack_rows
from openk2.train.batch import TokenBatch


class ConversationLoaderState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mixture: dict[str, Any]
    pending: tuple[int, int] | None  # (source, index) drawn but not yet placed in a row
    rows: int  # rows made so far, by all ranks together
    seed: int
    seq_len: int
    batch_size: int
    rank: int
    world_size: int
    data_sha256: str  # the training examples' tokens


class ConversationLoader:
    """Yields this rank's micro-batches [batch_size, seq_len] of packed conversations forever."""

    def __init__(
        self,
        examples: list[list[TrainingExample]],
        weights: list[float],
        *,
        seq_len: int,
        batch_size: int,
        seed: int,
        pad_id: int,
        data_sha256: str,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank: expected 0 <= rank < world_size={world_size}, got {rank}")
        self.examples = examples
        self.seq_len, self.batch_size, self.seed, self.pad_id = seq_len, batch_size, seed, pad_id
        self.rank, self.world_size = rank, world_size
        self.data_sha256 = data_sha256
        self.mixture = SourceMixture([len(source) for source in examples], weights, seed)
        self.packer: GreedyPacker[tuple[int, int]] = GreedyPacker(self.mixture.draw, self._length, seq_len)
        self.rows = 0

    def _length(self, key: tuple[int, int]) -> int:
        source, index = key
        return len(self.examples[source][index])

    def __iter__(self) -> Iterator[TokenBatch]:
        return self

    def __next__(self) -> TokenBatch:
        rows: list[list[TrainingExample]] = []
        while len(rows) < self.batch_size:
            keys = self.packer.next_row()
            if self.rows % self.world_size == self.rank:
                rows.append([self.examples[source][index] for source, index in keys])
            self.rows += 1
        return pack_rows(rows, self.seq_len, self.pad_id)

    def state_dict(self) -> dict[str, Any]:
        return ConversationLoaderState(
            mixture=self.mixture.state_dict(),
            pending=self.packer.pending,
            rows=self.rows,
            seed=self.seed,
            seq_len=self.seq_len,
            batch_size=self.batch_size,
            rank=self.rank,
            world_size=self.world_size,
            data_sha256=self.data_sha256,
        ).model_dump()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where the saved loader stopped; refuse a state made from other data or settings."""
        saved = ConversationLoaderState.model_validate(state)
        current = ConversationLoaderState.model_validate(self.state_dict())
        for field in ("seed", "seq_len", "batch_size", "rank", "world_size", "data_sha256"):
            if getattr(saved, field) != getattr(current, field):
                raise ValueError(
                    f"loader state: {field} is {getattr(saved, field)!r} in the saved state but "
                    f"{getattr(current, field)!r} now; resuming would not replay the same conversations"
                )
        self.mixture.load_state_dict(saved.mixture)
        self.packer.pending = saved.pending
        self.rows = saved.rows


def validation_batches(
    examples: list[TrainingExample],
    *,
    seq_len: int,
    batch_size: int,
    pad_id: int,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[TokenBatch]:
    """Every held-out conversation once, packed in order; this rank's rows only, as many batches on every rank
    (a rank short of a row gets an all-padding one, which carries no loss)."""
    remaining = iter(range(len(examples)))
    packer = GreedyPacker(lambda: next(remaining), lambda index: len(examples[index]), seq_len)
    all_rows = []
    while True:
        try:
            all_rows.append([examples[index] for index in packer.next_row()])
        except StopIteration:
            break
    rows_per_rank = math.ceil(len(all_rows) / world_size)
    mine = [
        all_rows[row] if row < len(all_rows) else []
        for row in range(rank, rows_per_rank * world_size, world_size)
    ]
    for start in range(0, len(mine), batch_size):
        yield pack_rows(mine[start : start + batch_size], seq_len, pad_id)
