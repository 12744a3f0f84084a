"""Training checkpoints: self-contained, sharded, written atomically, resumed exactly on any number of ranks.

`<run_dir>/checkpoints/step_000100/` holds config.json and the run's tokenizer.json (`ModelFiles`), the model
and the optimizer's state as every rank's shards under the unsplit model's names (`model/`, `optimizer/`:
sharded.py), and everything else needed to continue: scheduler.pt, loader.json and rng.pt (one entry per
rank), trainer_state.json, and manifest.json, the last file written: every other file's size and SHA-256
(integrity.py). `K2ForCausalLM.from_pretrained` reads such a directory as it is, so every stage, server and
evaluation loads it; `openk2 export` writes the single-file HF layout other tools read (export.py).

A checkpoint is written into a hidden temporary directory, fsynced file by file, and renamed into place, so
a kill or a power loss at any moment leaves every earlier checkpoint intact and never a half-written one under
a `step_*` name; a file damaged later is found by the manifest on resume, which falls back to the newest
intact checkpoint.

A checkpoint resumes on another number of ranks when what each rank saved besides the shards is the same on
every rank: the pre-training loader's position (a window of the global sequence, data/loader.py) and the
random generators (no pre-training step draws from them, so every rank's equal the seed's).
"""

from __future__ import annotations

import json
import operator
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions

from openk2.io import publish_directory
from openk2.model import K2Config, K2ForCausalLM
from openk2.model.checkpoint import write_config
from openk2.train.batch import Resumable
from openk2.train.integrity import MANIFEST, manifest_problem, write_manifest
from openk2.train.sharded import METADATA, MODEL_DIR, OPTIMIZER_DIR, load_sharded, save_sharded
from openk2.train.world import World, all_gather_objects, barrier

CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_NAME = re.compile(r"^step_(\d{6,})$")
TRAINER_STATE = "trainer_state.json"
REQUIRED_FILES = (  # and the shard files, which the manifest lists (one per rank that wrote)
    "config.json",
    f"{MODEL_DIR}/{METADATA}",
    "tokenizer.json",
    f"{OPTIMIZER_DIR}/{METADATA}",
    "scheduler.pt",
    "loader.json",
    "rng.pt",
    TRAINER_STATE,
    MANIFEST,
)
# sharded (FSDP2) parameters gathered to whole tensors on rank 0, in CPU memory (RL's weight transfer)
FULL_ON_RANK_0 = StateDictOptions(full_state_dict=True, cpu_offload=True)


class TrainerState(BaseModel):
    """trainer_state.json: where the run stood when the checkpoint was taken."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    step: int = Field(ge=0, description="optimizer steps completed")
    tokens_seen: int = Field(ge=0)
    elapsed_seconds: float = Field(ge=0, description="training wall time so far, over all sessions")
    recipe: dict[str, Any] = Field(description="the recipe that produced it (JSON form)")


class ModelFiles(Protocol):
    """The files a model's own loaders read (an OpenK2 or a transformers model)."""

    def write_config(self, directory: Path) -> None:
        """What a loader reads beside the weights: the config and the tokenizer (a checkpoint's weights are
        its shards)."""

    def write(self, state: dict[str, Any], directory: Path) -> None:
        """Config, tokenizer and the whole (gathered) weights into `directory`."""


@dataclass(frozen=True)
class K2ModelFiles:
    """An OpenK2 model in the Hugging Face layout, with the run's tokenizer.json."""

    config: K2Config
    tokenizer: Path

    def write_config(self, directory: Path) -> None:
        write_config(self.config, torch.float32, directory)  # trained weights stay fp32 (autocast aside)
        shutil.copyfile(self.tokenizer, directory / "tokenizer.json")

    def write(self, state: dict[str, Any], directory: Path) -> None:
        with torch.device("meta"):
            whole_model = K2ForCausalLM(self.config)
        whole_model.load_state_dict(state, assign=True)
        whole_model.save_pretrained(directory)
        shutil.copyfile(self.tokenizer, directory / "tokenizer.json")


@dataclass
class Trainable:
    """Everything a checkpoint saves and restores besides the trainer state."""

    model: nn.Module
    files: ModelFiles
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader: Resumable  # the data's position (RL: the task sampler and the paused episodes)
    whole: bool = True  # model is the whole model, not one pipeline rank's stages


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


def save_checkpoint(
    run_dir: Path, trainable: Trainable, state: TrainerState, world: World, keep: int
) -> Path:
    """Write `<run_dir>/checkpoints/step_N` atomically and keep only the newest `keep` checkpoints.

    Collective: every rank writes its shards into the staging directory; rank 0 writes the rest and publishes.
    """
    loader_states = all_gather_objects(trainable.loader.state_dict(), world)
    rng_states = all_gather_objects(rng_state(), world)
    root = run_dir / CHECKPOINTS_DIR
    final = root / checkpoint_name(state.step)
    staging = root / f".{final.name}.tmp"
    if world.is_main:
        root.mkdir(parents=True, exist_ok=True)
        for leftover in root.glob(".step_*"):  # a killed save, swap or prune leaves these; never read
            shutil.rmtree(leftover)
        staging.mkdir()
    barrier(world)
    save_sharded(trainable.model, trainable.optimizer, staging)
    if world.is_main:
        trainable.files.write_config(staging)
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


def rng_state() -> dict[str, torch.Tensor]:
    """This process's random generators: the CPU's, and the current GPU's where this process uses CUDA (a CPU
    run on a GPU machine does not start CUDA for it)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


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
    """Restore model, optimizer, schedule, this rank's loader position and RNG from `directory`, saved by
    this number of ranks or, where every rank saved the same position and generators, by any other."""
    load_sharded(trainable.model, trainable.optimizer, directory, trainable.whole)
    trainable.scheduler.load_state_dict(torch.load(directory / "scheduler.pt", weights_only=True))
    loader_path = directory / "loader.json"
    try:
        loader_states = json.loads(loader_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{loader_path}: not valid JSON ({error})") from None
    loader_state = this_ranks_share(loader_states, world, loader_path, "data positions", operator.eq)
    try:
        trainable.loader.load_state_dict(loader_state)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{loader_path}: not a loader state of this run ({error!r})") from None
    rng_path = directory / "rng.pt"
    rng_states = torch.load(rng_path, weights_only=True)
    set_rng_state(this_ranks_share(rng_states, world, rng_path, "random generators", _same_tensors))
    return read_trainer_state(directory)


def this_ranks_share(
    saved: list[Any], world: World, path: Path, what: str, same: Callable[[Any, Any], bool]
) -> Any:
    """This rank's entry of a per-rank list; on another number of ranks, the one entry all ranks saved."""
    if len(saved) == world.world_size:
        return saved[world.rank]
    if all(same(entry, saved[0]) for entry in saved):
        return saved[0]
    raise ValueError(
        f"{path}: the {len(saved)} ranks that saved it hold different {what}, so it resumes on "
        f"{len(saved)} ranks only, not on {world.world_size}"
    )


def _same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
