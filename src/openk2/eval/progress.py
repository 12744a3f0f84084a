"""Progress of an evaluation: one rich bar per suite on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

PLAIN_EVERY_S = 30.0  # a plain line at least this often while items finish, and at each tenth


class EvalProgress:
    def __init__(self, enabled: bool = True) -> None:
        self.console = Console(stderr=True, quiet=not enabled)
        self.live = enabled and self.console.is_terminal
        self._bars = Progress(
            TextColumn("[bold]{task.fields[suite]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[passed]} passed, {task.fields[errors]} errors"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.live,
        )
        self._task: TaskID | None = None
        self._suite = ""
        self._counts = {"done": 0, "total": 0, "passed": 0, "errors": 0}
        self._last_line = 0.0
        self._started = 0.0

    def __enter__(self) -> EvalProgress:
        self._bars.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._bars.stop()

    def start_suite(self, suite: str, total: int, done: int) -> None:
        self._suite = suite
        self._counts = {"done": done, "total": total, "passed": 0, "errors": 0}
        self._started = self._last_line = time.monotonic()
        self._task = self._bars.add_task(suite, total=total, completed=done, suite=suite, passed=0, errors=0)
        if not self.live:
            self.note(f"{suite}: {total} items, {done} already done")

    def advance(self, passed: bool | None) -> None:
        """One item finished: passed, failed (False) or not scored (None)."""
        counts = self._counts
        counts["done"] += 1
        counts["passed"] += bool(passed)
        counts["errors"] += passed is None
        if self._task is not None:
            self._bars.update(self._task, advance=1, passed=counts["passed"], errors=counts["errors"])
        now = time.monotonic()
        tenth = max(1, counts["total"] // 10)
        if not self.live and (counts["done"] % tenth == 0 or now - self._last_line >= PLAIN_EVERY_S):
            self._last_line = now
            self.note(
                f"{self._suite}: {counts['done']}/{counts['total']} items ({counts['passed']} passed in this "
                f"session, {counts['errors']} errors), {now - self._started:.0f} s"
            )

    def note(self, message: str) -> None:
        self.console.print(message, highlight=False, markup=False, soft_wrap=True)
