"""Training checkpoints: self-contained, written atomically, resumed bit-exactly.

`<run_dir>/checkpoints/step_000100/` holds the model in HF layout (config.json + model.safetensors, which
`K2ForCausalLM.from_pretrained` loads, or a transformers model's own files: `ModelFiles`), the run's
tokenizer.json, and everything needed to continue: optimizer.pt, scheduler.pt, loader.json and rng.pt (one
entry per rank), trainer_state.json, and manifest.json, the last file written: every other file's size and
SHA-256 (integrity.py). A checkpoint is written into a hidden temporary directory, fsynced file by file, and
renamed into place, so a kill or a power loss at any moment leaves every earlier checkpoint intact and never a
half-written one under a `step_*` name; a file damaged later is found by the manifest on resume, which falls
back to the newest intact checkpoint.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from openk2.io import publish_directory
from openk2.model import K2Config, K2ForCausalLM
from openk2.model.checkpoint import from_hf_state_dict, read_checkpoint_tensors
from openk2.train.batch import Resumable
from openk2.train.integrity import MANIFEST, manifest_problem, write_manifest
from openk2.train.world import World, all_gather_objects, barrier

CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_NAME = re.compile(r"^step_(\d{6,})$")
TRAINER_STATE = "trainer_state.json"
REQUIRED_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "optimizer.pt",
    "scheduler.pt",
    "loader.json",
    "rng.pt",
    TRAINER_STATE,
    MANIFEST,
)
# sharded (FSDP2) parameters are gathered to whole tensors on rank 0, in CPU memory
FULL_ON_RANK_0 = StateDictOptions(full_state_dict=True, cpu_offload=True)


class TrainerState(BaseModel):
    """trainer_state.json: where the run stood when the checkpoint was taken."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    step: int = Field(ge=0, description="optimizer steps completed")
    tokens_seen: int = Field(ge=0)
    elapsed_seconds: float = Field(ge=0, description="training wall time so far, over all sessions")
    recipe: dict[str, Any] = Field(description="the recipe that produced it (JSON form)")


class ModelFiles(Protocol):
    """How a checkpoint stores the model: files its own loaders read (an OpenK2 or a transformers model)."""

    def write(self, state: dict[str, Any], directory: Path) -> None:
        """Config, weights and tokenizer of the whole (gathered) model into `directory`."""

    def read(self, directory: Path) -> dict[str, torch.Tensor]:
        """The training model's state dict from the files `write` wrote."""


@dataclass(frozen=True)
class K2ModelFiles:
    """An OpenK2 model in the Hugging Face layout, with the run's tokenizer.json."""

    config: K2Config
    tokenizer: Path

    def write(self, state: dict[str, Any], directory: Path) -> None:
        with torch.device("meta"):
            whole_model = K2ForCausalLM(self.config)
        whole_model.load_state_dict(state, assign=True)
        whole_model.save_pretrained(directory)
        shutil.copyfile(self.tokenizer, directory / "tokenizer.json")

    def read(self, directory: Path) -> dict[str, torch.Tensor]:
        with torch.device("meta"):
            reference = K2ForCausalLM(self.config)  # expected keys and shapes, no memory
        return from_hf_state_dict(read_checkpoint_tensors(directory), reference, source=str(directory))


@dataclass
class Trainable:
    """Everything a checkpoint saves and restores besides the trainer state."""

    model: nn.Module
    files: ModelFiles
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader: Resumable  # the data's position (RL: the task sampler and the paused episodes)


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


