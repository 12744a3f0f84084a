"""The judge as rejection sampling (K2 report §3.1.1), with scripted models (tests/synth/scripted_world.py).

Tasks and tools are built once by the scripted pipeline (tests/synth/conftest.py); each test then plays the same
tasks with an agent or a world that breaks one rubric item, and checks that the trajectory is rejected
with exactly that item named, while a trajectory meeting its rubric is kept.
"""

from __future__ import annotations

import json

from openk2.chat import ChatFormatError, ParseError
from openk2.llm import Completion, Usage
from tests.gym.scripted import ScriptedLLM
from tests.synth.scripted_world import scripted_models, world
from tests.synth.synth_recipe import play


def test_a_trajectory_that_meets_its_rubric_is_kept(tasks_ready, tmp_path):
    kept, rejects = play(tasks_ready, tmp_path, scripted_models())
    assert len(kept) == 8 and rejects == []
    stateful = [t for t in kept if any(item["name"] == "final_state" for item in t["judge"]["items"])]
    assert stateful and all(t["env_final"]["state"] for t in stateful)
    assert all(item["passed"] for t in kept for item in t["judge"]["items"])


def test_the_wrong_tool_is_rejected_naming_the_tool_pattern(tasks_ready, tmp_path):
    kept, rejects = play(tasks_ready, tmp_path, scripted_models(wrong_tool=True))
    assert kept == [] and len(rejects) == 8
    for reject in rejects:
        assert "tool_pattern" in reject["failed"]
        assert reject["reason"].startswith("tool_pattern: expected [")
        assert reject["trajectory"]["judge"]["verdict"] == "reject"


def test_a_final_state_off_is_rejected_naming_the_final_state(tasks_ready, tmp_path):
    script = world()

    def forgetful(request):  # the simulator answers but never records the change
        reply = script(request)
        if request.messages[0].text.startswith("You simulate"):
            value = json.loads(reply)
            return json.dumps({**value, "state_changes": []})
        return reply

    llm = ScriptedLLM(forgetful)
    kept, rejects = play(
        tasks_ready, tmp_path, dict.fromkeys(("generator", "agent", "user", "tool_simulator", "judge"), llm)
    )
    stateful = [r for r in rejects if "final_state" in r["failed"]]
    assert stateful and all(r["failed"] == ["final_state"] for r in rejects)
    assert all("/r1/status = 'new' (expected 'done')" in r["reason"] for r in stateful)
    assert all(not any(item["name"] == "final_state" for item in t["judge"]["items"]) for t in kept)


class GarbledAgent(ScriptedLLM):
    """An agent whose first reply is tool-call markup that does not parse (as a parser reports it)."""

    def chat_batch(self, requests):
        completions = super().chat_batch(requests)
        for index, request in enumerate(requests):
            if request.calls_so_far == 0 and request.messages[0].text.startswith("You are a careful"):
                completions[index] = Completion(
                    model=self.name,
                    message={"role": "assistant", "content": '<tool_call>[{"name": "x", "arguments": {'},
                    finish_reason="stop",
                    usage=Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0),
                    error=ParseError(kind="truncated", detail="the call was cut off"),
                )
        return completions


def test_an_unparsed_reply_is_recorded_in_the_trajectory(tasks_ready, tmp_path):
    kept, rejects = play(
        tasks_ready,
        tmp_path,
        dict.fromkeys(("generator", "agent", "user", "tool_simulator", "judge"), GarbledAgent(world())),
    )
    assert kept == [] and all("well_formed" in r["failed"] for r in rejects)
    trajectory = rejects[0]["trajectory"]
    garbled = next(meta for meta in trajectory["meta"] if meta["author"] == "policy")
    assert garbled["error"] == "truncated: the call was cut off"
    assert "<tool_call>" in trajectory["messages"][trajectory["meta"].index(garbled)]["content"]


class NoRoomAgent(ScriptedLLM):
    """An agent whose model refuses the request itself, as an engine does a prompt beyond its context."""

    def chat_batch(self, requests):
        if any(request.messages[0].text.startswith("You are a careful") for request in requests):
            raise ChatFormatError("messages: 9000 tokens exceed the model's context of 8192")
        return super().chat_batch(requests)


def test_a_request_no_model_can_serve_is_rejected_with_its_reason(tasks_ready, tmp_path):
    llm = NoRoomAgent(world())
    kept, rejects = play(
        tasks_ready, tmp_path, dict.fromkeys(("generator", "agent", "user", "tool_simulator", "judge"), llm)
    )
    assert kept == [] and len(rejects) == 8
    assert all(r["failed"] == ["request"] and "context of 8192" in r["reason"] for r in rejects)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["trajectories"]["rejected_by_rubric_item"] == {"request": 8}
    assert "context of 8192" in (tmp_path / "run" / "report.html").read_text()
