"""Request bodies of the OpenAI-compatible API: the fields the server honours, accepts, or refuses by name.

Honoured: sampling (`temperature`, `top_p`, vLLM's `top_k`/`min_p`/`repetition_penalty`,
`frequency_penalty`, `presence_penalty`, `logit_bias`, `seed`, `stop`, `max_tokens` /
`max_completion_tokens`, `n`), `logprobs`/`top_logprobs`, `tools`, `tool_choice`,
`parallel_tool_calls`, `response_format` (grammar-constrained), streaming, and vLLM's
`return_token_ids` (the response then carries `prompt_token_ids` and, per choice, `token_ids` and
`sampled_mask`). Accepted and ignored: `user`, `store`, `metadata`, `service_tier`; in history,
`refusal`, `reasoning_content`, `annotations`, `audio: null`, `function_call: null` and a call's
`parsed_arguments` (what the `openai` client's `model_dump()` of a reply contains), and `developer`
messages are system messages. Any other field is refused with a 400 that names it. Values are
typed strictly, as OpenAI types them: `"temperature": "0.5"` is refused, not converted.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from openk2.chat import ChatFormatError
from openk2.llm import RECOMMENDED_TEMPERATURE, ChatRequest, ResponseFormat, SamplingParams, chat_request
from openk2.llm.types import NamedToolChoice, ToolChoiceMode

MAX_CHOICES = 8  # `n`: each choice is generated, so the bound keeps one request from filling the queue
MAX_STOP_STRINGS = 4  # OpenAI's limit

# history fields that clients send back and a reply never needs
_IGNORED_MESSAGE_FIELDS = ("refusal", "reasoning_content", "reasoning", "annotations")
_NULL_ONLY_MESSAGE_FIELDS = ("audio", "function_call")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StreamOptions(_Body):
    include_usage: bool = False
    continuous_usage_stats: bool = False  # vLLM's; accepted, usage comes with the last chunk


class JsonSchemaFormat(_Body):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None  # the schema is always enforced


class ResponseFormatBody(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    def to_response_format(self) -> ResponseFormat | None:
        if self.type == "text":
            return None
        if self.type == "json_object":
            return ResponseFormat(type="json_object")
        if self.json_schema is None:
            raise ChatFormatError("response_format.json_schema: required when type is 'json_schema'")
        return ResponseFormat(type="json_schema", json_schema=self.json_schema.schema_)


class _Sampling(_Body):
    """The sampling fields /v1/chat/completions and /v1/completions share."""

    model: str
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)  # None: K2's recommended 0.6
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=-1)  # vLLM: -1 or 0 means no top-k
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0, le=10.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)  # what a generator seed can hold
    stream: bool = False
    stream_options: StreamOptions | None = None
    return_token_ids: bool = False
    # accepted and ignored
    user: str | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None

    def _stop(self) -> tuple[str, ...]:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stop) > MAX_STOP_STRINGS:
            raise ChatFormatError(f"stop: at most {MAX_STOP_STRINGS} strings, got {len(stop)}")
        if any(not item for item in stop):
            raise ChatFormatError("stop: empty strings are not allowed")
        return tuple(stop)

    def _logit_bias(self) -> tuple[tuple[int, float], ...]:
        biases = []
        for key, bias in (self.logit_bias or {}).items():
            if not key.isdigit():
                raise ChatFormatError(f"logit_bias: {key!r} is not a token id")
            if not -100 <= bias <= 100:
                raise ChatFormatError(
                    f"logit_bias: the bias of token {key} must be in [-100, 100], got {bias}"
                )
            biases.append((int(key), bias))
        return tuple(biases)

    def sampling(self, max_tokens: int | None, top_logprobs: int, return_tokens: bool) -> SamplingParams:
        return SamplingParams(
            temperature=RECOMMENDED_TEMPERATURE if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            top_k=max(self.top_k or 0, 0),
            min_p=self.min_p or 0.0,
            repetition_penalty=self.repetition_penalty or 1.0,
            frequency_penalty=self.frequency_penalty or 0.0,
            presence_penalty=self.presence_penalty or 0.0,
            logit_bias=self._logit_bias(),
            max_tokens=max_tokens,
            stop=self._stop(),
            seed=self.seed,
            top_logprobs=top_logprobs,
            return_tokens=return_tokens,
        )

    def seeded(self, sampling: SamplingParams, choice: int) -> SamplingParams:
        """Choice i samples with seed + i, so that the n choices differ yet each is reproducible."""
        if self.seed is None or choice == 0:
            return sampling
        return sampling.model_copy(update={"seed": (self.seed + choice) % 2**64})


def normalize_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Client history as our message format: ignored fields dropped, `developer` as `system`."""
    normalized = []
    for index, raw in enumerate(messages):
        if not isinstance(raw, dict):
            raise ChatFormatError(f"messages[{index}]: expected an object")
        message = {key: value for key, value in raw.items() if key not in _IGNORED_MESSAGE_FIELDS}
        for key in _NULL_ONLY_MESSAGE_FIELDS:
            if message.get(key) is not None:
                raise ChatFormatError(f"messages[{index}].{key}: not supported (send text and tool_calls)")
            message.pop(key, None)
        if message.get("role") == "developer":
            message["role"] = "system"
        content = message.get("content")
        if isinstance(content, list):
            for position, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind != "text":
                    raise ChatFormatError(
                        f"messages[{index}].content[{position}].type: {kind!r} parts are not supported; "
                        "this server serves text"
                    )
        if isinstance(message.get("tool_calls"), list):
            message["tool_calls"] = [_normalize_call(call) for call in message["tool_calls"]]
        normalized.append(message)
    return normalized


