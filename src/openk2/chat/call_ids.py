"""K2 tool-call ids: `functions.{name}:{index}`, one counter over the whole dialogue (report App. B).

The model reads the function name out of the id, so K2 ids are kept end to end; synthetic ids
such as `call_abc` degrade multi-turn quality (Kimi-K2's tool-calling guide).
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any

from openk2.chat.messages import Message, validate_messages

K2_CALL_ID = re.compile(r"functions\.(?P<name>[A-Za-z0-9_-]{1,64}):(?P<index>\d+)")


def format_call_id(name: str, index: int) -> str:
    return f"functions.{name}:{index}"


def parse_call_id(call_id: str) -> tuple[str, int] | None:
    """(function name, dialogue-wide index) of a K2 call id, or None when it is not one."""
    match = K2_CALL_ID.fullmatch(call_id)
    if match is None:
        return None
    return match["name"], int(match["index"])


def assign_call_ids(
    messages: Sequence[Message | Mapping[str, Any]], *, replace_foreign_ids: bool = False
) -> list[Message]:
    """Give K2 ids to the tool calls that lack one; the index is the call's position in the dialogue.

    With `replace_foreign_ids`, ids not in K2 form (`call_abc`) are replaced too, and the tool
    results that answer them are relinked to the new ids.
    """
    renamed: dict[str, str] = {}
    position = 0
    assigned = []
    for message in validate_messages(messages):
        if message.tool_calls:
            calls = []
            for call in message.tool_calls:
                is_foreign = call.id is not None and parse_call_id(call.id) is None
                if not call.id or (replace_foreign_ids and is_foreign):
                    new_id = format_call_id(call.function.name, position)
                    if call.id:
                        renamed[call.id] = new_id
                    call = call.model_copy(update={"id": new_id})
                calls.append(call)
                position += 1
            message = message.model_copy(update={"tool_calls": calls})
        elif message.role == "tool" and message.tool_call_id in renamed:
            message = message.model_copy(update={"tool_call_id": renamed[message.tool_call_id]})
        assigned.append(message)
    return assigned
