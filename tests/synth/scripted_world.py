"""Scripted stand-ins for every synthesis role, for tests about the pipeline (not about a model).

One script answers the generator (domains, tools, system prompts, tasks), the agent, the user
simulator, the tool simulator and the judge, telling them apart by their system prompts. Replies are
functions of the request, so runs are deterministic. `agent` follows the tool pattern the scripted
task generator wrote into the user's request ("Please use a then b."); `bad_agent` calls the wrong tool.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

import numpy as np

from openk2.chat import Message, format_call_id
from openk2.gym.envs.user_simulator import STOP_TOKENS
from openk2.llm import ChatRequest
from openk2.synth import agents, evolution, judge, task_stage, tool_simulator
from tests.gym.scripted import ScriptedLLM

STATUS_PATH = re.compile(r"\(entities: ([a-z0-9_, ]+)\)")


def _digest(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def generator_reply(request: ChatRequest) -> str:
    system, prompt = request.messages[0].text, request.messages[-1].text
    if system == evolution.SYSTEM and "List " in prompt:
        category = prompt.split("Category: ", 1)[1].split(" ", 1)[0]
        count = int(prompt.split("List ", 1)[1].split(" ", 1)[0])
        return json.dumps({"domains": [f"{category} area {index}" for index in range(count)]})
    if system == evolution.SYSTEM:
        domain = prompt.split("Application domain: ", 1)[1].split(".\n", 1)[0]
        parent = re.search(r"Existing tool: ([a-z0-9_]+)\(", prompt)
        step = next((step for step, text in evolution.STEPS.items() if text in prompt), "base")
        stem = re.sub(r"[^a-z0-9]+", "_", domain)[:20]
        name = f"{stem}_{step}" if parent is None else f"{parent.group(1)[:24]}_{step}"
        effect = ["read", "update", "create", "compute"][_digest(name) % 4]
        tool = {
            "name": name,
            "description": f"The {step} tool {name} of {domain}.",
            "parameters": [
                {"name": "record_id", "type": "string", "description": "which record", "required": True}
            ],
            "returns": [{"name": "status", "type": "string", "description": "the record's status"}],
            "effect": effect,
            "entity": "records",
            "behaviour": f"{effect}s one record of the domain.",
        }
        return json.dumps(tool)
    if system == agents.PROMPT_SYSTEM:
        return "You are a careful assistant. Use your tools and report results."
    if system == task_stage.TASK_SYSTEM:
        pattern = prompt.split("by calling ", 1)[1].split(".\n", 1)[0].split(".", 1)[0].split(" then ")
        task: dict[str, Any] = {
            "user_request": f"Please use {' then '.join(pattern)}.",
            "persona": "terse engineer",
            "goal": "get the record updated",
            "known_info": "the record is r1",
            "success_criteria": ["the record is updated"],
            "checkpoints": ["the assistant reports the result"],
        }
        entities = STATUS_PATH.search(prompt)
        if entities:
            entity = entities.group(1).split(", ")[0]
            task["initial_records"] = [{"entity": entity, "id": "r1", "fields": {"status": "new"}}]
            task["expected_final_state"] = [{"path": f"/{entity}/r1/status", "value": "done"}]
        return json.dumps(task)
    raise AssertionError(f"the scripted generator got an unexpected request: {system[:60]!r}")


def simulator_reply(request: ChatRequest) -> str:
    prompt = request.messages[-1].text
    schema = request.response_format.json_schema if request.response_format else {}
    changes_allowed = schema["properties"]["state_changes"]["maxItems"] > 0
    pattern = schema["properties"]["state_changes"]["items"]["properties"]["path"]["pattern"]
    entity = pattern.split("/", 2)[1]
    result: dict[str, Any] = {"status": "done"}
    if "partly fails" in prompt:
        result = {"error": "one item failed", "partial_result": {"status": "partial"}}
    changes = [{"op": "set", "path": f"/{entity}/r1/status", "value": "done"}] if changes_allowed else []
    return json.dumps({"result": result, "state_changes": changes})


def judge_reply(request: ChatRequest) -> str:
    names = request.response_format.json_schema["required"] if request.response_format else []
    return json.dumps({name: {"reason": "met", "passed": True} for name in names})


def _arguments(schema: dict[str, Any]) -> dict[str, Any]:
    values = {"string": "r1", "integer": 1, "number": 1.0, "boolean": True}
    return {
        name: values.get(spec.get("type"), "r1")
        for name, spec in schema.get("properties", {}).items()
        if name in schema.get("required", [])
    }


def agent_reply(request: ChatRequest, wrong_tool: bool = False) -> Message | str:
    first_user = next(m.text for m in request.messages if m.role == "user")
    pattern = first_user.removeprefix("Please use ").rstrip(".").split(" then ")
    made = request.calls_so_far
    tools = {tool.function.name: tool.function.parameters or {} for tool in request.tools or ()}
    if made < len(pattern):
        name = pattern[made]
        if wrong_tool:
            name = (
                next(other for other in tools if other not in pattern)
                if len(tools) > len(pattern)
                else "no_such_tool"
            )
        arguments = _arguments(tools.get(name, {}))
        call = {
            "id": format_call_id(name, made),
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)},
        }
        return Message(role="assistant", content=None, tool_calls=[call])
    return "Done: the record is updated."


def user_reply(request: ChatRequest) -> str:
    return f"Thanks, that is all. {STOP_TOKENS[0]}"


def world(agent_delay_s: float = 0.0, wrong_tool: bool = False):
    """The role scripts as one function of the request."""

    def script(request: ChatRequest) -> Message | str:
        system = request.messages[0].text
        if system.startswith("You are a customer"):
            return user_reply(request)
        if system == tool_simulator.SYSTEM:
            return simulator_reply(request)
        if system == judge.JUDGE_SYSTEM:
            return judge_reply(request)
        if system in (evolution.SYSTEM, agents.PROMPT_SYSTEM, task_stage.TASK_SYSTEM):
            return generator_reply(request)
        time.sleep(agent_delay_s)  # the agent: slow enough for a kill to land mid-run
        return agent_reply(request, wrong_tool)

    return script


def scripted_models(agent_delay_s: float = 0.0, wrong_tool: bool = False) -> dict[str, ScriptedLLM]:
    llm = ScriptedLLM(world(agent_delay_s, wrong_tool), "scripted")
    return dict.fromkeys(("generator", "agent", "user", "tool_simulator", "judge"), llm)


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A cheap stand-in embedding for pipeline tests: hashed word counts, unit length."""
    vectors = np.zeros((len(texts), 256))
    for row, text in enumerate(texts):
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            vectors[row, _digest(word) % 256] += 1
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
