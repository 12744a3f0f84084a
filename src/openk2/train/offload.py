"""Activation CPU offload (K2 report §2.4): saved activations live in host RAM between forward and backward.

On a GPU the forward copies each saved activation into pinned host memory on a side stream, so the copy
overlaps the kernels that follow instead of queueing between them: the side stream first waits for the
compute stream (the kernel that produced the tensor), and the tensor is marked as used by the side stream so
that the caching allocator does not hand its memory to a later kernel before the copy has read it. Backward
makes the compute stream wait for that copy's event and copies the tensor back on it, where the kernel that
reads it runs. A tensor already in host memory (every tensor on a CPU-only machine) stays where it is: it
is routed through here, counted, and not copied. K2 also prefetches the next micro-batch's activations
during 1F1B; that scheduling belongs with the pipeline schedule, not here.
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
    copied: torch.cuda.Event | None = None  # recorded on the side stream after the copy to the host


def offload(value: torch.Tensor | Fp8Tiles) -> Offloaded:
    device = value.device if isinstance(value, torch.Tensor) else value.codes.device
    if device.type != "cuda":
        return Offloaded(value, device)
    side = _side_stream(device)
    side.wait_stream(torch.cuda.current_stream(device))  # after the kernel that produced `value`
    with torch.cuda.stream(side):
        if isinstance(value, Fp8Tiles):
            codes, scales = (_to_pinned_host(tensor, side) for tensor in value.tensors())
            host: torch.Tensor | Fp8Tiles = Fp8Tiles(codes, scales, value.shape, value.dtype)
        else:
            host = _to_pinned_host(value, side)
        copied = side.record_event()
    return Offloaded(host, device, copied)


def onload(offloaded: Offloaded) -> torch.Tensor | Fp8Tiles:
    if offloaded.copied is not None:
        torch.cuda.current_stream(offloaded.device).wait_event(offloaded.copied)
    return offloaded.value.to(offloaded.device, non_blocking=True)


_SIDE_STREAMS: dict[torch.device, torch.cuda.Stream] = {}


def _side_stream(device: torch.device) -> torch.cuda.Stream:
    """One copy stream per GPU, made on first use."""
    if device not in _SIDE_STREAMS:
        _SIDE_STREAMS[device] = torch.cuda.Stream(device)
    return _SIDE_STREAMS[device]


def _to_pinned_host(tensor: torch.Tensor, stream: torch.cuda.Stream) -> torch.Tensor:
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    tensor.record_stream(stream)  # its memory is not reused until the side stream has read it
    return host
