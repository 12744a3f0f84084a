"""The training mixture: which conversation comes next, drawn from the sources by their recipe weights.

Draw k picks source i with probability weight_i / Σ weights, then that source's next conversation in its own
shuffled order; a source that runs out starts a new epoch in a new order. Every choice is a pure function of
(seed, k) or (seed, source, epoch), so the state is a few counters and a resumed run draws exactly what the
uninterrupted run would have drawn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

CHOICES_PER_BLOCK = 4096  # source choices drawn at once (block b from the seed and b)


class MixtureState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    draws: int
    epochs: list[int]  # per source: its current epoch
    positions: list[int]  # per source: conversations of the current epoch already drawn


class SourceMixture:
    def __init__(self, sizes: list[int], weights: list[float], seed: int) -> None:
        if len(sizes) != len(weights) or not sizes:
            raise ValueError(f"sources: {len(sizes)} sizes for {len(weights)} weights")
        empty = [index for index, size in enumerate(sizes) if size == 0]
        if empty:
            raise ValueError(f"sizes: source {empty[0]} has no conversations to draw")
        self.sizes = sizes
        self.probabilities = np.asarray(weights, dtype=np.float64) / sum(weights)
        self.seed = seed
        self.draws = 0
        self.epochs = [0] * len(sizes)
        self.positions = [0] * len(sizes)
        self._block: tuple[int, np.ndarray] | None = None
        self._orders: dict[int, tuple[int, np.ndarray]] = {}  # source -> (epoch, its permutation)

    def _source_of_draw(self, draw: int) -> int:
        block = draw // CHOICES_PER_BLOCK
        if self._block is None or self._block[0] != block:
            rng = np.random.default_rng([self.seed, 1, block])
            self._block = (block, rng.choice(len(self.sizes), size=CHOICES_PER_BLOCK, p=self.probabilities))
        return int(self._block[1][draw % CHOICES_PER_BLOCK])

    def _order(self, source: int, epoch: int) -> np.ndarray:
        cached = self._orders.get(source)
        if cached is None or cached[0] != epoch:
            cached = (
                epoch,
                np.random.default_rng([self.seed, 2, source, epoch]).permutation(self.sizes[source]),
            )
            self._orders[source] = cached
        return cached[1]

    def draw(self) -> tuple[int, int]:
        """(source, conversation index within the source) of the next training conversation."""
        source = self._source_of_draw(self.draws)
        if self.positions[source] == self.sizes[source]:
            self.epochs[source] += 1
            self.positions[source] = 0
        index = int(self._order(source, self.epochs[source])[self.positions[source]])
        self.positions[source] += 1
        self.draws += 1
        return source, index

    def state_dict(self) -> dict[str, Any]:
        return MixtureState(draws=self.draws, epochs=self.epochs, positions=self.positions).model_dump()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = MixtureState.model_validate(state)
        if len(saved.epochs) != len(self.sizes):
            raise ValueError(f"mixture state: {len(saved.epochs)} sources saved, {len(self.sizes)} now")
        self.draws, self.epochs, self.positions = saved.draws, list(saved.epochs), list(saved.positions)
