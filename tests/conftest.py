"""Session fixtures shared by the data and tokenizer tests: the small corpus written once and tokenized once."""

from __future__ import annotations

from pathlib import Path

import pytest

from openk2.data.shards import Manifest
from openk2.data.tokenize_corpus import tokenize_corpus
from tests.data.small_corpus import small_config, write_small_corpus


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def small_shards(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    shards_dir = tmp_path_factory.mktemp("shards") / "data"
    manifest = tokenize_corpus(small_config(small_corpus, shards_dir), progress=False)
    return shards_dir, manifest
