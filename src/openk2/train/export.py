"""`openk2 export`: a training checkpoint, sharded by any number of ranks, as one directory in the Hugging Face
layout (config.json + model.safetensors, per-expert keys + tokenizer.json) that transformers'
DeepseekV3ForCausalLM and other tools read. OpenK2's own loaders read the sharded checkpoint as it is.

The checkpoint's manifest is verified first, so a damaged shard is named rather than exported; the export is
written into a hidden directory beside `output`, fsynced and renamed, so it is whole or absent.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from openk2.io import publish_directory
from openk2.model import K2ForCausalLM
from openk2.train.integrity import manifest_problem
from openk2.train.sharded import MODEL_DIR


def export_checkpoint(checkpoint: Path, output: Path) -> Path:
    """Write `output` (which must not exist) from the training checkpoint directory `checkpoint`."""
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint directory")
    if not (checkpoint / MODEL_DIR).is_dir():
        raise ValueError(f"{checkpoint}: no {MODEL_DIR}/ directory of shards; not a training checkpoint")
    problem = manifest_problem(checkpoint)
    if problem is not None:
        raise ValueError(f"{checkpoint}: not exported, the checkpoint is damaged: {problem}")
    if output.exists():
        raise ValueError(f"--output {output}: already exists; name a new directory")
    model = K2ForCausalLM.from_pretrained(checkpoint)  # every rank's shards, whole tensors in this process
    staging = output.with_name(f".{output.name}.tmp")
    if staging.exists():  # a killed export
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    model.save_pretrained(staging)
    shutil.copyfile(checkpoint / "tokenizer.json", staging / "tokenizer.json")
    publish_directory(staging, output)
    return output
