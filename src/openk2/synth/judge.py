"""Quality filtering (K2 report §3.1.1): each trajectory is scored against its task's rubric and only
those meeting it are kept, "effectively large-scale rejection sampling".

Rubric items that code can decide are decided by code, the rest by an LLM judge:

    tool_pattern   the expected tools were called (in order, from level 2), from the messages
    well_formed    no agent reply failed to parse; every call named a declared tool with valid arguments
    final_state    every expected path of the simulated world holds its value (null: absent)
    success_*, checkpoint_*   the judge, under a JSON Schema with one verdict per item

A trajectory is kept when every item passes. A rejection names the failing items and why; a judge
reply that cannot be read fails the items it should have decided, saying so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema

from openk2.chat import Message
from openk2.gym.records import RewardComponent, RubricItem, Task, Trajectory
from openk2.llm import SamplingParams
from openk2.synth.models import RoleLLM, structured_reply, structured_request
from openk2.synth.tool_simulator import state_value

CODE_ITEMS = ("tool_pattern", "well_formed", "final_state")
JUDGE_SYSTEM = (
    "You are a strict judge of an AI assistant's conversation with a user. For each rubric item decide "
    "whether the conversation meets it, and give a short reason. Answer with one JSON object."
)


@dataclass(frozen=True)
class ItemVerdict:
    name: str
    passed: bool
    by: str  # "code" or the judge model's name
    reason: str


def calls_of(messages: list[Message]) -> list[tuple[str, str]]:
    """(tool name, arguments JSON) of every call the agent made, in order."""
    return [
        (call.function.name, call.function.arguments)
        for message in messages
        if message.role == "assistant"
        for call in message.tool_calls or []
    ]


def check_tool_pattern(task: Task, messages: list[Message]) -> ItemVerdict:
    expected: list[str] = task.verification.get("expected_tools", [])
    made = [name for name, _ in calls_of(messages)]
    if task.verification.get("ordered"):
        position = 0
        for name in made:
            if position < len(expected) and name == expected[position]:
                position += 1
        passed = position == len(expected)
    else:
        passed = all(made.count(name) >= expected.count(name) for name in set(expected))
    reason = f"expected {expected}, called {made}"
    return ItemVerdict("tool_pattern", passed, "code", reason)


def check_well_formed(task: Task, trajectory: Trajectory) -> ItemVerdict:
    problems = [
        f"messages[{index}]: {meta.error}"
        for index, meta in enumerate(trajectory.meta)
        if meta.author == "policy" and meta.error is not None
    ]
    schemas = {tool.function.name: tool.function.parameters or {} for tool in task.tools}
    for name, arguments in calls_of(trajectory.messages):
        if name not in schemas:
            problems.append(f"{name}: not a declared tool")
            continue
        error = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(schemas[name]).iter_errors(json.loads(arguments))
        )
        if error is not None:
            where = "".join(f".{part}" for part in error.absolute_path)
            problems.append(f"{name}{where}: {error.message}")
    return ItemVerdict(
        "well_formed", not problems, "code", "; ".join(problems) or "all replies and calls well-formed"
    )


def check_final_state(task: Task, trajectory: Trajectory) -> ItemVerdict:
    state = (trajectory.env_final or {}).get("state", {})
    wrong = []
    for item in task.verification.get("expected_final_state", []):
        found, value = state_value(state, item["path"])
        if item["value"] is None and found:
            wrong.append(f"{item['path']} should be gone, is {value!r}")
        elif item["value"] is not None and (not found or value != item["value"]):
            wrong.append(
                f"{item['path']} = {value!r} (expected {item['value']!r})"
                if found
                else f"{item['path']} missing"
            )
    return ItemVerdict("final_state", not wrong, "code", "; ".join(wrong) or "every expected value holds")


def judge_format(items: list[RubricItem]) -> dict[str, Any]:
    verdict = {
        "type": "object",
        "properties": {
            "reason": {"type": "string", "minLength": 3, "maxLength": 150},
            "passed": {"type": "boolean"},
        },
        "required": ["reason", "passed"],
        "additionalProperties": False,
    }
    names = [item.name for item in items]
    return {
        "type": "object",
        "properties": dict.fromkeys(names, verdict),
        "required": names,
        "additionalProperties": False,
    }


def transcript(trajectory: Trajectory, limit: int = 6000) -> str:
    lines = []
    for message in trajectory.messages[1:]:  # the agent's system prompt is not the judge's concern
        if message.role == "assistant" and message.tool_calls:
            calls = ", ".join(f"{c.function.name}({c.function.arguments})" for c in message.tool_calls)
            lines.append(f"assistant calls: {calls}")
        if message.text:
            lines.append(f"{message.role}: {message.text}")
    text = "\n".join(lines)
    return text if len(text) <= limit else text[: limit // 2] + "\n[...]\n" + text[-limit // 2 :]


async def judge_items(
    llm: RoleLLM, task: Task, trajectory: Trajectory, items: list[RubricItem], sampling: SamplingParams
) -> list[ItemVerdict]:
    rubric = "\n".join(f"- {item.name}: {item.description}" for item in items)
    state = (trajectory.env_final or {}).get("state")
    prompt = f"Rubric:\n{rubric}\n\nConversation:\n{transcript(trajectory)}"
    if state:
        prompt += f"\n\nFinal state of the world: {json.dumps(state, ensure_ascii=False)[:1500]}"
    messages = [Message(role="system", content=JUDGE_SYSTEM), Message(role="user", content=prompt)]
    completion = await llm.achat(structured_request(messages, judge_format(items), sampling))
    value, problem = structured_reply(completion)
    verdicts = []
    for item in items:
        entry = (value or {}).get(item.name)
        if not isinstance(entry, dict) or not isinstance(entry.get("passed"), bool):
            why = problem or f"no verdict for {item.name}"
            verdicts.append(ItemVerdict(item.name, False, llm.model_name, f"unparsed judge reply: {why}"))
        else:
            verdicts.append(
                ItemVerdict(item.name, entry["passed"], llm.model_name, str(entry.get("reason", "")))
            )
    return verdicts


async def judge_trajectory(
    llm: RoleLLM, task: Task, trajectory: Trajectory, sampling: SamplingParams
) -> list[ItemVerdict]:
    """A verdict for every rubric item of `task`, in rubric order."""
    decided = {
        "tool_pattern": check_tool_pattern(task, trajectory.messages),
        "well_formed": check_well_formed(task, trajectory),
    }
    if task.verification.get("expected_final_state"):
        decided["final_state"] = check_final_state(task, trajectory)
    asked = [item for item in task.rubric if item.name not in CODE_ITEMS]
    if asked:
        decided |= {
            verdict.name: verdict for verdict in await judge_items(llm, task, trajectory, asked, sampling)
        }
    return [decided[item.name] for item in task.rubric if item.name in decided]


def rubric_components(task: Task, verdicts: list[ItemVerdict]) -> list[RewardComponent]:
    weights = {item.name: item.weight for item in task.rubric}
    return [
        RewardComponent(
            name=verdict.name,
            score=float(verdict.passed),
            weight=weights.get(verdict.name, 1.0),
            passed=verdict.passed,
            details={"by": verdict.by, "reason": verdict.reason},
        )
        for verdict in verdicts
    ]
