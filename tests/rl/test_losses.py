"""The RL objectives against hand computation, closed forms and finite differences.

- `k15_loss` equals the report's formula evaluated by hand (plain Python floats), divided by 2τ;
- at π_θ = π_old its gradient is −(1/G)Σ_g(1/K)Σ_i (r_i − r̄)∇log π_θ(y_i), assembled from each sequence's
  own autograd gradient, and a central finite difference of the loss agrees with autograd;
- GRPO's clipped surrogate against a hand-computed value, and its on-policy gradient against its closed form;
- micro-batches add up to the whole batch exactly (the trainer relies on it).
"""

from __future__ import annotations

import math

import pytest
import torch

from openk2.rl.losses import GroupedRewards, grpo_loss, grpo_terms, k15_loss, k15_terms, token_logprobs

REWARDS = [1.0, 0.0, 0.0, 1.0, 0.5, 1.0, 0.0]
GROUPS = [0, 0, 0, 0, 7, 7, 7]  # K = 4 and K = 3: unequal groups
SEQ_LOGP = [-2.0, -3.5, -1.0, -4.0, -0.5, -2.5, -3.0]
SEQ_LOGP_OLD = [-2.2, -3.0, -1.5, -4.0, -1.0, -2.0, -3.1]


def by_hand(tau: float) -> float:
    """The report's L: the mean over prompts of (1/K) Σ_i (r_i − r̄ − τ(log π_θ − log π_old))², over 2τ."""
    total = 0.0
    groups = sorted(set(GROUPS))
    for group in groups:
        members = [i for i, g in enumerate(GROUPS) if g == group]
        mean = sum(REWARDS[i] for i in members) / len(members)
        total += sum((REWARDS[i] - mean - tau * (SEQ_LOGP[i] - SEQ_LOGP_OLD[i])) ** 2 for i in members) / len(
            members
        )
    return total / len(groups) / (2 * tau)


@pytest.mark.parametrize("tau", [0.05, 0.5, 2.0])
def test_k15_loss_is_the_report_formula_over_two_tau(tau: float) -> None:
    f64 = torch.float64
    loss = k15_loss(
        torch.tensor(SEQ_LOGP, dtype=f64), torch.tensor(SEQ_LOGP_OLD, dtype=f64), torch.tensor(REWARDS),
        torch.tensor(GROUPS), tau,
    )  # fmt: skip
    assert loss.item() == pytest.approx(by_hand(tau), rel=1e-12)


def test_k15_loss_refuses_a_non_positive_tau() -> None:
    with pytest.raises(ValueError, match="tau"):
        k15_loss(torch.zeros(2), torch.zeros(2), torch.ones(2), torch.zeros(2, dtype=torch.long), 0.0)


class ToyPolicy(torch.nn.Module):
    """Next-token logits from a table indexed by (position, previous token): an autoregressive toy."""

    def __init__(self, vocab: int = 5, length: int = 4) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.table = torch.nn.Parameter(
            torch.randn(length, vocab, vocab, generator=generator, dtype=torch.float64)
        )

    def sequence_logp(self, sequences: torch.Tensor, temperature: float) -> torch.Tensor:
        """Σ_t log softmax(logits_t / T)[y_t] for sequences [N, length] (token 0 precedes each one)."""
        previous = torch.cat([torch.zeros_like(sequences[:, :1]), sequences[:, :-1]], dim=1)
        logits = self.table[torch.arange(sequences.shape[1]), previous]  # [N, length, vocab]
        return token_logprobs(logits, sequences, temperature).double().sum(-1)


