"""Session fixtures: the small corpus, tokenized once."""

from __future__ import annotations

from typing import Any

import pytest

from openk2.data import DataConfig, tokenize_corpus
from openk2.recipes import validate_recipe
from tests.train.small_run import data_section, write_corpus


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The [data] section of a tokenized small corpus."""
    corpus = write_corpus(tmp_path_factory.mktemp("corpus"))
    data = data_section(corpus, tmp_path_factory.mktemp("shards") / "data")
    tokenize_corpus(validate_recipe(DataConfig, data, "[data]"), progress=False)
    return data
