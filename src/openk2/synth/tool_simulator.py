"""The tool simulator (K2 report §3.1.1): a world model over a JSON state with controlled stochasticity.

K2's simulator "maintains and updates state after each tool execution", so effects persist, and
"introduces controlled stochasticity to produce varied outcomes including successes, partial failures,
and edge cases". Here:

- the world is a JSON object of entity collections, `{"orders": {"o1": {"status": "paid"}}}`, started
  from the task's initial state;
- before each call the outcome is drawn at the configured rates from a hash of (seed, episode, call
  index), so it is reproducible and independent of scheduling, and recorded with the call;
- the simulator model sees the tool (description, semantics, return schema), the current state, the
  episode's earlier calls and the outcome to produce, and answers under a JSON Schema: the result (the
  tool's return schema; for a partial failure an error beside a partial result) and the state changes
  (`set` / `delete` at JSON-pointer paths, only inside the tool's own entity, none for reads);
- the changes are applied, so the next call sees them. A reply that cannot be read is recorded as such:
  the call returns an error naming it and the state is left as it was.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openk2.chat import Message
from openk2.llm import SamplingParams
from openk2.synth.models import RoleLLM, structured_reply, structured_request
from openk2.synth.recipe import Outcome
from openk2.synth.tools import ToolRecord

OUTCOMES: tuple[Outcome, ...] = ("success", "partial_failure", "edge_case")
OUTCOME_INSTRUCTIONS = {
    "success": "The call succeeds: return a plausible result consistent with the state and apply its effects.",
    "partial_failure": "The call partly fails (e.g. one of several items, a timeout after some work, a "
    "permission on one field): give an error message and the part that did succeed; apply only that part.",
    "edge_case": "The call meets an edge case (an empty result, a boundary value, a record that does not "
    "exist, a duplicate): return what a real system would return then.",
}
SYSTEM = (
    "You simulate a software tool as a world model. You keep the world's state consistent: results follow "
    "from the current state and earlier calls, and changes the tool makes are written as state changes. "
    "Answer with one JSON object."
)
SCALAR_OR_RECORD = {
    "anyOf": [
        {"type": ["string", "integer", "number", "boolean", "null"]},
        {
            "type": "object",
            "additionalProperties": {"type": ["string", "integer", "number", "boolean", "null"]},
            "maxProperties": 6,
        },
    ]
}


def draw_outcome(rates: Mapping[Outcome, float], seed: int, episode: str, call_index: int) -> Outcome:
    """An outcome at the configured rates from a uniform number hashed from the call's identity."""
    digest = hashlib.sha256(f"{seed}\x1f{episode}\x1f{call_index}".encode()).digest()
    uniform = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for outcome in OUTCOMES:
        cumulative += rates.get(outcome, 0.0)
        if uniform < cumulative:
            return outcome
    return next(outcome for outcome in reversed(OUTCOMES) if rates.get(outcome, 0.0) > 0)


def reply_format(tool: ToolRecord, outcome: str) -> dict[str, Any]:
    result = tool.returns or {"type": "object"}
    if outcome == "partial_failure":
        result = {
            "type": "object",
            "properties": {
                "error": {"type": "string", "minLength": 3, "maxLength": 120},
                "partial_result": result,
            },
            "required": ["error", "partial_result"],
            "additionalProperties": False,
        }
    reads_only = tool.semantics is None or not tool.stateful
    entity = tool.semantics.entity if tool.semantics else ""
    change = {
        "type": "object",
        "properties": {
            "op": {"enum": ["set", "delete"]},
            "path": {"type": "string", "pattern": rf"^/{entity}/[A-Za-z0-9_-]{{1,24}}(/[a-z0-9_]{{1,30}})?$"},
            "value": SCALAR_OR_RECORD,
        },
        "required": ["op", "path", "value"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "result": result,
            "state_changes": {"type": "array", "maxItems": 0 if reads_only else 3, "items": change},
        },
        "required": ["result", "state_changes"],
        "additionalProperties": False,
    }