def save_checkpoint(
    run_dir: Path, trainable: Trainable, state: TrainerState, world: World, keep: int
) -> Path:
    """Write `<run_dir>/checkpoints/step_N` atomically and keep only the newest `keep` checkpoints.

    Collective: every rank calls it (gathering sharded state); rank 0 alone writes.
    """
    model_state = get_model_state_dict(trainable.model, options=FULL_ON_RANK_0)
    optimizer_state = get_optimizer_state_dict(trainable.model, trainable.optimizer, options=FULL_ON_RANK_0)
    loader_states = all_gather_objects(trainable.loader.state_dict(), world)
    rng_states = all_gather_objects(torch.get_rng_state(), world)
    root = run_dir / CHECKPOINTS_DIR
    final = root / checkpoint_name(state.step)
    if world.is_main:
        root.mkdir(parents=True, exist_ok=True)
        for leftover in root.glob(".step_*"):  # a killed save, swap or prune leaves these; never read
            shutil.rmtree(leftover)
        staging = root / f".{final.name}.tmp"
        staging.mkdir()
        trainable.files.write(model_state, staging)
        torch.save(optimizer_state, staging / "optimizer.pt")
        torch.save(trainable.scheduler.state_dict(), staging / "scheduler.pt")
        (staging / "loader.json").write_text(json.dumps(loader_states, indent=1))
        torch.save(rng_states, staging / "rng.pt")
        (staging / TRAINER_STATE).write_text(state.model_dump_json(indent=2))
        write_manifest(staging)  # last: its presence says every other file is complete
        publish_directory(staging, final)  # replaces an invalid directory of this name (resume skipped it)
        for old in find_checkpoints(run_dir).valid[:-keep]:
            _remove(old)
    barrier(world)
    return final


def _remove(directory: Path) -> None:
    """Rename first, so a kill during the delete leaves a hidden directory, not a damaged `step_*` one."""
    doomed = directory.with_name(f".{directory.name}.deleting")
    directory.replace(doomed)
    shutil.rmtree(doomed)


@dataclass
class CheckpointScan:
    valid: list[Path]  # oldest first
    invalid: list[tuple[Path, str]]  # (directory, why it cannot be resumed from)


def find_checkpoints(run_dir: Path) -> CheckpointScan:
    """Every `step_N` directory under `<run_dir>/checkpoints`, split into complete ones and the rest."""
    scan = CheckpointScan(valid=[], invalid=[])
    root = run_dir / CHECKPOINTS_DIR
    if not root.is_dir():
        return scan
    candidates = sorted(
        (int(match.group(1)), path)
        for path in root.iterdir()
        if path.is_dir() and (match := CHECKPOINT_NAME.match(path.name))
    )
    for step, path in candidates:
        problem = _check_complete(path, step)
        if problem is None:
            scan.valid.append(path)
        else:
            scan.invalid.append((path, problem))
    return scan


def _check_complete(directory: Path, step: int) -> str | None:
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        return f"missing {missing}"
    try:
        state = read_trainer_state(directory)
    except ValueError as error:
        return str(error)
    return None if state.step == step else f"{TRAINER_STATE} says step {state.step}"


def newest_intact(candidates: list[Path]) -> tuple[Path | None, list[str]]:
    """The newest of `candidates` (oldest first) whose files match its manifest, and the problem of each newer
    one, naming the damaged file."""
    problems: list[str] = []
    for directory in reversed(candidates):
        problem = manifest_problem(directory)
        if problem is None:
            return directory, problems
        problems.append(problem)
    return None, problems


def read_trainer_state(directory: Path) -> TrainerState:
    path = directory / TRAINER_STATE
    try:
        return TrainerState.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as error:
        raise ValueError(f"{path}: not a valid trainer state ({error})") from None


def load_checkpoint(directory: Path, trainable: Trainable, world: World) -> TrainerState:
    """Restore model, optimizer, schedule, this rank's loader position and RNG from `directory`."""
    model_state: dict[str, Any] = dict(trainable.files.read(directory))
    set_model_state_dict(trainable.model, model_state, options=StateDictOptions(full_state_dict=True))
    optimizer_state = torch.load(directory / "optimizer.pt", weights_only=True)
    set_optimizer_state_dict(
        trainable.model, trainable.optimizer, optimizer_state, options=StateDictOptions(full_state_dict=True)
    )
    trainable.scheduler.load_state_dict(torch.load(directory / "scheduler.pt", weights_only=True))
    loader_path = directory / "loader.json"
    try:
        loader_states = json.loads(loader_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{loader_path}: not valid JSON ({error})") from None
    rng_states = torch.load(directory / "rng.pt", weights_only=True)
    if len(loader_states) != world.world_size or len(rng_states) != world.world_size:
        raise ValueError(
            f"{directory}: saved by {len(loader_states)} ranks, resumed by {world.world_size}; "
            "the data order would differ"
        )
    try:
        trainable.loader.load_state_dict(loader_states[world.rank])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{loader_path}: not a loader state of this run ({error!r})") from None
    torch.set_rng_state(rng_states[world.rank])
    return read_trainer_state(directory)
