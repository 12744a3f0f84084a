"""Real uvicorn servers on loopback ports, each in a background thread, for the official openai client."""

from collections.abc import Iterator
from dataclasses import dataclass

import openai
import pytest

from openk2.llm.k2_engine import K2Engine
from openk2.serve.app import create_app
from openk2.serve.background import BackgroundServer
from tests.llm.checkpoints import write_scripted_checkpoint, write_untrained_checkpoint
from tests.llm.conftest import one_thread  # noqa: F401 (the same autouse fixture for the server tests)


@dataclass
class Served:
    server: BackgroundServer
    engine: K2Engine

    def client(self, **options: object) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.server.base_url, api_key="EMPTY", **options)


def serve(engine: K2Engine, **app_options: object) -> Iterator[Served]:
    try:
        with BackgroundServer(create_app(engine, **app_options)) as server:  # type: ignore[arg-type]
            yield Served(server, engine)
    finally:
        engine.close()


@pytest.fixture(scope="package")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The scripted checkpoint (tests/llm/checkpoints.py) served with the default queue."""
    engine = K2Engine.from_checkpoint(write_scripted_checkpoint(tmp_path_factory.mktemp("scripted")))
    yield from serve(engine)


@pytest.fixture(scope="package")
def untrained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A random-weight checkpoint behind a batch of one and a queue of one: easy to overload, emits junk."""
    directory = write_untrained_checkpoint(tmp_path_factory.mktemp("untrained"))
    yield from serve(K2Engine.from_checkpoint(directory, max_batch_size=1, max_pending=1))


@pytest.fixture(scope="package")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A random-weight checkpoint with the default batch and queue: junk that only a grammar can shape."""
    directory = write_untrained_checkpoint(tmp_path_factory.mktemp("random"), seed=2)
    yield from serve(K2Engine.from_checkpoint(directory))
