"""The policy objectives: Kimi K1.5's, which K2 uses (K2 report §3.2.3), and GRPO as the baseline.

For a prompt x with K samples y_i drawn from π_old, K1.5 minimises

    L(θ) = E_x [ (1/K) Σ_i ( r(x, y_i) − r̄(x) − τ · log(π_θ(y_i|x) / π_old(y_i|x)) )² ]

with r̄ the group's mean reward: online mirror descent, whose regularised optimum π* ∝ π_old·exp(r/τ)
satisfies r − τ log Z = τ log(π*/π_old), and r̄ stands in for τ log Z. `k15_loss` returns this L divided by
2τ. The minimiser is the same, and at π_θ = π_old the gradient becomes exactly

    −(1/G) Σ_groups (1/K) Σ_i (r_i − r̄) ∇ log π_θ(y_i|x),

the policy gradient with the group mean as baseline, which is the form the K1.5 report derives. Without
the scaling the gradient would grow with τ and every change of τ would need a new learning rate.

Log-probabilities are of whole replies: the sum of the sampled tokens' log-probs, each under the temperature
that sampled it (`token_logprobs`). Both objectives are sums of per-sample terms weighted by 1/(G·K_g), so a
minibatch split into micro-batches adds up to exactly the whole; a group's statistics come from all of its
rewards (`GroupedRewards`), whichever micro-batch a sample lands in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

GRPO_STD_EPS = 1e-6  # keeps the advantage finite when every sample of a group got the same reward


@dataclass(frozen=True)
class GroupedRewards:
    """Per sample: its reward minus its group's mean, its group's standard deviation, and its weight."""

    centred: torch.Tensor  # r_i − r̄_g
    group_std: torch.Tensor  # σ_g: the population standard deviation of the group's rewards
    weight: torch.Tensor  # 1 / (number of groups · K_g): the loss is a mean over groups of group means

    @classmethod
    def of(
        cls, rewards: torch.Tensor, group_ids: torch.Tensor, total_groups: int | None = None
    ) -> GroupedRewards:
        """`group_ids` [N] holds any integers; samples with equal ids form a group. `total_groups`: the
        groups of the whole minibatch when these are one rank's share of it (default: these)."""
        if rewards.ndim != 1 or rewards.shape != group_ids.shape:
            raise ValueError(
                f"rewards, group_ids: expected two vectors of one length, got {tuple(rewards.shape)} "
                f"and {tuple(group_ids.shape)}"
            )
        rewards = rewards.double()
        _, group = torch.unique(group_ids, return_inverse=True)
        groups = int(group.max()) + 1 if group.numel() else 0
        count = torch.zeros(groups, dtype=torch.float64).index_add_(0, group, torch.ones_like(rewards))
        mean = torch.zeros(groups, dtype=torch.float64).index_add_(0, group, rewards) / count
        centred = rewards - mean[group]
        variance = torch.zeros(groups, dtype=torch.float64).index_add_(0, group, centred**2) / count
        total = groups if total_groups is None else total_groups
        return cls(centred=centred, group_std=variance.sqrt()[group], weight=1.0 / (total * count[group]))

    def select(self, index: torch.Tensor | slice) -> GroupedRewards:
        """The rows of some samples (a micro-batch), their group statistics unchanged."""
        return GroupedRewards(self.centred[index], self.group_std[index], self.weight[index])


