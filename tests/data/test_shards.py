from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from openk2.data.corpus import corpus_files, read_documents
from openk2.data.loader import PackedSequenceLoader
from openk2.data.shards import (
    MANIFEST_NAME,
    TOKENIZER_NAME,
    Manifest,
    ShardError,
    open_split,
    token_dtype,
    verify_shards_dir,
)
from openk2.data.tokenize_corpus import tokenize_corpus
from openk2.tokenizer.bpe import load_tokenizer
from tests.data.small_corpus import small_config


def copy_of(small_shards: tuple[Path, Manifest], tmp_path: Path) -> Path:
    return Path(shutil.copytree(small_shards[0], tmp_path / "data"))


def test_manifest_records_each_files_size_and_sha256(small_shards: tuple[Path, Manifest]) -> None:
    shards_dir, manifest = small_shards
    assert manifest.dtype == "uint16"
    for split in ("train", "val"):
        record = manifest.split(split)
        assert record.num_tokens == sum(shard.num_tokens for shard in record.shards)
        assert (
            record.num_documents
            == len(record.documents)
            == sum(shard.num_documents for shard in record.shards)
        )
        for shard in record.shards:
            data = (shards_dir / shard.name).read_bytes()
            assert len(data) == 2 * shard.num_tokens
            assert hashlib.sha256(data).hexdigest() == shard.sha256
    tokenizer_bytes = (shards_dir / TOKENIZER_NAME).read_bytes()
    assert hashlib.sha256(tokenizer_bytes).hexdigest() == manifest.tokenizer_sha256
    assert sorted(path.name for path in shards_dir.iterdir()) == sorted(
        [MANIFEST_NAME, TOKENIZER_NAME]
        + [shard.name for s in ("train", "val") for shard in manifest.split(s).shards]
    )


def test_shards_decode_back_to_the_source_documents(
    small_shards: tuple[Path, Manifest], small_corpus: Path
) -> None:
    shards_dir, manifest = small_shards
    tokenizer = load_tokenizer(shards_dir / TOKENIZER_NAME)
    source_text = {d.source: d.text for file in corpus_files(str(small_corpus)) for d in read_documents(file)}
    assert sorted(manifest.train.documents + manifest.val.documents) == sorted(source_text)
    assert not set(manifest.train.documents) & set(manifest.val.documents)
    for split in ("train", "val"):
        _, tokens = open_split(shards_dir, split)
        stream = tokens.read(0, len(tokens))
        ends = np.flatnonzero(stream == manifest.eos_id)
        documents = np.split(stream, ends[:-1] + 1)
        assert ends[-1] == len(stream) - 1 and len(documents) == len(manifest.split(split).documents)
        for source, document in zip(manifest.split(split).documents, documents, strict=True):
            assert document[0] == manifest.bos_id and document[-1] == manifest.eos_id
            assert tokenizer.decode(document[1:-1].tolist(), skip_special_tokens=False) == source_text[source]


def test_a_shard_holds_whole_documents_up_to_shard_tokens(small_shards: tuple[Path, Manifest]) -> None:
    shards_dir, manifest = small_shards
    assert len(manifest.train.shards) > 1  # the fixture's shard_tokens=8000 forces several shards
    for split in ("train", "val"):
        for shard in manifest.split(split).shards:
            tokens = np.fromfile(shards_dir / shard.name, dtype="<u2")
            assert tokens[0] == manifest.bos_id and tokens[-1] == manifest.eos_id
            assert np.count_nonzero(tokens == manifest.bos_id) == shard.num_documents
            assert shard.num_tokens <= 8000 or shard.num_documents == 1


def test_token_dtype_is_the_narrowest_that_holds_the_vocab() -> None:
    assert token_dtype(8192) == "uint16"
    assert token_dtype(65_536) == "uint16"
    assert token_dtype(65_537) == "uint32"
    assert token_dtype(163_840) == "uint32"


def test_truncated_shard_is_named(small_shards: tuple[Path, Manifest], tmp_path: Path) -> None:
    shards_dir = copy_of(small_shards, tmp_path)
    shard = shards_dir / "train_000001.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(
        ShardError, match=rf"{re.escape(str(shard))}: \d+ bytes, but manifest.json expects \d+; .*truncated"
    ):
        PackedSequenceLoader(shards_dir, seq_len=64, batch_size=2, seed=0)