def _normalize_call(call: Any) -> Any:
    if not isinstance(call, dict):
        return call
    call = {key: value for key, value in call.items() if key != "index"}
    if isinstance(call.get("function"), dict):
        call["function"] = {k: v for k, v in call["function"].items() if k != "parsed_arguments"}
    return call


class ChatCompletionRequest(_Sampling):
    messages: list[dict[str, Any]] = Field(min_length=1)  # validated by openk2.chat, which names fields
    tools: list[dict[str, Any]] | None = None
    tool_choice: ToolChoiceMode | NamedToolChoice | None = None
    parallel_tool_calls: bool = True
    response_format: ResponseFormatBody | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1)  # OpenAI's newer name for max_tokens
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    def to_chat_requests(self) -> list[ChatRequest]:
        """One request per choice."""
        if self.top_logprobs and not self.logprobs:
            raise ChatFormatError("top_logprobs: requires logprobs to be true")
        sampling = self.sampling(
            self.max_completion_tokens or self.max_tokens,
            self.top_logprobs or 0,
            return_tokens=self.logprobs or self.return_token_ids,
        )
        first = chat_request(
            normalize_messages(self.messages),
            self.tools,
            sampling,
            self.tool_choice or "auto",
            response_format=None
            if self.response_format is None
            else self.response_format.to_response_format(),
            parallel_tool_calls=self.parallel_tool_calls,
        )
        return [
            ChatRequest(
                first.messages,
                first.tools,
                first.tool_choice,
                self.seeded(sampling, choice),
                response_format=first.response_format,
                parallel_tool_calls=first.parallel_tool_calls,
            )
            for choice in range(self.n)
        ]


class CompletionRequest(_Sampling):
    """`/v1/completions`: a raw prompt (text or token ids, one or several) continued without a template."""

    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=16, ge=1)  # OpenAI's default for completions
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool = False
    best_of: int | None = Field(default=None, ge=1, le=1)  # more than one candidate per choice: refused

    def prompts(self) -> list[str | list[int]]:
        if isinstance(self.prompt, str):
            return [self.prompt]
        if not self.prompt:
            raise ChatFormatError("prompt: expected a text or token ids")
        if isinstance(self.prompt[0], int):
            return [list(self.prompt)]  # type: ignore[arg-type]
        return list(self.prompt)  # type: ignore[arg-type]


class TokenizeRequest(_Body):
    """vLLM's `/tokenize`: a text, or messages rendered with the chat template."""

    model: str | None = None
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    add_generation_prompt: bool = True
    add_special_tokens: bool = True


class DetokenizeRequest(_Body):
    model: str | None = None
    tokens: list[int]


class UpdateWeightsRequest(_Body):
    """SGLang's `/update_weights_from_disk`."""

    model_path: str
    load_format: str | None = None
    abort_all_requests: bool = False
