"""Live progress of a training run (rich): step, loss, lr, tokens/s, max logit, heads clipped, ETA.

On a terminal one bar redraws in place; in a log file (not a terminal) each logged step is one line.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from openk2.train.metrics import StepRecord


class TrainingProgress:
    def __init__(
        self,
        label: str,
        total_steps: int,
        enabled: bool,
        describe: Callable[[StepRecord], str] | None = None,
        unit: str = "step",
    ) -> None:
        """`describe` writes a record's line (the loss, lr, throughput and QK-Clip by default); `unit`
        names what a record counts (RL: an iteration)."""
        self.describe = describe or describe_step
        self.unit = unit
        self.console = Console(stderr=True, quiet=not enabled)
        self._bar = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled or not self.console.is_terminal,
        )
        self.total_steps = total_steps
        self._task = self._bar.add_task("", total=total_steps)

    def __enter__(self) -> TrainingProgress:
        self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._bar.stop()

    def start_from(self, step: int) -> None:
        """A resumed run starts part-way; the ETA counts only this session's speed."""
        self._bar.reset(self._task, total=self.total_steps, completed=step)

    def update(self, record: StepRecord, logged: bool) -> None:
        line = self.describe(record)
        self._bar.update(self._task, completed=record.step, description=line)
        if logged and not self.console.is_terminal:
            self.console.print(f"{self.unit} {record.step}: {line}", highlight=False)

    def note(self, message: str) -> None:
        self.console.print(message, highlight=False)


def describe_step(record: StepRecord) -> str:
    val = f" val {record.val_loss:.3f}" if record.val_loss is not None else ""
    return (
        f"loss {record.loss:.3f}{val} | lr {record.lr:.2e} | {record.tokens_per_second:,.0f} tok/s | "
        f"max logit {record.max_logit:.1f} | clipped {record.heads_clipped}/{record.heads_total}"
    )
