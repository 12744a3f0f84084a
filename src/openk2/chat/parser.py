"""Generated text → an OpenAI assistant message: content plus `tool_calls` (K2 report App. B, released format).

The inverse of the template's assistant part, and tolerant as serving needs it to be: every
well-formed call of a reply is kept, and each malformed one is reported beside them (its index and
kind), so one bad call does not cost the good ones. Parsing never raises on generated text; RL can
penalise what the errors name and serving can report it.

    content <|tool_calls_section_begin|>
      <|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{"city": "Paris"}<|tool_call_end|>
      ...
    <|tool_calls_section_end|>

Tolerated, as vLLM's and SGLang's Kimi-K2 parsers tolerate them: whitespace around ids and
arguments, several sections in one reply, ids without the `functions.` prefix (the call keeps the
K2 form `functions.{name}:{index}`), text after a section (it joins the content).
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from openk2.chat.call_ids import format_call_id
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
    "unclosed_section",  # a section whose calls are complete but that never ends
    "truncated",  # the reply stops inside a call (often: the token budget ran out)
    "malformed_section",  # text inside a section that is not a call, or a call without its parts
    "bad_call_id",  # not `functions.{name}:{index}` (nor `{name}:{index}`)
    "bad_arguments",  # arguments are not a JSON object
    "unknown_tool",  # a name not among the declared tools
    "stray_markup",  # chat or tool-call tokens outside a section (removed from the content)
]

# `functions.` is optional: models (and other parsers) also write `get_weather:0`.
LENIENT_CALL_ID = re.compile(r"(?:functions\.)?(?P<name>[A-Za-z0-9_-]{1,64}):(?P<index>\d+)")


class ParseError(BaseModel):
    kind: ParseErrorKind
    detail: str
    call_index: int | None = None  # position of the faulty call among the reply's calls


class ParsedReply(BaseModel):
    message: Message  # role "assistant"
    finish_reason: Literal["stop", "tool_calls"]  # "tool_calls" exactly when calls were parsed
    error: ParseError | None = None  # the first of `errors`
    errors: list[ParseError] = Field(default_factory=list)


def _markup_in(text: str) -> str | None:
    return next((token for token in CHAT_TOKENS if token in text), None)


def _cut_markup(text: str) -> bool:
    """Is `text` the beginning of a marker that the reply's end cut off?"""
    return bool(text) and any(token.startswith(text) and token != text for token in CHAT_TOKENS)


def _without_markup(text: str) -> str:
    for token in CHAT_TOKENS:
        text = text.replace(token, "")
    return text


def read_call(
    text: str, call_index: int, known_tools: set[str] | None, ended: bool = True, cut_off: bool = False
) -> ToolCall | ParseError:
    """One call, the text after `<|tool_call_begin|>`, or why it is not one.

    `ended`: its `<|tool_call_end|>` follows; `cut_off`: the reply stops inside it.
    """

    def fault(kind: ParseErrorKind, detail: str) -> ParseError:
        return ParseError(kind=kind, detail=detail, call_index=call_index)

    if cut_off:
        return fault("truncated", f"the reply ends inside call {call_index}: {text[-40:]!r}")
    if not ended:
        return fault("malformed_section", f"call {call_index} has no {TOOL_CALL_END}")
    if TOOL_CALL_ARGUMENT_BEGIN not in text:
        return fault("malformed_section", f"no {TOOL_CALL_ARGUMENT_BEGIN} in {text[:40]!r}")
    call_id, arguments = (part.strip() for part in text.split(TOOL_CALL_ARGUMENT_BEGIN, 1))
    stray = _markup_in(call_id + arguments)
    if stray is not None:
        return fault("malformed_section", f"{stray} inside a call")
    parsed_id = LENIENT_CALL_ID.fullmatch(call_id)
    if parsed_id is None:
        return fault("bad_call_id", f"{call_id!r} is not functions.{{name}}:{{index}}")
    name = parsed_id["name"]
    if known_tools is not None and name not in known_tools:
        return fault("unknown_tool", f"{name!r} is not declared")
    problem = json_object_problem(arguments)
    if problem is not None:
        return fault("bad_arguments", f"arguments: {problem}")
    canonical_id = format_call_id(name, int(parsed_id["index"]))
    return ToolCall(id=canonical_id, type="function", function=FunctionCall(name=name, arguments=arguments))


