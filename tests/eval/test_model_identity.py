"""A resumed evaluation must be of the same weights: their hash covers the Hugging Face layout and a training
checkpoint's sharded weights (model/) alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from openk2.eval.model import weights_hash


def test_the_weights_hash_reads_a_training_checkpoints_shards(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / ".metadata").write_bytes(b"meta")
    (tmp_path / "model" / "__0_0.distcp").write_bytes(b"weights")
    (tmp_path / "optimizer").mkdir()  # training state: not the model's weights
    (tmp_path / "optimizer" / "__0_0.distcp").write_bytes(b"moments")
    before = weights_hash(tmp_path)
    (tmp_path / "optimizer" / "__0_0.distcp").write_bytes(b"other moments")
    assert weights_hash(tmp_path) == before
    (tmp_path / "model" / "__0_0.distcp").write_bytes(b"other weights")
    assert weights_hash(tmp_path) != before


def test_a_directory_without_weights_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"holds no \*\.safetensors weights and no model/ shards"):
        weights_hash(tmp_path)
