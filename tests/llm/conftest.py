"""Checkpoints and engines shared by the LLM tests; generation runs on one thread (see below)."""

from collections.abc import Iterator

import pytest
import torch

from openk2.llm.k2_engine import K2Engine
from tests.llm.checkpoints import CALLS_THE_TOOL, write_scripted_checkpoint, write_untrained_checkpoint


@pytest.fixture(scope="package", autouse=True)
def one_thread() -> Iterator[None]:
    # These models are too small to gain from two threads, and spinning OpenMP threads slow down
    # 10-100x while other processes share two cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="package")
def scripted_engine(tmp_path_factory: pytest.TempPathFactory) -> K2Engine:
    return K2Engine.from_checkpoint(write_scripted_checkpoint(tmp_path_factory.mktemp("scripted")))


@pytest.fixture(scope="package")
def untrained_engine(tmp_path_factory: pytest.TempPathFactory) -> K2Engine:
    return K2Engine.from_checkpoint(write_untrained_checkpoint(tmp_path_factory.mktemp("untrained")))


@pytest.fixture(scope="package")
def tool_calling_engine(tmp_path_factory: pytest.TempPathFactory) -> K2Engine:
    directory = tmp_path_factory.mktemp("calls-the-tool")
    return K2Engine.from_checkpoint(write_scripted_checkpoint(directory, CALLS_THE_TOOL))