def token_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, temperature: torch.Tensor | float
) -> torch.Tensor:
    """log softmax(logits / T) at the target ids: [batch, seq, vocab], [batch, seq] -> [batch, seq], in fp32
    at least (bf16 logits are promoted).

    `temperature` is one value or one per row: each sample is scored under the temperature that sampled it.
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    temperature = torch.as_tensor(temperature, dtype=dtype, device=logits.device)
    scaled = logits.to(dtype) / (temperature.reshape(-1, 1, 1) if temperature.ndim else temperature)
    return scaled.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - scaled.logsumexp(dim=-1)


def k15_terms(
    seq_logp: torch.Tensor, seq_logp_old: torch.Tensor, grouped: GroupedRewards, tau: float
) -> torch.Tensor:
    """Σ_i w_i (r_i − r̄ − τ(log π_θ − log π_old))² / (2τ): the K1.5 loss of these samples (a scalar)."""
    if tau <= 0:
        raise ValueError(f"tau: expected > 0, got {tau}")
    log_ratio = seq_logp.double() - seq_logp_old.double()
    residual = grouped.centred.to(log_ratio.device) - tau * log_ratio
    return (grouped.weight.to(log_ratio.device) * residual**2).sum() / (2 * tau)


def k15_loss(
    seq_logp: torch.Tensor,
    seq_logp_old: torch.Tensor,
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    tau: float,
) -> torch.Tensor:
    """The K1.5 objective over whole groups (module docstring), scaled by 1/(2τ); a float64 scalar."""
    return k15_terms(seq_logp, seq_logp_old, GroupedRewards.of(rewards, group_ids), tau)


def grpo_terms(
    token_logp: torch.Tensor,
    token_logp_old: torch.Tensor,
    mask: torch.Tensor,
    grouped: GroupedRewards,
    clip_eps: float,
) -> torch.Tensor:
    """GRPO's clipped surrogate of these samples (DeepSeekMath §4.1, no KL term): per token
    min(ρ_t A_i, clip(ρ_t, 1 ± ε) A_i) with ρ_t = π_θ/π_old and A_i = (r_i − r̄)/(σ_g + 1e-6), averaged
    over a reply's tokens, weighted like K1.5's terms, negated to be minimised."""
    advantage = (grouped.centred / (grouped.group_std + GRPO_STD_EPS)).to(token_logp.device)[:, None]
    ratio = torch.exp(token_logp.double() - token_logp_old.double())
    surrogate = torch.minimum(ratio * advantage, ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantage)
    mask = mask.to(surrogate.dtype)
    per_sample = (surrogate * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return -(grouped.weight.to(per_sample.device) * per_sample).sum()


def grpo_loss(
    token_logp: torch.Tensor,
    token_logp_old: torch.Tensor,
    mask: torch.Tensor,
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    clip_eps: float = 0.2,
) -> torch.Tensor:
    """GRPO over whole groups; token log-probs [N, T] with `mask` [N, T] True on sampled tokens."""
    return grpo_terms(token_logp, token_logp_old, mask, GroupedRewards.of(rewards, group_ids), clip_eps)


@dataclass(frozen=True)
class SampleLogProbs:
    """A micro-batch's sampled tokens: log-probs under π_θ (with gradient) and under π_old, and the mask."""

    new: torch.Tensor  # [N, T]
    old: torch.Tensor  # [N, T]
    mask: torch.Tensor  # [N, T] bool: the policy sampled this token

    @property
    def sequence_new(self) -> torch.Tensor:
        return (self.new * self.mask).sum(-1)

    @property
    def sequence_old(self) -> torch.Tensor:
        return (self.old * self.mask).sum(-1)


class Objective(Protocol):
    """What the trainer minimises: the same call for K1.5 and GRPO."""

    @property
    def name(self) -> str: ...

    def __call__(self, logprobs: SampleLogProbs, grouped: GroupedRewards) -> torch.Tensor: ...


@dataclass(frozen=True)
class K15Objective:
    tau: float
    name: str = "k15"

    def __call__(self, logprobs: SampleLogProbs, grouped: GroupedRewards) -> torch.Tensor:
        return k15_terms(logprobs.sequence_new, logprobs.sequence_old, grouped, self.tau)


@dataclass(frozen=True)
class GRPOObjective:
    clip_eps: float
    name: str = "grpo"

    def __call__(self, logprobs: SampleLogProbs, grouped: GroupedRewards) -> torch.Tensor:
        return grpo_terms(logprobs.new, logprobs.old, logprobs.mask, grouped, self.clip_eps)