def toy_batch() -> tuple[ToyPolicy, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    sequences = torch.randint(0, 5, (len(REWARDS), 4), generator=generator)
    return ToyPolicy(), sequences, torch.tensor(REWARDS, dtype=torch.float64), torch.tensor(GROUPS)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_k15_gradient_on_policy_is_the_group_baselined_policy_gradient(temperature: float) -> None:
    policy, sequences, rewards, groups = toy_batch()
    seq_logp = policy.sequence_logp(sequences, temperature)
    k15_loss(seq_logp, seq_logp.detach(), rewards, groups, tau=0.3).backward()
    gradient = policy.table.grad.clone()

    # closed form, assembled from each sequence's own gradient of log π_θ(y_i)
    expected = torch.zeros_like(policy.table)
    group_count = len(set(GROUPS))
    for i in range(len(REWARDS)):
        members = [j for j, g in enumerate(GROUPS) if g == GROUPS[i]]
        advantage = REWARDS[i] - sum(REWARDS[j] for j in members) / len(members)
        (grad_i,) = torch.autograd.grad(
            policy.sequence_logp(sequences[i : i + 1], temperature).sum(), policy.table
        )
        expected -= advantage / (group_count * len(members)) * grad_i
    torch.testing.assert_close(gradient, expected, rtol=1e-10, atol=1e-12)


def test_k15_gradient_matches_a_finite_difference_off_policy() -> None:
    """Away from π_old (the τ term now matters), autograd's gradient equals a central difference."""
    policy, sequences, rewards, groups = toy_batch()
    with torch.no_grad():
        old = policy.sequence_logp(sequences, 0.8)
        policy.table.add_(0.3 * torch.randn_like(policy.table, generator=torch.Generator().manual_seed(2)))

    def loss() -> torch.Tensor:
        return k15_loss(policy.sequence_logp(sequences, 0.8), old, rewards, groups, tau=0.4)

    loss().backward()
    index = (1, 2, 3)
    step = 1e-6
    with torch.no_grad():
        policy.table[index] += step
        above = loss().item()
        policy.table[index] -= 2 * step
        below = loss().item()
        policy.table[index] += step
    assert policy.table.grad[index].item() == pytest.approx((above - below) / (2 * step), rel=1e-6, abs=1e-9)


def test_grpo_loss_by_hand_with_clipping() -> None:
    # one group of two one-token replies: rewards 1 and 0, σ = 0.5, advantages ±1 (up to the 1e-6)
    new = torch.tensor([[math.log(0.9)], [math.log(0.2)]], dtype=torch.float64)
    old = torch.tensor([[math.log(0.5)], [math.log(0.25)]], dtype=torch.float64)
    mask = torch.ones(2, 1, dtype=torch.bool)
    loss = grpo_loss(new, old, mask, torch.tensor([1.0, 0.0]), torch.tensor([3, 3]), clip_eps=0.2)
    advantage = 0.5 / (0.5 + 1e-6)
    # sample 1: ratio 1.8, A > 0 -> min(1.8A, 1.2A) = 1.2A; sample 2: ratio 0.8, A < 0 -> min(-0.8A, -0.8A)
    expected = -(1.2 * advantage + (-0.8 * advantage)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_grpo_gradient_on_policy_is_the_normalised_advantage_per_token_mean() -> None:
    policy, sequences, rewards, groups = toy_batch()
    previous = torch.cat([torch.zeros_like(sequences[:, :1]), sequences[:, :-1]], dim=1)
    logits = policy.table[torch.arange(4), previous]
    token_logp = token_logprobs(logits, sequences, 1.0).double()
    mask = torch.ones_like(token_logp, dtype=torch.bool)
    grpo_loss(token_logp, token_logp.detach(), mask, rewards, groups).backward()
    expected = torch.zeros_like(policy.table)
    grouped = GroupedRewards.of(rewards, groups)
    for i in range(len(REWARDS)):
        advantage = grouped.centred[i] / (grouped.group_std[i] + 1e-6)
        (grad_i,) = torch.autograd.grad(policy.sequence_logp(sequences[i : i + 1], 1.0).sum(), policy.table)
        expected -= grouped.weight[i] * advantage * grad_i / 4  # mean over the reply's 4 tokens
    torch.testing.assert_close(policy.table.grad, expected, rtol=1e-10, atol=1e-12)


def test_micro_batches_add_up_to_the_whole_batch() -> None:
    generator = torch.Generator().manual_seed(3)
    new, old = torch.randn(7, 5, generator=generator), torch.randn(7, 5, generator=generator)
    mask = torch.rand(7, 5, generator=generator) > 0.3
    grouped = GroupedRewards.of(torch.tensor(REWARDS), torch.tensor(GROUPS))
    parts = [torch.tensor([0, 5]), torch.tensor([1, 2, 6]), torch.tensor([3, 4])]
    whole_k15 = k15_terms((new * mask).sum(-1), (old * mask).sum(-1), grouped, 0.2)
    split_k15 = sum(
        k15_terms((new[p] * mask[p]).sum(-1), (old[p] * mask[p]).sum(-1), grouped.select(p), 0.2)
        for p in parts
    )
    whole_grpo = grpo_terms(new, old, mask, grouped, 0.2)
    split_grpo = sum(grpo_terms(new[p], old[p], mask[p], grouped.select(p), 0.2) for p in parts)
    assert float(split_k15) == pytest.approx(float(whole_k15), rel=1e-12)
    assert float(split_grpo) == pytest.approx(float(whole_grpo), rel=1e-12)


def test_a_rank_share_weights_by_the_whole_minibatch() -> None:
    """Two ranks each holding one group, weighted by total_groups = 2, sum to the one-process loss."""
    seq, old = torch.tensor(SEQ_LOGP, dtype=torch.float64), torch.tensor(SEQ_LOGP_OLD, dtype=torch.float64)
    rewards, groups = torch.tensor(REWARDS), torch.tensor(GROUPS)
    whole = k15_loss(seq, old, rewards, groups, 0.5)
    first, second = slice(0, 4), slice(4, 7)
    shares = [
        k15_terms(seq[s], old[s], GroupedRewards.of(rewards[s], groups[s], total_groups=2), 0.5)
        for s in (first, second)
    ]
    assert float(sum(shares)) == pytest.approx(float(whole), rel=1e-12)
