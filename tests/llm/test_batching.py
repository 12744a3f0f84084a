"""Concurrent callers share batches; a full queue refuses at once; one bad request fails alone."""

import asyncio
import threading
from collections.abc import Sequence

import pytest

from openk2.chat import ChatFormatError
from openk2.llm import (
    LLM,
    BatchingLLM,
    ChatRequest,
    Completion,
    Overloaded,
    SamplingParams,
    ShutDown,
    chat_request,
)
from tests.llm.checkpoints import ANSWER

QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_concurrent_requests_are_generated_in_shared_batches(scripted_engine):
    llm = BatchingLLM(scripted_engine, max_batch_size=8, max_pending=16)

    async def ask_many() -> list[str]:
        replies = await asyncio.gather(*(llm.achat(chat_request(QUESTION)) for _ in range(12)))
        return [reply.message.content for reply in replies]

    try:
        assert asyncio.run(ask_many()) == [ANSWER] * 12
    finally:
        llm.close()
    assert sum(size * count for size, count in llm.batch_sizes.items()) == 12
    assert max(llm.batch_sizes) > 1
    assert max(llm.batch_sizes) <= 8


class HeldBackEnd(LLM):
    """The scripted engine behind a gate: the test decides when the worker's batch may finish (a pipeline
    test, so the back end is scripted; the queue under test is the real BatchingLLM)."""

    def __init__(self, inner: LLM) -> None:
        self.inner = inner
        self.generating = threading.Event()
        self.release = threading.Event()

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        self.generating.set()
        self.release.wait(timeout=60)
        return self.inner.chat_batch(requests)


def test_full_queue_answers_overloaded_at_once(scripted_engine):
    held = HeldBackEnd(scripted_engine)
    llm = BatchingLLM(held, max_batch_size=1, max_pending=1)

    async def three_callers() -> tuple[list[Completion], BaseException]:
        first = asyncio.ensure_future(llm.achat(chat_request(QUESTION)))
        await asyncio.to_thread(held.generating.wait, 60)  # the worker took the first request
        second = asyncio.ensure_future(llm.achat(chat_request(QUESTION)))
        await asyncio.sleep(0)  # the second is queued: the queue of one is full
        assert llm.pending == 1
        with pytest.raises(Overloaded) as refused:
            await llm.achat(chat_request(QUESTION))  # refused at once, while the worker is still held
        held.release.set()
        return list(await asyncio.gather(first, second)), refused.value

    try:
        served, refused = asyncio.run(three_callers())
    finally:
        held.release.set()
        llm.close()
    assert [completion.message.content for completion in served] == [ANSWER, ANSWER]
    assert "1 requests are already waiting" in str(refused)


def test_a_bad_request_fails_alone_and_its_batch_neighbours_are_served(scripted_engine):
    llm = BatchingLLM(scripted_engine, max_batch_size=4, max_pending=4)
    good = chat_request(QUESTION)
    too_long = chat_request(QUESTION, sampling=SamplingParams(max_tokens=5000))

    async def ask() -> list[object]:
        return await asyncio.gather(
            llm.achat(good), llm.achat(too_long), llm.achat(good), return_exceptions=True
        )

    try:
        first, second, third = asyncio.run(ask())
    finally:
        llm.close()
    assert first.message.content == third.message.content == ANSWER
    assert isinstance(second, ChatFormatError) and str(second).startswith("max_tokens:")


def test_closed_batcher_refuses_new_requests(scripted_engine):
    llm = BatchingLLM(scripted_engine)
    llm.close()
    with pytest.raises(ShutDown):
        asyncio.run(llm.achat(chat_request(QUESTION)))


def test_the_worker_survives_a_caller_whose_event_loop_closed_mid_batch(untrained_engine):
    llm = BatchingLLM(untrained_engine, max_batch_size=1, max_pending=4)
    slow = chat_request(QUESTION, sampling=SamplingParams(temperature=0, max_tokens=60))

    async def give_up_while_generating() -> None:
        asked = asyncio.ensure_future(llm.achat(slow))
        await asyncio.sleep(0.05)  # the worker has taken the request
        asked.cancel()

    try:
        asyncio.run(give_up_while_generating())  # closes the loop the worker will answer on
        reply = asyncio.run(asyncio.wait_for(llm.achat(slow), timeout=120))
    finally:
        llm.close()
    assert reply.usage.completion_tokens == 60
