"""Rewards of a group: a verifier that errored excludes its sample (logged with the error, left out of the
group mean and of the loss, never a 0); a reply cut at its budget pays the budget penalty. The group is fed
as a logged, message-level group (re-tokenised), so no model runs: the test is about the scoring."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from openk2.chat import Message
from openk2.gym import RewardComponent, Task, Trajectory
from openk2.gym.records import MessageMeta
from openk2.llm import SamplingParams
from openk2.rl.iteration import IterationData, collect
from openk2.rl.losses import GroupedRewards
from openk2.rl.recipe import RLSection
from openk2.rl.rollouts import GroupRecord
from openk2.tokenizer import load_tokenizer
from openk2.train.world import World
from tests.gym.scripted import fixed

TASK = Task(
    id="t0", env="logic", kind="logic", split="train", messages=[Message(role="user", content="Reverse 123")],
    verification={"answer": "321", "check": "exact"},
)  # fmt: skip


def trajectory(index: int, reply: str, score: float | None, termination: str = "agent_stop") -> Trajectory:
    component = (
        RewardComponent(name="exact", score=score)
        if score is not None
        else RewardComponent(name="exact", error="TimeoutError: the verifier took over 10 s")
    )
    return Trajectory(
        id=f"g#{index}",
        task_id=TASK.id,
        env="logic",
        group_id="g",
        messages=[*TASK.messages, Message(role="assistant", content=reply)],
        meta=[MessageMeta(author="dataset"), MessageMeta(author="policy", sampled=True)],
        sampling=SamplingParams(temperature=1.2, max_tokens=8),
        termination=termination,  # type: ignore[arg-type]
        rewards=[component],
        reward=score,
    )


def scored(group: GroupRecord, budget_penalty: float, checkpoint: Path) -> IterationData:
    """The group as a logged one of iteration 1, scored and re-tokenised (nothing is sampled)."""
    rl = RLSection.model_validate(
        dict(
            tasks=[dict(env="logic")],
            rewards=dict(budget_penalty=budget_penalty),
            critic=dict(verified_pairs_per_group=0),
        )
    )
    return collect(
        [], {"g": group}, lambda episode: fixed("unused"), fixed("unused"), [], rl,
        iteration=1, world=World(rank=0, world_size=1), on_group=lambda record: None,
        extra_rubric=[], tokenizer=load_tokenizer(checkpoint / "tokenizer.json"),
    )  # fmt: skip


def test_an_errored_reward_is_excluded_not_zero_and_a_truncated_reply_pays(
    pretrained_checkpoint: Path,
) -> None:
    group = GroupRecord(
        iteration=1,
        rank=0,
        group_id="g",
        source=0,
        task=TASK,
        trajectories=[
            trajectory(0, "321", 1.0),
            trajectory(1, "312", 0.0),
            trajectory(2, "321", None),  # the verifier timed out
            trajectory(3, "321 and then some", 1.0, termination="budget_exceeded"),
        ],
    )
    data = scored(group, 0.5, pretrained_checkpoint)
    assert [s.reward for s in data.scored] == [1.0, 0.0, None, 0.5]
    assert data.scored[2].error is not None and "exact: TimeoutError" in data.scored[2].error
    assert data.scored[3].components == {"verifiable": 1.0, "budget_penalty": -0.5}
    assert [s.reward for s in data.samples] == [1.0, 0.0, 0.5]  # the errored sample is not trained on
    grouped = GroupedRewards.of(
        torch.tensor([s.reward for s in data.samples]), torch.zeros(len(data.samples), dtype=torch.long)
    )
    mean = (1.0 + 0.0 + 0.5) / 3  # over the three rewards; with the error as 0 it would be 0.375
    torch.testing.assert_close(grouped.centred, torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64) - mean)
    assert data.samples[0].old_logprobs is None  # message-level: π_old comes from the trainer's forward


@pytest.mark.parametrize("penalty", [0.0, 0.25])
def test_the_budget_penalty_is_the_recipe_weight(penalty: float, pretrained_checkpoint: Path) -> None:
    group = GroupRecord(
        iteration=1, rank=0, group_id="g", source=0, task=TASK,
        trajectories=[trajectory(0, "321", 1.0, termination="budget_exceeded"), trajectory(1, "1", 0.0)],
    )  # fmt: skip
    data = scored(group, penalty, pretrained_checkpoint)
    assert [s.reward for s in data.scored] == [1.0 - penalty, 0.0]