def _read_section(
    section: str, first_index: int, known_tools: set[str] | None, cut_off: bool
) -> list[ToolCall | ParseError]:
    """The calls of one section (its text between begin and end), numbered from `first_index` on.

    `cut_off`: the reply ends inside this section, so its last call may be incomplete.
    """
    outcomes: list[ToolCall | ParseError] = []
    before, *calls = section.split(TOOL_CALL_BEGIN)
    if cut_off and _cut_markup(before.strip() if not calls else ""):
        outcomes.append(
            ParseError(kind="truncated", detail="the reply ends inside a marker", call_index=first_index)
        )
    elif before.strip():
        detail = f"text before the first call: {before.strip()[:40]!r}"
        outcomes.append(ParseError(kind="malformed_section", detail=detail))
    for position, piece in enumerate(calls):
        index = first_index + position
        body, ended, after = piece.partition(TOOL_CALL_END)
        is_last = position == len(calls) - 1
        outcomes.append(
            read_call(body, index, known_tools, bool(ended), cut_off=is_last and cut_off and not ended)
        )
        if ended and after.strip() and not (is_last and cut_off and _cut_markup(after.strip())):
            detail = f"text after call {index}: {after.strip()[:40]!r}"
            outcomes.append(ParseError(kind="malformed_section", detail=detail))
    if not calls and not cut_off:
        outcomes.append(ParseError(kind="malformed_section", detail="the section holds no tool calls"))
    return outcomes


def parse(text: str, tools: Sequence[ToolSpec | Mapping[str, Any]] | None = None) -> ParsedReply:
    """K2's generated text as an assistant message; never raises on any text.

    Text after `<|im_end|>` is not part of the reply and is ignored. With `tools`, a call to a name
    not among them is an error. The message holds every well-formed call and the text outside the
    sections as content; when no call is well-formed but something is wrong, it holds the raw text.
    Only an invalid `tools` list raises (ChatFormatError): that is the caller's fault, not the model's.
    """
    reply = text.split(IM_END, 1)[0]
    known_tools = None if tools is None else {tool.function.name for tool in validate_tools(tools)}
    content_parts: list[str] = []
    outcomes: list[ToolCall | ParseError] = []
    position = calls_seen = 0
    while True:
        begin = reply.find(TOOL_CALLS_SECTION_BEGIN, position)
        if begin < 0:
            content_parts.append(reply[position:])
            break
        content_parts.append(reply[position:begin])
        inside = begin + len(TOOL_CALLS_SECTION_BEGIN)
        end = reply.find(TOOL_CALLS_SECTION_END, inside)
        next_begin = reply.find(TOOL_CALLS_SECTION_BEGIN, inside)
        if next_begin >= 0 and (end < 0 or next_begin < end):
            end = -1  # a new section begins before this one ended
        stop = end if end >= 0 else (next_begin if next_begin >= 0 else len(reply))
        cut_off = end < 0 and next_begin < 0
        section = _read_section(reply[inside:stop], calls_seen, known_tools, cut_off)
        calls_seen += reply.count(TOOL_CALL_BEGIN, inside, stop)
        outcomes += section
        if end < 0 and not any(isinstance(o, ParseError) and o.kind == "truncated" for o in section):
            detail = f"no {TOOL_CALLS_SECTION_END}"
            outcomes.append(ParseError(kind="unclosed_section", detail=detail))
        position = end + len(TOOL_CALLS_SECTION_END) if end >= 0 else stop
    calls = [outcome for outcome in outcomes if isinstance(outcome, ToolCall)]
    errors = [outcome for outcome in outcomes if isinstance(outcome, ParseError)]
    content = "".join(content_parts)
    stray = _markup_in(content)
    if stray is not None:
        errors.append(ParseError(kind="stray_markup", detail=f"{stray} outside a tool-calls section"))
        content = _without_markup(content)
    first_error = errors[0] if errors else None
    if not calls:
        # nothing usable was parsed: the text stays as generated, so nothing is lost
        body = reply if errors else content
        message = Message(role="assistant", content=body)
        return ParsedReply(message=message, finish_reason="stop", error=first_error, errors=errors)
    message = Message(role="assistant", content=content or None, tool_calls=calls)
    return ParsedReply(message=message, finish_reason="tool_calls", error=first_error, errors=errors)
