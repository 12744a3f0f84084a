"""`POST /v1/completions`: a raw prompt (text or token ids) continued without a chat template.

For pre-trained checkpoints and for clients that render their own prompts. Several prompts give
`len(prompts) × n` choices, choice `i × n + j` being prompt i's j-th; `logprobs: k` returns the
legacy shape (tokens, token_logprobs, top_logprobs, text_offset); `echo` puts the prompt's text
before each choice's text.
"""

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from openk2.llm.engine import Generation, InProcessEngine
from openk2.llm.sequence import GenerationRequest, GenerationResult
from openk2.serve.chat_route import cancel_on_disconnect, merged, public_message
from openk2.serve.metrics import RequestClock, ServerMetrics
from openk2.serve.responses import sse
from openk2.serve.schemas import CompletionRequest


def _generations(engine: InProcessEngine, body: CompletionRequest) -> list[GenerationRequest]:
    sampling = body.sampling(body.max_tokens, body.logprobs or 0, return_tokens=body.logprobs is not None)
    generations = []
    for prompt in body.prompts():
        ids = engine.encode(prompt) if isinstance(prompt, str) else prompt
        first = engine.raw_generation(ids, sampling)
        generations += [
            dataclasses.replace(first, sampling=body.seeded(sampling, choice)) for choice in range(body.n)
        ]
    return generations


def _legacy_logprobs(engine: InProcessEngine, result: GenerationResult) -> dict[str, Any]:
    tokens = [engine.decode([token]) for token in result.token_ids]
    offsets, position = [], 0
    for token in tokens:
        offsets.append(position)
        position += len(token)
    top = result.top_logprobs or [{} for _ in tokens]
    return {
        "tokens": tokens,
        "token_logprobs": result.logprobs,
        "top_logprobs": [{engine.decode([k]): v for k, v in alternatives.items()} for alternatives in top],
        "text_offset": offsets,
    }


async def text_completion(
    engine: InProcessEngine, metrics: ServerMetrics, http: Request, body: CompletionRequest
) -> dict[str, Any] | StreamingResponse:
    requests = await asyncio.to_thread(_generations, engine, body)
    started: list[Generation] = []
    try:
        for request in requests:
            started.append(engine.start(request))
    except BaseException:
        for generation in started:
            generation.cancel()
        raise
    head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": engine.model_name}  # fmt: skip
    clock = RequestClock(metrics)

    def echo(index: int) -> str:
        return engine.decode(requests[index].prompt_ids) if body.echo else ""

    def choice(index: int, text: str, result: GenerationResult | None) -> dict[str, Any]:
        logprobs = (
            _legacy_logprobs(engine, result) if result is not None and body.logprobs is not None else None
        )
        finish = None if result is None else ("length" if result.finish_reason == "length" else "stop")
        return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}

    if body.stream:

        async def events() -> AsyncIterator[str]:
            for index in range(len(started)):
                if body.echo:
                    yield sse({**head, "choices": [choice(index, echo(index), None)]})
            try:
                async for index, output in merged(started):
                    clock.tokens(len(output.token_ids))
                    yield sse({**head, "choices": [choice(index, output.text, output.result)]})
            except Exception as error:
                yield sse({"error": {"message": public_message(error), "type": "server_error"}})
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def finish(generation: Generation) -> GenerationResult:
        async for output in generation:
            clock.tokens(len(output.token_ids))
            if output.result is not None:
                return output.result
        raise RuntimeError("the generation ended without a result")

    watcher = asyncio.create_task(cancel_on_disconnect(http, started))
    try:
        results = await asyncio.gather(*(finish(generation) for generation in started))
    finally:
        watcher.cancel()
    prompt_tokens = sum(len(requests[i].prompt_ids) for i in range(0, len(requests), body.n))
    generated = sum(len(result.token_ids) for result in results)
    clock.done(prompt_tokens, generated)
    return {
        **head,
        "choices": [choice(i, echo(i) + result.text, result) for i, result in enumerate(results)],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": generated,
            "total_tokens": prompt_tokens + generated,
        },
    }
