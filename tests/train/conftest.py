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


# pp = 2 on 2 processes, each schedule: run in test_parallel.py's launch of 2 processes
TWO_PROCESS_PIPELINES = {
    "1F1B": "pp=2,microbatches=4",
    "Interleaved1F1B": "pp=2,schedule=Interleaved1F1B,virtual_stages=2,microbatches=4",
}


@pytest.fixture(scope="session")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One torchrun launch of 2 processes (a launch costs more than the steps), 3 steps of the tiny model each:
    [parallel] dp=2 (FSDP2 only), dp=2 ep=2 (8 of 16 experts per rank + FSDP2), then the pipelines of
    TWO_PROCESS_PIPELINES (results keyed by layout)."""
    from tests.train.torchrun import torchrun

    result = tmp_path_factory.mktemp("two_processes") / "result.json"
    pipelines = ";".join(TWO_PROCESS_PIPELINES.values())
    return torchrun("distributed_training_steps.py", "1,2", pipelines, result=result)
