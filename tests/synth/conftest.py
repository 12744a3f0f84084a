"""A run directory with tools and tasks (stages 1 and 2) made once by the scripted pipeline, for the tests
that play stage 3 in their own copy of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from openk2.synth import synthesise
from tests.synth.scripted_world import bag_of_words, scripted_models
from tests.synth.synth_recipe import small_recipe


@pytest.fixture(scope="session")
def tasks_ready(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("synth") / "run"
    synthesise(
        small_recipe(output), ("tools", "tasks"), progress=False, models=scripted_models(), embed=bag_of_words
    )
    return output
