"""What long jobs print while they run, the same way in every stage.

On a terminal a rich progress bar redraws in place. Anywhere else (a log file, CI, `nohup`) a redrawn bar
prints nothing useful, so a plain line is printed instead: at the first update, then every `interval_s`
seconds, and once at the end. Log lines are never wrapped at the console's width when the output is not a
terminal, so one record stays one line for `grep`.
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

PLAIN_INTERVAL_S = 30.0  # a line every half minute: alive in a CI log without flooding it


def log_console(stderr: bool = True, quiet: bool = False) -> Console:
    """A rich console for progress and log lines; when it is not a terminal, long lines are not wrapped."""
    console = Console(stderr=stderr, quiet=quiet)
    console.soft_wrap = not console.is_terminal
    return console


class ProgressReport:
    """Progress of a job of `total` units (steps, documents, tasks), as a bar or as periodic plain lines."""

    def __init__(
        self,
        label: str,
        total: int,
        unit: str,
        console: Console,
        interval_s: float = PLAIN_INTERVAL_S,
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.console = console
        self.interval_s = interval_s
        self.plain = not console.is_terminal
        self._bar = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeRemainingColumn(),
            console=console,
            disable=self.plain,
        )
        self._task = self._bar.add_task("", total=total)
        self.completed = self._session_start = 0
        self.detail = ""
        self._started = self._last_line = time.monotonic()
        self._printed_any = self._unprinted = False

    def __enter__(self) -> ProgressReport:
        self._started = time.monotonic()
        self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._bar.stop()
        if self.plain and self._unprinted:  # the last state, unless it was just printed
            self._print_line()

    def start_from(self, completed: int) -> None:
        """A resumed job starts part-way; the time left counts only this session's pace."""
        self.completed = self._session_start = completed
        self._started = time.monotonic()
        self._bar.reset(self._task, total=self.total, completed=completed)

    def update(self, completed: int, detail: str = "") -> None:
        self.completed, self.detail = completed, detail
        self._bar.update(self._task, completed=completed, description=detail)
        if not self.plain:
            return
        if not self._printed_any or time.monotonic() - self._last_line >= self.interval_s:
            self._print_line()
        else:
            self._unprinted = True

    def advance(self, count: int = 1, detail: str = "") -> None:
        self.update(self.completed + count, detail)

    def note(self, message: str) -> None:
        self.console.print(message, highlight=False, markup=False)

    def _print_line(self) -> None:
        now = time.monotonic()
        elapsed = now - self._started
        done_now = self.completed - self._session_start
        left = ""
        if done_now > 0 and self.completed < self.total:
            left = f", ~{_duration(elapsed / done_now * (self.total - self.completed))} left"
        percent = 100 * self.completed / self.total if self.total else 100.0
        detail = f" | {self.detail}" if self.detail else ""
        self.note(
            f"{self.label}: {self.completed}/{self.total} {self.unit} ({percent:.0f}%){detail} | "
            f"{_duration(elapsed)} elapsed{left}"
        )
        self._last_line, self._printed_any, self._unprinted = now, True, False


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
