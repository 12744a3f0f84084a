"""Auxiliary-loss-free expert balancing (DeepSeek-V3 §2.1.2; the K2 report names no rule, docs/architecture.md).

Each routed expert i has a bias b_i that is added to its routing score only to choose the top-k experts.
After every optimizer step, b_i ← b_i + u·sign(mean load − load_i): an overloaded expert becomes less
likely to be chosen, an underloaded one more likely. The load is the step's whole global batch: counted
right after each training forward (so a recomputed forward is never counted twice), summed over
micro-batches and ranks. The bias is an fp32 buffer outside the optimizer and never sees a gradient.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from openk2.model import MoE
from openk2.train.world import World, all_reduce_sum_


class ExpertLoad:
    """Routed-token counts of every MoE layer, summed over the training forwards of one optimizer step."""

    def __init__(self, moe_modules: list[MoE]) -> None:
        self.moe_modules = moe_modules
        self.tokens_per_expert: torch.Tensor | None = None  # [moe_layers, experts] int64

    def add_last_forward(self) -> None:
        """Call right after a training forward, before its backward (a model without MoE layers: a no-op)."""
        if not self.moe_modules:
            self.tokens_per_expert = torch.zeros((0, 0), dtype=torch.int64)
            return
        self.add(torch.stack([routed_counts(moe) for moe in self.moe_modules]))

    def add(self, counts: torch.Tensor) -> None:
        """Add [moe_layers, experts] counts (a pipeline stage's, summed over its micro-batches)."""
        self.tokens_per_expert = counts if self.tokens_per_expert is None else self.tokens_per_expert + counts

    def take_global(self, world: World, group: dist.ProcessGroup | None = None) -> torch.Tensor:
        """The step's counts summed over the ranks of `group` (default: all) that read different data;
        resets for the next step."""
        if self.tokens_per_expert is None:
            raise RuntimeError("ExpertLoad: no training forward was counted in this step")
        counts, self.tokens_per_expert = self.tokens_per_expert, None
        return all_reduce_sum_(counts, world, group)


def routed_counts(moe: MoE) -> torch.Tensor:
    """The last forward's routed slots per expert [experts] of one MoE layer."""
    if moe.tokens_per_expert is None:
        raise RuntimeError("ExpertLoad: a MoE layer has not run a forward yet")
    return moe.tokens_per_expert


@torch.no_grad()
def update_expert_bias_(moe_modules: list[MoE], tokens_per_expert: torch.Tensor, rate: float) -> None:
    """b_i += u·sign(mean_load − load_i) per layer, in fp32; experts exactly at the mean stay put."""
    load = tokens_per_expert.float()  # [moe_layers, experts]
    step = rate * torch.sign(load.mean(dim=-1, keepdim=True) - load)
    for moe, layer_step in zip(moe_modules, step, strict=True):
        bias: torch.Tensor = moe.gate.e_score_correction_bias
        bias.add_(layer_step.to(bias.device))


def expert_biases(moe_modules: list[MoE]) -> list[list[float]]:
    """Each MoE layer's routing bias, expert by expert, for the metrics."""
    return [moe.gate.e_score_correction_bias.float().tolist() for moe in moe_modules]


def expert_bias_range(moe_modules: list[MoE]) -> tuple[list[float], list[float]]:
    """(min, max) of each MoE layer's routing bias, for the metrics."""
    biases = [moe.gate.e_score_correction_bias for moe in moe_modules]
    return [float(bias.min()) for bias in biases], [float(bias.max()) for bias in biases]
