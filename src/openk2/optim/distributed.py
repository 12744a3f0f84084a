"""Distributed Muon: Newton–Schulz must see whole matrices, never one rank's shard of them.

Moonlight's Distributed Muon (ZeRO-1 scheme, Moonlight §2): momentum on the local shard, gather the full
matrix, orthogonalise, keep the local slice. A shard that already holds whole matrices (stacked experts split along the expert dim)
is orthogonalised where it lies, with no communication: that is "assign whole matrices to ranks".
"""

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor, Replicate, Shard


def local_tensor(t: Tensor) -> Tensor:
    """The rank-local storage of a (possibly DTensor) parameter, gradient or optimizer state."""
    return t.to_local() if isinstance(t, DTensor) else t


def shard_holds_whole_matrices(param: Tensor) -> bool:
    """True if no mesh dimension splits the last two dims (the matrix dims) of `param`."""
    if not isinstance(param, DTensor):
        return True
    matrix_dims = {param.ndim - 2, param.ndim - 1}
    return not any(
        isinstance(placement, Shard) and placement.dim % param.ndim in matrix_dims
        for placement in param.placements
    )


def gather_whole_matrices(param: Tensor, local_update: Tensor) -> Tensor:
    """All-gather `local_update` (laid out like `param`'s local shard) into the full [..., n, m] update."""
    if not isinstance(param, DTensor) or shard_holds_whole_matrices(param):
        return local_update
    sharded = DTensor.from_local(
        local_update, param.device_mesh, param.placements, shape=param.shape, stride=param.stride()
    )
    return sharded.full_tensor()


def keep_local_shard(param: Tensor, full_update: Tensor) -> Tensor:
    """Slice a full update (identical on every rank) down to `param`'s local shard, without communication."""
    if not isinstance(param, DTensor) or shard_holds_whole_matrices(param):
        return full_update
    mesh = param.device_mesh
    replicated = DTensor.from_local(full_update, mesh, [Replicate()] * mesh.ndim, run_check=False)
    return replicated.redistribute(mesh, param.placements).to_local()


@contextlib.contextmanager
def whole_parameters(module: nn.Module) -> Iterator[None]:
    """Inside, `module`'s DTensor parameters are full plain tensors; on exit every rank keeps its shard.

    Lets a module rescale its own weights with any tensor indexing (QK-Clip's per-head rows), the same way
    on every rank, without knowing how the weights are sharded. A no-op in a single process.
    """
    swapped: list[tuple[nn.Module, str, nn.Parameter, nn.Parameter]] = []
    for owner in module.modules():
        for name, param in list(owner.named_parameters(recurse=False)):
            if isinstance(param, DTensor):
                whole = nn.Parameter(param.full_tensor(), requires_grad=param.requires_grad)
                owner.register_parameter(name, whole)
                swapped.append((owner, name, param, whole))
    try:
        yield
    finally:
        for owner, name, param, whole in swapped:
            owner.register_parameter(name, param)
            with torch.no_grad():
                local_tensor(param).copy_(keep_local_shard(param, whole.detach()))


def all_reduce_max_(values: Tensor, group: torch.distributed.ProcessGroup | None = None) -> Tensor:
    """In place: every rank ends with the element-wise max over ranks (a no-op in a single process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.MAX, group=group)
    return values
