"""Completions as OpenAI response bodies: one `chat.completion`, or `chat.completion.chunk` events as generated.

Tool calls keep K2's ids (`functions.get_weather:0`). Streamed tool calls take OpenAI's shape: a first
delta with index, id, type and name, then argument fragments. A reply with malformed calls keeps its
well-formed ones; each bad one is reported in the choice's `parse_errors` (index and kind) and the
first in `parse_error` (extension fields; OpenAI clients keep them in `model_extra`).
"""

import json
from typing import Any

from openk2.llm import Completion, ReplyDelta, ToolCallDelta
from openk2.serve.schemas import ChatCompletionRequest


def message_body(completion: Completion) -> dict[str, Any]:
    message = completion.message
    body: dict[str, Any] = {
        "role": "assistant",
        "content": message.text if message.content is not None else None,
    }
    if message.tool_calls:
        body["tool_calls"] = [call.model_dump() for call in message.tool_calls]
    return body


def logprobs_body(
    token_ids: list[int], logprobs: list[float], top: list[dict[int, float]] | None
) -> dict[str, Any]:
    # vLLM's spelling of a token by id (`return_tokens_as_token_ids`): exact, whatever the bytes
    entries = []
    for position, (token, logprob) in enumerate(zip(token_ids, logprobs, strict=True)):
        alternatives = (top[position] if top else {}).items()
        entries.append(
            {
                "token": f"token_id:{token}",
                "logprob": logprob,
                "bytes": None,
                "top_logprobs": [
                    {"token": f"token_id:{other}", "logprob": value, "bytes": None}
                    for other, value in alternatives
                ],
            }
        )
    return {"content": entries}


def _completion_logprobs(completion: Completion) -> dict[str, Any]:
    tokens = completion.tokens
    assert tokens is not None and tokens.logprobs is not None
    return logprobs_body(tokens.token_ids, tokens.logprobs, tokens.top_logprobs)


def _choice_extensions(completion: Completion, request: ChatCompletionRequest) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if request.return_token_ids and completion.tokens is not None:
        extra["token_ids"] = completion.tokens.token_ids
        extra["sampled_mask"] = completion.tokens.sampled
    if completion.errors:
        extra["parse_error"] = completion.errors[0].model_dump()
        extra["parse_errors"] = [error.model_dump() for error in completion.errors]
    return extra


def usage_body(completions: list[Completion]) -> dict[str, int]:
    prompt = completions[0].usage.prompt_tokens  # the n choices share one prompt
    generated = sum(completion.usage.completion_tokens for completion in completions)
    return {"prompt_tokens": prompt, "completion_tokens": generated, "total_tokens": prompt + generated}


def _prompt_extension(completion: Completion, request: ChatCompletionRequest) -> dict[str, Any]:
    if request.return_token_ids and completion.tokens is not None:
        return {"prompt_token_ids": completion.tokens.prompt_token_ids}
    return {}


def completion_body(
    response_id: str, created: int, completions: list[Completion], request: ChatCompletionRequest
) -> dict[str, Any]:
    choices = [
        {
            "index": index,
            "message": message_body(completion),
            "finish_reason": completion.finish_reason,
            "logprobs": _completion_logprobs(completion) if request.logprobs else None,
            **_choice_extensions(completion, request),
        }
        for index, completion in enumerate(completions)
    ]
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": completions[0].model,
        "choices": choices,
        "usage": usage_body(completions),
        **_prompt_extension(completions[0], request),
    }


def sse(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def _tool_call_delta(delta: ToolCallDelta) -> dict[str, Any]:
    if delta.id is not None:
        return {
            "index": delta.index,
            "id": delta.id,
            "type": "function",
            "function": {"name": delta.name, "arguments": delta.arguments},
        }
    return {"index": delta.index, "function": {"arguments": delta.arguments}}


class ChunkWriter:
    """The `chat.completion.chunk` events of one response (all its choices)."""

    def __init__(self, response_id: str, created: int, model: str, request: ChatCompletionRequest) -> None:
        self._head = {
            "id": response_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        self._request = request

    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> str:
        return sse({**self._head, "choices": choices, **extra})

    def opening(self, index: int) -> str:
        return self.chunk(
            [{"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
        )

    def delta(self, index: int, delta: ReplyDelta) -> list[str]:
        events = []
        body: dict[str, Any] = {}
        if delta.content:
            body["content"] = delta.content
        if delta.tool_calls:
            body["tool_calls"] = [_tool_call_delta(call) for call in delta.tool_calls]
        if body:
            events.append(self.chunk([{"index": index, "delta": body, "finish_reason": None}]))
        completion = delta.completion
        if completion is not None:
            final = {
                "index": index,
                "delta": {},
                "finish_reason": completion.finish_reason,
                "logprobs": _completion_logprobs(completion) if self._request.logprobs else None,
                **_choice_extensions(completion, self._request),
            }
            events.append(
                self.chunk([final], **(_prompt_extension(completion, self._request) if index == 0 else {}))
            )
        return events

    def usage(self, completions: list[Completion]) -> str:
        return self.chunk([], usage=usage_body(completions))
