"""Expert parallelism (K2 report §2.4): routed experts live on the ranks of the `ep` mesh dimension, and each
token travels by all-to-all to the ranks of the experts it is routed to, and back.

With E experts and P ranks in the ep group, rank r holds experts [r·E/P, (r+1)·E/P). One MoE layer on rank r:
  1. sort this rank's (token, expert) slots by expert: experts are contiguous per rank, so also by rank
  2. exchange counts: received_counts[s, e] = slots that rank s sends to our local expert e
  3. dispatch: all-to-all the slots' hidden states (uneven splits); they arrive grouped by source rank
  4. regroup the arrivals by local expert, run the experts as grouped GEMMs, restore arrival order
  5. combine: all-to-all the outputs back; mix each token's k expert outputs with its routing weights
Autograd runs through both all-to-alls (the backward of one is the reverse all-to-all), so every expert's
gradient gathers the contributions of all ranks' tokens.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed._functional_collectives import all_to_all_single_autograd, wait_tensor
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Shard, distribute_tensor

from openk2.model.moe import RoutedExperts, grouped_down_projection, grouped_up_projections
from openk2.model.protocols import extension_point, wrapped_stages
from openk2.optim.distributed import local_tensor

EXPERT_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


class ExpertParallelExperts(nn.Module):
    """A `RoutedExperts` with its experts split over `ep_mesh`: same call and results, every forward collective.

    Built from a `RoutedExperts`, which it replaces in the model: it takes over the wrapped module's stacked
    weights as DTensors sharded on the expert dim (`Shard(0)` over ep), under the same names and global shapes
    [E, ...], so a full state dict is the single-process one and each rank's shard holds whole expert matrices
    (distributed Muon orthogonalises them where they lie), and its activation module. Between the two
    all-to-alls it runs the model's grouped-GEMM stages (`grouped_up_projections`, `act_fn`,
    `grouped_down_projection`) on this rank's local shards. `up_projections` and `down_projection` are
    extension points here too, so activation-memory wrappers applied afterwards work as on `RoutedExperts`.

    `forward` returns the same `tokens_per_expert` as `RoutedExperts`: this rank's routed slots per
    *global* expert [E]; summed over all data-parallel ranks it is the single-process count of the global batch.
    """

    gate_proj: nn.Parameter  # DTensors [E, ...], Shard(0) over ep
    up_proj: nn.Parameter
    down_proj: nn.Parameter

    def __init__(self, experts: RoutedExperts, ep_mesh: DeviceMesh) -> None:
        super().__init__()
        ranks = ep_mesh.size()
        if experts.num_experts % ranks:
            raise ValueError(
                f"[parallel] ep: must divide n_routed_experts={experts.num_experts} to give every rank whole experts, "
                f"got {ranks}"
            )
        wrapped = wrapped_stages(experts)
        if wrapped:
            raise ValueError(
                f"RoutedExperts: {wrapped} are already wrapped (an activation-memory policy?); "
                "apply expert parallelism first, then the memory policy"
            )
        self.num_experts = experts.num_experts
        self.act_fn = experts.act_fn
        self.ep_mesh = ep_mesh
        for name in EXPERT_PROJECTIONS:
            weight = getattr(experts, name)
            sharded = distribute_tensor(weight.detach(), ep_mesh, [Shard(0)])
            self.register_parameter(name, nn.Parameter(sharded, requires_grad=weight.requires_grad))

    def forward(
        self, x: torch.Tensor, expert_indices: torch.Tensor, expert_weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [tokens, hidden] -> (mixed expert output [tokens, hidden], tokens_per_expert [experts])."""
        group = self.ep_mesh.get_group()
        ranks = self.ep_mesh.size()
        local_experts = self.num_experts // ranks
        top_k = expert_indices.shape[1]
        flat_experts = expert_indices.reshape(-1)
        slot_order = flat_experts.argsort(stable=True)  # by expert, hence by destination rank
        token_of_slot = slot_order // top_k
        tokens_per_expert = torch.bincount(flat_experts, minlength=self.num_experts)  # [E], this rank's slots

        received_counts = torch.empty_like(tokens_per_expert)
        dist.all_to_all_single(received_counts, tokens_per_expert, group=group)
        received_counts = received_counts.view(ranks, local_experts)  # [source rank, local expert]
        send_splits = tokens_per_expert.view(ranks, local_experts).sum(1).tolist()
        receive_splits = received_counts.sum(1).tolist()

        routed = x.index_select(0, token_of_slot)  # [tokens * top_k, hidden], grouped by destination
        arrived = _all_to_all(routed, receive_splits, send_splits, group)
        local_expert_of_row = torch.arange(local_experts, device=x.device).repeat(ranks)
        local_expert_of_row = local_expert_of_row.repeat_interleave(received_counts.reshape(-1))
        by_expert = local_expert_of_row.argsort(stable=True)
        group_ends = received_counts.sum(0).cumsum(0).to(torch.int32)
        gate, up = self.up_projections(arrived.index_select(0, by_expert), group_ends)
        expert_out = self.down_projection(self.act_fn(gate, up), group_ends)
        in_arrival_order = torch.zeros_like(expert_out).index_copy(0, by_expert, expert_out)
        returned = _all_to_all(in_arrival_order, send_splits, receive_splits, group)

        mixing = expert_weights.reshape(-1).index_select(0, slot_order)[:, None].to(returned.dtype)
        return torch.zeros_like(x).index_add_(0, token_of_slot, returned * mixing), tokens_per_expert

    # local_tensor: this rank's [E/ep, ...] shards as plain tensors, views that pass gradients back to the DTensors
    @extension_point
    def up_projections(
        self, routed: torch.Tensor, group_ends: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return grouped_up_projections(
            routed, local_tensor(self.gate_proj), local_tensor(self.up_proj), group_ends
        )

    @extension_point
    def down_projection(self, hidden: torch.Tensor, group_ends: torch.Tensor) -> torch.Tensor:
        return grouped_down_projection(hidden, local_tensor(self.down_proj), group_ends)


def _all_to_all(
    rows: torch.Tensor, receive_splits: list[int], send_splits: list[int], group: dist.ProcessGroup
) -> torch.Tensor:
    """Differentiable all-to-all of rows with uneven splits; waited on, so a plain tensor that saved-tensor
    hooks (activation memory) can pack like any other."""
    return wait_tensor(all_to_all_single_autograd(rows, receive_splits, send_splits, group))


def apply_expert_parallel(model: nn.Module, ep_mesh: DeviceMesh) -> None:
    """Replace every `RoutedExperts` in `model` by an `ExpertParallelExperts` over `ep_mesh`, in place."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, RoutedExperts):
                setattr(module, name, ExpertParallelExperts(child, ep_mesh))
