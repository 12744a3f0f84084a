"""Training metrics: one JSON line per logged step in `<run_dir>/metrics.jsonl`, mirrored to TensorBoard
when the `tensorboard` package is installed. The report reads the file back through the same record type.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from openk2.io import atomic_write_text

METRICS_FILE = "metrics.jsonl"


class StepRecord(BaseModel):
    """What one optimizer step did; validation fields only on steps that evaluated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    step: int
    loss: float  # next-token cross-entropy of the step's global batch (without the balance loss)
    aux_loss: float | None = None  # α·sequence-wise balance loss, when [train].aux_loss_alpha > 0
    lr: float
    grad_norm: float  # global norm before clipping
    tokens_seen: int
    trained_tokens: int | None = None  # tokens the loss was on this step (SFT: the assistant's)
    tokens_per_second: float
    elapsed_seconds: float
    max_logit: float  # max over layers and heads of S_max^h in this step's forwards (K2 report §2.1)
    max_logit_per_layer: list[float]
    heads_clipped: int
    heads_total: int
    expert_load_min: list[float]  # per MoE layer: tokens routed to its least/most/average expert this step
    expert_load_max: list[float]
    expert_load_mean: list[float]
    expert_bias_min: list[float]  # per MoE layer, after this step's bias update
    expert_bias_max: list[float]
    val_loss: float | None = None
    # per MoE layer, per expert (the report's heatmaps); empty in metrics written before they were recorded
    expert_load: list[list[float]] = []  # tokens routed to each expert this step
    expert_bias: list[list[float]] = []  # each expert's routing bias after this step's update


class MetricsWriter:
    """Appends records to metrics.jsonl (flushed per line) and, if available, to TensorBoard."""

    def __init__(self, run_dir: Path, resume_after_step: int) -> None:
        """Drops records of steps after `resume_after_step`: a resumed run rewrites them."""
        self.path = run_dir / METRICS_FILE
        kept = (
            [r for r in read_metrics(self.path) if r.step <= resume_after_step] if self.path.exists() else []
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # a kill mid-rewrite keeps the old file
        atomic_write_text(self.path, "".join(record.model_dump_json() + "\n" for record in kept))
        self._file = self.path.open("a", encoding="utf-8")
        self.tensorboard = _tensorboard_writer(run_dir / "tensorboard", purge_step=resume_after_step + 1)

    def write(self, record: StepRecord) -> None:
        self._file.write(record.model_dump_json() + "\n")
        self._file.flush()
        if self.tensorboard is not None:
            per_expert = {
                "expert_load",
                "expert_bias",
            }  # thousands of scalars at K2's size: the report draws them
            for name, value in record.model_dump(exclude={"step", *per_expert}, exclude_none=True).items():
                if isinstance(value, list):
                    for index, item in enumerate(value):
                        self.tensorboard.add_scalar(f"{name}/{index}", item, record.step)
                else:
                    self.tensorboard.add_scalar(name, value, record.step)

    def close(self) -> None:
        self._file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def _tensorboard_writer(log_dir: Path, purge_step: int) -> Any:
    if not tensorboard_available():
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(log_dir), purge_step=purge_step)


def read_metrics(path: Path) -> list[StepRecord]:
    """Every record of a metrics.jsonl; a line cut short by a kill (the last one) is dropped."""
    lines = path.read_text(encoding="utf-8").split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(StepRecord.model_validate_json(line))
        except ValidationError as error:
            if number == len(lines):  # no newline after it: the write was interrupted
                continue
            raise ValueError(f"{path}:{number}: not a metrics record ({error})") from None
    return records
