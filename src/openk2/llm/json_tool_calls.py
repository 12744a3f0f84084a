"""Tool calling for models without K2's markup: tools described in the system prompt, calls as a JSON list.

The embedded SmolLM2-135M-Instruct has no tool-call tokens; SmolLM2's instruct data taught its
family the APIGen function-calling style, which this follows:

    system: ...the tools as JSON inside <tools></tools>, and the output format...
    assistant: <tool_call>[{"name": "get_weather", "arguments": {"city": "Paris"}}]</tool_call>

Under structured output a grammar writes that list for it (`json_calls_grammar`): every call names a
declared tool and its arguments satisfy the tool's JSON Schema. Parsed calls get K2's ids
(`functions.{name}:{index}`, one counter over the dialogue), so replies look alike whichever model
wrote them.
"""

import json
from collections.abc import Sequence
from typing import Any

from openk2.chat import FunctionCall, Message, ParsedReply, ParseError, ToolCall, ToolSpec, format_call_id
from openk2.chat.messages import json_object_problem
from openk2.llm.engine import ReplyStream
from openk2.llm.grammar import json_rule, lark_literal
from openk2.llm.k2_grammar import MAX_PARALLEL_CALLS, arguments_schema
from openk2.llm.types import ToolCallDelta

CALLS_OPEN = "<tool_call>"
CALLS_CLOSE = "</tool_call>"


def tools_system_prompt(tools: Sequence[ToolSpec]) -> str:
    declared = json.dumps([tool.to_openai()["function"] for tool in tools], ensure_ascii=False)
    return (
        "You are an expert in composing functions. You are given a question and a set of possible "
        "functions. Based on the question, make one or more function calls to achieve the purpose. "
        "If none of the functions can be used, say so; if the question lacks parameters a function "
        "requires, say so too.\n\n"
        f"You have access to the following tools:\n<tools>{declared}</tools>\n\n"
        "To call functions, answer with exactly this format and no other text:\n"
        f'{CALLS_OPEN}[{{"name": "func_name1", "arguments": {{"argument1": "value1"}}}}, '
        f"... (more calls as required)]{CALLS_CLOSE}"
    )


def calls_text(calls: Sequence[ToolCall]) -> str:
    """An assistant's calls in this format, as the model would write them."""
    listed = ", ".join(
        f'{{"name": {json.dumps(call.function.name)}, "arguments": {call.function.arguments}}}'
        for call in calls
    )
    return f"{CALLS_OPEN}[{listed}]{CALLS_CLOSE}"


def conversation(messages: Sequence[Message], tools: Sequence[ToolSpec] | None) -> list[dict[str, str]]:
    """Messages as plain role/content pairs for a chat template; the tool prompt joins the system message."""
    turns = []
    for message in messages:
        text = message.text
        if message.tool_calls:
            text = (text + calls_text(message.tool_calls)) if text else calls_text(message.tool_calls)
        turns.append({"role": message.role, "content": text})
    if tools:
        prompt = tools_system_prompt(tools)
        if turns and turns[0]["role"] == "system":
            turns[0] = {"role": "system", "content": f"{prompt}\n\n{turns[0]['content']}"}
        else:
            turns.insert(0, {"role": "system", "content": prompt})
    return turns


def _call(entry: Any, index: int, known: set[str]) -> ToolCall | ParseError:
    def fault(kind: Any, detail: str) -> ParseError:
        return ParseError(kind=kind, detail=detail, call_index=index)

    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        return fault("malformed_section", f"call {index} is not {{'name': ..., 'arguments': {{...}}}}")
    name = entry["name"]
    if name not in known:
        return fault("unknown_tool", f"{name!r} is not declared")
    arguments = entry.get("arguments", {})
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    problem = json_object_problem(text)
    if problem is not None:
        return fault("bad_arguments", f"arguments: {problem}")
    return ToolCall(id=None, function=FunctionCall(name=name, arguments=text))


