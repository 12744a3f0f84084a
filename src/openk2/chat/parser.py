"""Generated text → an OpenAI assistant message: content plus `tool_calls` (K2 report App. B, released format).

The inverse of the template's assistant part. Malformed output never raises: the message keeps the
text as its content and the reply carries a machine-readable error, so RL can penalise it and
serving can report it.
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel

from openk2.chat.call_ids import parse_call_id
from openk2.chat.messages import (
    FunctionCall,
    Message,
    ToolCall,
    ToolSpec,
    json_object_problem,
    validate_tools,
)
from openk2.chat.tokens import (
    CHAT_TOKENS,
    IM_END,
    TOOL_CALL_ARGUMENT_BEGIN,
    TOOL_CALL_BEGIN,
    TOOL_CALL_END,
    TOOL_CALLS_SECTION_BEGIN,
    TOOL_CALLS_SECTION_END,
)

ParseErrorKind = Literal[
    "unclosed_section",  # section begun, never ended (often: generation truncated)
    "malformed_section",  # the section is not a sequence of well-formed calls
    "bad_call_id",  # not `functions.{name}:{index}`
    "bad_arguments",  # arguments are not a JSON object
    "unknown_tool",  # a name not among the declared tools
    "stray_markup",  # chat or tool-call tokens outside the section, or text after it
]

# Whitespace around ids and arguments is tolerated, as K2's own parser does.
_CALL = re.compile(
    rf"\s*{re.escape(TOOL_CALL_BEGIN)}(?P<id>.*?){re.escape(TOOL_CALL_ARGUMENT_BEGIN)}"
    rf"(?P<arguments>.*?){re.escape(TOOL_CALL_END)}\s*",
    re.DOTALL,
)


class ParseError(BaseModel):
    kind: ParseErrorKind
    detail: str
    call_index: int | None = None  # position of the faulty call within the section


class ParsedReply(BaseModel):
    message: Message  # role "assistant"
    finish_reason: Literal["stop", "tool_calls"]  # "tool_calls" exactly when calls were parsed
    error: ParseError | None = None


class _Malformed(Exception):
    def __init__(self, error: ParseError) -> None:
        self.error = error


def _markup_in(text: str) -> str | None:
    return next((token for token in CHAT_TOKENS if token in text), None)


def _read_call(found: re.Match[str], call_index: int, known_tools: set[str] | None) -> ToolCall:
    call_id, arguments = found["id"].strip(), found["arguments"].strip()
    stray = _markup_in(call_id + arguments)
    if stray is not None:
        raise _Malformed(
            ParseError(kind="malformed_section", detail=f"{stray} inside a call", call_index=call_index)
        )
    parsed_id = parse_call_id(call_id)
    if parsed_id is None:
        detail = f"{call_id!r} is not functions.{{name}}:{{index}}"
        raise _Malformed(ParseError(kind="bad_call_id", detail=detail, call_index=call_index))
    name, _ = parsed_id
    if known_tools is not None and name not in known_tools:
        raise _Malformed(
            ParseError(kind="unknown_tool", detail=f"{name!r} is not declared", call_index=call_index)
        )
    problem = json_object_problem(arguments)
    if problem is not None:
        raise _Malformed(
            ParseError(kind="bad_arguments", detail=f"arguments: {problem}", call_index=call_index)
        )
    return ToolCall(id=call_id, type="function", function=FunctionCall(name=name, arguments=arguments))


def _read_section(section: str, known_tools: set[str] | None) -> list[ToolCall]:
    calls: list[ToolCall] = []
    position = 0
    while position < len(section):
        found = _CALL.match(section, position)
        if found is None:
            detail = (
                f"expected {TOOL_CALL_BEGIN} ... {TOOL_CALL_END} at {section[position : position + 40]!r}"
            )
            raise _Malformed(ParseError(kind="malformed_section", detail=detail, call_index=len(calls)))
        calls.append(_read_call(found, len(calls), known_tools))
        position = found.end()
    if not calls:
        raise _Malformed(ParseError(kind="malformed_section", detail="the section holds no tool calls"))
    return calls


def _split_reply(reply: str, known_tools: set[str] | None) -> tuple[str, list[ToolCall]]:
    """(content before the section, the calls in it)."""
    begin = reply.find(TOOL_CALLS_SECTION_BEGIN)
    content = reply if begin < 0 else reply[:begin]
    stray = _markup_in(content)
    if stray is not None:
        raise _Malformed(ParseError(kind="stray_markup", detail=f"{stray} outside a tool-calls section"))
    if begin < 0:
        return content, []
    inside_start = begin + len(TOOL_CALLS_SECTION_BEGIN)
    end = reply.find(TOOL_CALLS_SECTION_END, inside_start)
    if end < 0:
        raise _Malformed(ParseError(kind="unclosed_section", detail=f"no {TOOL_CALLS_SECTION_END}"))
    after = reply[end + len(TOOL_CALLS_SECTION_END) :]
    if after.strip():
        raise _Malformed(ParseError(kind="stray_markup", detail=f"text after the section: {after[:40]!r}"))
    return content, _read_section(reply[inside_start:end], known_tools)


def parse(text: str, tools: Sequence[ToolSpec | Mapping[str, Any]] | None = None) -> ParsedReply:
    """K2's generated text as an assistant message; never raises on any text.

    Text after `<|im_end|>` is not part of the reply and is ignored. With `tools`, a call to a
    name not among them is an error. On any error the message holds the text unparsed and no calls.
    Only an invalid `tools` list raises (ChatFormatError): that is the caller's fault, not the model's.
    """
    reply = text.split(IM_END, 1)[0]
    known_tools = None if tools is None else {tool.function.name for tool in validate_tools(tools)}
    try:
        content, calls = _split_reply(reply, known_tools)
    except _Malformed as malformed:
        return ParsedReply(
            message=Message(role="assistant", content=reply), finish_reason="stop", error=malformed.error
        )
    if not calls:
        return ParsedReply(message=Message(role="assistant", content=content), finish_reason="stop")
    message = Message(role="assistant", content=content or None, tool_calls=calls)
    return ParsedReply(message=message, finish_reason="tool_calls")
