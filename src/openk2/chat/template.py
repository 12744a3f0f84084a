"""K2's chat template: OpenAI messages (+ tools) → the text the model reads (K2 report App. B, released template).

Rendered the way the released Kimi-K2-Instruct-0905 `chat_template.jinja` renders through HF
`apply_chat_template`, literal whitespace included; the initial July 2025 template is an option.

    <|im_system|>tool_declare<|im_middle|>\\n  # Tools\\n  [tools as JSON]<|im_end|>
    <|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI.<|im_end|>
    <|im_user|>user<|im_middle|>What is the weather in Paris?<|im_end|>
    <|im_assistant|>assistant<|im_middle|><|tool_calls_section_begin|><|tool_call_begin|>
        functions.get_weather:0<|tool_call_argument_begin|>{"city": "Paris"}<|tool_call_end|>
        <|tool_calls_section_end|><|im_end|>
    <|im_system|>get_weather<|im_middle|>## Return of functions.get_weather:0\\n    18C<|im_end|>
    <|im_assistant|>assistant<|im_middle|>It is 18C in Paris.

(one string; broken into lines here only for reading).
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from openk2.chat.call_ids import assign_call_ids
from openk2.chat.messages import Message, ToolSpec, validate_tools
from openk2.chat.tokens import (
    IM_ASSISTANT,
    IM_END,
    IM_MIDDLE,
    IM_SYSTEM,
    IM_USER,
    TOOL_CALL_ARGUMENT_BEGIN,
    TOOL_CALL_BEGIN,
    TOOL_CALL_END,
    TOOL_CALLS_SECTION_BEGIN,
    TOOL_CALLS_SECTION_END,
)
from openk2.chat.typescript import typescript_declaration

TemplateName = Literal["k2-0905", "k2-0711"]
DeclarationStyle = Literal["json", "typescript"]


@dataclass(frozen=True)
class ChatTemplate:
    """What differs between K2's released chat templates."""

    default_system_prompt: str  # inserted when the first message is not a system message
    tools_header: str  # literal text between `tool_declare<|im_middle|>` and the declaration
    names_in_headers: bool  # header shows `message.name` when set, else the role
    tool_result_prefix: bool  # tool content starts with `## Return of {tool_call_id}`
    closes_last_message: bool  # 0905 leaves the last message open unless a generation prompt follows


TEMPLATES: dict[TemplateName, ChatTemplate] = {
    # The jinja file keeps the newline and indentation around `# Tools` and after `## Return of`.
    "k2-0905": ChatTemplate(
        default_system_prompt="You are Kimi, an AI assistant created by Moonshot AI.",
        tools_header="\n  # Tools\n  ",
        names_in_headers=True,
        tool_result_prefix=True,
        closes_last_message=False,
    ),
    # The July template renders neither tool calls nor `## Return of`; tool calls use the section
    # format the model was trained to emit (tool-call guide), tool results are the bare content.
    "k2-0711": ChatTemplate(
        default_system_prompt="You are a helpful assistant",
        tools_header="",
        names_in_headers=False,
        tool_result_prefix=False,
        closes_last_message=True,
    ),
}

_ROLE_TOKENS = {"system": IM_SYSTEM, "user": IM_USER, "assistant": IM_ASSISTANT, "tool": IM_SYSTEM}
TOOL_RESULT_SEPARATOR = "\n    "  # between `## Return of {id}` and the content, as in the jinja file


@dataclass(frozen=True)
class Segment:
    """A piece of the rendered text; `is_assistant` marks what the assistant wrote (SFT trains on it)."""

    text: str
    is_assistant: bool


def tool_declaration(tools: Sequence[ToolSpec], style: DeclarationStyle = "json") -> str:
    """The tools as K2 reads them: OpenAI JSON (`tojson`) or the report's TypeScript namespace."""
    if style == "typescript":
        return typescript_declaration(tools)
    # HF's `tojson`: json.dumps with default separators and non-ASCII kept.
    return json.dumps([tool.to_openai() for tool in tools], ensure_ascii=False)


def _tool_calls_section(message: Message) -> str:
    """An assistant's tool calls as one `<|tool_calls_section_begin|>` ... `_end|>` section."""
    calls = "".join(
        f"{TOOL_CALL_BEGIN}{call.id}{TOOL_CALL_ARGUMENT_BEGIN}{call.function.arguments}{TOOL_CALL_END}"
        for call in message.tool_calls or []
    )
    return f"{TOOL_CALLS_SECTION_BEGIN}{calls}{TOOL_CALLS_SECTION_END}"


def _header(message: Message, template: ChatTemplate) -> str:
    name = (message.name or message.role) if template.names_in_headers else message.role
    return f"{_ROLE_TOKENS[message.role]}{name}{IM_MIDDLE}"


def _body(message: Message, template: ChatTemplate) -> str:
    if message.role == "assistant" and message.tool_calls:
        return message.text + _tool_calls_section(message)
    if message.role == "tool" and template.tool_result_prefix:
        return f"## Return of {message.tool_call_id}{TOOL_RESULT_SEPARATOR}{message.text}"
    return message.text


def render_segments(
    messages: Sequence[Message | Mapping[str, Any]],
    tools: Sequence[ToolSpec | Mapping[str, Any]] | None = None,
    *,
    add_generation_prompt: bool = False,
    template: TemplateName = "k2-0905",
    declaration_style: DeclarationStyle = "json",
    close_every_message: bool = False,
) -> list[Segment]:
    """The rendering as segments whose boundaries fall exactly where the assistant's parts begin and end.

    `close_every_message` ends the last message with `<|im_end|>` too, as training sequences need.
    """
    chosen = TEMPLATES[template]
    dialogue = assign_call_ids(messages)
    segments = []
    if tools:
        declaration = tool_declaration(validate_tools(tools), declaration_style)
        segments.append(
            Segment(f"{IM_SYSTEM}tool_declare{IM_MIDDLE}{chosen.tools_header}{declaration}{IM_END}", False)
        )
    if dialogue and dialogue[0].role != "system":
        segments.append(Segment(f"{IM_SYSTEM}system{IM_MIDDLE}{chosen.default_system_prompt}{IM_END}", False))
    for position, message in enumerate(dialogue):
        is_last = position == len(dialogue) - 1
        closed = not is_last or add_generation_prompt or chosen.closes_last_message or close_every_message
        segments.append(Segment(_header(message, chosen), False))
        segments.append(
            Segment(_body(message, chosen) + (IM_END if closed else ""), message.role == "assistant")
        )
    if add_generation_prompt:
        segments.append(Segment(f"{IM_ASSISTANT}assistant{IM_MIDDLE}", False))
    return [segment for segment in segments if segment.text]


def render(
    messages: Sequence[Message | Mapping[str, Any]],
    tools: Sequence[ToolSpec | Mapping[str, Any]] | None = None,
    add_generation_prompt: bool = False,
    *,
    template: TemplateName = "k2-0905",
    declaration_style: DeclarationStyle = "json",
) -> str:
    """OpenAI messages (dicts or models) and tools as the text of K2's chat template.

    Tool calls without an id get the K2 id `functions.{name}:{index}` (see `assign_call_ids`).
    """
    segments = render_segments(
        messages,
        tools,
        add_generation_prompt=add_generation_prompt,
        template=template,
        declaration_style=declaration_style,
    )
    return "".join(segment.text for segment in segments)
