"""The same evaluation in process and over HTTP (`openk2 serve` as a subprocess) at temperature 0: the same
replies, the same scores. The checkpoint has random weights, so its replies depend on every prompt token."""

import pytest

from openk2.eval import model_config
from tests.eval.conftest import run_suites
from tests.eval.served import openk2_serve
from tests.llm.checkpoints import write_untrained_checkpoint

SUITES = "math500,bfcl-simple,ifeval-style"
SETTINGS = {"n": 3, "max_tokens": 24}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_untrained_checkpoint(tmp_path_factory.mktemp("untrained"))


def _replies(results):
    return {
        trajectory.id: [message.model_dump(exclude_none=True) for message in trajectory.messages[1:]]
        for suite in results.suites
        for trajectory in suite.trajectories
    }


@pytest.mark.long
def test_in_process_and_http_give_identical_replies_and_scores_at_temperature_0(checkpoint, tmp_path):
    local = run_suites(tmp_path / "local", model_config(str(checkpoint)), SUITES, SETTINGS, concurrency=1)
    with openk2_serve(["--checkpoint", str(checkpoint)], tmp_path / "serve.log") as url:
        remote = run_suites(tmp_path / "http", model_config(url), SUITES, SETTINGS, concurrency=1)
    assert local.model.backend == "checkpoint" and remote.model.backend == "endpoint"
    assert all(suite.settings.temperature == 0.0 for suite in local.suites)
    assert _replies(local) == _replies(remote) and len(_replies(local)) == 9
    assert [suite.scores for suite in local.suites] == [suite.scores for suite in remote.suites]
    # the replies are prompt-dependent, not one constant string
    assert len({str(messages) for messages in _replies(local).values()}) > 1
