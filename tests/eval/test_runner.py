"""The runner: resume after SIGKILL, the reply cache, refused resumes, bad input and model failures."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openk2.chat import ChatFormatError, Message, ParseError
from openk2.eval import EvalProfile, model_config, resolve_suites
from openk2.eval.results import ITEMS_FILE, read_results
from openk2.llm import LLM, ChatRequest, Completion, Usage
from tests.eval.conftest import run_suites
from tests.eval.killable_run import CASES, SUITE, slow_oracle
from tests.llm.checkpoints import write_scripted_checkpoint, write_untrained_checkpoint

REPO = Path(__file__).resolve().parents[2]


def _items(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / ITEMS_FILE).read_text().splitlines() if line.strip()]


def test_sigkill_then_resume_keeps_finished_items_and_asks_the_model_only_for_the_rest(tmp_path):
    output = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.eval.killable_run", str(output)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (output / ITEMS_FILE).is_file() and len(_items(output)) >= 8:
            break
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    kept = {item["id"] for item in _items(output)}
    assert 8 <= len(kept) < CASES  # killed part-way

    oracle = slow_oracle()
    results = run_suites(output, oracle, SUITE, {"n": CASES}, concurrency=2)
    [suite] = results.suites
    assert suite.items == suite.scored == CASES and suite.headline.value == 1.0
    # the finished items were not asked again; replies cached before the kill were not asked again either
    assert len(oracle.requests) <= CASES - len(kept)
    ids = [item["id"] for item in _items(output)]
    assert len(ids) == len(set(ids)) == CASES  # no item written twice


def test_a_finished_run_reruns_from_its_files_without_asking_the_model(tmp_path):
    first = run_suites(tmp_path, slow_oracle(), SUITE, {"n": 5})
    oracle = slow_oracle()
    again = run_suites(tmp_path, oracle, SUITE, {"n": 5})
    assert oracle.requests == []
    assert again.suites[0].scores == first.suites[0].scores


def test_a_resume_with_other_settings_is_refused_naming_the_setting(tmp_path):
    run_suites(tmp_path, slow_oracle(), SUITE, {"n": 2})
    with pytest.raises(ValueError, match=r"bfcl-simple\.n: 2 then, 3 now"):
        run_suites(tmp_path, slow_oracle(), SUITE, {"n": 3})


def test_an_unknown_suite_lists_the_known_suites_and_groups():
    with pytest.raises(
        ValueError, match=r"unknown suite 'humaneva'; known suites: humaneval, bfcl-simple.*groups: all"
    ):
        resolve_suites("humaneva")


class GarbledToolCalls(LLM):
    """Replies as a model whose tool-call markup is broken: text plus the parser's error (scripted)."""

    model_name = "garbled"

    def chat_batch(self, requests: list[ChatRequest]) -> list[Completion]:
        return [
            Completion(
                model=self.model_name,
                message=Message(role="assistant", content="<|tool_calls_section_begin|>functions.calc{oops"),
                finish_reason="stop",
                usage=Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2),
                error=ParseError(
                    kind="malformed_section", detail="no <|tool_call_begin|> after the section start"
                ),
            )
            for _ in requests
        ]


def test_an_unparsable_reply_scores_0_with_the_reason_recorded(tmp_path):
    results = run_suites(tmp_path, GarbledToolCalls(), "bfcl-simple,math500", {"n": 3})
    for suite in results.suites:
        assert suite.scored == 3 and suite.errors == 0 and suite.headline.value == 0.0
        parsed = next(score for score in suite.scores if score.metric == "parsed")
        assert parsed.value == 0.0
        for trajectory in suite.trajectories:
            assert trajectory.reward == 0.0
            assert "parse_error" in trajectory.rewards[0].details
            assert trajectory.meta[-1].error.startswith("malformed_section")


class RefusesTools(GarbledToolCalls):
    """A back end for plain chat: a request with tools is refused as the teacher's back end refuses it."""

    model_name = "plain-chat"

    def chat_batch(self, requests: list[ChatRequest]) -> list[Completion]:
        if any(request.tools for request in requests):
            raise ChatFormatError("tools: plain-chat is served for plain chat; tool calling needs a K2 model")
        return super().chat_batch(requests)


def test_a_model_that_refuses_tools_leaves_the_tool_suite_unmeasured_and_says_why(tmp_path):
    results = run_suites(tmp_path, RefusesTools(), "bfcl-simple,math500", {"n": 2})
    bfcl, math = results.suites
    assert bfcl.unsupported.startswith("plain-chat takes no tools") and bfcl.scores == []
    assert math.unsupported is None and math.scored == 2
    page = (tmp_path / "results.html").read_text()
    assert "not measurable" in page


def test_results_file_round_trips_and_holds_settings_identity_and_trajectories(tmp_path):
    run_suites(tmp_path, slow_oracle(), SUITE, {"n": 3}, profile=EvalProfile(max_tokens=512))
    results = read_results(tmp_path)
    [suite] = results.suites
    assert results.model.backend == "given" and results.model.name == "bfcl-oracle"
    assert results.profile.max_tokens == 512 and suite.settings.max_tokens == 512
    assert suite.settings.temperature == 0.0  # K2: tool use at temperature 0
    assert len(suite.trajectories) == 3 and all(t.sampling.temperature == 0.0 for t in suite.trajectories)
    with pytest.raises(ValueError, match=r"results\.json: suites\[0\]\.scores: Input should be a valid list"):
        broken = json.loads((tmp_path / "results.json").read_text())
        broken["suites"][0]["scores"] = "high"
        (tmp_path / "broken").mkdir()
        (tmp_path / "broken" / "results.json").write_text(json.dumps(broken))
        read_results(tmp_path / "broken")


def test_a_resume_is_the_same_checkpoint_by_its_weights_not_by_how_the_path_is_spelled(tmp_path):
    checkpoint = write_scripted_checkpoint(tmp_path / "ckpt")
    output = tmp_path / "run"
    run_suites(output, model_config(str(checkpoint)), "arithmetic", {"n": 1, "max_tokens": 8})
    respelled = model_config(f"{tmp_path}/./ckpt/")
    again = run_suites(output, respelled, "arithmetic", {"n": 1, "max_tokens": 8})
    assert again.suites[0].scored == 1 and again.model.weights_sha256 is not None
    write_untrained_checkpoint(checkpoint)  # other weights in the same directory
    with pytest.raises(ValueError, match=r"run\.json: this output holds an evaluation of"):
        run_suites(output, model_config(str(checkpoint)), "arithmetic", {"n": 1, "max_tokens": 8})
