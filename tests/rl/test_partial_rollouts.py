"""Partial rollouts, budget control and the temperature schedule in a real (short) run of the tiny
pre-trained policy, whose replies run on to the budget: with 5 tokens per episode per iteration and a
12-token budget, replies pause, continue in later iterations under newer weights, and every sampled token
keeps the version that sampled it; replies cut at the budget are recorded as truncated and penalised."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from openk2.gym import Trajectory
from openk2.rl.losses import token_logprobs
from openk2.rl.metrics import IterationRecord
from openk2.rl.recipe import TemperatureSection
from openk2.rl.trainer import rl
from openk2.train.metrics import read_metrics
from tests.rl.rl_setup import rl_sections, write_rl_recipe


def test_paused_replies_continue_under_newer_weights_with_their_versions(
    pretrained_checkpoint: Path, tmp_path: Path
) -> None:
    sections = rl_sections(
        tmp_path, pretrained_checkpoint, name="partial",
        run=dict(steps=4),
        rl=dict(groups_per_iteration=2, samples_per_group=4, budget={"logic": 12}, eval={"every": 0},
                partial={"tokens_per_iteration": 5}, rewards={"budget_penalty": 0.5},
                temperature={"start": 1.0, "end": 1.0}),
    )  # fmt: skip
    rl(write_rl_recipe(tmp_path / "rl.toml", sections), progress=False)
    records = read_metrics(tmp_path / "partial" / "metrics.jsonl", IterationRecord)
    assert records[0].paused_episodes > 0 and records[0].samples_trained == 0  # nothing finished at once
    assert any(r.stale_token_fraction > 0 for r in records[1:])

    trajectories = [
        Trajectory.model_validate(trajectory)
        for line in (tmp_path / "partial" / "rollouts.jsonl").read_text().splitlines()
        for trajectory in json.loads(line)["trajectories"]
    ]
    spans = [meta.tokens for t in trajectories for meta in t.meta if meta.author == "policy" and meta.tokens]
    continued = [span for span in spans if span.policy_versions is not None]
    assert continued, "no reply spanned two policy versions"
    for span in continued:
        assert span.policy_versions == sorted(span.policy_versions) and len(set(span.policy_versions)) > 1
        assert span.logprobs is not None and len(span.logprobs) == len(span.token_ids)
    truncated = [t for t in trajectories if t.termination == "budget_exceeded"]
    assert truncated and all(len(t.meta[-1].tokens.token_ids) >= 12 for t in truncated)  # type: ignore[union-attr]
    assert any(r.truncation_rate for r in records if r.truncation_rate is not None)
    # the budget penalty: a truncated reply's reward is its verified score minus 0.5, here −0.5
    assert all(r.reward_mean is None or r.reward_mean < 0 for r in records)


@pytest.mark.parametrize("shape", ["linear", "cosine", "exponential"])
def test_the_temperature_decays_from_start_to_end(shape: str) -> None:
    schedule = TemperatureSection(start=1.6, end=0.8, decay_iterations=10, shape=shape)  # type: ignore[arg-type]
    assert schedule.at(1) == pytest.approx(1.6) and schedule.at(11) == pytest.approx(0.8)
    assert schedule.at(50) == pytest.approx(0.8)
    values = [schedule.at(i) for i in range(1, 12)]
    assert values == sorted(values, reverse=True)
    middle = {"linear": 1.2, "cosine": 1.2, "exponential": math.sqrt(1.6 * 0.8)}[shape]
    assert schedule.at(6) == pytest.approx(middle)


def test_each_row_is_scored_at_its_own_sampling_temperature() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 11, (3, 5), generator=generator)
    temperatures = torch.tensor([1.5, 1.0, 0.7], dtype=torch.float64)
    together = token_logprobs(logits, targets, temperatures)
    for row, temperature in enumerate(temperatures.tolist()):
        alone = torch.log_softmax(logits[row] / temperature, dim=-1).gather(-1, targets[row, :, None])[:, 0]
        torch.testing.assert_close(together[row], alone, rtol=0, atol=1e-12)
