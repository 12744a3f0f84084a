"""Live progress of a training run: step, loss, lr, tokens/s, max logit, heads clipped, time left.

A bar on a terminal, periodic plain lines elsewhere (`openk2.progress`), the same for every stage.
"""

from __future__ import annotations

from openk2.progress import ProgressReport, log_console
from openk2.train.metrics import StepRecord


class TrainingProgress(ProgressReport):
    def __init__(self, label: str, total_steps: int, enabled: bool) -> None:
        super().__init__(label, total_steps, "steps", log_console(quiet=not enabled))

    def show(self, record: StepRecord) -> None:
        self.update(record.step, describe(record))


def describe(record: StepRecord) -> str:
    val = f" val {record.val_loss:.3f}" if record.val_loss is not None else ""
    return (
        f"loss {record.loss:.3f}{val} | lr {record.lr:.2e} | {record.tokens_per_second:,.0f} tok/s | "
        f"max logit {record.max_logit:.1f} | clipped {record.heads_clipped}/{record.heads_total}"
    )
