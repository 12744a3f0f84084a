"""K2's 8,192-token reply cap on a model with a 400-token context: clipped, recorded, never a crash.

In process the context is known, so the cap becomes "up to the end of the context" up front; over HTTP
the server refuses the cap and the item is rerun with it clipped. A prompt longer than the context is
a task the model cannot read: it scores 0 as `context_overflow`, with the reason. The model is the
scripted checkpoint (tests/llm/checkpoints.py), which answers every prompt with a short sentence.
"""

import json

import pytest

from openk2.eval import model_config
from openk2.llm.k2_engine import K2Engine
from openk2.serve.app import create_app
from openk2.serve.background import BackgroundServer
from tests.eval.conftest import run_suites
from tests.llm.checkpoints import write_scripted_checkpoint

SETTINGS = {"n": 8}  # HumanEval's held-out prompts: some fit in 400 tokens, some do not
CONTEXT = 400


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = write_scripted_checkpoint(tmp_path_factory.mktemp("scripted"))
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps(config | {"max_position_embeddings": CONTEXT}))
    return directory


def _check_overflow(suite):
    overflow = [t for t in suite.trajectories if t.termination == "context_overflow"]
    answered = [t for t in suite.trajectories if t.termination != "context_overflow"]
    assert overflow and answered, "the sample must hold prompts on both sides of the context"
    for trajectory in overflow:
        assert trajectory.reward == 0.0 and f"context is {CONTEXT}" in trajectory.rewards[0].details["reason"]
    assert suite.scored == suite.items == 8 and suite.errors == 0
    assert any(f"{len(overflow)} items did not fit the model's context" in note for note in suite.notes)
    return answered


def test_in_process_the_cap_is_clipped_to_the_context_up_front(checkpoint, tmp_path):
    results = run_suites(tmp_path, model_config(str(checkpoint)), "humaneval", SETTINGS)
    [suite] = results.suites
    assert results.model.context_length == CONTEXT and suite.settings.max_tokens == 8192
    assert any(
        f"max_tokens 8192 is not below the model's context of {CONTEXT}" in note for note in suite.notes
    )
    for trajectory in _check_overflow(suite):
        assert trajectory.sampling.max_tokens is None  # what was actually used


def test_over_http_a_refused_cap_is_rerun_clipped_and_recorded(checkpoint, tmp_path):
    engine = K2Engine.from_checkpoint(checkpoint)
    with BackgroundServer(create_app(engine)) as server:
        results = run_suites(tmp_path, model_config(server.base_url), "humaneval", SETTINGS)
    [suite] = results.suites
    assert results.model.context_length is None  # an endpoint does not say
    answered = _check_overflow(suite)
    for trajectory in answered:
        assert "max_tokens: 8192" in trajectory.provenance["max_tokens_clipped"]
        assert trajectory.sampling.max_tokens is None
    assert any(f"{len(answered)} items ran with the reply cap clipped" in note for note in suite.notes)
