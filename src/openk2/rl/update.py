"""An iteration's optimizer steps: the policy objective on the iteration's groups, plus the PTX and critic
losses, with MuonClip (K2 report §3.2.3: "we use Muon to minimize this objective").

The iteration's complete groups are split into `updates_per_iteration` minibatches (group j of the id-sorted
list goes to minibatch j mod U), one optimizer step each: the first step is on-policy (π_θ = π_old, the
K1.5 gradient is the plain policy gradient and `logprob_mismatch` checks the trainer's log-probs against
the sampler's), later ones are off-policy and the τ·log(π_θ/π_old) term holds them near π_old.

Samples of partial rollouts (K1.5's choice, kept here): π_old of a token is the policy that sampled it, its
recorded log-prob, whatever its version; the sequence's log-ratio therefore sums each token against its own
sampler, with no extra importance weight. τ·log(π_θ/π_old) regularises toward that mixture of recent
policies; `stale_token_fraction` reports how much of a batch older weights sampled.

Under FSDP2 a rank's loss is its groups' share of the minibatch's mean over groups, times the number of
ranks (FSDP averages gradients over ranks); every rank runs as many forwards as the busiest one (a rank out
of samples runs a one-token forward with zero loss), since each forward is collective.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from openk2.optim import MuonClip
from openk2.rl.losses import GroupedRewards, Objective, SampleLogProbs, token_logprobs
from openk2.rl.policy import Policy
from openk2.rl.recipe import RLRecipe
from openk2.rl.samples import PaddedBatch, TrainingSample, pad
from openk2.train.balance import ExpertLoad
from openk2.train.batch import TokenBatch
from openk2.train.loop import OptimizerUpdate, optimizer_step
from openk2.train.world import World, all_gather_objects, all_reduce_sum_

PAD_ID = 0  # right padding, after every real token: causal attention never reads it, the mask drops it


@dataclass
class UpdateStats:
    updates: int
    policy_loss: float
    ptx_loss: float | None
    critic_loss: float | None
    grad_norm: float  # mean over the updates
    logprob_mismatch: float | None
    kl_to_old: float | None
    last: OptimizerUpdate | None
    forwarded_tokens: int  # real tokens of every training forward, all ranks


def informative_groups(samples: Sequence[TrainingSample]) -> list[str]:
    """Groups whose trainable samples got different rewards. A group of equal rewards has no advantage:
    its policy gradient is zero, and MuonClip (like Adam) would blow a zero gradient's rounding noise up
    into a full-size update, so such groups are left out (with U = 1 this changes nothing else; with U > 1
    it drops their τ-regulariser on the later, off-policy updates)."""
    rewards: dict[str, list[float]] = {}
    for sample in samples:
        rewards.setdefault(sample.group_id, []).append(sample.reward)
    return sorted(group for group, values in rewards.items() if max(values) - min(values) > 1e-9)


def minibatches(group_ids: Sequence[str], updates: int) -> dict[str, int]:
    """Group id -> its minibatch: position in the id-sorted list of all ranks' groups, modulo U."""
    ordered = sorted(group_ids)
    count = min(updates, len(ordered))
    return {group: position % count for position, group in enumerate(ordered)}


def _global_max(value: int, world: World) -> int:
    return max(all_gather_objects(value, world))


class PolicyForward:
    """Forwards of padded samples through the policy, token log-probs at each sample's temperature."""

    def __init__(self, policy: Policy, autocast: torch.autocast) -> None:
        self.policy = policy
        self.autocast = autocast
        self.device = next(policy.model.parameters()).device

    def batch(self, samples: Sequence[TrainingSample]) -> PaddedBatch:
        return pad(samples, PAD_ID, self.device)

    def logprobs(self, batch: PaddedBatch) -> torch.Tensor:
        with self.autocast:
            logits = self.policy.logits(batch.inputs, batch.attention)
        return token_logprobs(logits, batch.targets, batch.temperature)

    def idle(self) -> torch.Tensor:
        """A one-token forward with zero loss, for a rank with nothing left to forward (FSDP2 collectives)."""
        ids = torch.full((1, 1), PAD_ID, dtype=torch.long, device=self.device)
        with self.autocast:
            return self.policy.logits(ids, torch.ones_like(ids)).sum() * 0.0


@torch.no_grad()
def fill_old_logprobs(
    forward: PolicyForward, samples: list[TrainingSample], batch_size: int, world: World
) -> None:
    """π_old's log-probs of re-tokenised samples: the weights the server sampled with are the current ones.
    Evaluation forwards: QK-Clip and the expert balance count training forwards only."""
    missing = [sample for sample in samples if sample.old_logprobs is None]
    chunks = [missing[start : start + batch_size] for start in range(0, len(missing), batch_size)]
    forward.policy.model.eval()
    for index in range(_global_max(len(chunks), world)):
        if index >= len(chunks):
            forward.idle()
            continue
        batch = forward.batch(chunks[index])
        logprobs = forward.logprobs(batch).float().cpu()
        for row, sample in enumerate(chunks[index]):
            length = len(sample.ids) - 1
            sample.old_logprobs = [0.0, *logprobs[row, :length].tolist()]
    forward.policy.model.train()


