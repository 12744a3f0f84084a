"""Parallelism applied to a built model from outside (K2 report §2.4): pipeline stages, FSDP2 data
parallelism and expert parallelism over one DeviceMesh, torchtitan-style. The model code knows nothing of them.

Mesh (world = pp × dp ranks; expert parallelism borrows its ranks from data parallelism, as in torchtitan):
  "pp"         ranks holding different pipeline stages of the same data shard (train/pipeline.py)
  "dp"         "expert_dp" × "ep" flattened: ranks reading different data; non-expert weights are sharded here
  "ep"         consecutive groups of `ep` ranks that split the routed experts between them
  "expert_dp"  ranks holding the same experts (dp / ep of them): the experts' data-parallel dimension
With world 2 and ep 2, both ranks read different data and exchange tokens for each other's experts. With
pp 2 × dp 2 on 4 ranks, ranks {0, 1} hold the first stages and {2, 3} the last; each stage's pair is FSDP2.

Gradients equal the single-process gradients of the mean loss over the global batch when every rank's loss
is the mean over its equal share of it: non-expert gradients are summed over "dp" and divided by dp; an
expert's gradient already sums every rank's tokens routed to it (the all-to-all backward), so it is summed
over "expert_dp" only and divided by dp as well, not by the expert_dp size that FSDP would pick itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, Partial, Placement, Replicate

from openk2.model import K2Config, K2ForCausalLM
from openk2.train.expert_parallel import ExpertParallelExperts, apply_expert_parallel
from openk2.train.recipe import ParallelSection


@dataclass(frozen=True)
class ParallelMesh:
    """The device meshes of a run; `dp` is "expert_dp" × "ep" flattened (one data shard per pipeline)."""

    pp: DeviceMesh
    dp: DeviceMesh
    ep: DeviceMesh
    expert_dp: DeviceMesh


def check_layout(config: ParallelSection, world_size: int, model: K2Config | None = None) -> None:
    """Refuse a layout that does not fit the processes or the model, naming the numbers (before any work)."""
    if config.world_size != world_size:
        raise ValueError(
            f"[parallel] pp × dp = {config.pp} × {config.dp} = {config.world_size} differs from the number "
            f"of processes, {world_size} (ep borrows its ranks from dp)"
        )
    if model is not None and config.pp > 1:
        if config.num_stages > model.num_hidden_layers:
            raise ValueError(
                f"[parallel] pp × virtual_stages = {config.pp} × {config.virtual_stages} = {config.num_stages} "
                f"pipeline stages exceed the model's num_hidden_layers = {model.num_hidden_layers}"
            )
        if model.tie_word_embeddings:
            raise ValueError(
                f"[parallel] pp = {config.pp}: tied embeddings would live on the first and the last stage"
            )


def build_mesh(config: ParallelSection, device_type: str = "cpu") -> ParallelMesh:
    """The ("pp", "expert_dp", "ep") mesh and its flattened "dp"; initialises the default process group if
    needed."""
    check_layout(config, int(os.environ.get("WORLD_SIZE", "1")))
    shape = (config.pp, config.dp // config.ep, config.ep)
    mesh = init_device_mesh(device_type, shape, mesh_dim_names=("pp", "expert_dp", "ep"))
    return ParallelMesh(
        pp=mesh["pp"], dp=mesh["expert_dp", "ep"]._flatten("dp"), ep=mesh["ep"], expert_dp=mesh["expert_dp"]
    )


def parallelize(model: K2ForCausalLM, mesh: ParallelMesh | ParallelSection) -> K2ForCausalLM:
    """Expert parallelism (when ep > 1), then FSDP2 per decoder layer and at the root; in place.

    Every rank must build `model` with the same weights. Afterwards each forward is collective over the
    mesh: all ranks run the same number of forwards and backwards (evaluation and generation included).
    """
    if isinstance(mesh, ParallelSection):
        mesh = build_mesh(mesh, device_type=model.lm_head.weight.device.type)
    apply_expert_parallel_if_split(model, mesh)
    shard_data_parallel(model, model.model.layers, mesh)
    return model


def apply_expert_parallel_if_split(model: nn.Module, mesh: ParallelMesh) -> None:
    if mesh.ep.size() > 1:
        apply_expert_parallel(model, mesh.ep)


def shard_data_parallel(root: nn.Module, layers: Iterable[nn.Module], mesh: ParallelMesh) -> None:
    """FSDP2 over "dp" per decoder layer (routed experts over "expert_dp"), then at `root` for the rest."""
    for layer in layers:
        experts = getattr(getattr(layer, "mlp", None), "experts", None)
        if isinstance(experts, ExpertParallelExperts):
            _fully_shard(experts, mesh.expert_dp, mesh.dp.size())
        _fully_shard(layer, mesh.dp, mesh.dp.size())
    _fully_shard(root, mesh.dp, mesh.dp.size())


def _fully_shard(module: nn.Module, mesh: DeviceMesh, gradient_divide_factor: int) -> None:
    """FSDP2 over `mesh`, reduced gradients divided by the data-parallel size (not by `mesh`'s size).

    Gloo has no PREMUL_SUM, so the reduce-scatter must be a plain SUM that FSDP divides afterwards. On a
    one-rank mesh FSDP divides while copying, and forcing SUM would divide a second time (torch 2.13).
    """
    sharded = fully_shard(module, mesh=mesh)
    sharded.set_gradient_divide_factor(float(gradient_divide_factor))
    sharded.set_force_sum_reduction_for_comms(mesh.size() > 1)


@torch.no_grad()
def clip_grad_norm_(
    parameters: Iterable[nn.Parameter], max_norm: float, pipeline: dist.ProcessGroup | None = None
) -> torch.Tensor:
    """`torch.nn.utils.clip_grad_norm_` for gradients on several meshes (routed experts and the rest), where
    torch's own fails ("All operands ... must have the same mesh").

    Returns the 2-norm of all gradients, the single-process value on every rank, and scales the gradients
    by min(1, max_norm / norm). `pipeline`: the group of ranks holding the other stages, whose parameters'
    squares are added (every parameter lives on one pp rank). The sums of squares are fp32 `sum`s, more accurate than torch's fp32
    `vector_norm` on the CPU (off by ~1e-5, relative, for the 8192 × 128 embedding).
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    # a local sum of squares per (mesh, placements), one collective each: shards' sums add, replicas' don't
    local_squares: dict[tuple[DeviceMesh, tuple[Placement, ...]] | None, torch.Tensor] = {}
    for grad in grads:
        key, local = None, grad
        if isinstance(grad, DTensor):
            placements: tuple[Placement, ...] = tuple(
                Replicate() if p.is_replicate() else Partial() for p in grad.placements
            )
            key, local = (grad.device_mesh, placements), grad.to_local()
        squares = local.float().square().sum()
        local_squares[key] = local_squares[key] + squares if key in local_squares else squares
    total_squares = torch.zeros((), device=grads[0].device if grads else None)
    for key, squares in local_squares.items():
        if key is not None:
            squares = DTensor.from_local(squares, *key).full_tensor()
        total_squares = total_squares + squares
    if pipeline is not None:
        dist.all_reduce(total_squares, group=pipeline)
    total_norm = total_squares.sqrt()
    coefficient = min(1.0, max_norm / (total_norm.item() + 1e-6))
    for grad in grads:
        grad.mul_(coefficient)
    return total_norm
