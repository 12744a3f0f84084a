"""A checkpoint's model and optimizer as shards (torch.distributed.checkpoint): every rank writes its own part
under the unsplit model's parameter names, and any number of ranks reads back the parts it now holds.

`model/` and `optimizer/` each hold `.metadata` (every tensor's global shape and where its pieces lie) and one
`__<rank>_0.distcp` file per rank that wrote. Nothing is gathered on one rank. Since a piece is found by name
and global offset, a run saved by 2 ranks resumes on 4 or on 1 (MuonClip's momentum and AdamW's moments
included); a replicated tensor (a routing bias) is written once. Every rank must see the same directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.metadata import Metadata, TensorStorageMetadata
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from openk2.model.checkpoint import SHARDED_MODEL_DIR, without_process_group_warning

MODEL_DIR = SHARDED_MODEL_DIR
OPTIMIZER_DIR = "optimizer"
METADATA = ".metadata"  # torch.distributed.checkpoint writes it last, after every rank's shards
# one key per parameter and field ("state.<name>.<field>", "param_groups.<name>.<field>"): pipeline ranks hold
# different parameters, and a per-group list of names would be written by one rank for all
OPTIMIZER_STATE = StateDictOptions(flatten_optimizer_state_dict=True)


def save_sharded(model: nn.Module, optimizer: torch.optim.Optimizer, directory: Path) -> None:
    """Collective: each rank writes its shards of the model and of the optimizer's state into `directory`."""
    with without_process_group_warning():  # one process: its shards are the whole tensors
        dcp.save(get_model_state_dict(model), checkpoint_id=directory / MODEL_DIR)
        optimizer_state = get_optimizer_state_dict(model, optimizer, options=OPTIMIZER_STATE)
        dcp.save(optimizer_state, checkpoint_id=directory / OPTIMIZER_DIR)


def load_sharded(
    model: nn.Module, optimizer: torch.optim.Optimizer, directory: Path, whole: bool = True
) -> None:
    """Collective: every rank reads the slices of the saved tensors that its (possibly re-split) model holds.

    A checkpoint of another model shape is refused before anything is read, naming the tensor and both shapes.
    whole: `model` is the whole model, not one pipeline rank's stages (whose state names only their layers).
    """
    model_state = get_model_state_dict(model)
    reader = dcp.FileSystemReader(directory / MODEL_DIR)
    check_shapes(reader.read_metadata(), model_state, directory / MODEL_DIR, whole)
    with without_process_group_warning():
        dcp.load(model_state, storage_reader=reader)
        set_model_state_dict(model, model_state)
        optimizer_state = get_optimizer_state_dict(model, optimizer, options=OPTIMIZER_STATE)
        dcp.load(optimizer_state, checkpoint_id=directory / OPTIMIZER_DIR)
    set_optimizer_state_dict(model, optimizer, optimizer_state, options=OPTIMIZER_STATE)


def check_shapes(saved: Metadata, state: dict[str, Any], source: Path, whole: bool = True) -> None:
    """Every tensor `state` expects is saved with its (global) shape, and (whole) nothing else is."""
    stored = {
        name: list(entry.size)
        for name, entry in saved.state_dict_metadata.items()
        if isinstance(entry, TensorStorageMetadata)
    }
    for name, tensor in state.items():
        if name not in stored:
            raise ValueError(
                f"{source}: no tensor {name}, which this recipe's model has ({list(tensor.shape)})"
            )
        if stored[name] != list(tensor.shape):
            raise ValueError(
                f"{source}: {name} is {stored[name]} in the checkpoint but {list(tensor.shape)} in this "
                "recipe's model"
            )
    extra = sorted(set(stored) - set(state))
    if whole and extra:
        raise ValueError(f"{source}: tensors this recipe's model does not have: {extra[:5]}")
