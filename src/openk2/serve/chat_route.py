"""`POST /v1/chat/completions`: checked and tokenised before it queues, streamed as it is generated,
cancelled when its client goes away.
"""

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Sequence
from typing import TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse

from openk2.llm import Completion, ModelUnavailable, ReplyDelta
from openk2.llm.engine import Generation, InProcessEngine, PreparedRequest
from openk2.serve.metrics import RequestClock, ServerMetrics
from openk2.serve.responses import ChunkWriter, completion_body, sse
from openk2.serve.schemas import ChatCompletionRequest

logger = logging.getLogger("openk2.serve")
Item = TypeVar("Item")


def prepare_choices(engine: InProcessEngine, body: ChatCompletionRequest) -> list[PreparedRequest]:
    """Every choice's request, tokenised and checked once (the choices share the prompt)."""
    requests = body.to_chat_requests()
    first = engine.prepare(requests[0])
    return [
        PreparedRequest(request, dataclasses.replace(first.generation, sampling=request.sampling))
        for request in requests
    ]


def start_all(engine: InProcessEngine, prepared: list[PreparedRequest]) -> list[Generation]:
    """Queue every choice, or none: a full queue refuses the whole request."""
    started: list[Generation] = []
    try:
        for item in prepared:
            started.append(engine.start(item.generation))
    except BaseException:
        for generation in started:
            generation.cancel()
        raise
    return started


async def cancel_on_disconnect(http: Request, generations: list[Generation]) -> None:
    """Wait for the client to go away (the body is read: the next message is the disconnect), then stop
    its generations; the engine drops them at its next decoding step."""
    while True:
        message = await http.receive()
        if message["type"] == "http.disconnect":
            for generation in generations:
                generation.cancel()
            return


async def while_connected(
    http: Request, generations: list[Generation], work: Awaitable[list[Completion]]
) -> list[Completion]:
    watcher = asyncio.create_task(cancel_on_disconnect(http, generations))
    try:
        return await work
    finally:
        watcher.cancel()


async def _collect(deltas: AsyncIterator[ReplyDelta], clock: RequestClock) -> Completion:
    async for delta in deltas:
        clock.tokens(len(delta.token_ids))
        if delta.completion is not None:
            return delta.completion
    raise RuntimeError("the reply ended without a completion")


async def chat_completion(
    engine: InProcessEngine, metrics: ServerMetrics, http: Request, body: ChatCompletionRequest
) -> dict[str, object] | StreamingResponse:
    prepared = await asyncio.to_thread(prepare_choices, engine, body)
    generations = start_all(engine, prepared)
    response_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    clock = RequestClock(metrics)
    streams = [
        engine.deltas(item, generation) for item, generation in zip(prepared, generations, strict=True)
    ]
    if body.stream:
        writer = ChunkWriter(response_id, created, engine.model_name, body)
        events = stream_events(
            writer, streams, clock, body.stream_options is not None and body.stream_options.include_usage
        )
        return StreamingResponse(events, media_type="text/event-stream")
    work = asyncio.gather(*(_collect(stream, clock) for stream in streams))
    completions = await while_connected(http, generations, work)
    clock.done(completions[0].usage.prompt_tokens, sum(c.usage.completion_tokens for c in completions))
    return completion_body(response_id, created, completions, body)


async def merged(streams: Sequence[AsyncIterable[Item]]) -> AsyncIterator[tuple[int, Item]]:
    """The items of several choices' streams as they come, each with its choice index."""
    if len(streams) == 1:
        async for item in streams[0]:
            yield 0, item
        return
    arrivals: asyncio.Queue[tuple[int, Item | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterable[Item]) -> None:
        try:
            async for delta in stream:
                await arrivals.put((index, delta))
            await arrivals.put((index, None))
        except Exception as error:
            await arrivals.put((index, error))

    tasks = [asyncio.create_task(pump(index, stream)) for index, stream in enumerate(streams)]
    try:
        open_streams = len(tasks)
        while open_streams:
            index, arrival = await arrivals.get()
            if arrival is None:
                open_streams -= 1
            elif isinstance(arrival, BaseException):
                raise arrival
            else:
                yield index, arrival
    finally:
        for task in tasks:
            task.cancel()


async def stream_events(
    writer: ChunkWriter, streams: list[AsyncIterator[ReplyDelta]], clock: RequestClock, include_usage: bool
) -> AsyncIterator[str]:
    """SSE events: an opening chunk per choice at once, then deltas as generated, usage, [DONE]."""
    for index in range(len(streams)):
        yield writer.opening(index)
    completions: dict[int, Completion] = {}
    try:
        async for index, delta in merged(streams):
            clock.tokens(len(delta.token_ids))
            for event in writer.delta(index, delta):
                yield event
            if delta.completion is not None:
                completions[index] = delta.completion
    except Exception as error:  # the response has started: the error can only be an event
        yield sse(
            {"error": {"message": public_message(error), "type": "server_error", "param": None, "code": None}}
        )
        yield "data: [DONE]\n\n"
        return
    ordered = [completions[index] for index in sorted(completions)]
    clock.done(ordered[0].usage.prompt_tokens, sum(c.usage.completion_tokens for c in ordered))
    if include_usage:
        yield writer.usage(ordered)
    yield "data: [DONE]\n\n"


def public_message(error: Exception) -> str:
    """What a client may read about a failure that happened after its response started."""
    if isinstance(error, ModelUnavailable):
        return str(error)
    logger.error("a streamed response failed", exc_info=error)
    return "internal error; the server log has the details"
