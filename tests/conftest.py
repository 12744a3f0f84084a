"""Session fixtures: the small corpus written once and tokenized once (data and tokenizer tests), and the
embedded teacher loaded once for every test that talks to it (llm, serve, rephrase)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from openk2.data.shards import Manifest
from openk2.data.tokenize_corpus import tokenize_corpus
from openk2.llm.teacher import load_teacher
from openk2.llm.transformers_engine import TransformersLLM
from tests.data.small_corpus import small_config, write_small_corpus


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def small_shards(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    shards_dir = tmp_path_factory.mktemp("shards") / "data"
    manifest = tokenize_corpus(small_config(small_corpus, shards_dir), progress=False)
    return shards_dir, manifest


@pytest.fixture(scope="session")
def teacher() -> Iterator[TransformersLLM]:
    """SmolLM2-135M-Instruct generating up to 4 requests at once (the engine batches concurrent callers)."""
    llm = load_teacher(max_batch_size=4)
    yield llm
    llm.close()
