"""Reading one JSONL source of the recipe into conversations, record by record.

    chat          {"messages": [...], "tools": [...], "id"?}  plain OpenAI chat data
    trajectories  gym `Trajectory` records: `Trajectory.sft_example()`, held out by task
    preference    {prompt, chosen, rejected, rubric}: two judging conversations (preference.py)
    tasks         gym `Task` records with verification.answer: prompt → answer (task_answers.py)

A record that cannot be trained on is a `Problem` naming its file and line; the caller skips it (and counts
it) or, under --strict, refuses the run. Nothing is dropped without a count.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from openk2.chat import Message, ToolSpec, validate_messages, validate_tools
from openk2.gym import Task, Trajectory
from openk2.recipes import describe_errors
from openk2.sft.conversation import (
    Conversation,
    Problem,
    ProblemKind,
    conversation_problem,
    tool_argument_problem,
)
from openk2.sft.preference import PreferenceRecord, preference_conversations
from openk2.sft.recipe import SourceSection
from openk2.sft.task_answers import answer_conversation, reference_answer

RecordType = TypeVar("RecordType", bound=BaseModel)
MESSAGE_FIELDS = ("messages", "prompt")  # record fields that hold OpenAI messages (preference: `prompt`)


class ChatExample(BaseModel):
    """One line of an OpenAI chat fine-tuning file."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    messages: list[Message]
    tools: list[ToolSpec] = []


@dataclass
class SourceRecords:
    conversations: list[Conversation] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    records: int = 0  # non-blank lines read
    filtered: int = 0  # trajectories below the source's min_reward


class _Unusable(Exception):
    def __init__(self, kind: ProblemKind, detail: str) -> None:
        self.kind, self.detail = kind, detail


class _Filtered(Exception):
    pass


def read_source(source: SourceSection) -> SourceRecords:
    """Every record of the source's file as conversations, or as a problem naming its line."""
    read = SourceRecords()
    for line_number, raw in _json_lines(source.path):
        read.records += 1
        origin = f"{source.path}:{line_number}"
        try:
            conversations = _conversations(source, raw, origin)
            for conversation in conversations:
                problem = conversation_problem(conversation.messages)
                if problem is not None:
                    raise _Unusable(*problem)
        except _Unusable as unusable:
            read.problems.append(Problem(origin, unusable.kind, unusable.detail))
        except _Filtered:
            read.filtered += 1
        else:
            read.conversations += conversations
    return read


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON or the JSONDecodeError) of every non-blank line."""
    with path.open(encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                yield line_number, json.loads(line)
            except json.JSONDecodeError as error:
                yield line_number, error


def _validated(record_type: type[RecordType], raw: Any) -> RecordType:
    if isinstance(raw, json.JSONDecodeError):
        raise _Unusable("invalid_record", f"not a JSON record ({raw})")
    for field_name in MESSAGE_FIELDS:
        if isinstance(raw, dict) and (problem := tool_argument_problem(raw.get(field_name))) is not None:
            raise _Unusable("bad_tool_arguments", f"{field_name}{problem}")
    try:
        return record_type.model_validate(raw)
    except ValidationError as error:
        raise _Unusable("invalid_record", f"{describe_errors(error, within='')}") from None


def _content_key(raw: Any) -> str:
    """A record without an id is held out by its content: wherever the file moves, and with its duplicates."""
    return "sha256:" + hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()


def _conversations(source: SourceSection, raw: Any, origin: str) -> list[Conversation]:
    if source.kind == "chat":
        example = _validated(ChatExample, raw)
        return [Conversation(example.messages, example.tools, origin, example.id or _content_key(raw))]
    if source.kind == "trajectories":
        trajectory = _validated(Trajectory, raw)
        if source.min_reward is not None and (
            trajectory.reward is None or trajectory.reward < source.min_reward
        ):
            raise _Filtered
        exported = trajectory.sft_example()  # the gym's SFT export: messages + tools
        messages, tools = validate_messages(exported["messages"]), validate_tools(exported["tools"])
        # every trajectory of a task lands on the same side of the split: held out means an unseen task
        return [Conversation(messages, tools, origin, f"task:{trajectory.task_id}")]
    if source.kind == "preference":
        record = _validated(PreferenceRecord, raw)
        key = record.id or _content_key(raw)
        return [Conversation(messages, [], origin, key) for messages in preference_conversations(record)]
    task = _validated(Task, raw)
    answer = reference_answer(task)
    if answer is None:
        raise _Unusable("no_answer", f"verification.answer: task {task.id!r} has no single reference answer")
    held_out = None if task.split is None else task.split == "test"
    return [Conversation(answer_conversation(task, answer), task.tools, origin, f"task:{task.id}", held_out)]
