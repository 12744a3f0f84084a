"""What the training loop reads: micro-batches of tokens with the loss mask, from a resumable source.

Pre-training and SFT differ only here. A pre-training batch is a plain [batch, seq] tensor of ids whose every
token is also its label; an SFT batch packs whole conversations into each row and labels only the
assistant's tokens (K2 report §3.1), with per-conversation positions and a document mask.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

IGNORE_INDEX = -100  # a label the loss skips (F.cross_entropy's ignore_index)
PADDING_DOCUMENT = -1  # the document id of padding tokens at the end of a packed row


@dataclass(frozen=True)
class TokenBatch:
    """One micro-batch: the tokens the model reads and the tokens the loss is on."""

    input_ids: torch.Tensor  # [batch, seq] int64
    labels: torch.Tensor  # [batch, seq]: the token itself where it is trained on, else IGNORE_INDEX
    position_ids: torch.Tensor | None = None  # [batch, seq]: restarts at 0 with each packed document
    document_ids: torch.Tensor | None = None  # [batch, seq]: attention stays inside a document; -1 padding

    @classmethod
    def of(cls, batch: torch.Tensor | TokenBatch) -> TokenBatch:
        """A plain tensor of ids is a language-modelling batch: every token is a label."""
        return batch if isinstance(batch, TokenBatch) else cls(input_ids=batch, labels=batch)

    @property
    def predicted_tokens(self) -> int:
        """Tokens the loss is on: labels after the first position (the model shifts) that are not ignored."""
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())

    @property
    def num_tokens(self) -> int:
        """Real tokens, padding excluded."""
        if self.document_ids is None:
            return self.input_ids.numel()
        return int((self.document_ids != PADDING_DOCUMENT).sum())

    def to(self, device: torch.device) -> TokenBatch:
        """The same batch on `device` (itself when already there); the loop moves each micro-batch."""
        if self.input_ids.device == device:
            return self

        def moved(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor.to(device, non_blocking=True)

        return TokenBatch(
            self.input_ids.to(device, non_blocking=True),
            self.labels.to(device, non_blocking=True),
            moved(self.position_ids),
            moved(self.document_ids),
        )

    def model_inputs(self) -> dict[str, torch.Tensor | None]:
        """Keyword arguments of `K2ForCausalLM.forward`."""
        return dict(
            input_ids=self.input_ids,
            labels=self.labels,
            position_ids=self.position_ids,
            document_ids=self.document_ids,
        )


class Resumable(Protocol):
    """Where a stage's data stands, saved with every checkpoint (`loader.json`, one entry per rank)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class BatchSource(Resumable, Protocol):
    """An endless, resumable stream of this rank's training micro-batches (`PackedSequenceLoader`, SFT's)."""

    def __iter__(self) -> Iterator[torch.Tensor | TokenBatch]: ...

    def __next__(self) -> torch.Tensor | TokenBatch: ...
