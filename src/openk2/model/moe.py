"""K2's feed-forward layers: the dense SwiGLU, and the sigmoid-routed mixture of experts (report §2.3).

Each MoE layer has n_routed_experts SwiGLU experts of width moe_intermediate_size, of which each token uses
num_experts_per_tok, plus n_shared_experts always-on experts. Routing follows the released `noaux_tc` gate:
sigmoid scores in fp32; a per-expert `e_score_correction_bias` shifts which experts are *selected* (DeepSeek-V3's
auxiliary-loss-free balancing) but never the weights the selected experts are mixed with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from openk2.model.config import K2Config
from openk2.model.protocols import extension_point


class SwiGLUActivation(nn.Module):
    """silu(gate) * up: the gated activation between a SwiGLU's up- and down-projections (no weights)."""

    @extension_point
    def forward(self, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        return F.silu(gate) * up


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)): the dense layer and each shared expert."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)
        self.act_fn = SwiGLUActivation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x), self.up_proj(x)))


class Router(nn.Module):
    """The `noaux_tc` top-k gate; all its arithmetic is fp32."""

    e_score_correction_bias: torch.Tensor  # a buffer: [n_routed_experts] fp32

    def __init__(self, config: K2Config) -> None:
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.n_group = config.n_group
        self.topk_group = config.topk_group
        self.norm_topk_prob = config.norm_topk_prob
        self.routed_scaling_factor = config.routed_scaling_factor
        self.weight = nn.Parameter(torch.empty(config.n_routed_experts, config.hidden_size))
        # moved by the training loop toward balanced load, never by gradients
        self.register_buffer(
            "e_score_correction_bias", torch.zeros(config.n_routed_experts, dtype=torch.float32)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [tokens, hidden] -> (weights [tokens, k], expert indices [tokens, k], sigmoid scores [tokens, E])."""
        scores = F.linear(x.float(), self.weight.float()).sigmoid()  # [tokens, experts]
        scores_for_choice = scores + self.e_score_correction_bias.float()
        if self.n_group > 1:
            scores_for_choice = self._keep_top_groups(scores_for_choice)
        expert_indices = scores_for_choice.topk(self.top_k, dim=-1).indices
        weights = scores.gather(1, expert_indices)  # un-biased scores mix the outputs
        if self.norm_topk_prob:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        return weights * self.routed_scaling_factor, expert_indices, scores

    def _keep_top_groups(self, scores_for_choice: torch.Tensor) -> torch.Tensor:
        """Group-limited routing: a group scores the sum of its top-2 experts; only topk_group groups compete."""
        tokens, experts = scores_for_choice.shape
        grouped = scores_for_choice.view(tokens, self.n_group, experts // self.n_group)
        group_scores = grouped.topk(2, dim=-1).values.sum(dim=-1)  # [tokens, n_group]
        top_groups = group_scores.topk(self.topk_group, dim=-1).indices
        group_kept = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, top_groups, True)
        return grouped.masked_fill(~group_kept[..., None], float("-inf")).view(tokens, experts)


class RoutedExperts(nn.Module):
    """All routed experts' weights stacked per projection; tokens are sorted by expert for grouped GEMMs."""

    def __init__(self, config: K2Config) -> None:
        super().__init__()
        experts, hidden, width = config.n_routed_experts, config.hidden_size, config.moe_intermediate_size
        self.num_experts = experts
        self.gate_proj = nn.Parameter(torch.empty(experts, width, hidden))  # [E, out, in] like nn.Linear
        self.up_proj = nn.Parameter(torch.empty(experts, width, hidden))
        self.down_proj = nn.Parameter(torch.empty(experts, hidden, width))
        self.act_fn = SwiGLUActivation()

    def forward(
        self, x: torch.Tensor, expert_indices: torch.Tensor, expert_weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [tokens, hidden] -> (mixed expert output [tokens, hidden], tokens_per_expert [experts])."""
        top_k = expert_indices.shape[1]
        flat_experts = expert_indices.reshape(-1)
        slot_order = flat_experts.argsort(stable=True)
        token_of_slot = slot_order // top_k  # the token each expert-sorted slot came from
        tokens_per_expert = torch.bincount(flat_experts, minlength=self.num_experts)
        group_ends = tokens_per_expert.cumsum(0).to(torch.int32)

        # index_select, not x[...]: its backward is an index_add, several times faster than index_put on the CPU
        routed = x.index_select(0, token_of_slot)  # [tokens * top_k, hidden], grouped by expert
        gate, up = self.up_projections(routed, group_ends)
        out = self.down_projection(self.act_fn(gate, up), group_ends)
        out = out * expert_weights.reshape(-1).index_select(0, slot_order)[:, None].to(out.dtype)
        return torch.zeros_like(x).index_add_(0, token_of_slot, out), tokens_per_expert

    @extension_point
    def up_projections(
        self, routed: torch.Tensor, group_ends: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every expert's gate and up GEMMs on its own slots: [slots, hidden] -> 2 × [slots, width]."""
        return grouped_up_projections(routed, self.gate_proj, self.up_proj, group_ends)

    @extension_point
    def down_projection(self, hidden: torch.Tensor, group_ends: torch.Tensor) -> torch.Tensor:
        """Every expert's down GEMM on its own slots: [slots, width] -> [slots, hidden]."""
        return grouped_down_projection(hidden, self.down_proj, group_ends)


def grouped_up_projections(
    routed: torch.Tensor, gate_proj: torch.Tensor, up_proj: torch.Tensor, group_ends: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """routed [slots, hidden] sorted by expert, expert e's slots ending at group_ends[e]; gate_proj and
    up_proj [experts, width, hidden] -> gate, up [slots, width]."""
    gate = F.grouped_mm(routed, gate_proj.transpose(-2, -1), offs=group_ends)
    up = F.grouped_mm(routed, up_proj.transpose(-2, -1), offs=group_ends)
    return gate, up


def grouped_down_projection(
    hidden: torch.Tensor, down_proj: torch.Tensor, group_ends: torch.Tensor
) -> torch.Tensor:
    """hidden [slots, width] sorted by expert; down_proj [experts, hidden, width] -> [slots, hidden]."""
    return F.grouped_mm(hidden, down_proj.transpose(-2, -1), offs=group_ends)


def sequence_balance_loss(scores: torch.Tensor, expert_indices: torch.Tensor) -> torch.Tensor:
    """DeepSeek-V3's sequence-wise balance loss Σ_i f_i·P_i, averaged over sequences (before × α).

    scores [batch, seq, E] (sigmoid), expert_indices [batch, seq, k]; f_i is expert i's share of the
    sequence's routed slots times E/k (1 when balanced), P_i its mean normalised score over the sequence.
    """
    experts, top_k, seq = scores.shape[-1], expert_indices.shape[-1], scores.shape[1]
    selected = torch.zeros_like(scores).scatter_(-1, expert_indices, 1.0)  # [batch, seq, E]
    load_share = selected.sum(dim=1) * experts / (top_k * seq)  # f_i, [batch, E]
    mean_affinity = (scores / scores.sum(dim=-1, keepdim=True)).mean(dim=1)  # P_i, [batch, E]
    return (load_share * mean_affinity).sum(dim=-1).mean()


class MoE(nn.Module):
    def __init__(self, config: K2Config) -> None:
        super().__init__()
        self.gate = Router(config)
        self.experts = RoutedExperts(config)
        self.shared_experts = (
            SwiGLU(config.hidden_size, config.moe_intermediate_size * config.n_shared_experts)
            if config.n_shared_experts
            else None
        )
        self.aux_loss_alpha = config.aux_loss_alpha if config.seq_aux else 0.0
        # the last forward's routed-token counts: the training loop balances experts from these
        self.tokens_per_expert: torch.Tensor | None = None
        # the last training forward's sequence-wise balance loss, when aux_loss_alpha > 0
        self.aux_loss: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.reshape(-1, x.shape[-1])
        expert_weights, expert_indices, scores = self.gate(tokens)
        out, tokens_per_expert = self.experts(tokens, expert_indices, expert_weights)
        self.tokens_per_expert = tokens_per_expert.detach()
        self.aux_loss = (
            sequence_balance_loss(scores.view(*x.shape[:2], -1), expert_indices.view(*x.shape[:2], -1))
            * self.aux_loss_alpha
            if self.training and self.aux_loss_alpha > 0
            else None
        )
        if self.shared_experts is not None:
            out = out + self.shared_experts(tokens)
        return out.view_as(x)
