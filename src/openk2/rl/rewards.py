"""Each sample's RL reward from its components (K2 report §3.2): verified, self-critiqued, over budget.

    r = w_verifiable · (the gym's reward, verifiable prompts)
      + w_critic · (the win rate among its group, open-ended prompts)
      − budget_penalty   if the reply hit its task kind's token budget and was cut there

A truncated reply is still verified as it stands and then pays the penalty, so a right answer that rambled
on is worth less than a right answer that stopped. A reward that errored (a verifier crashed or timed out,
the episode's model or environment failed, the critic's call failed) is no reward: the sample is logged
with the error and left out of its group's mean and of the loss, never counted as a 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from openk2.chat import Message
from openk2.chat.critic_format import Criterion
from openk2.gym import RubricItem, Trajectory
from openk2.llm import LLM, SamplingParams
from openk2.rl.critic import CORRECTNESS, Judgement, judge_pair, rubric_for, verified_pairs, win_rates
from openk2.rl.recipe import RLSection
from openk2.rl.rollouts import GroupRecord


@dataclass
class ScoredSample:
    trajectory: Trajectory
    group_id: str
    env: str
    reward: float | None  # None: excluded (`error` says why)
    components: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def budget_exceeded(self) -> bool:
        return self.trajectory.termination == "budget_exceeded"


@dataclass
class CriticPair:
    """A closed-loop judgement: the verified-better reply against the verified-worse one."""

    group_id: str
    prompt: list[Message]
    better: int  # sample indices within the group
    worse: int
    better_reply: str
    worse_reply: str
    rubric: list[Criterion]
    judgement: Judgement


@dataclass
class GroupScores:
    samples: list[ScoredSample]
    pairs: list[CriticPair]  # closed-loop pairs of verifiable groups


def reply_text(trajectory: Trajectory) -> str:
    replies = [message for message in trajectory.messages if message.role == "assistant"]
    return replies[-1].text if replies else ""


def _error_of(trajectory: Trajectory) -> str | None:
    if trajectory.error is not None:
        return trajectory.error
    failed = [component for component in trajectory.rewards if component.error is not None]
    if failed:
        return f"{failed[0].name}: {failed[0].error}"
    if trajectory.reward is None:
        return "no reward"
    return None


async def score_group(
    group: GroupRecord,
    rl: RLSection,
    critic: LLM,
    critic_sampling: SamplingParams,
    extra_rubric: Sequence[RubricItem],
) -> GroupScores:
    weights = rl.rewards
    task = group.task
    open_ended = task.kind == "open_ended"
    samples = [
        ScoredSample(trajectory, group.group_id, task.env, None, error=_error_of(trajectory))
        for trajectory in group.trajectories
    ]
    pairs: list[CriticPair] = []
    if open_ended:
        usable = [index for index, sample in enumerate(samples) if sample.error is None]
        rates, _ = await win_rates(
            critic,
            task.messages,
            [reply_text(samples[index].trajectory) for index in usable],
            rubric_for(task.rubric, extra_rubric),
            critic_sampling,
        )
        for index, rate in zip(usable, rates, strict=True):
            if rate is None:
                samples[index].error = "critic: a pairwise judgement failed"
            else:
                samples[index].components["critic"] = rate
    else:
        outcomes = [s.trajectory.reward if s.error is None else None for s in samples]
        for sample, outcome in zip(samples, outcomes, strict=True):
            if outcome is not None:
                sample.components["verifiable"] = outcome
        rubric = rubric_for([*task.rubric, CORRECTNESS], extra_rubric)
        chosen = verified_pairs(outcomes, rl.critic.verified_pairs_per_group)
        judgements = await asyncio.gather(
            *(
                judge_pair(
                    critic,
                    task.messages,
                    reply_text(samples[better].trajectory),
                    reply_text(samples[worse].trajectory),
                    rubric,
                    critic_sampling,
                )
                for better, worse in chosen
            )
        )
        for (better, worse), judgement in zip(chosen, judgements, strict=True):
            pairs.append(
                CriticPair(
                    group.group_id,
                    list(task.messages),
                    better,
                    worse,
                    reply_text(samples[better].trajectory),
                    reply_text(samples[worse].trajectory),
                    rubric,
                    judgement,
                )
            )
    for sample in samples:
        if sample.error is not None:
            continue
        reward = weights.verifiable * sample.components.get("verifiable", 0.0)
        reward += weights.critic * sample.components.get("critic", 0.0)
        if sample.budget_exceeded:
            sample.components["budget_penalty"] = -weights.budget_penalty
            reward -= weights.budget_penalty
        sample.reward = reward
    return GroupScores(samples, pairs)