def train_iteration(
    forward: PolicyForward,
    optimizer: MuonClip,
    recipe: RLRecipe,
    world: World,
    expert_load: ExpertLoad,
    samples: list[TrainingSample],
    all_group_ids: list[str],
    objective: Objective,
    ptx_batches: Iterator[TokenBatch] | None,
    critic_batch: TokenBatch | None,
    current_version: int,
) -> UpdateStats:
    rl, batch_size = recipe.rl, recipe.train.batch_size
    model = forward.policy.model
    assignment = minibatches(all_group_ids, rl.updates_per_iteration)
    updates = len(set(assignment.values()))
    stats = UpdateStats(0, 0.0, None, None, 0.0, None, None, None, 0)
    if updates == 0:
        return stats
    fill_old_logprobs(forward, samples, batch_size, world)
    model.train()
    grad_norms, forwarded = [], 0
    totals = torch.zeros(3, dtype=torch.float64)  # the last update's policy, PTX and critic losses
    for update in range(updates):
        mine = [sample for sample in samples if assignment[sample.group_id] == update]
        groups_in_update = sum(1 for minibatch in assignment.values() if minibatch == update)
        local_groups = {group: index for index, group in enumerate(sorted({s.group_id for s in mine}))}
        grouped = GroupedRewards.of(
            torch.tensor([sample.reward for sample in mine], dtype=torch.float64),
            torch.tensor([local_groups[sample.group_id] for sample in mine], dtype=torch.long),
            total_groups=groups_in_update,
        ) if mine else None  # fmt: skip
        chunks = [
            list(range(start, min(start + batch_size, len(mine))))
            for start in range(0, len(mine), batch_size)
        ]
        totals.zero_()
        mismatch = torch.zeros(2, dtype=torch.float64)  # Σ|Δ| over sampled tokens, their count
        for index in range(_global_max(len(chunks), world)):
            if index >= len(chunks):
                loss = forward.idle()
                expert_load.add_last_forward()
                loss.backward()
                continue
            assert grouped is not None
            rows = chunks[index]
            batch = forward.batch([mine[row] for row in rows])
            new = forward.logprobs(batch)
            expert_load.add_last_forward()
            loss = objective(SampleLogProbs(new, batch.old, batch.mask), grouped.select(torch.tensor(rows)))
            (loss * world.world_size).backward()
            totals[0] += loss.detach().double().cpu()
            forwarded += int(batch.attention.sum())
            if update == 0:  # tokens the current weights sampled: the trainer must agree with the sampler
                fresh = batch.mask & (batch.versions == current_version)
                difference = (new.detach() - batch.old).abs()[fresh]
                mismatch += torch.tensor([float(difference.sum()), difference.numel()], dtype=torch.float64)
        if ptx_batches is not None:
            ptx = next(ptx_batches)
            with forward.autocast:
                ptx_loss = model(**ptx.model_inputs()).loss * rl.ptx.weight
            expert_load.add_last_forward()
            ptx_loss.backward()
            totals[1] += ptx_loss.detach().double().cpu() / world.world_size
        if critic_batch is not None:
            with forward.autocast:
                critic_loss = model(**critic_batch.model_inputs()).loss * rl.critic.train_weight
            expert_load.add_last_forward()
            critic_loss.backward()
            totals[2] += critic_loss.detach().double().cpu() / world.world_size
        stats.last = optimizer_step(model, optimizer, recipe, world, expert_load)
        grad_norms.append(stats.last.grad_norm)
        if update == 0:
            summed = all_reduce_sum_(mismatch, world)
            stats.logprob_mismatch = float(summed[0] / summed[1]) if summed[1] else None
    summed = all_reduce_sum_(totals, world)
    stats.updates = updates
    stats.policy_loss = float(summed[0])
    stats.ptx_loss = float(summed[1]) if ptx_batches is not None else None
    stats.critic_loss = float(summed[2]) if critic_batch is not None else None
    stats.grad_norm = sum(grad_norms) / len(grad_norms)
    stats.forwarded_tokens = int(all_reduce_sum_(torch.tensor([forwarded]), world))
    stats.kl_to_old = kl_to_old(forward, samples[:batch_size], world)
    return stats


@torch.no_grad()
def kl_to_old(forward: PolicyForward, samples: list[TrainingSample], world: World) -> float | None:
    """KL(π_old ‖ π_θ) per sampled token after the updates, from the first micro-batch's samples:
    the k3 estimate (r − 1) − log r with r = π_θ/π_old, unbiased and never negative."""
    totals = torch.zeros(2, dtype=torch.float64)
    forward.policy.model.eval()
    if samples:
        batch = forward.batch(samples)
        log_ratio = (forward.logprobs(batch) - batch.old)[batch.mask].double()
        totals += torch.tensor([float((log_ratio.exp() - 1 - log_ratio).sum()), log_ratio.numel()])
    elif world.is_distributed:
        forward.idle()
    forward.policy.model.train()
    summed = all_reduce_sum_(totals, world)
    return float(summed[0] / summed[1]) if summed[1] else None
