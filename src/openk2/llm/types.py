"""What goes into an LLM call and what comes back, whichever back end answers it.

A request is OpenAI messages + tools (the one message format, docs/architecture.md) with a tool choice and
sampling parameters. A completion is the assistant message with usage and finish reason and,
when asked for, the token span it added with log-probs — the record RL keeps (`openk2.gym.records`).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from openk2.chat import ChatFormatError, Message, ParseError, ToolSpec, validate_messages, validate_tools

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
ToolChoiceMode = Literal["auto", "none", "required"]

# Kimi-K2-Instruct model card: "The recommended temperature for Kimi-K2-Instruct is 0.6".
RECOMMENDED_TEMPERATURE = 0.6


class SamplingParams(BaseModel):
    """How to sample one reply; the values actually used are stored with a trajectory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(default=RECOMMENDED_TEMPERATURE, ge=0.0, le=2.0)  # 0 is greedy
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1)  # None: up to the model's context
    stop: tuple[str, ...] = ()  # the reply ends before the first of these strings
    seed: int | None = None
    return_tokens: bool = False  # fill Completion.tokens (ids, sampled mask, log-probs)


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


def chat_request(
    messages: Sequence[Message | Mapping[str, Any]],
    tools: Sequence[ToolSpec | Mapping[str, Any]] | None = None,
    sampling: SamplingParams | None = None,
    tool_choice: ToolChoice | Mapping[str, Any] = "auto",
    prompt_token_ids: Sequence[int] | None = None,
) -> ChatRequest:
    """A validated request; errors are ChatFormatError naming the field, e.g. `messages[1].role: ...`."""
    if not messages:
        raise ChatFormatError("messages: expected at least one message")
    checked_messages = tuple(validate_messages(messages))
    checked_tools = tuple(validate_tools(tools)) if tools else None
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
    return ChatRequest(
        checked_messages,
        checked_tools,
        tool_choice,
        sampling or SamplingParams(),
        None if prompt_token_ids is None else tuple(prompt_token_ids),
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
    log-probability under the sampling distribution at `temperature` (temperature 0: the plain
    softmax), before top-p truncation.
    """

    prompt_token_ids: list[int]
    token_ids: list[int]
    sampled: list[bool]
    logprobs: list[float] | None
    temperature: float


class Completion(BaseModel):
    """An assistant reply. On a malformed tool call, `message` holds the raw text and `error` says why."""

    model: str
    message: Message  # role "assistant"; K2 call ids on its tool calls
    finish_reason: FinishReason
    usage: Usage
    error: ParseError | None = None
    tokens: SampledTokens | None = None  # filled when sampling.return_tokens
