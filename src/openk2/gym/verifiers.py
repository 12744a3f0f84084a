"""Verifiers run in worker processes with a wall-clock timeout (K2 report §3.3: environments as services).

A check may hang (a sympy simplification that never ends), raise, or crash its process; none of this may
stop an episode or turn into a silent 0. Each worker is a one-process pool: a check that overruns its
timeout has its process killed and replaced, and the component carries the error instead of a score.
Math-Verify in particular only works in a process's main thread, so checks never run in threads.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from openk2.gym.records import Reward, RewardComponent


@dataclass
class Verdict:
    """What a check returns: a score in [0, 1] and why."""

    score: float
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.score >= 1.0


def component(name: str, verdict: Verdict, weight: float = 1.0) -> RewardComponent:
    return RewardComponent(
        name=name, score=verdict.score, weight=weight, passed=verdict.passed, details=verdict.details
    )


STARTUP_TIMEOUT_S = 300.0  # a worker's start and imports; not counted against a check's timeout


def _preload(modules: tuple[str, ...]) -> None:
    for module in modules:
        importlib.import_module(module)


def unparsed(name: str, problem: str) -> Reward:
    """The reward of a reply with nothing to check: 0, with the parse problem named."""
    return Reward.combine(
        [RewardComponent(name=name, score=0.0, passed=False, details={"parse_error": problem})]
    )


class VerifierPool:
    """`workers` processes running checks concurrently; `workers=0` runs them inline (no timeout).

    A new worker first imports the check's module and `preload` (e.g. Math-Verify, sympy), so the
    timeout measures the check, not the start of a process on a busy machine.
    """

    def __init__(self, workers: int = 2, timeout_s: float = 10.0, preload: tuple[str, ...] = ()) -> None:
        if workers < 0 or timeout_s <= 0:
            raise ValueError(f"workers, timeout_s: expected >= 0 and > 0, got {workers}, {timeout_s}")
        self.workers = workers
        self.timeout_s = timeout_s
        self.preload = preload
        self._started: set[ProcessPoolExecutor] = set()
        self._idle: asyncio.Queue[ProcessPoolExecutor] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._all: list[ProcessPoolExecutor] = []

    async def check(
        self, name: str, check: Callable[..., Verdict], *args: Any, weight: float = 1.0
    ) -> RewardComponent:
        """Run `check(*args)` (a module-level function) and turn its verdict, error or timeout into a component."""
        if self.workers == 0:
            try:
                return component(name, check(*args), weight)
            except Exception as error:
                return RewardComponent(name=name, weight=weight, error=f"{type(error).__name__}: {error}")
        idle = self._idle_workers()
        worker = await idle.get()
        loop = asyncio.get_running_loop()
        try:
            if worker not in self._started:
                modules = (check.__module__, *self.preload)
                await asyncio.wait_for(loop.run_in_executor(worker, _preload, modules), STARTUP_TIMEOUT_S)
                self._started.add(worker)
            verdict = await asyncio.wait_for(loop.run_in_executor(worker, check, *args), self.timeout_s)
            return component(name, verdict, weight)
        except TimeoutError:
            worker = self._replace(worker)  # the hung check still occupies it
            return RewardComponent(name=name, weight=weight, error=f"timed out after {self.timeout_s:g} s")
        except BrokenProcessPool:
            worker = self._replace(worker)
            return RewardComponent(name=name, weight=weight, error="the verifier process died")
        except Exception as error:
            return RewardComponent(name=name, weight=weight, error=f"{type(error).__name__}: {error}")
        finally:
            idle.put_nowait(worker)

    def _idle_workers(self) -> asyncio.Queue[ProcessPoolExecutor]:
        loop = asyncio.get_running_loop()
        if self._idle is None or self._loop is not loop:  # a queue belongs to one event loop
            self._idle, self._loop = asyncio.Queue(), loop
            while len(self._all) < self.workers:
                self._new_worker()
            for worker in self._all:
                self._idle.put_nowait(worker)
        return self._idle

    def _new_worker(self) -> ProcessPoolExecutor:
        # spawn: a fork of a process with threads (torch, asyncio helpers) can deadlock in the child
        worker = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        self._all.append(worker)
        return worker

    def _replace(self, worker: ProcessPoolExecutor) -> ProcessPoolExecutor:
        for process in list(getattr(worker, "_processes", {}).values()):
            process.kill()
        worker.shutdown(wait=False, cancel_futures=True)
        self._all.remove(worker)
        self._started.discard(worker)
        return self._new_worker()

    def close(self) -> None:
        for worker in self._all:
            for process in list(getattr(worker, "_processes", {}).values()):
                process.kill()
            worker.shutdown(wait=True, cancel_futures=True)
        self._all.clear()
        self._started.clear()
        self._idle = None
