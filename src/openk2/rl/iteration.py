"""An iteration's data: new groups drawn, every episode rolled out (or continued), rewards and critic.

    draw G prompts ─> K episodes each (+ the paused episodes of earlier iterations)
        ─rollouts.py─> complete groups (logged) + paused episodes (kept for the next iteration)
        ─rewards.py──> a reward per sample (verified, self-critiqued, budget penalty) or an error
        ─samples.py──> token ids, sampled-token mask, π_old's log-probs, temperature

Under torchrun every rank draws all G prompts (so the sampler stays identical on every rank) and rolls out
groups r, r + w, ...: its own share, with the seeds the one-process run gives those groups.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from tokenizers import Tokenizer

from openk2.gym import RubricItem
from openk2.llm import LLM, SamplingParams
from openk2.rl.episodes import EpisodeState
from openk2.rl.recipe import RLSection
from openk2.rl.rewards import CriticPair, ScoredSample, score_group
from openk2.rl.rollouts import GroupRecord, RolloutPhase, run_rollouts
from openk2.rl.samples import TrainingSample, retokenised, token_exact
from openk2.rl.tasks import TaskPool, TaskSampler
from openk2.train.world import World


@dataclass
class IterationData:
    groups: list[GroupRecord]  # this rank's complete groups, by id
    scored: list[ScoredSample]  # every sample of them, excluded ones too
    samples: list[TrainingSample]  # the trainable ones
    pairs: list[CriticPair]  # closed-loop critic judgements
    phase: RolloutPhase


def sampling_seed(seed: int, episode_id: str) -> int:
    digest = hashlib.sha256(f"{seed}\x1f{episode_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**63


def group_id(iteration: int, index: int) -> str:
    return f"i{iteration:05d}-g{index:03d}"


def new_episodes(
    sampler: TaskSampler, rl: RLSection, iteration: int, temperature: float, world: World, token_level: bool
) -> list[EpisodeState]:
    """This rank's K episodes of each of its groups among the iteration's G new prompts."""
    episodes = []
    for index in range(rl.groups_per_iteration):
        source, task = sampler.draw()
        if index % world.world_size != world.rank:
            continue
        group = group_id(iteration, index)
        for sample in range(rl.samples_per_group):
            episode = f"{group}#{sample}"
            sampling = SamplingParams(
                temperature=temperature,
                max_tokens=task.budget,
                seed=sampling_seed(rl.seed, episode),
                return_tokens=token_level,
            )
            episodes.append(EpisodeState(id=episode, group_id=group, source=source, task=task,
                                         sampling=sampling, start_iteration=iteration))  # fmt: skip
    return episodes


def collect(
    episodes: list[EpisodeState],
    reused: dict[str, GroupRecord],
    llm_for: Callable[[EpisodeState], LLM],
    critic: LLM,
    pools: list[TaskPool],
    rl: RLSection,
    *,
    iteration: int,
    world: World,
    on_group: Callable[[GroupRecord], None],
    extra_rubric: list[RubricItem],
    tokenizer: Tokenizer | None,
) -> IterationData:
    """Roll out the episodes whose group was not logged before a restart, then score every group.

    `tokenizer`: re-tokenise the messages (an endpoint policy); None: train on the kept token spans.
    """
    to_run = [episode for episode in episodes if episode.group_id not in reused]
    phase = asyncio.run(
        run_rollouts(
            to_run,
            llm_for,
            pools,
            iteration=iteration,
            rank=world.rank,
            max_turns=rl.max_turns,
            max_concurrency=rl.max_concurrency,
            on_group=on_group,
        )
    )
    phase.reused = len(reused)
    groups = sorted([*phase.groups, *reused.values()], key=lambda record: record.group_id)
    critic_sampling = SamplingParams(
        temperature=rl.critic.temperature,
        max_tokens=rl.critic.max_tokens,
        seed=sampling_seed(rl.seed, "critic"),
    )

    async def score_all() -> list:  # type: ignore[type-arg]
        return await asyncio.gather(
            *(score_group(group, rl, critic, critic_sampling, extra_rubric) for group in groups)
        )

    scores = asyncio.run(score_all()) if groups else []
    scored = [sample for score in scores for sample in score.samples]
    pairs = [pair for score in scores for pair in score.pairs]
    usable = [sample for sample in scored if sample.reward is not None]
    samples = [token_exact(s) if tokenizer is None else retokenised(s, tokenizer) for s in usable]
    return IterationData(groups, scored, samples, pairs, phase)
