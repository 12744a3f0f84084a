"""The mixture draws sources by weight and every conversation once per epoch; the loader resumes to the exact
batch and splits rows across ranks; validation sees every held-out conversation once."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from openk2.sft.examples import TrainingExample
from openk2.sft.loader import ConversationLoader, validation_batches
from openk2.sft.mixture import SourceMixture
from openk2.train.batch import IGNORE_INDEX, PADDING_DOCUMENT, TokenBatch


def _examples(source: int, count: int, rng: np.random.Generator) -> list[TrainingExample]:
    """Examples whose first token says where they come from: 1000·(source+1) + index."""
    examples = []
    for index in range(count):
        length = int(rng.integers(3, 12))
        ids = rng.integers(0, 500, length)
        ids[0] = 1000 * (source + 1) + index
        examples.append(TrainingExample(ids, np.arange(length) % 2 == 1, truncated=False))
    return examples


@pytest.fixture(scope="module")
def sources() -> list[list[TrainingExample]]:
    rng = np.random.default_rng(0)
    return [_examples(0, 30, rng), _examples(1, 7, rng)]


def _loader(sources: list[list[TrainingExample]], rank: int = 0, world_size: int = 1) -> ConversationLoader:
    return ConversationLoader(
        sources,
        [3.0, 1.0],
        seq_len=24,
        batch_size=2,
        seed=5,
        pad_id=0,
        data_sha256="x",
        rank=rank,
        world_size=world_size,
    )


def _same(a: TokenBatch, b: TokenBatch) -> bool:
    return all(
        torch.equal(x, y) for x, y in zip(a.model_inputs().values(), b.model_inputs().values(), strict=True)
    )


def test_sources_are_drawn_by_weight_and_each_conversation_once_per_epoch() -> None:
    mixture = SourceMixture([30, 7], [3.0, 1.0], seed=1)
    draws = [mixture.draw() for _ in range(8000)]
    share = Counter(source for source, _ in draws)[0] / len(draws)
    assert share == pytest.approx(0.75, abs=0.02)
    first_epoch = [index for source, index in draws if source == 1][:7]
    assert sorted(first_epoch) == list(range(7))


def test_a_restored_loader_yields_exactly_the_batches_that_followed(sources) -> None:
    loader = _loader(sources)
    for _ in range(5):
        next(loader)
    state = loader.state_dict()
    expected = [next(loader) for _ in range(6)]
    resumed = _loader(sources)
    resumed.load_state_dict(state)
    assert all(_same(a, b) for a, b in zip(expected, (next(resumed) for _ in range(6)), strict=True))
    other_data = ConversationLoader(
        sources, [3.0, 1.0], seq_len=24, batch_size=2, seed=5, pad_id=0, data_sha256="y"
    )
    with pytest.raises(ValueError, match="loader state: data_sha256 is 'x' in the saved state but 'y' now"):
        other_data.load_state_dict(state)


def test_ranks_take_alternate_rows_of_the_single_process_sequence(sources) -> None:
    single = _loader(sources)
    rows = torch.cat([next(single).input_ids for _ in range(4)])  # 8 rows
    loaders = [_loader(sources, rank, 2) for rank in (0, 1)]
    rank_rows = [torch.cat([next(loader).input_ids for _ in range(2)]) for loader in loaders]
    assert torch.equal(rank_rows[0], rows[0::2]) and torch.equal(rank_rows[1], rows[1::2])


def test_rows_hold_whole_conversations_and_labels_only_their_masked_tokens(sources) -> None:
    batch = next(_loader(sources))
    known = {int(example.ids[0]): example for source in sources for example in source}
    for row in range(batch.input_ids.shape[0]):
        documents = batch.document_ids[row]
        for document in documents.unique().tolist():
            if document == PADDING_DOCUMENT:
                continue
            where = documents == document
            example = known[int(batch.input_ids[row][where][0])]
            assert batch.input_ids[row][where].tolist() == example.ids.tolist()
            expected = [
                t if m else IGNORE_INDEX for t, m in zip(example.ids, example.assistant_mask, strict=True)
            ]
            expected[0] = IGNORE_INDEX
            assert batch.labels[row][where].tolist() == expected


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_validation_sees_every_held_out_conversation_once_in_equal_batch_counts(sources, world_size) -> None:
    held_out = sources[0][:13]
    per_rank = [
        list(
            validation_batches(held_out, seq_len=24, batch_size=2, pad_id=0, rank=rank, world_size=world_size)
        )
        for rank in range(world_size)
    ]
    assert len({len(batches) for batches in per_rank}) == 1
    firsts = sorted(
        int(batch.input_ids[row][batch.document_ids[row] == document][0])
        for batches in per_rank
        for batch in batches
        for row in range(batch.input_ids.shape[0])
        for document in batch.document_ids[row].unique().tolist()
        if document != PADDING_DOCUMENT
    )
    assert firsts == [int(example.ids[0]) for example in held_out]
