"""Continuous batching: requests join and leave the running batch between decoding steps.

One worker thread owns the model. Each step it drops cancelled rows, admits waiting requests while
the batch has room (each joins after its own prefill, which reuses the prefix cache), then runs one
decoding step for every running row and lets the finished rows leave. A short request that arrives
behind a long one therefore finishes in about its own time instead of waiting for the long one.

`policy="static"`, the baseline `bench/serve.py` compares against, is classic static batching as
`generate` does it: a batch forms, runs until its longest request ends (finished rows stay in it,
computed for nothing), and only then do waiting requests form the next batch.

The waiting queue is bounded: beyond `max_pending` a request is refused at once (`Overloaded`, the
server's 429). A weight update (`run_between_batches`) stops admission, lets the running rows finish,
runs with the model to itself, then admission resumes; queued requests wait, none is dropped.
"""

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Literal

import torch

from openk2.llm.grammar import GrammarCompiler
from openk2.llm.prefix_cache import PrefixCache
from openk2.llm.protocol import Overloaded, ShutDown
from openk2.llm.runner import ModelRunner, PrefillItem
from openk2.llm.sampling import Choice, choose
from openk2.llm.sequence import Sequence, StepOutput

logger = logging.getLogger("openk2.llm")

Policy = Literal["continuous", "static"]


@dataclass
class SchedulerStats:
    steps: int = 0  # decoding steps run
    generated_tokens: int = 0
    prompt_tokens: int = 0  # prompt (and forced) tokens of admitted requests
    prefilled_tokens: int = 0  # of them, computed (not taken from the prefix cache)
    finished: int = 0
    cancelled: int = 0
    batch_sizes: Counter[int] | None = None  # rows per decoding step -> steps


