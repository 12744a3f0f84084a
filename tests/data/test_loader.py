from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from openk2.data.loader import PackedSequenceLoader, validation_batches
from openk2.data.shards import Manifest, SplitName, open_split

SEQ_LEN = 512


def stream_windows(shards_dir: Path, split: SplitName, seq_len: int) -> list[tuple[int, ...]]:
    """The split's token stream cut into consecutive seq_len windows, ragged tail dropped."""
    _, tokens = open_split(shards_dir, split)
    stream = tokens.read(0, len(tokens))
    count = len(stream) // seq_len
    return [tuple(row) for row in stream[: count * seq_len].reshape(count, seq_len).tolist()]


def rows(loader: PackedSequenceLoader, count: int) -> list[tuple[int, ...]]:
    """The first `count` sequences the loader yields, flattened across batches."""
    batches = itertools.islice(loader, -(-count // loader.batch_size))
    return [tuple(row) for batch in batches for row in batch.tolist()][:count]


def test_batches_are_int64_of_batch_by_seq_len(small_shards: tuple[Path, Manifest]) -> None:
    batch = next(PackedSequenceLoader(small_shards[0], seq_len=SEQ_LEN, batch_size=4, seed=0))
    assert batch.dtype == torch.int64 and batch.shape == (4, SEQ_LEN)


def test_an_epoch_yields_every_window_of_the_stream_exactly_once(small_shards: tuple[Path, Manifest]) -> None:
    shards_dir, manifest = small_shards
    windows = stream_windows(shards_dir, "train", SEQ_LEN)
    assert len(windows) == manifest.train.num_tokens // SEQ_LEN
    loader = PackedSequenceLoader(shards_dir, seq_len=SEQ_LEN, batch_size=5, seed=0)
    two_epochs = rows(loader, 2 * len(windows))
    first_epoch, second_epoch = two_epochs[: len(windows)], two_epochs[len(windows) :]
    assert Counter(first_epoch) == Counter(windows)
    assert Counter(second_epoch) == Counter(windows)
    assert first_epoch != windows and second_epoch != first_epoch  # shuffled, and differently each epoch


def test_packed_sequences_keep_document_boundaries(small_shards: tuple[Path, Manifest]) -> None:
    shards_dir, manifest = small_shards
    loader = PackedSequenceLoader(shards_dir, seq_len=SEQ_LEN, batch_size=8, seed=0)
    epoch = np.array(rows(loader, loader.num_windows))
    # packing crosses documents: [EOS] is always followed by the next document's [BOS] and vice versa
    for row in epoch:
        eos_positions = np.flatnonzero(row[:-1] == manifest.eos_id)
        bos_positions = np.flatnonzero(row[1:] == manifest.bos_id)
        assert eos_positions.tolist() == bos_positions.tolist()
    kept_tokens = loader.num_windows * SEQ_LEN
    _, tokens = open_split(shards_dir, "train")
    documents_starting_in_kept_stream = int(np.count_nonzero(tokens.read(0, kept_tokens) == manifest.bos_id))
    assert np.count_nonzero(epoch == manifest.bos_id) == documents_starting_in_kept_stream
    assert documents_starting_in_kept_stream > 1


def test_ranks_see_disjoint_windows_that_together_cover_the_epoch(
    small_shards: tuple[Path, Manifest],
) -> None:
    shards_dir = small_shards[0]
    windows = stream_windows(shards_dir, "train", SEQ_LEN)
    world_size = 3
    loaders = [
        PackedSequenceLoader(
            shards_dir, seq_len=SEQ_LEN, batch_size=1, seed=0, rank=rank, world_size=world_size
        )
        for rank in range(world_size)
    ]
    steps = len(windows) // world_size  # every rank reads in lockstep, one micro-batch per step
    shares = [rows(loader, steps) for loader in loaders]
    read = sum(map(Counter, shares), Counter())
    assert sum(read.values()) == world_size * steps and not read - Counter(windows)  # disjoint, this epoch's
    # the epoch's last windows, then the next epoch's, continue without a gap
    tail = [row for loader in loaders for row in rows(loader, 1)]
    assert read + Counter(tail[: len(windows) % world_size]) == Counter(windows)
    assert all(loader.epoch == 1 for loader in loaders)


@pytest.mark.parametrize("world_size, batch_size", [(1, 4), (2, 2), (4, 1)])
def test_a_global_batch_reads_the_same_windows_however_it_is_split_over_ranks(
    small_shards: tuple[Path, Manifest], world_size: int, batch_size: int
) -> None:
    """4 rows per global micro-batch: 1 rank × 4, 2 × 2 or 4 × 1 train on the same windows at each step,
    also across the epoch boundary, and save the same position on every rank."""
    shards_dir = small_shards[0]
    loaders = [
        PackedSequenceLoader(
            shards_dir, seq_len=SEQ_LEN, batch_size=batch_size, seed=0, rank=rank, world_size=world_size
        )
        for rank in range(world_size)
    ]
    single = PackedSequenceLoader(shards_dir, seq_len=SEQ_LEN, batch_size=4, seed=0)
    steps = -(-single.num_windows // 4) + 2  # into the second epoch
    for _ in range(steps):
        expected = Counter(tuple(row) for row in next(single).tolist())
        split = Counter(tuple(row) for loader in loaders for row in next(loader).tolist())
        assert split == expected
    assert all(loader.state_dict() == single.state_dict() for loader in loaders)
    assert single.epoch == 1


def test_a_resumed_loader_yields_exactly_what_an_uninterrupted_one_would(
    small_shards: tuple[Path, Manifest],
) -> None:
    shards_dir = small_shards[0]
    settings = dict(seq_len=SEQ_LEN, batch_size=7, seed=3, rank=1, world_size=2)
    uninterrupted = PackedSequenceLoader(shards_dir, **settings)
    reference = [batch.clone() for batch in itertools.islice(uninterrupted, 12)]

    interrupted = PackedSequenceLoader(shards_dir, **settings)
    consumed = list(itertools.islice(interrupted, 3))
    saved = json.loads(json.dumps(interrupted.state_dict()))  # as a checkpoint stores it
    resumed = PackedSequenceLoader(shards_dir, **settings)
    resumed.load_state_dict(saved)
    replayed = list(itertools.islice(resumed, 9))

    assert resumed.epoch >= 1  # the replay crossed an epoch boundary
    for expected, actual in zip(reference, consumed + replayed, strict=True):
        assert torch.equal(expected, actual)


def test_the_same_seed_gives_the_same_order_and_another_seed_does_not(
    small_shards: tuple[Path, Manifest],
) -> None:
    def first_batches(seed: int) -> list[torch.Tensor]:
        loader = PackedSequenceLoader(small_shards[0], seq_len=SEQ_LEN, batch_size=4, seed=seed)
        return list(itertools.islice(loader, 3))

    assert all(torch.equal(a, b) for a, b in zip(first_batches(0), first_batches(0), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first_batches(0), first_batches(1), strict=True))


def test_a_state_from_another_data_layout_is_refused(small_shards: tuple[Path, Manifest]) -> None:
    saved = PackedSequenceLoader(small_shards[0], seq_len=SEQ_LEN, batch_size=2, seed=0).state_dict()
    other_seed = PackedSequenceLoader(small_shards[0], seq_len=SEQ_LEN, batch_size=2, seed=1, world_size=2)
    with pytest.raises(ValueError, match="loader state: seed is 0 in the saved state but 1"):
        other_seed.load_state_dict(saved)
    with pytest.raises(ValueError, match="position"):
        PackedSequenceLoader(small_shards[0], seq_len=SEQ_LEN, batch_size=2, seed=0).load_state_dict(
            {**saved, "position": 10_000}
        )


def test_sequences_longer_than_the_split_are_refused_naming_seq_len(
    small_shards: tuple[Path, Manifest],
) -> None:
    with pytest.raises(ValueError, match=re.escape("seq_len: the val split")):
        PackedSequenceLoader(small_shards[0], split="val", seq_len=20_000, batch_size=1, seed=0)


def test_validation_batches_cover_the_held_out_windows_once_in_order(
    small_shards: tuple[Path, Manifest],
) -> None:
    shards_dir = small_shards[0]
    windows = stream_windows(shards_dir, "val", SEQ_LEN)
    shares = []
    for rank in range(2):
        batches = list(validation_batches(shards_dir, seq_len=SEQ_LEN, batch_size=4, rank=rank, world_size=2))
        assert all(batch.shape[1] == SEQ_LEN for batch in batches)
        shares.append([tuple(row) for batch in batches for row in batch.tolist()])
    assert shares[0] == windows[0::2] and shares[1] == windows[1::2]
