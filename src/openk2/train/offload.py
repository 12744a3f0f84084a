"""Activation CPU offload (K2 report §2.4): saved activations live in host RAM between forward and backward.

On a GPU the forward copies each saved activation into pinned host memory without blocking, and backward
copies it back the same way; both copies are queued on the current stream, so they are ordered after the
kernel that produced the tensor and before the one that reads it. A tensor already in host memory (every
tensor on a CPU-only machine) stays where it is: it is routed through here, counted, and not copied.
K2 also overlaps these copies with compute on a separate copy engine and prefetches the next micro-batch's
activations during 1F1B; that scheduling belongs with the pipeline schedule, not here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from openk2.train.fp8_storage import Fp8Tiles


@dataclass
class Offloaded:
    """A saved activation (plain or FP8 tiles) held in host memory, and the device it returns to."""

    value: torch.Tensor | Fp8Tiles
    device: torch.device


def offload(value: torch.Tensor | Fp8Tiles) -> Offloaded:
    device = value.device if isinstance(value, torch.Tensor) else value.codes.device
    if device.type == "cpu":
        return Offloaded(value, device)
    if isinstance(value, Fp8Tiles):
        codes, scales = (_to_pinned_host(tensor) for tensor in value.tensors())
        return Offloaded(Fp8Tiles(codes, scales, value.shape, value.dtype), device)
    return Offloaded(_to_pinned_host(value), device)


def onload(offloaded: Offloaded) -> torch.Tensor | Fp8Tiles:
    return offloaded.value.to(offloaded.device, non_blocking=True)


def _to_pinned_host(tensor: torch.Tensor) -> torch.Tensor:
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    return host.copy_(tensor, non_blocking=True)
