"""The packing loader: a split's `[BOS] doc [EOS]` stream cut into fixed-length sequences, shuffled per epoch,
split across data-parallel ranks, resumable to the exact next batch, on the same or another number of ranks.

The stream is cut into non-overlapping windows of seq_len tokens and the ragged tail is dropped. Each epoch
visits every window once in a permutation drawn from (seed, epoch); the epochs' permutations, one after the
other, are the run's global sequence of windows. Every rank draws its micro-batches in lockstep: the j-th
global micro-batch is the next world_size × batch_size windows of that sequence, and rank r of w takes every
w-th of them from the r-th on. So what a step trains on is a function of the step and the global batch alone,
not of how it is split over ranks (2 ranks × 2 rows read the same 4 windows as 4 × 1 or 1 × 4), and the
position saved with a checkpoint, the global sequence's next window, is the same on every rank.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from openk2.data.shards import SplitName, open_split


class LoaderState(BaseModel):
    """What `state_dict()` saves. The shuffle is a pure function of (seed, epoch), so these fields are the RNG."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epoch: int = Field(ge=0)
    position: int = Field(ge=0, description="windows of this epoch already read, by all ranks together")
    seed: int
    seq_len: int
    split: SplitName
    num_windows: int
    stream_sha256: str = Field(description="the split's shards, so a rebuilt corpus is never resumed into")


class PackedSequenceLoader:
    """Yields `input_ids` batches [batch_size, seq_len] (int64) forever; the model shifts labels itself."""

    def __init__(
        self,
        shards_dir: Path,
        *,
        seq_len: int,
        batch_size: int,
        seed: int,
        split: SplitName = "train",
        rank: int = 0,
        world_size: int = 1,
        check_hashes: bool = True,
    ) -> None:
        if seq_len < 2:
            raise ValueError(f"seq_len: expected >= 2, got {seq_len}")
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        if seed < 0:
            raise ValueError(f"seed: expected >= 0, got {seed}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank: expected 0 <= rank < world_size={world_size}, got {rank}")
        self.manifest, self.tokens = open_split(shards_dir, split, check_hashes)
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed
        self.split: SplitName = split
        self.rank = rank
        self.world_size = world_size
        self.num_windows = len(self.tokens) // seq_len
        if self.num_windows < world_size:
            raise ValueError(
                f"seq_len: the {split} split of {shards_dir} has {len(self.tokens)} tokens, only "
                f"{self.num_windows} sequences of {seq_len}, fewer than world_size={world_size}"
            )
        self.epoch = 0
        self.position = 0
        self._orders: dict[int, np.ndarray] = {}

    def _window(self, index: int) -> int:
        """The window at `index` of the global sequence (epoch after epoch)."""
        epoch, offset = divmod(index, self.num_windows)
        if epoch not in self._orders:
            self._orders = {e: order for e, order in self._orders.items() if e >= epoch - 1}
            self._orders[epoch] = np.random.default_rng((self.seed, epoch)).permutation(self.num_windows)
        return int(self._orders[epoch][offset])

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self

    def __next__(self) -> torch.Tensor:
        start = self.epoch * self.num_windows + self.position  # the global micro-batch's first window
        indices = start + self.rank + self.world_size * np.arange(self.batch_size)
        rows = [
            self.tokens.read(window * self.seq_len, (window + 1) * self.seq_len)
            for window in map(self._window, indices.tolist())
        ]
        self.epoch, self.position = divmod(start + self.world_size * self.batch_size, self.num_windows)
        return torch.from_numpy(np.stack(rows))  # [batch_size, seq_len]

    def state_dict(self) -> dict[str, Any]:
        return LoaderState(
            epoch=self.epoch,
            position=self.position,
            seed=self.seed,
            seq_len=self.seq_len,
            split=self.split,
            num_windows=self.num_windows,
            stream_sha256=self.manifest.stream_sha256(self.split),
        ).model_dump()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where the saved loader stopped, on any number of ranks; refuse a state from a
        different data layout."""
        saved = LoaderState.model_validate(state)
        current = LoaderState.model_validate(self.state_dict())
        for field in ("seed", "seq_len", "split", "num_windows", "stream_sha256"):
            if getattr(saved, field) != getattr(current, field):
                raise ValueError(
                    f"loader state: {field} is {getattr(saved, field)!r} in the saved state but "
                    f"{getattr(current, field)!r} in this loader; resuming would not replay the same data"
                )
        if saved.position >= self.num_windows:
            raise ValueError(
                f"loader state: position {saved.position} is past the end of epoch {saved.epoch} "
                f"({self.num_windows} windows)"
            )
        self.epoch = saved.epoch
        self.position = saved.position


def validation_batches(
    shards_dir: Path, *, seq_len: int, batch_size: int, rank: int = 0, world_size: int = 1
) -> Iterator[torch.Tensor]:
    """Every held-out window once, in stream order, this rank's share only; the last batch may be smaller."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank: expected 0 <= rank < world_size={world_size}, got {rank}")
    _, tokens = open_split(shards_dir, "val")
    if len(tokens) // seq_len < world_size:
        raise ValueError(
            f"seq_len: the val split of {shards_dir} has {len(tokens)} tokens, fewer than "
            f"world_size={world_size} sequences of {seq_len}"
        )
    windows = range(rank, len(tokens) // seq_len, world_size)
    for start in range(0, len(windows), batch_size):
        rows = [
            tokens.read(window * seq_len, (window + 1) * seq_len)
            for window in windows[start : start + batch_size]
        ]
        yield torch.from_numpy(np.stack(rows))  # [<= batch_size, seq_len]
