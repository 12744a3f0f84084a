"""A training conversation and the problems that make a record unusable for SFT.

Every data kind (chat, trajectories, preference, tasks) becomes `Conversation`s: OpenAI messages and tools,
the `file:line` they came from, and the key that decides which side of the held-out split they land on.
A record that cannot be trained on becomes a `Problem` naming its file and line instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from openk2.chat import Message, ToolSpec, assign_call_ids
from openk2.chat.messages import json_object_problem

ProblemKind = Literal[
    "invalid_record",  # not JSON, or not a record of the source's kind (the field is named)
    "no_assistant_turn",  # nothing to train on
    "bad_tool_arguments",  # a tool call whose arguments are not a JSON object
    "unmatched_tool_result",  # a tool message answering no earlier tool call
    "no_answer",  # a task without verification.answer
]


@dataclass(frozen=True)
class Conversation:
    messages: list[Message]
    tools: list[ToolSpec]
    origin: str  # "path:line" of the record
    split_key: str  # conversations sharing a key are held out together (a task's trajectories, a pair)
    held_out: bool | None = None  # fixed by the record (a gym Task's split); None: drawn from split_key


@dataclass(frozen=True)
class Problem:
    origin: str  # "path:line"
    kind: ProblemKind
    detail: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.detail}"


def tool_argument_problem(raw_messages: Any) -> str | None:
    """Where a raw (unvalidated) message list holds tool-call arguments that are not a JSON object:
    `[2].tool_calls[0].function.arguments: not valid JSON: '{"city": Par'`."""
    if not isinstance(raw_messages, list):
        return None
    for index, message in enumerate(raw_messages):
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        for number, call in enumerate(calls if isinstance(calls, list) else []):
            function = call.get("function") if isinstance(call, dict) else None
            arguments = function.get("arguments") if isinstance(function, dict) else None
            if isinstance(arguments, str) and (problem := json_object_problem(arguments)) is not None:
                return f"[{index}].tool_calls[{number}].function.arguments: {problem}: {arguments[:60]!r}"
    return None


def conversation_problem(messages: Sequence[Message]) -> tuple[ProblemKind, str] | None:
    """Why a validated conversation cannot be trained on: no assistant turn, or a tool result without a call."""
    if not any(message.role == "assistant" for message in messages):
        return "no_assistant_turn", "messages: no assistant message, nothing to train on"
    open_calls: set[str] = set()
    for index, message in enumerate(assign_call_ids(messages)):  # ids as the template renders them
        if message.role == "assistant":
            open_calls |= {call.id for call in message.tool_calls or [] if call.id}
        elif message.role == "tool":
            if message.tool_call_id not in open_calls:
                detail = (
                    f"messages[{index}].tool_call_id: {message.tool_call_id!r} answers no earlier tool call"
                )
                return "unmatched_tool_result", detail
            open_calls.discard(message.tool_call_id)
    return None
