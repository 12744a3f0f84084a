"""Any OpenAI-compatible endpoint behind the LLM interface: vLLM, SGLang, a hosted API, `openk2 serve`.

Calls go through the official `openai` client, which times out and retries (connection errors,
429 and 5xx, with backoff). `return_tokens` asks for log-probs and for the token ids through the
`return_token_ids` extension that vLLM and `openk2 serve` understand; an endpoint that does not
return them is an error, not an empty span.
"""

import asyncio
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, get_args

import openai
from openai.types.chat import ChatCompletion
from pydantic import ValidationError

from openk2.chat import ChatFormatError, Message, ParseError
from openk2.llm.protocol import LLM, ModelUnavailable
from openk2.llm.types import (
    ChatRequest,
    Completion,
    FinishReason,
    NamedToolChoice,
    SampledTokens,
    Usage,
)

# after the client's own retries: the endpoint is down, slow or busy, not the request at fault
UNAVAILABLE = (
    openai.APIConnectionError,  # includes timeouts
    openai.RateLimitError,
    openai.InternalServerError,
)


class EndpointError(RuntimeError):
    """The endpoint answered, but not with what the request needs."""


def request_arguments(model: str, request: ChatRequest) -> dict[str, Any]:
    """`chat.completions.create` keyword arguments for one request, in OpenAI's wire format."""
    if request.prompt_token_ids is not None:
        raise ChatFormatError(
            f"prompt_token_ids: {model} is served over HTTP, which continues messages, not token ids"
        )
    sampling = request.sampling
    arguments: dict[str, Any] = {
        "model": model,
        "messages": [message.model_dump(exclude_none=True) for message in request.messages],
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
    }
    if request.tools:
        arguments["tools"] = [tool.to_openai() for tool in request.tools]
        choice = request.tool_choice
        arguments["tool_choice"] = choice.model_dump() if isinstance(choice, NamedToolChoice) else choice
    if sampling.max_tokens is not None:
        arguments["max_completion_tokens"] = sampling.max_tokens
    if sampling.stop:
        arguments["stop"] = list(sampling.stop)
    if sampling.seed is not None:
        arguments["seed"] = sampling.seed
    for name in ("frequency_penalty", "presence_penalty"):
        if getattr(sampling, name):
            arguments[name] = getattr(sampling, name)
    if sampling.logit_bias:
        arguments["logit_bias"] = {str(token): bias for token, bias in sampling.logit_bias}
    if request.tools and not request.parallel_tool_calls:
        arguments["parallel_tool_calls"] = False
    if request.response_format is not None:
        arguments["response_format"] = response_format_body(request)
    # vLLM's (and openk2 serve's) sampling extras travel in the body as they are
    extra_body: dict[str, Any] = {
        name: getattr(sampling, name)
        for name, off in (("top_k", 0), ("min_p", 0.0), ("repetition_penalty", 1.0))
        if getattr(sampling, name) != off
    }
    if sampling.return_tokens:
        arguments["logprobs"] = True
        extra_body["return_token_ids"] = True
        if sampling.top_logprobs:
            arguments["top_logprobs"] = sampling.top_logprobs
    if extra_body:
        arguments["extra_body"] = extra_body
    return arguments


def response_format_body(request: ChatRequest) -> dict[str, Any]:
    """OpenAI's `response_format` for the request's structured output."""
    assert request.response_format is not None
    if request.response_format.json_schema is None:
        return {"type": "json_object"}
    schema = request.response_format.json_schema
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema, "strict": True}}


