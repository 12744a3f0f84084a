"""What goes into an LLM call and what comes back, whichever back end answers it.

A request is OpenAI messages + tools (the one message format, docs/architecture.md) with a tool choice and
sampling parameters. A completion is the assistant message with usage and finish reason and,
when asked for, the token span it added with log-probs — the record RL keeps (`openk2.gym.records`).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from openk2.chat import (
    ChatFormatError,
    Message,
    ParseError,
    ToolSpec,
    assign_call_ids,
    validate_messages,
    validate_tools,
)

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
ToolChoiceMode = Literal["auto", "none", "required"]

# Kimi-K2-Instruct model card: "The recommended temperature for Kimi-K2-Instruct is 0.6".
RECOMMENDED_TEMPERATURE = 0.6


class SamplingParams(BaseModel):
    """How to sample one reply; the values actually used are stored with a trajectory.

    Penalties and `logit_bias` act on the logits before temperature, in OpenAI's and vLLM's sense:
    `frequency_penalty` subtracts penalty × count of a token in the reply so far, `presence_penalty`
    subtracts the penalty once for every token already in the reply, `repetition_penalty` divides a
    positive (multiplies a negative) logit of any token seen in the prompt or the reply. Then `top_k`,
    `top_p` and `min_p` truncate the distribution at `temperature`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(default=RECOMMENDED_TEMPERATURE, ge=0.0, le=2.0)  # 0 is greedy
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)  # 0: no top-k truncation
    min_p: float = Field(default=0.0, ge=0.0, le=1.0)  # drop tokens below min_p × the top probability
    max_tokens: int | None = Field(default=None, ge=1)  # None: up to the model's context
    stop: tuple[str, ...] = ()  # the reply ends before the first of these strings
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    repetition_penalty: float = Field(default=1.0, gt=0.0, le=10.0)
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias in [-100, 100]) pairs
    top_logprobs: int = Field(default=0, ge=0, le=20)  # alternatives per token, with return_tokens
    return_tokens: bool = False  # fill Completion.tokens (ids, sampled mask, log-probs)

    @field_validator("logit_bias")
    @classmethod
    def _biases_in_range(cls, logit_bias: tuple[tuple[int, float], ...]) -> tuple[tuple[int, float], ...]:
        for token, bias in logit_bias:
            if token < 0 or not -100 <= bias <= 100:
                raise ValueError(f"token {token}: expected an id >= 0 and a bias in [-100, 100], got {bias}")
        return logit_bias


class ResponseFormat(BaseModel):
    """OpenAI's `response_format`: free text, any JSON object, or JSON that a schema accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: dict[str, Any] | None = None  # the JSON Schema itself (not OpenAI's {name, schema} wrapper)

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> "ResponseFormat":
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema: required exactly when type is 'json_schema'")
        return self


class NamedToolChoice(BaseModel):
    """OpenAI's `{"type": "function", "function": {"name": ...}}`: call exactly this tool."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    class Function(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        name: str

    type: Literal["function"] = "function"
    function: Function


ToolChoice = ToolChoiceMode | NamedToolChoice


@dataclass(frozen=True)
class ChatRequest:
    """One conversation to continue; build it with `chat_request`, which validates and names bad fields."""

    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] | None
    tool_choice: ToolChoice
    sampling: SamplingParams
    # A token-level rollout's running sequence: the model continues exactly these ids instead of a fresh
    # rendering of `messages` (templates are not prefix-stable; RL trains on the tokens it sampled).
    # `messages` still give the tools, the call-id counter and the parse. In-process back ends only.
    prompt_token_ids: tuple[int, ...] | None = None
    response_format: ResponseFormat | None = None  # JSON output under a grammar (in-process back ends)
    parallel_tool_calls: bool = True  # False: at most one call per reply

    @property
    def calls_so_far(self) -> int:
        """Tool calls in the history: K2's ids count every call of the dialogue from 0 (report App. B)."""
        return sum(len(message.tool_calls or []) for message in self.messages)


