"""The model side of continuous batching: one prefill per joining sequence, one decoding step for all.

Rows of the running batch keep their attention caches in one set of tensors, right-aligned: every
row's newest token sits in the same column, so one decoding step appends one column for all rows,
and a row whose sequence is shorter than the widest starts later (its earlier columns are masked,
exactly as left padding is). A sequence joins after its own prefill (its cache copied in, the
batch widened when it is the longest) and leaves by dropping its row; columns no row uses any more
are cut off.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from openk2.llm.prefix_cache import SequenceKV


class RowCache:
    """Cache tensors [rows, capacity, ...] of the running batch; row r holds columns first_slot[r]:width."""

    def __init__(self) -> None:
        self.tensors: list[torch.Tensor] = []
        self.first_slot: list[int] = []
        self.width = 0

    @property
    def rows(self) -> int:
        return len(self.first_slot)

    def _reallocate(self, rows: int, capacity: int, like: SequenceKV) -> list[torch.Tensor]:
        # zeros, not empty: masked columns must hold finite values (0 × NaN would poison the sums)
        return [
            torch.zeros(rows, capacity, *part.shape[1:], dtype=part.dtype, device=part.device)
            for part in like
        ]

    def join(self, joining: list[SequenceKV]) -> None:
        """Add one row per sequence cache (tensors [tokens, ...]), after the existing rows."""
        if not joining:
            return
        longest = max(kv[0].shape[0] for kv in joining)
        shift = max(longest - self.width, 0)  # a new row is the longest: everyone moves right
        width = self.width + shift
        rows = self.rows + len(joining)
        grown = self._reallocate(rows, max(self._capacity() + shift, width + 16), joining[0])
        for old, new in zip(self.tensors, grown, strict=False):
            new[: self.rows, shift : shift + self.width] = old[:, : self.width]
        first_slot = [slot + shift for slot in self.first_slot]
        for row, kv in enumerate(joining, start=self.rows):
            length = kv[0].shape[0]
            for new, part in zip(grown, kv, strict=True):
                new[row, width - length : width] = part
            first_slot.append(width - length)
        self.tensors, self.first_slot, self.width = grown, first_slot, width

    def _capacity(self) -> int:
        return self.tensors[0].shape[1] if self.tensors else 0

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows, in this order; columns that no kept row uses are cut off."""
        if not rows:
            self.tensors, self.first_slot, self.width = [], [], 0
            return
        first = [self.first_slot[row] for row in rows]
        unused = min(first)
        index = torch.tensor(rows, device=self.tensors[0].device)
        self.tensors = [part.index_select(0, index)[:, unused:].contiguous() for part in self.tensors]
        self.first_slot = [slot - unused for slot in first]
        self.width -= unused

    def reserve(self, columns: int) -> None:
        """Room for `columns` more columns (a decoding step writes one)."""
        if self.width + columns > self._capacity():
            capacity = self.width + columns + max(16, self.width // 2)
            grown = [part.new_zeros(part.shape[0], capacity, *part.shape[2:]) for part in self.tensors]
            for old, new in zip(self.tensors, grown, strict=True):
                new[:, : self.width] = old[:, : self.width]
            self.tensors = grown

    def row(self, row: int) -> SequenceKV:
        """One row's cache as a sequence's tensors [tokens, ...] (a copy)."""
        return [part[row, self.first_slot[row] : self.width].clone() for part in self.tensors]


@dataclass(frozen=True)
class PrefillItem:
    """One sequence to prefill: all its tokens, of which the first `cached` have `cached_kv` already."""

    token_ids: list[int]
    cached: int
    cached_kv: SequenceKV | None
    logits_for: int  # logits wanted at this many last positions


class ModelRunner(ABC):
    """A model driven by the scheduler: prefill one sequence, decode one token for every running row."""

    def __init__(self) -> None:
        self.batch = RowCache()

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @abstractmethod
    def prefill(
        self, token_ids: list[int], cached: SequenceKV | None, logits_for: int
    ) -> tuple[SequenceKV, torch.Tensor]:
        """Run `token_ids` after the `cached` prefix; returns the cache of prefix + tokens and the
        logits [logits_for, vocab] at the last `logits_for` positions."""

    def prefill_many(self, items: list["PrefillItem"]) -> list[tuple[SequenceKV, torch.Tensor]]:
        """`prefill` of several sequences; one by one unless a runner batches them."""
        return [
            self.prefill(item.token_ids[item.cached :], item.cached_kv, item.logits_for) for item in items
        ]

    @abstractmethod
    def decode(self, token_ids: list[int]) -> torch.Tensor:
        """One token per running row in; logits [rows, vocab] for each row's next token out."""

    @abstractmethod
    def load_weights(self, directory: str) -> None:
        """Replace the model's weights by a checkpoint's, in place (same architecture)."""
