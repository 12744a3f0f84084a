"""The tool simulator as a world model, with a scripted simulator model (the test is about the state
keeping and the outcome draws, not about a model)."""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from pathlib import Path

from openk2.io import ReplyCache
from openk2.synth.models import Accounting, RoleLLM
from openk2.synth.tool_simulator import OUTCOMES, ToolSimulator, draw_outcome
from openk2.synth.tools import ToolRecord
from tests.gym.scripted import ScriptedLLM

RECORD = {"category": "smart_home", "domain": "locks", "origin": "synthetic"}
SET_LOCK = ToolRecord(
    name="set_lock",
    description="Lock or unlock a door.",
    parameters={"type": "object", "properties": {"door": {"type": "string"}, "locked": {"type": "boolean"}}},
    returns={"type": "object", "properties": {"locked": {"type": "boolean"}}},
    semantics={"effect": "update", "entity": "doors", "behaviour": "sets the door's locked flag"},
    **RECORD,
)
GET_LOCK = ToolRecord(
    name="get_lock",
    description="Whether a door is locked.",
    parameters={"type": "object", "properties": {"door": {"type": "string"}}},
    returns={"type": "object", "properties": {"locked": {"type": "boolean"}}},
    semantics={"effect": "read", "entity": "doors", "behaviour": "reads the door's locked flag"},
    **RECORD,
)


def world_model(request) -> str:
    """A simulator that writes what it is asked to and reads back what the state it is shown holds."""
    prompt = request.messages[-1].text
    state = json.loads(prompt.split("Current state: ", 1)[1].split("\n", 1)[0])
    arguments = json.loads(prompt.split("Call: ", 1)[1].split("(", 1)[1].rsplit(")", 1)[0])
    door = arguments["door"]
    if "set_lock" in prompt.split("Call: ", 1)[1].split("(", 1)[0]:
        change = {"op": "set", "path": f"/doors/{door}/locked", "value": arguments["locked"]}
        return json.dumps({"result": {"locked": arguments["locked"]}, "state_changes": [change]})
    return json.dumps(
        {"result": {"locked": state.get("doors", {}).get(door, {}).get("locked")}, "state_changes": []}
    )


def simulator(tmp_path: Path, script=world_model, rates=None, initial=None) -> ToolSimulator:
    llm = RoleLLM("tool_simulator", ScriptedLLM(script), ReplyCache(tmp_path / "cache.jsonl"), Accounting())
    return ToolSimulator(llm, initial, rates or {"success": 1.0}, seed=0, episode="e1")


def test_state_persists_across_calls(tmp_path):
    world = simulator(tmp_path, initial={"doors": {"front": {"locked": False}}})

    async def session():
        first = await world.call(GET_LOCK, {"door": "front"})
        await world.call(SET_LOCK, {"door": "front", "locked": True})
        await world.call(SET_LOCK, {"door": "back", "locked": True})
        second = await world.call(GET_LOCK, {"door": "front"})
        return first, second

    first, second = asyncio.run(session())
    assert first.result == {"locked": False} and second.result == {"locked": True}
    assert world.state == {"doors": {"front": {"locked": True}, "back": {"locked": True}}}
    assert [call.outcome for call in world.calls] == ["success"] * 4


def test_changes_outside_the_tools_entity_or_by_a_read_are_not_applied(tmp_path):
    def rogue(request):
        changes = [
            {"op": "set", "path": "/users/u1/admin", "value": True},
            {"op": "set", "path": "/doors/x/locked", "value": 1},
        ]
        return json.dumps({"result": {"locked": True}, "state_changes": changes})

    world = simulator(tmp_path, rogue)
    asyncio.run(world.call(SET_LOCK, {"door": "x", "locked": True}))
    asyncio.run(world.call(GET_LOCK, {"door": "x"}))
    assert world.state == {"doors": {"x": {"locked": 1}}}  # only the update tool's own entity
    assert world.calls[1].changes == []


def test_an_unreadable_reply_is_recorded_and_leaves_the_state(tmp_path):
    world = simulator(tmp_path, lambda request: '{"result": {"locked": tr', initial={"doors": {}})
    call = asyncio.run(world.call(SET_LOCK, {"door": "x", "locked": True}))
    assert call.result is None and call.error.startswith(
        "unparsed: the tool simulator's reply could not be read"
    )
    assert world.state == {"doors": {}}


def test_outcome_rates_match_the_configuration_over_1000_calls(tmp_path):
    """1,000 calls of one episode: each outcome's share lies within 4 standard errors of its rate
    (a binomial bound a correct draw violates with probability < 1e-4)."""
    rates = {"success": 0.7, "partial_failure": 0.2, "edge_case": 0.1}

    def any_outcome(request):
        if "partly fails" in request.messages[-1].text:
            return json.dumps({"result": {"error": "half done", "partial_result": {}}, "state_changes": []})
        return json.dumps({"result": {"locked": True}, "state_changes": []})

    world = simulator(tmp_path, any_outcome, rates)

    async def calls():
        for _ in range(1000):
            await world.call(GET_LOCK, {"door": "front"})

    asyncio.run(calls())
    counts = Counter(call.outcome for call in world.calls)
    for outcome, rate in rates.items():
        bound = 4 * math.sqrt(rate * (1 - rate) / 1000)
        assert abs(counts[outcome] / 1000 - rate) <= bound, (outcome, counts)
    partial = [call for call in world.calls if call.outcome == "partial_failure"]
    assert all(call.error == "partial_failure: half done" for call in partial)
    assert sum(call.error is None for call in world.calls) == 1000 - len(partial)


def test_outcome_draws_are_reproducible_and_rates_of_zero_never_drawn():
    draws = [draw_outcome({"success": 0.5, "edge_case": 0.5}, 3, "e", index) for index in range(200)]
    assert draws == [draw_outcome({"success": 0.5, "edge_case": 0.5}, 3, "e", index) for index in range(200)]
    assert set(draws) == {"success", "edge_case"} and set(OUTCOMES) > set(draws)
