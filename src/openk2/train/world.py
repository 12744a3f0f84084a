"""The process's place among data-parallel ranks, and the few collectives the training loop needs.

In a single process every collective is the identity, so the loop reads the same either way. Between GPUs
the process group is nccl, whose collectives take GPU tensors: the helpers here move their values there.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from openk2.train.device import process_group_backend

CPU = torch.device("cpu")


@dataclass(frozen=True)
class World:
    rank: int
    world_size: int
    device: torch.device = CPU  # where collectives' tensors must live (a GPU under nccl)

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes metrics, checkpoints and the report."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def data_shard(self, pp: int = 1) -> tuple[int, int]:
        """(index, count) of this rank's data shard. The pp ranks of one pipeline read the same batches; the
        mesh puts "pp" outermost (train/parallel.py), so they are world_size / pp ranks apart."""
        shards = self.world_size // pp
        return self.rank % shards, shards


def join_world(device: torch.device | None = None) -> World:
    """Under torchrun (WORLD_SIZE > 1) initialise the process group once (nccl for a GPU `device`, else
    gloo); else a world of one."""
    device = device or CPU
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=process_group_backend(device))
    if dist.is_available() and dist.is_initialized():
        on_gpu = dist.get_backend() == "nccl"
        collectives_on = torch.device("cuda", torch.cuda.current_device()) if on_gpu else CPU
        return World(rank=dist.get_rank(), world_size=dist.get_world_size(), device=collectives_on)
    return World(rank=0, world_size=1, device=device)


def all_reduce_sum_(
    values: torch.Tensor, world: World, group: dist.ProcessGroup | None = None
) -> torch.Tensor:
    """In place: the element-wise sum over the ranks of `group` (default: all)."""
    if world.is_distributed:
        on_backend = values.to(world.device)
        dist.all_reduce(on_backend, op=dist.ReduceOp.SUM, group=group)
        if on_backend is not values:
            values.copy_(on_backend)
    return values


def all_gather_objects(value: Any, world: World) -> list[Any]:
    """Every rank's `value`, in rank order (for per-rank loader and RNG state)."""
    if not world.is_distributed:
        return [value]
    gathered: list[Any] = [None] * world.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(world: World) -> None:
    if world.is_distributed:
        dist.barrier()


def leave_world() -> None:
    """End of a torchrun process: wait for every rank, then exit without interpreter teardown.

    Under load gloo's threads sometimes abort while being destroyed ("terminate called without an active
    exception"), turning a finished run into a failed one; everything is written by now.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
