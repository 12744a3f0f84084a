"""OpenAI chat messages and tools: the one message format that crosses every stage (docs/architecture.md).

The models mirror OpenAI's wire format exactly, so any message list can be sent to an
OpenAI-compatible server as it is; a trajectory (`openk2.gym.records`) stores them unchanged and keeps its
metadata beside them.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from openk2.recipes import describe_errors

# OpenAI's rule for function names; it also keeps K2 call ids `functions.{name}:{index}` unambiguous.
TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

Role = Literal["system", "user", "assistant", "tool"]


class ChatFormatError(ValueError):
    """A message or tool list that cannot be rendered; the text names the field at fault."""


def json_object_problem(arguments: str) -> str | None:
    """Why `arguments` is not a serialised JSON object, or None when it is."""
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError):
        return "not valid JSON"
    if not isinstance(value, dict):
        return "not a JSON object"
    return None


class _WireModel(BaseModel):
    # Unknown fields are refused so that a typo ("tool_call" for "tool_calls") names itself.
    model_config = ConfigDict(extra="forbid")


class FunctionCall(_WireModel):
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    arguments: str  # a JSON object serialised to a string, as on the wire

    @field_validator("arguments")
    @classmethod
    def _arguments_are_a_json_object(cls, arguments: str) -> str:
        problem = json_object_problem(arguments)
        if problem is not None:
            raise ValueError(problem)
        return arguments


class ToolCall(_WireModel):
    id: str | None = None  # K2 form `functions.{name}:{index}`; `assign_call_ids` fills it when missing
    type: Literal["function"] = "function"
    function: FunctionCall


class TextPart(_WireModel):
    """An OpenAI text content part; K2-Instruct is a text model, so images are refused."""

    type: Literal["text"]
    text: str


class Message(_WireModel):
    role: Role
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _fields_fit_the_role(self) -> Self:
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError(f"tool_calls: only assistant messages carry tool calls, not {self.role}")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("tool_call_id: required on tool messages")
        if self.content is None and self.role != "assistant":
            raise ValueError(f"content: required on {self.role} messages")
        return self

    @property
    def text(self) -> str:
        """The content as one string: text parts joined, no content as ''."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class FunctionSpec(_WireModel):
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None  # JSON Schema of the arguments object
    strict: bool | None = None


class ToolSpec(_WireModel):
    """Exactly one entry of an OpenAI `tools` list."""

    type: Literal["function"] = "function"
    function: FunctionSpec

    def to_openai(self) -> dict[str, Any]:
        """The entry as OpenAI JSON, fields in OpenAI's order, unset fields left out."""
        function: dict[str, Any] = {"name": self.function.name}
        # Built by hand: model_dump(exclude_none) would also drop `null`s inside the JSON Schema.
        for key in ("description", "parameters", "strict"):
            value = getattr(self.function, key)
            if value is not None:
                function[key] = value
        return {"type": self.type, "function": function}


def _named_error(prefix: str, data: Any, error: ValidationError) -> ChatFormatError:
    # a union's members each report a problem: the deepest is the member that came closest to matching;
    # a whole-model check starts its message with the field at fault ("tool_call_id: required ...")
    return ChatFormatError(f"{prefix}.{describe_errors(error, within='', data=data, deepest_only=True)}")


def validate_messages(messages: Sequence[Message | Mapping[str, Any]]) -> list[Message]:
    """Messages as models; plain OpenAI dicts are validated, errors name e.g. `messages[2].content`."""
    validated = []
    for index, message in enumerate(messages):
        if isinstance(message, Message):
            validated.append(message)
            continue
        try:
            validated.append(Message.model_validate(message))
        except ValidationError as error:
            raise _named_error(f"messages[{index}]", message, error) from None
    return validated


def validate_tools(tools: Sequence[ToolSpec | Mapping[str, Any]]) -> list[ToolSpec]:
    """Tools as models; plain OpenAI dicts are validated, errors name e.g. `tools[0].function.name`."""
    validated = []
    for index, tool in enumerate(tools):
        if isinstance(tool, ToolSpec):
            validated.append(tool)
            continue
        try:
            validated.append(ToolSpec.model_validate(tool))
        except ValidationError as error:
            raise _named_error(f"tools[{index}]", tool, error) from None
    return validated