@dataclass
class SimulatedCall:
    tool: str
    outcome: str
    arguments: dict[str, Any]
    result: Any = None
    changes: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None  # the injected partial failure's message, or why the reply was unreadable


class ToolSimulator:
    """One episode's world: its state, its calls, and the simulator model."""

    def __init__(
        self,
        llm: RoleLLM,
        initial_state: dict[str, Any] | None,
        rates: Mapping[Outcome, float],
        seed: int,
        episode: str,
        max_tokens: int = 320,
        temperature: float = 0.0,
    ) -> None:
        self.llm = llm
        self.state: dict[str, Any] = copy.deepcopy(initial_state or {})
        self.rates = rates
        self.seed = seed
        self.episode = episode
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.calls: list[SimulatedCall] = []
        self.index = 0  # calls of the episode so far, real ones included (the outcome draw's position)

    def messages(self, tool: ToolRecord, arguments: dict[str, Any], outcome: str) -> list[Message]:
        semantics = tool.semantics
        lines = [
            f"Tool: {tool.name}: {tool.description}",
            f"Semantics: {semantics.effect} {semantics.entity}. {semantics.behaviour}" if semantics else "",
            f"Current state: {json.dumps(self.state, ensure_ascii=False, sort_keys=True)}",
        ]
        if self.calls:
            lines.append("Earlier calls in this session:")
            for call in self.calls[-5:]:
                lines.append(
                    f"- {call.tool}({json.dumps(call.arguments, ensure_ascii=False)}) -> {json.dumps(call.result, ensure_ascii=False)[:200]}"
                )
        lines.append(f"Call: {tool.name}({json.dumps(arguments, ensure_ascii=False)})")
        lines.append(OUTCOME_INSTRUCTIONS[outcome])
        return [
            Message(role="system", content=SYSTEM),
            Message(role="user", content="\n".join(line for line in lines if line)),
        ]

    def next_outcome(self) -> str:
        outcome = draw_outcome(self.rates, self.seed, self.episode, self.index)
        self.index += 1
        return outcome

    async def call(self, tool: ToolRecord, arguments: dict[str, Any]) -> SimulatedCall:
        outcome = self.next_outcome()
        record = SimulatedCall(tool.name, outcome, arguments)
        sampling = SamplingParams(
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=int(
                hashlib.sha256(f"{self.seed}/{self.episode}/{self.index}".encode()).hexdigest()[:12], 16
            ),
        )
        request = structured_request(
            self.messages(tool, arguments, outcome), reply_format(tool, outcome), sampling
        )
        value, problem = structured_reply(await self.llm.achat(request))
        if value is None or "result" not in value:
            record.error = (
                f"unparsed: the tool simulator's reply could not be read ({problem or 'no result field'})"
            )
            self.calls.append(record)
            return record
        record.result = value["result"]
        if outcome == "partial_failure" and isinstance(record.result, dict):
            record.error = f"partial_failure: {record.result.get('error', '')}"
        for change in value.get("state_changes") or []:
            if self._apply(tool, change):
                record.changes.append(change)
        self.calls.append(record)
        return record

    def _apply(self, tool: ToolRecord, change: dict[str, Any]) -> bool:
        """Apply one change inside the tool's own entity; anything else is not applied."""
        parts = str(change.get("path", "")).split("/")[1:]
        if not tool.stateful or tool.semantics is None or len(parts) < 2 or parts[0] != tool.semantics.entity:
            return False
        node = self.state
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                if change.get("op") == "delete":
                    return False
                child = node[part] = {}
            node = child
        if change.get("op") == "delete":
            return node.pop(parts[-1], None) is not None
        node[parts[-1]] = change.get("value")
        return True


def state_value(state: dict[str, Any], path: str) -> tuple[bool, Any]:
    """(found, value) at a JSON-pointer path of the state."""
    node: Any = state
    for part in path.split("/")[1:]:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node
