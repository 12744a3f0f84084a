"""Environments shared by the gym tests: each is built once per module that asks for it."""

from collections.abc import Iterator

import pytest

from openk2.gym import Environment, make


def shared_env(name: str, **settings) -> Iterator[Environment]:
    import asyncio

    env = make(name, **settings)
    yield env
    asyncio.run(env.aclose())


@pytest.fixture(scope="module")
def math_env() -> Iterator[Environment]:
    yield from shared_env("math", verifier_workers=2)


@pytest.fixture(scope="module")
def logic_env() -> Iterator[Environment]:
    yield from shared_env("logic", verifier_workers=0, difficulty=1)
