"""An endpoint that goes away: the run stops with a resume hint, keeps its finished items, and resumes
once the server is back (a real uvicorn server on loopback, the official openai client)."""

import socket

import pytest

from openk2.eval import EvalStopped, model_config
from openk2.llm.k2_engine import K2Engine
from openk2.serve.app import create_app
from openk2.serve.background import BackgroundServer
from tests.eval.conftest import run_suites
from tests.llm.checkpoints import write_scripted_checkpoint


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return K2Engine.from_checkpoint(write_scripted_checkpoint(tmp_path_factory.mktemp("scripted")))


def serve(engine: K2Engine, port: int = 0) -> BackgroundServer:
    return BackgroundServer(create_app(engine), port=port)


def test_a_vanished_endpoint_stops_the_run_with_a_resume_hint_and_the_resume_finishes(engine, tmp_path):
    with serve(engine) as server:
        url, port = server.base_url, server.port
        config = model_config(url, endpoint_model=engine.model_name, timeout_s=5, max_retries=0)
        first = run_suites(tmp_path, config, "bfcl-simple", {"n": 2, "max_tokens": 16})
    assert first.suites[0].scored == 2 and first.model.base_url == url

    with pytest.raises(
        EvalStopped,
        match=r"the model stopped answering .*Connection error.*2 finished items are kept .*rerun the same command",
    ):
        run_suites(tmp_path, config, "bfcl-simple,bfcl-multiple", {"n": 2, "max_tokens": 16})

    with serve(engine, port):
        resumed = run_suites(tmp_path, config, "bfcl-simple,bfcl-multiple", {"n": 2, "max_tokens": 16})
    assert [suite.scored for suite in resumed.suites] == [2, 2]
    assert "0 hits, 2 misses" in resumed.notes[0]  # only bfcl-multiple was asked: bfcl-simple was kept


def test_an_unreachable_endpoint_without_a_model_name_stops_before_any_item(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = model_config(f"http://127.0.0.1:{port}/v1", timeout_s=2, max_retries=0)
    with pytest.raises(EvalStopped, match=r"cannot list the served models .*0 finished items are kept"):
        run_suites(tmp_path, config, "bfcl-simple", {"n": 2})
