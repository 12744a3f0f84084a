"""Progress of a synthesis stage: a rich bar on a terminal, a plain line every tenth of the way otherwise."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class StageProgress:
    def __init__(self, label: str, total: int, enabled: bool, done: int = 0) -> None:
        self.console = Console(stderr=True, quiet=not enabled)
        self.label = label
        self.total = total
        self.done = done
        self.counts: dict[str, int] = {}
        self._bar = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not enabled or not self.console.is_terminal,
        )
        self._task = self._bar.add_task("", total=total, completed=done)
        self._next_line = 0

    def __enter__(self) -> StageProgress:
        self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._bar.stop()
        if not self.console.is_terminal:
            self._line()

    def set_total(self, total: int) -> None:
        """A stage whose size depends on its own results (the evolution tree) learns it as it goes."""
        self.total = total
        self._bar.update(self._task, total=total)

    def advance(self, outcome: str) -> None:
        self.done += 1
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        description = ", ".join(f"{count} {name}" for name, count in sorted(self.counts.items()))
        self._bar.update(self._task, completed=self.done, description=description)
        if not self.console.is_terminal and self.done >= self._next_line:
            self._line()
            self._next_line = self.done + max(1, self.total // 10)

    def _line(self) -> None:
        counts = ", ".join(f"{count} {name}" for name, count in sorted(self.counts.items()))
        self.console.print(f"{self.label}: {self.done}/{self.total} {counts}", highlight=False)