def chat_request(
    messages: Sequence[Message | Mapping[str, Any]],
    tools: Sequence[ToolSpec | Mapping[str, Any]] | None = None,
    sampling: SamplingParams | None = None,
    tool_choice: ToolChoice | Mapping[str, Any] = "auto",
    prompt_token_ids: Sequence[int] | None = None,
    response_format: ResponseFormat | Mapping[str, Any] | None = None,
    parallel_tool_calls: bool = True,
) -> ChatRequest:
    """A validated request; errors are ChatFormatError naming the field, e.g. `messages[1].role: ...`.

    Besides the message format: every tool's `parameters` must be a valid JSON Schema, and every tool
    message must answer a call that an earlier assistant message made.
    """
    if not messages:
        raise ChatFormatError("messages: expected at least one message")
    checked_messages = tuple(validate_messages(messages))
    check_tool_results_answer_calls(checked_messages)
    checked_tools = tuple(validate_tools(tools)) if tools else None
    for index, tool in enumerate(checked_tools or ()):
        if tool.function.parameters is not None:
            check_json_schema(tool.function.parameters, f"tools[{index}].function.parameters")
    if isinstance(tool_choice, Mapping):
        tool_choice = NamedToolChoice.model_validate(tool_choice)
    if isinstance(tool_choice, NamedToolChoice):
        declared = [tool.function.name for tool in checked_tools or ()]
        if tool_choice.function.name not in declared:
            raise ChatFormatError(
                f"tool_choice.function.name: {tool_choice.function.name!r} is not among the tools {declared}"
            )
    elif tool_choice == "required" and not checked_tools:
        raise ChatFormatError("tool_choice: 'required' needs at least one tool in tools")
    if prompt_token_ids is not None and not prompt_token_ids:
        raise ChatFormatError("prompt_token_ids: expected at least one token id")
    if isinstance(response_format, Mapping):
        response_format = ResponseFormat.model_validate(response_format)
    if response_format is not None and response_format.json_schema is not None:
        check_json_schema(response_format.json_schema, "response_format.json_schema")
    return ChatRequest(
        checked_messages,
        checked_tools,
        tool_choice,
        sampling or SamplingParams(),
        None if prompt_token_ids is None else tuple(prompt_token_ids),
        None if response_format is None or response_format.type == "text" else response_format,
        parallel_tool_calls,
    )


def check_json_schema(schema: Mapping[str, Any], field: str) -> None:
    """A ChatFormatError naming the path inside `schema` when it is not a valid JSON Schema."""
    import jsonschema

    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path)
        raise ChatFormatError(f"{field}{where}: not a valid JSON Schema: {error.message}") from None


def check_tool_results_answer_calls(messages: Sequence[Message]) -> None:
    """A tool message must answer a call of an earlier assistant message (ids as the template assigns them)."""
    issued: set[str] = set()
    for index, message in enumerate(assign_call_ids(messages)):
        if message.tool_calls:
            issued.update(call.id for call in message.tool_calls if call.id)
        elif message.role == "tool" and message.tool_call_id not in issued:
            raise ChatFormatError(
                f"messages[{index}].tool_call_id: {message.tool_call_id!r} answers no tool call of an "
                "earlier assistant message"
            )


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class SampledTokens(BaseModel):
    """The token span a reply added to the running sequence (a trajectory's `TokenSpan`, `openk2.gym.records`).

    `token_ids` are the reply's tokens exactly as generated, forced template tokens included, up to
    and including the closing `<|im_end|>` when the model emitted it. `sampled[i]` is False for tokens
    the engine forced (tool-choice prefixes); those are not trainable. `logprobs[i]` is the token's
    log-probability under the model's distribution at `temperature` (temperature 0: the plain
    softmax), taken from the forward pass that produced it, before penalties, biases, grammar masks
    and top-k/top-p/min-p truncation. `top_logprobs[i]` maps the most likely token ids at that step
    to their log-probabilities (the same distribution), when `sampling.top_logprobs` asked for them.
    """

    prompt_token_ids: list[int]
    token_ids: list[int]
    sampled: list[bool]
    logprobs: list[float] | None
    temperature: float
    top_logprobs: list[dict[int, float]] | None = None


class Completion(BaseModel):
    """An assistant reply.

    The message keeps every well-formed tool call; `errors` lists each malformed one (index and kind)
    and `error` is the first of them. A reply whose calls were all malformed keeps its raw text.
    """

    model: str
    message: Message  # role "assistant"; K2 call ids on its tool calls
    finish_reason: FinishReason
    usage: Usage
    error: ParseError | None = None
    errors: list[ParseError] = Field(default_factory=list)
    tokens: SampledTokens | None = None  # filled when sampling.return_tokens


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a streamed tool call: the first carries id and name, the next ones argument text."""

    index: int  # the call's position in the reply
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class ReplyDelta:
    """What a streamed reply added since the previous delta; the last one carries the completion."""

    content: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    token_ids: tuple[int, ...] = ()
    completion: Completion | None = None
