"""Packing whole conversations into fixed-length rows, attention kept inside each conversation.

A row holds conversations one after another until the next one would not fit; the rest is padding. Each
conversation in a row gets its own document id and positions restarting at 0; the model turns the document
ids into a block-diagonal causal mask (`K2Model.forward`), so a packed row computes exactly what each
conversation would alone. Labels are the assistant's tokens; everything else, padding included, is
IGNORE_INDEX.

    tokens     [c1 c1 c1 c1 | c2 c2 c2 | pad pad]
    positions  [ 0  1  2  3 |  0  1  2 |   0   0]
    documents  [ 0  0  0  0 |  1  1  1 |  -1  -1]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import numpy as np
import torch

from openk2.sft.examples import TrainingExample
from openk2.train.batch import IGNORE_INDEX, PADDING_DOCUMENT, TokenBatch

Key = TypeVar("Key")


class GreedyPacker(Generic[Key]):
    """Fills rows in draw order: a drawn example joins the row while it fits, else it starts the next row.

    `pending` (the example that did not fit) is part of the state a resumed loader restores.
    """

    def __init__(self, draw: Callable[[], Key], length: Callable[[Key], int], seq_len: int) -> None:
        self.draw, self.length, self.seq_len = draw, length, seq_len
        self.pending: Key | None = None

    def next_row(self) -> list[Key]:
        """The next row's example keys; StopIteration when a finite draw is exhausted and nothing is left."""
        row: list[Key] = []
        used = 0
        while True:
            if self.pending is None:
                try:
                    self.pending = self.draw()
                except StopIteration:
                    if row:
                        return row
                    raise
            length = self.length(self.pending)
            if length > self.seq_len:
                raise ValueError(f"example {self.pending}: {length} tokens exceed seq_len {self.seq_len}")
            if row and used + length > self.seq_len:
                return row
            row.append(self.pending)
            used += length
            self.pending = None


def pack_rows(rows: Sequence[Sequence[TrainingExample]], seq_len: int, pad_id: int) -> TokenBatch:
    """Rows of examples as one micro-batch [len(rows), seq_len]; an empty row is all padding."""
    shape = (len(rows), seq_len)
    input_ids = np.full(shape, pad_id, dtype=np.int64)
    labels = np.full(shape, IGNORE_INDEX, dtype=np.int64)
    position_ids = np.zeros(shape, dtype=np.int64)
    document_ids = np.full(shape, PADDING_DOCUMENT, dtype=np.int64)
    for row, examples in enumerate(rows):
        start = 0
        for document, example in enumerate(examples):
            end = start + len(example)
            if end > seq_len:
                raise ValueError(f"row {row}: its examples hold more than seq_len {seq_len} tokens")
            input_ids[row, start:end] = example.ids
            labels[row, start:end] = np.where(example.assistant_mask, example.ids, IGNORE_INDEX)
            labels[row, start] = IGNORE_INDEX  # it would be predicted from the previous document
            position_ids[row, start:end] = np.arange(len(example))
            document_ids[row, start:end] = document
            start = end
    return TokenBatch(
        input_ids=torch.from_numpy(input_ids),
        labels=torch.from_numpy(labels),
        position_ids=torch.from_numpy(position_ids),
        document_ids=torch.from_numpy(document_ids),
    )
