"""What a stage leaves behind so that the next `openk2 run` knows whether to skip, resume or redo it.

A stage's key is the hash of everything its output depends on: its command, its complete recipe, and the
digests of the outputs it reads (a checkpoint's model as its integrity manifest lists it, a file's bytes). `started.json`
(written before the stage runs) and `stage.json` (written after it succeeded, with its output's digest)
hold that key, atomically:

    stage.json with the key, output digest unchanged     current: skipped
    started.json with the key, no stage.json             interrupted: run again, and the stage resumes itself
    anything else                                        stale or new: the directory is cleared, the stage runs

A changed setting changes the key of its stage; its new output changes the digest, hence the keys, of
every stage after it, while the stages before it keep theirs.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from openk2.io import atomic_write_text

STARTED_FILE = "started.json"
STAGE_FILE = "stage.json"
CHECKPOINT_MANIFEST = "manifest.json"  # a checkpoint's integrity manifest (every file's SHA-256)
MODEL_FILES = ("config.json", "tokenizer.json")  # with the weights (*.safetensors, or model/ shards)
Status = Literal["current", "interrupted", "new"]


class StageRecord(BaseModel):
    stage: str
    key: str
    command: list[str]
    inputs: dict[str, str]  # input stage -> the digest of its output this stage read
    output: Path
    output_digest: str = ""
    seconds: float = 0.0
    finished: str = ""  # UTC, ISO 8601


def stage_key(command: list[str], recipe: dict[str, Any] | None, inputs: dict[str, str]) -> str:
    canonical = json.dumps({"command": command, "recipe": recipe, "inputs": inputs}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def output_digest(output: Path) -> str | None:
    """A file's hash; a checkpoint's model as its manifest records it (config, tokenizer, weights: what the
    next stage loads, not the training state, whose bookkeeping holds times); None when missing or incomplete."""
    if output.is_dir():
        manifest = output / CHECKPOINT_MANIFEST
        if not manifest.is_file():
            return None
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        model = {name: entry for name, entry in files.items() if _is_model_file(name)}
        return hashlib.sha256(json.dumps(model, sort_keys=True).encode()).hexdigest()
    if not output.is_file():
        return None
    digest = hashlib.sha256()
    with output.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_model_file(name: str) -> bool:
    return name in MODEL_FILES or name.endswith(".safetensors") or name.startswith("model/")


def read_record(directory: Path, name: str = STAGE_FILE) -> StageRecord | None:
    try:
        return StageRecord.model_validate_json((directory / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def stage_status(directory: Path, key: str) -> tuple[Status, StageRecord | None]:
    finished = read_record(directory)
    if (
        finished is not None
        and finished.key == key
        and output_digest(finished.output) == finished.output_digest
    ):
        return "current", finished
    started = read_record(directory, STARTED_FILE)
    if finished is None and started is not None and started.key == key:
        return "interrupted", None
    return "new", None


def mark_started(directory: Path, record: StageRecord) -> None:
    atomic_write_text(directory / STARTED_FILE, record.model_dump_json(indent=1))


def mark_finished(directory: Path, record: StageRecord, seconds: float) -> StageRecord:
    digest = output_digest(record.output)
    if digest is None:
        raise ValueError(f"stage {record.stage} finished without its output {record.output}")
    finished = record.model_copy(
        update={
            "output_digest": digest,
            "seconds": seconds,
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    atomic_write_text(directory / STAGE_FILE, finished.model_dump_json(indent=1))
    return finished