class Scheduler:
    def __init__(
        self,
        runner: ModelRunner,
        encode: Callable[[str], list[int]],
        grammars: GrammarCompiler | None,
        max_batch_size: int = 32,
        max_pending: int = 256,
        prefix_cache: PrefixCache | None = None,
        policy: Policy = "continuous",
    ) -> None:
        if max_batch_size < 1 or max_pending < 1:
            raise ValueError(
                f"max_batch_size, max_pending: expected >= 1, got {max_batch_size}, {max_pending}"
            )
        self.runner = runner
        self.encode = encode
        self.grammars = grammars
        self.max_batch_size = max_batch_size
        self.max_pending = max_pending
        self.prefix_cache = prefix_cache
        self.policy = policy
        self.stats = SchedulerStats(batch_sizes=Counter())
        self._waiting: deque[Sequence] = deque()
        self._running: list[Sequence] = []
        self._exclusive: deque[tuple[Callable[[], None], Future[None]]] = deque()
        self._condition = threading.Condition()
        self._closed = False
        self._worker: threading.Thread | None = None

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return sum(1 for sequence in self._running if sequence.finish_reason is None)

    def submit(self, sequence: Sequence) -> None:
        with self._condition:
            if self._closed:
                raise ShutDown("the engine is shutting down")
            if len(self._waiting) >= self.max_pending:
                raise Overloaded(f"{len(self._waiting)} requests are already waiting; retry later")
            self._waiting.append(sequence)
            self._ensure_worker()
            self._condition.notify()

    def cancel(self, sequence: Sequence) -> None:
        """Stop a sequence at the next step; its caller receives a last output with reason 'cancelled'."""
        sequence.cancelled.set()
        with self._condition:
            self._condition.notify()

    def cancel_all(self) -> None:
        """Cancel every queued and running sequence."""
        with self._condition:
            for sequence in [*self._waiting, *self._running]:
                sequence.cancelled.set()
            self._condition.notify()

    def run_between_batches(self, work: Callable[[], None]) -> None:
        """Run `work` with the model to itself, after the running rows finish; blocks until done."""
        done: Future[None] = Future()
        with self._condition:
            if self._closed:
                raise ShutDown("the engine is shutting down")
            self._exclusive.append((work, done))
            self._ensure_worker()
            self._condition.notify()
        done.result()

    def close(self, drain_s: float = 0.0) -> None:
        """Stop taking requests; let the queued and running ones finish for up to `drain_s`, cancel the rest."""
        deadline = time.monotonic() + drain_s
        with self._condition:
            self._closed = True
            self._condition.notify()
            while (self._waiting or self._running) and time.monotonic() < deadline:
                self._condition.wait(timeout=0.05)
            for sequence in [*self._waiting, *self._running]:
                sequence.cancelled.set()
            self._condition.notify()
        if self._worker is not None:
            self._worker.join()

    def _ensure_worker(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="openk2-engine", daemon=True)
            self._worker.start()

    # -- the worker ---------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(
                    lambda: self._waiting or self._running or self._exclusive or self._closed
                )
                if self._closed and not self._waiting and not self._running:
                    self._fail_exclusive()
                    return
                admitted = self._admit()
            if not self._running and not admitted and self._exclusive:
                self._run_exclusive()
                continue
            try:
                self._step(admitted)
            except Exception as error:  # a model failure fails the batch, never the worker
                logger.exception("decoding step failed")
                for sequence in [*self._running, *admitted]:
                    if sequence.finish_reason is None:
                        sequence.deliver(StepOutput((), "", error=error))
                self._running = []
                self.runner.batch.keep([])
            with self._condition:
                self._condition.notify_all()  # close() waits for the batch to drain

    def _admit(self) -> list[Sequence]:
        """Waiting sequences that join now (none while a weight update waits for the batch to drain)."""
        for sequence in [s for s in self._waiting if s.cancelled.is_set()]:
            self._waiting.remove(sequence)
            self._finish(sequence, sequence.cancel())
        if self._exclusive or (self.policy == "static" and self._running):
            return []
        room = self.max_batch_size - len(self._running)
        return [self._waiting.popleft() for _ in range(min(room, len(self._waiting)))]

    def _run_exclusive(self) -> None:
        work, done = self._exclusive.popleft()
        try:
            work()
            if self.prefix_cache is not None:
                self.prefix_cache.clear()  # cached values came from the old weights
            done.set_result(None)
        except Exception as error:
            done.set_exception(error)

    def _fail_exclusive(self) -> None:
        while self._exclusive:
            self._exclusive.popleft()[1].set_exception(ShutDown("the engine is shutting down"))

    def _finish(self, sequence: Sequence, output: StepOutput) -> None:
        self.stats.finished += 1
        if sequence.finish_reason == "cancelled":
            self.stats.cancelled += 1
        sequence.deliver(output)

    def _step(self, admitted: list[Sequence]) -> None:
        keep = []
        for row, sequence in enumerate(self._running):
            if sequence.cancelled.is_set() and sequence.finish_reason is None:
                self._finish(sequence, sequence.cancel())
            else:
                keep.append(row)
        if len(keep) < len(self._running):
            self._running = [self._running[row] for row in keep]
            self.runner.batch.keep(keep)
        joining = []
        starting = []
        for sequence in admitted:
            if sequence.cancelled.is_set():
                self._finish(sequence, sequence.cancel())
                continue
            try:
                sequence.begin_grammar(self.grammars, self.encode)
            except Exception as error:  # e.g. a grammar the matcher refused: this request only
                logger.exception("grammar failed")
                sequence.deliver(StepOutput((), "", error=error))
                continue
            starting.append(sequence)
        for sequence, kv in zip(starting, self._prefill(starting), strict=True):
            if kv is not None:
                joining.append(kv)
                self._running.append(sequence)
        self.runner.batch.join(joining)
        if self._running:
            self._decode()

    def _prefill(self, sequences: list[Sequence]) -> list[list[torch.Tensor] | None]:
        """Prefill the joining sequences together and sample their first tokens; each one's cache when it
        goes on, None when it ended already."""
        if not sequences:
            return []
        items = []
        for sequence in sequences:
            request = sequence.request
            tokens = request.prompt_ids + request.forced_ids
            cached, cached_kv = 0, None
            if self.prefix_cache is not None:
                # the forced tokens are always computed: their log-probabilities come from this forward
                cached, cached_kv = self.prefix_cache.lookup(request.prompt_ids)
            sequence.cached_prompt_tokens = cached
            self.stats.prompt_tokens += len(tokens)
            self.stats.prefilled_tokens += len(tokens) - cached
            items.append(PrefillItem(tokens, cached, cached_kv, logits_for=len(request.forced_ids) + 1))
        prefilled = self.runner.prefill_many(items)
        for sequence, (kv, logits) in zip(sequences, prefilled, strict=True):
            request = sequence.request
            if self.prefix_cache is not None:
                self.prefix_cache.insert(request.prompt_ids + request.forced_ids, kv)
            self._score_forced(sequence, logits[:-1])
        last = torch.stack([logits[-1] for _, logits in prefilled])
        choices = choose(last, [s.sampler for s in sequences], [s.allowed() for s in sequences])
        return [
            kv if self._accept(sequence, choice, lambda kv=kv: kv) else None  # type: ignore[misc]
            for sequence, choice, (kv, _) in zip(sequences, choices, prefilled, strict=True)
        ]

    @staticmethod
    def _score_forced(sequence: Sequence, logits: torch.Tensor) -> None:
        """The forced tokens' log-probabilities (and alternatives), from the prefill's logits before each."""
        request = sequence.request
        if not request.forced_ids or not (request.sampling.return_tokens or request.sampling.top_logprobs):
            return
        scored = (logits.float() / (request.sampling.temperature or 1.0)).log_softmax(-1)
        index = torch.tensor(request.forced_ids, device=scored.device)[:, None]
        sequence.logprobs = scored.gather(1, index).squeeze(1).tolist()
        if request.sampling.top_logprobs:
            values, ids = scored.topk(request.sampling.top_logprobs, dim=-1)
            sequence.top_logprobs = [
                dict(zip(i, v, strict=True)) for i, v in zip(ids.tolist(), values.tolist(), strict=True)
            ]

    def _accept(self, sequence: Sequence, choice: Choice, cache: Callable[[], list[torch.Tensor]]) -> bool:
        """Give the sequence its token; True while it goes on. A finished one leaves its cache behind."""
        try:
            output = sequence.accept(choice, self.grammars, self.encode)
        except Exception as error:  # e.g. a grammar refusing the text after its trigger: this request only
            logger.exception("a sequence failed")
            sequence.finish_reason = "cancelled"
            sequence.deliver(StepOutput((), "", error=error))
            return False
        self.stats.generated_tokens += 1
        if sequence.finish_reason is None:
            sequence.deliver(output)
            return True
        if self.prefix_cache is not None:
            kv = cache()
            self.prefix_cache.insert(sequence.context[: kv[0].shape[0]], kv)
        self._finish(sequence, output)
        return False

    def _decode(self) -> None:
        running = self._running
        # under static batching a finished row stays in the batch (still computed) until the batch ends
        live = [row for row, sequence in enumerate(running) if sequence.finish_reason is None]
        if not live:  # a static batch whose last row was cancelled
            self._running = []
            self.runner.batch.keep([])
            return
        logits = self.runner.decode([sequence.generated[-1] for sequence in running])
        self.stats.steps += 1
        assert self.stats.batch_sizes is not None
        self.stats.batch_sizes[len(running)] += 1
        deciding = [running[row] for row in live]
        choices = choose(logits[live], [s.sampler for s in deciding], [s.allowed() for s in deciding])
        for row, sequence, choice in zip(live, deciding, choices, strict=True):
            self._accept(sequence, choice, lambda row=row: self.runner.batch.row(row))  # type: ignore[misc]
        keep = [row for row, sequence in enumerate(running) if sequence.finish_reason is None]
        if self.policy == "static" and keep:
            return
        if len(keep) < len(running):
            self._running = [running[row] for row in keep]
            self.runner.batch.keep(keep)
