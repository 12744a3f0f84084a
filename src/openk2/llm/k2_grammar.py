"""The grammars of K2's structured output: tool calls whose arguments satisfy their schemas, and JSON replies.

K2's "enforcer" (report App. B) constrains a reply once it opens a tool-calls section: the call
markup, `functions.{name}:{index}` ids with the dialogue-wide counter, and arguments that the tool's
JSON Schema accepts. Here that grammar serves `tool_choice` "required" and a named function (always a
valid call), `strict` tools and `parallel_tool_calls=false` under "auto" (from the section's first
token on), and `response_format` (the whole reply is JSON).
"""

from collections.abc import Mapping, Sequence
from typing import Any

from openk2.chat import ToolSpec
from openk2.llm.grammar import json_rule, lark_literal

MAX_PARALLEL_CALLS = 16  # calls one section may hold under a grammar
ANY_OBJECT: dict[str, Any] = {"type": "object"}


def arguments_schema(tool: ToolSpec, enforce: bool) -> Mapping[str, Any]:
    """The schema a call's arguments must satisfy: the tool's when enforced, else any JSON object."""
    if enforce and tool.function.parameters is not None:
        return tool.function.parameters
    return ANY_OBJECT


def _token(token_id: int) -> str:
    return f"<[{token_id}]>"


def call_rules(
    tools: Sequence[ToolSpec],
    ids: Mapping[str, int],
    first_index: int,
    max_calls: int,
    enforce_all: bool,
) -> list[str]:
    """Rules `call_{k}` (one complete call with index first_index + k, after `functions.`) and
    `more_{k}` (optionally further calls after call k), for k < max_calls."""
    rules = []
    for tool_number, tool in enumerate(tools):
        schema = arguments_schema(tool, enforce_all or bool(tool.function.strict))
        rules.append(f"args_{tool_number}: {json_rule(schema)}")
    for k in range(max_calls):
        index = first_index + k
        alternatives = " | ".join(
            f"{lark_literal(f'{tool.function.name}:{index}')} {_token(ids['arg'])} args_{number}"
            for number, tool in enumerate(tools)
        )
        rules.append(f"call_{k}: ({alternatives}) {_token(ids['call_end'])}")
        if k + 1 < max_calls:
            rules.append(
                f"more_{k}: ({_token(ids['call_begin'])} {lark_literal('functions.')} call_{k + 1} more_{k + 1})?"
            )
        else:
            rules.append(f'more_{k}: ""')
    return rules


def tool_calls_grammar(
    tools: Sequence[ToolSpec],
    ids: Mapping[str, int],
    first_index: int,
    parallel: bool,
    enforce_all: bool,
    opened: str,
) -> str:
    """A section's calls and its end, after the already written `opened` part:

    "functions." (required: the section and the first call are open), "section" (the model opened
    the section itself, under auto).
    """
    max_calls = MAX_PARALLEL_CALLS if parallel else 1
    head = (
        "call_0 more_0"
        if opened == "functions."
        else (f"{_token(ids['call_begin'])} {lark_literal('functions.')} call_0 more_0")
    )
    rules = call_rules(tools, ids, first_index, max_calls, enforce_all)
    return "\n".join([f"start: {head} {_token(ids['section_end'])}", *rules])


def named_call_grammar(tool: ToolSpec, ids: Mapping[str, int]) -> str:
    """After a forced `...functions.NAME:IDX<|tool_call_argument_begin|>`: the arguments, then the end."""
    schema = arguments_schema(tool, enforce=True)
    return f"start: {json_rule(schema)} {_token(ids['call_end'])} {_token(ids['section_end'])}"


def json_reply_grammar(
    schema: Mapping[str, Any], tools_grammar: str | None = None, section_begin: int | None = None
) -> str:
    """The whole reply is JSON that `schema` accepts, or (with tools under auto) a tool-calls section."""
    if tools_grammar is None or section_begin is None:
        return f"start: {json_rule(schema)}"
    calls = tools_grammar.replace("start:", "calls:", 1)
    return f"start: {json_rule(schema)} | {_token(section_begin)} calls\n{calls}"