def parse_json_calls(text: str, tools: Sequence[ToolSpec], first_index: int) -> ParsedReply:
    """A reply that may hold `<tool_call>[...]</tool_call>`; well-formed calls kept, bad ones reported."""
    content, opened, rest = text.partition(CALLS_OPEN)
    if not opened:
        return ParsedReply(message=Message(role="assistant", content=text), finish_reason="stop")
    payload, closed, after = rest.partition(CALLS_CLOSE)
    errors: list[ParseError] = []
    outcomes: list[ToolCall | ParseError] = []
    if not closed:
        errors.append(ParseError(kind="truncated", detail=f"no {CALLS_CLOSE}: {rest[-40:]!r}", call_index=0))
    else:
        try:
            listed = json.loads(payload)
        except ValueError:
            listed = None
            errors.append(ParseError(kind="malformed_section", detail=f"not a JSON list: {payload[:40]!r}"))
        if isinstance(listed, dict):
            listed = [listed]
        if isinstance(listed, list):
            known = {tool.function.name for tool in tools}
            outcomes = [_call(entry, index, known) for index, entry in enumerate(listed)]
        elif listed is not None:
            errors.append(ParseError(kind="malformed_section", detail="the calls are not a JSON list"))
    calls = [outcome for outcome in outcomes if isinstance(outcome, ToolCall)]
    errors += [outcome for outcome in outcomes if isinstance(outcome, ParseError)]
    calls = [
        call.model_copy(update={"id": format_call_id(call.function.name, first_index + number)})
        for number, call in enumerate(calls)
    ]
    first = errors[0] if errors else None
    if not calls:
        body = text if errors else (content + after)
        return ParsedReply(
            message=Message(role="assistant", content=body), finish_reason="stop", error=first, errors=errors
        )
    message = Message(role="assistant", content=(content + after) or None, tool_calls=calls)
    return ParsedReply(message=message, finish_reason="tool_calls", error=first, errors=errors)


def json_calls_grammar(tools: Sequence[ToolSpec], parallel: bool, enforce_all: bool, opened: str) -> str:
    """The list of calls after what is already written: `opened` is "" (nothing), "<tool_call>" (the
    model opened the list itself) or "<tool_call>[" (the forced start under tool_choice required)."""
    max_calls = MAX_PARALLEL_CALLS if parallel else 1
    rules = []
    alternatives = []
    for number, tool in enumerate(tools):
        head = '{"name": ' + json.dumps(tool.function.name) + ', "arguments": '
        rules.append(
            f"args_{number}: {json_rule(arguments_schema(tool, enforce_all or bool(tool.function.strict)))}"
        )
        alternatives.append(f'{lark_literal(head)} args_{number} "}}"')
    rules.append(f"call: {' | '.join(alternatives)}")
    more = f'(", " call){{0,{max_calls - 1}}}' if max_calls > 1 else ""  # llguidance refuses {0,0}
    start = {"": f"{lark_literal(CALLS_OPEN + '[')} ", CALLS_OPEN: '"[" ', CALLS_OPEN + "[": ""}[opened]
    return "\n".join([f"start: {start}call {more} {lark_literal(']' + CALLS_CLOSE)}", *rules])


class JsonCallsStream(ReplyStream):
    """Content as it comes; the calls, whole, once the reply is finished (the JSON list must close first)."""

    def __init__(self, tools: Sequence[ToolSpec], first_index: int) -> None:
        self._tools = list(tools)
        self._first_index = first_index
        self._buffer = ""
        self._in_calls = False

    def feed(self, text: str) -> tuple[str, list[ToolCallDelta]]:
        self._buffer += text
        if self._in_calls:
            return "", []
        content, opened, rest = self._buffer.partition(CALLS_OPEN)
        if opened:
            self._in_calls, self._buffer = True, opened + rest
            return content, []
        keep = next(
            (size for size in range(len(CALLS_OPEN) - 1, 0, -1) if content.endswith(CALLS_OPEN[:size])), 0
        )
        self._buffer = content[len(content) - keep :]
        return content[: len(content) - keep], []

    def finish(self) -> tuple[str, list[ToolCallDelta]]:
        if not self._in_calls:
            content, self._buffer = self._buffer, ""
            return content, []
        parsed = parse_json_calls(self._buffer, self._tools, self._first_index)
        calls = parsed.message.tool_calls or []
        deltas = []
        for index, call in enumerate(calls):
            deltas.append(ToolCallDelta(index, call.id, call.function.name))
            deltas.append(ToolCallDelta(index, arguments=call.function.arguments))
        return (parsed.message.text if not calls else ""), deltas