class OpenAIEndpoint(LLM):
    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "EMPTY",
        timeout_s: float = 120.0,
        max_retries: int = 2,
        max_concurrency: int = 32,
    ) -> None:
        self.base_url = base_url
        self._model = model
        self._client_options: dict[str, Any] = {
            "base_url": base_url,
            "api_key": api_key,
            "timeout": timeout_s,
            "max_retries": max_retries,
        }
        self._client = openai.OpenAI(**self._client_options)
        self._max_concurrency = max_concurrency
        # An async client belongs to the event loop it first ran on, and is closed when that loop ends.
        self._async_clients: dict[
            asyncio.AbstractEventLoop, tuple[openai.AsyncOpenAI, AsyncIterator[openai.AsyncOpenAI]]
        ] = {}

    @property
    def model_name(self) -> str:
        return self._model

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Sent concurrently (up to max_concurrency at a time); the server does the batching."""

        def send(request: ChatRequest) -> Completion:
            try:
                response = self._client.chat.completions.create(**request_arguments(self._model, request))
            except openai.BadRequestError as error:
                raise _request_error(error) from error
            except UNAVAILABLE as error:
                raise ModelUnavailable(f"{self.base_url}: {error}") from error
            return self._completion(response, request)

        if len(requests) == 1:
            return [send(requests[0])]
        with ThreadPoolExecutor(max_workers=min(self._max_concurrency, len(requests))) as pool:
            return list(pool.map(send, requests))

    async def _async_client(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        if loop not in self._async_clients:
            holder = self._client_until_the_loop_ends(loop)
            self._async_clients[loop] = (await anext(holder), holder)
        return self._async_clients[loop][0]

    async def _client_until_the_loop_ends(
        self, loop: asyncio.AbstractEventLoop
    ) -> AsyncIterator[openai.AsyncOpenAI]:
        """`asyncio.run` finalises unfinished async generators before it closes its loop (`shutdown_asyncgens`):
        the client's connections are closed inside the loop they belong to, and the loop is not kept alive."""
        client = openai.AsyncOpenAI(**self._client_options)
        try:
            yield client
        finally:
            del self._async_clients[loop]
            await client.close()

    async def achat(self, request: ChatRequest) -> Completion:
        client = await self._async_client()
        try:
            response = await client.chat.completions.create(**request_arguments(self._model, request))
        except openai.BadRequestError as error:
            raise _request_error(error) from error
        except UNAVAILABLE as error:
            raise ModelUnavailable(f"{self.base_url}: {error}") from error
        return self._completion(response, request)

    def _completion(self, response: ChatCompletion, request: ChatRequest) -> Completion:
        if not response.choices:
            raise EndpointError(f"{self.base_url}: the response holds no choices")
        if response.usage is None:
            raise EndpointError(f"{self.base_url}: the response holds no usage")
        choice = response.choices[0]
        finish_reason = "tool_calls" if choice.finish_reason == "function_call" else choice.finish_reason
        if finish_reason not in get_args(FinishReason):
            raise EndpointError(f"{self.base_url}: finish_reason {choice.finish_reason!r} is not one we know")
        wire_message = choice.message.model_dump(include={"role", "content", "tool_calls"}, exclude_none=True)
        error = None
        try:
            message = Message.model_validate(wire_message)
        except ValidationError as invalid:
            # e.g. arguments that are not a JSON object: keep the text, report the fault as our parser does
            message = Message(role="assistant", content=choice.message.content)
            error = ParseError(kind="bad_arguments", detail=str(invalid.errors()[0]["msg"]))
        extra = choice.model_extra or {}
        errors = [error] if error is not None else []
        if error is None and extra.get("parse_errors"):  # `openk2 serve` reports its parser's verdicts
            errors = [ParseError.model_validate(found) for found in extra["parse_errors"]]
            error = errors[0]
        return Completion(
            model=response.model,
            message=message,
            finish_reason=finish_reason,
            usage=Usage(
                prompt_tokens=response.usage.prompt_tokens,
                completion_tokens=response.usage.completion_tokens,
                total_tokens=response.usage.total_tokens,
            ),
            error=error,
            errors=errors,
            tokens=self._tokens(response, request) if request.sampling.return_tokens else None,
        )

    def _tokens(self, response: ChatCompletion, request: ChatRequest) -> SampledTokens:
        choice = response.choices[0]
        prompt_ids = (response.model_extra or {}).get("prompt_token_ids")
        token_ids = (choice.model_extra or {}).get("token_ids")
        if prompt_ids is None or token_ids is None:
            raise EndpointError(
                f"{self.base_url}: return_tokens needs prompt_token_ids and token_ids in the response "
                "(the return_token_ids extension of vLLM and openk2 serve)"
            )
        logprobs = top_logprobs = None
        if choice.logprobs is not None and choice.logprobs.content is not None:
            logprobs = [entry.logprob for entry in choice.logprobs.content]
            if request.sampling.top_logprobs:
                # alternatives are exact only when spelled by id (vLLM's `token_id:N`, as openk2 serve does)
                top_logprobs = [
                    {
                        int(other.token.removeprefix("token_id:")): other.logprob
                        for other in entry.top_logprobs
                        if other.token.startswith("token_id:")
                    }
                    for entry in choice.logprobs.content
                ]
        return SampledTokens(
            prompt_token_ids=prompt_ids,
            token_ids=token_ids,
            sampled=(choice.model_extra or {}).get("sampled_mask") or [True] * len(token_ids),
            logprobs=logprobs,
            temperature=request.sampling.temperature,
            top_logprobs=top_logprobs,
        )


def _request_error(error: openai.BadRequestError) -> ChatFormatError:
    """The endpoint's 400 as our request error, naming the field when the endpoint did."""
    body = error.body if isinstance(error.body, dict) else {}
    param, message = body.get("param"), body.get("message", str(error))
    return ChatFormatError(
        f"{param}: {message}" if param and not message.startswith(f"{param}:") else message
    )
