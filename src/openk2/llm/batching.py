"""Many concurrent callers, one generator: a bounded queue drained in batches by one worker thread.

While the worker generates one batch, new requests wait; the next batch takes up to
`max_batch_size` of them at once. The queue holds at most `max_pending` requests: beyond that a
caller gets `Overloaded` at once (the server answers 429) instead of waiting without bound.
"""

import asyncio
import threading
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass

from openk2.llm.protocol import LLM, ModelUnavailable
from openk2.llm.types import ChatRequest, Completion


class Overloaded(ModelUnavailable):
    """The request queue is full; retry later."""


class ShutDown(ModelUnavailable):
    """The batching worker has stopped and takes no more requests."""


@dataclass
class _Waiting:
    request: ChatRequest
    future: asyncio.Future[Completion]
    loop: asyncio.AbstractEventLoop


def _resolve(future: asyncio.Future[Completion], outcome: Completion | BaseException) -> None:
    if future.done():  # the caller went away (cancelled)
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class BatchingLLM(LLM):
    """Wraps an in-process back end so that concurrent `achat` calls are generated together."""

    def __init__(self, inner: LLM, max_batch_size: int = 8, max_pending: int = 64) -> None:
        if max_batch_size < 1 or max_pending < 1:
            raise ValueError(
                f"max_batch_size, max_pending: expected >= 1, got {max_batch_size}, {max_pending}"
            )
        self.inner = inner
        self.max_batch_size = max_batch_size
        self.max_pending = max_pending
        self.batch_sizes: Counter[int] = Counter()  # batch size -> how many batches of it were run
        self._waiting: deque[_Waiting] = deque()
        self._condition = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="openk2-batching", daemon=True)
        self._worker.start()

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def pending(self) -> int:
        return len(self._waiting)

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        return self.inner.chat_batch(requests)

    async def achat(self, request: ChatRequest) -> Completion:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Completion] = loop.create_future()
        with self._condition:
            if self._closed:
                raise ShutDown("the server is shutting down")
            if len(self._waiting) >= self.max_pending:
                raise Overloaded(f"{len(self._waiting)} requests are already waiting; retry later")
            self._waiting.append(_Waiting(request, future, loop))
            self._condition.notify()
        return await future

    def close(self) -> None:
        """Finish the queued requests, then stop the worker."""
        with self._condition:
            self._closed = True
            self._condition.notify()
        self._worker.join()

    def _work(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._waiting or self._closed)
                if not self._waiting:
                    return
                batch = [self._waiting.popleft() for _ in range(min(self.max_batch_size, len(self._waiting)))]
            for waiting, outcome in zip(batch, self._run(batch), strict=True):
                try:
                    waiting.loop.call_soon_threadsafe(_resolve, waiting.future, outcome)
                except RuntimeError:  # the caller's event loop has closed: nobody waits for this reply
                    continue

    def _run(self, batch: list[_Waiting]) -> list[Completion] | list[Completion | BaseException]:
        self.batch_sizes[len(batch)] += 1
        try:
            return self.inner.chat_batch([waiting.request for waiting in batch])
        except Exception as error:
            if len(batch) == 1:
                return [error]
        # One bad request must not fail its neighbours: each is answered on its own.
        outcomes: list[Completion | BaseException] = []
        for waiting in batch:
            try:
                outcomes.append(self.inner.chat_batch([waiting.request])[0])
            except Exception as error:
                outcomes.append(error)
        return outcomes
