"""From scored trajectories to the tensors the loss reads: token ids, the sampled-token mask, π_old's
log-probs and each sample's temperature.

Token-exact (an in-process policy): the ids are the trajectory's kept token spans, exactly what the policy
read and sampled (`Trajectory.token_sequence()`); the mask is True on sampled tokens only (never on the
prompt, tool results or forced template tokens); π_old's log-probs are the ones recorded as each token was
sampled, at its episode's temperature, by the weights of its policy version (partial rollouts: older ones).

Re-tokenised (an endpoint policy): the server returns messages, not ids, so the conversation is rendered
again with K2's template (`render_tokens`, loss on the assistant's tokens) and π_old's log-probs are
computed by the trainer before the iteration's first update, from the weights the server sampled with. A
template that renders a reply differently from how it was sampled makes this inexact, which is why such
runs are marked `token_exact = false`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer

from openk2.chat import render_tokens
from openk2.rl.rewards import ScoredSample


@dataclass
class TrainingSample:
    ids: list[int]
    mask: list[bool]  # the policy sampled this token: the loss is on it
    old_logprobs: list[float] | None  # per token; None until computed (re-tokenised samples)
    versions: list[int]  # per token: the policy version that sampled it (-1: not sampled)
    temperature: float
    reward: float
    group_id: str
    env: str

    @property
    def sampled_tokens(self) -> int:
        return sum(self.mask)


def token_exact(sample: ScoredSample) -> TrainingSample:
    trajectory = sample.trajectory
    ids, mask, logprobs = trajectory.token_sequence()
    versions: list[int] = []
    for meta in trajectory.meta:
        span = meta.tokens
        assert span is not None  # token_sequence() checked every message has one
        if span.policy_versions is not None:
            versions += span.policy_versions
        else:
            version = -1 if span.policy_version is None else span.policy_version
            versions += [version if sampled else -1 for sampled in span.sampled]
    assert trajectory.sampling is not None and sample.reward is not None
    return TrainingSample(
        ids, mask, logprobs, versions, trajectory.sampling.temperature or 1.0, sample.reward,
        sample.group_id, sample.env,
    )  # fmt: skip


def retokenised(sample: ScoredSample, tokenizer: Tokenizer) -> TrainingSample:
    trajectory = sample.trajectory
    ids, mask = render_tokens(tokenizer, trajectory.messages, trajectory.tools)
    assert trajectory.sampling is not None and sample.reward is not None
    return TrainingSample(
        ids, mask, None, [-1] * len(ids), trajectory.sampling.temperature or 1.0, sample.reward,
        sample.group_id, sample.env,
    )  # fmt: skip


@dataclass(frozen=True)
class PaddedBatch:
    """Right-padded rows, shifted for next-token prediction: inputs[t] predicts targets[t]."""

    inputs: torch.Tensor  # [rows, width]
    attention: torch.Tensor  # [rows, width] 1 on real tokens
    targets: torch.Tensor  # [rows, width]
    mask: torch.Tensor  # [rows, width] bool: targets the policy sampled
    old: torch.Tensor  # [rows, width] π_old's log-prob of each target (0 where unknown)
    versions: torch.Tensor  # [rows, width] the policy version that sampled each target (-1: not sampled)
    temperature: torch.Tensor  # [rows]

    @property
    def sampled_tokens(self) -> int:
        return int(self.mask.sum())


def pad(samples: Sequence[TrainingSample], pad_id: int, device: torch.device) -> PaddedBatch:
    width = max(len(sample.ids) for sample in samples) - 1
    rows = len(samples)
    inputs = torch.full((rows, width), pad_id, dtype=torch.long)
    attention = torch.zeros((rows, width), dtype=torch.long)
    targets = torch.full((rows, width), pad_id, dtype=torch.long)
    mask = torch.zeros((rows, width), dtype=torch.bool)
    old = torch.zeros((rows, width), dtype=torch.float32)
    versions = torch.full((rows, width), -1, dtype=torch.long)
    for row, sample in enumerate(samples):
        length = len(sample.ids) - 1
        ids = torch.tensor(sample.ids, dtype=torch.long)
        inputs[row, :length] = ids[:-1]
        attention[row, :length] = 1
        targets[row, :length] = ids[1:]
        mask[row, :length] = torch.tensor(sample.mask[1:], dtype=torch.bool)
        versions[row, :length] = torch.tensor(sample.versions[1:], dtype=torch.long)
        if sample.old_logprobs is not None:
            old[row, :length] = torch.tensor(sample.old_logprobs[1:], dtype=torch.float32)
    temperature = torch.tensor([sample.temperature for sample in samples], dtype=torch.float32)
    return PaddedBatch(
        inputs.to(device), attention.to(device), targets.to(device), mask.to(device), old.to(device),
        versions.to(device), temperature.to(device),
    )  # fmt: skip