def test_corrupt_shard_of_the_right_size_is_named(
    small_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    shards_dir = copy_of(small_shards, tmp_path)
    shard = shards_dir / "val_000000.bin"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=rf"{re.escape(str(shard))}: sha256 .* differs .*corrupt"):
        verify_shards_dir(shards_dir)
    verify_shards_dir(shards_dir, check_hashes=False)  # the size check alone cannot see a flipped byte


def test_missing_shard_tokenizer_change_and_broken_manifest_are_named(
    small_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    shards_dir = copy_of(small_shards, tmp_path)
    (shards_dir / "train_000002.bin").unlink()
    with pytest.raises(ShardError, match=rf"{re.escape(str(shards_dir / 'train_000002.bin'))}: missing"):
        open_split(shards_dir, "train")

    shards_dir = Path(shutil.copytree(small_shards[0], tmp_path / "retrained"))
    tokenizer = shards_dir / TOKENIZER_NAME
    tokenizer.write_text(tokenizer.read_text().replace('"[EOS]"', '"[END]"'))
    with pytest.raises(ShardError, match=rf"{re.escape(str(tokenizer))}: sha256"):
        verify_shards_dir(shards_dir)

    manifest = shards_dir / MANIFEST_NAME
    manifest.write_text(manifest.read_text()[:-40])
    with pytest.raises(ShardError, match=rf"{re.escape(str(manifest))}: not a valid shard manifest"):
        verify_shards_dir(shards_dir)


def test_rerun_with_identical_inputs_touches_nothing(
    small_shards: tuple[Path, Manifest], small_corpus: Path, tmp_path: Path
) -> None:
    shards_dir = copy_of(small_shards, tmp_path)
    before = {path.name: path.stat().st_mtime_ns for path in shards_dir.iterdir()}
    assert tokenize_corpus(small_config(small_corpus, shards_dir), progress=False) == small_shards[1]
    assert {path.name: path.stat().st_mtime_ns for path in shards_dir.iterdir()} == before


def test_a_fresh_build_reproduces_identical_bytes(
    small_shards: tuple[Path, Manifest], small_corpus: Path, tmp_path: Path
) -> None:
    rebuilt = tmp_path / "rebuilt"
    tokenize_corpus(small_config(small_corpus, rebuilt), progress=False)
    original = small_shards[0]
    assert sorted(path.name for path in rebuilt.iterdir()) == sorted(path.name for path in original.iterdir())
    for path in original.iterdir():
        assert (rebuilt / path.name).read_bytes() == path.read_bytes(), path.name


def test_changed_settings_rebuild_the_directory_without_stale_shards(
    small_shards: tuple[Path, Manifest], small_corpus: Path, tmp_path: Path
) -> None:
    shards_dir = copy_of(small_shards, tmp_path)
    manifest = tokenize_corpus(small_config(small_corpus, shards_dir, shard_tokens=1_000_000), progress=False)
    assert [shard.name for shard in manifest.train.shards] == ["train_000000.bin"]
    assert not (shards_dir / "train_000001.bin").exists()
    assert not list(tmp_path.glob(".data.*"))  # no staging or retired directory left behind
    assert verify_shards_dir(shards_dir) == manifest


def test_a_damaged_build_is_rebuilt(
    small_shards: tuple[Path, Manifest], small_corpus: Path, tmp_path: Path
) -> None:
    shards_dir = copy_of(small_shards, tmp_path)
    (shards_dir / "val_000001.bin").write_bytes(b"")
    tokenize_corpus(small_config(small_corpus, shards_dir), progress=False)
    assert (shards_dir / "val_000001.bin").read_bytes() == (small_shards[0] / "val_000001.bin").read_bytes()


def test_a_directory_that_is_not_a_shard_directory_is_never_replaced(
    small_corpus: Path, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"data\.shards_dir: .* has no manifest\.json; refusing"):
        tokenize_corpus(small_config(small_corpus, tmp_path), progress=False)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
