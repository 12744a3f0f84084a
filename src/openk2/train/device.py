"""Where training runs: the device a recipe asks for, the process-group backend and autocast that go with it.

`auto` is a GPU where torch sees one, else the CPU. Under torchrun each process takes the GPU of its
LOCAL_RANK. Asking for `cuda` where torch sees none is refused before any work, with the reason.
"""

from __future__ import annotations

import os
from typing import Literal

import torch

from openk2.model import K2Config, K2ForCausalLM

DeviceName = Literal["auto", "cpu", "cuda"]
DtypeName = Literal["auto", "float32", "bfloat16"]


def resolve_device(name: DeviceName) -> torch.device:
    """The torch device for a recipe's `device`; `cuda` without a usable GPU is a ValueError naming why."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = torch.version.cuda
        reason = (
            f"this torch {torch.__version__} is built without CUDA"
            if build is None
            else f"torch (CUDA {build}) sees no GPU (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})"
        )
        raise ValueError(f"device: 'cuda' asked for, but {reason}; use device = 'cpu' or 'auto'")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if local_rank >= torch.cuda.device_count():
        raise ValueError(
            f"device: process LOCAL_RANK={local_rank} needs a GPU of its own, but only "
            f"{torch.cuda.device_count()} are visible"
        )
    return torch.device("cuda", local_rank)


def process_group_backend(device: torch.device) -> str:
    """nccl between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def compute_dtype(name: DtypeName, device: torch.device) -> torch.dtype:
    """`auto`: bf16 autocast on a GPU, fp32 on the CPU (where bf16 matmul is far slower than fp32)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return torch.bfloat16 if name == "bfloat16" else torch.float32


def autocast_for(device: torch.device, dtype: torch.dtype) -> torch.autocast:
    """Autocast on the device's own type; off for fp32 (the weights are fp32 already)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)


def build_on_device(config: K2Config, device: torch.device) -> K2ForCausalLM:
    """A freshly initialised model built on the meta device and materialised on `device` alone: a K2-size
    config never allocates its weights in host memory first. The initialisation reads the current seed."""
    with torch.device("meta"):
        model = K2ForCausalLM(config)
    model.to_empty(device=device)
    if config.tie_word_embeddings:  # to_empty gives each module its own tensor: tie them again
        model.lm_head.weight = model.model.embed_tokens.weight
    model.reset_parameters()
    return model
