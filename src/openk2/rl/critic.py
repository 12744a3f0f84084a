"""The self-critique rubric reward (K2 report §3.2.2, App. F): the policy judges pairs of its own samples.

For an open-ended prompt the K samples are compared pairwise by the policy acting as critic, in the judging
format SFT taught it (`openk2.chat.critic_format`), against the core rubrics (App. F.1: clarity and
relevance, conversational fluency, objective and grounded interaction), the prescriptive rubrics (App. F.2:
no initial praise, no self-justification) and the task's own rubric items.

Scores. Every pair (i, j) is asked in both orders, i as A and then i as B; `pairwise_score` turns the two
verdicts into i's score over j: 1 won both, 0 lost both, 0.5 a split (the same letter twice: a position
preference, or an order-inconsistent judgement) and 0.5 for each side of an unreadable verdict. Sample i's
reward is its mean score over the K − 1 others, its win rate, in [0, 1]. A critic call that fails (not a bad
verdict: the model or the server raised) leaves the pair without a score, and both samples' win rates are
errors, excluded from the group like any reward that errored.

Closed-loop refinement (§3.2.2): on verifiable prompts the critic also judges pairs whose verified outcomes
differ. Its score of the verified-better reply over the other is the critic's agreement with the verifier
(1 agrees in both orders, 0.5 split, 0 disagrees), and every such pair becomes a preference record
(`{prompt, chosen, rejected, rubric}`, what `openk2 sft`'s `preference` kind reads), chosen by the verifier:
training the critic on them carries the verifiable signal into its judgement of open-ended answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from openk2.chat import Message
from openk2.chat.critic_format import (
    DEFAULT_RUBRIC,
    Criterion,
    RubricCriterion,
    judging_messages,
    pairwise_score,
    parse_verdict,
)
from openk2.llm import LLM, SamplingParams, chat_request

CORE_RUBRIC: tuple[Criterion, ...] = DEFAULT_RUBRIC[:3]  # App. F.1
PRESCRIPTIVE_RUBRIC: tuple[Criterion, ...] = DEFAULT_RUBRIC[3:]  # App. F.2
CORRECTNESS = RubricCriterion("correct", "The final answer is correct; a wrong answer loses to a right one.")


@dataclass(frozen=True)
class Judgement:
    """One pair in both orders: the verdict with the first reply as A, then with it as B."""

    first: str | None  # "A" / "B" / None (unreadable)
    swapped: str | None
    error: str | None = None  # the critic call itself failed

    @property
    def score(self) -> float | None:
        """The first reply's score over the second (`pairwise_score`); None when a call failed."""
        if self.error is not None:
            return None
        return pairwise_score(self.first, self.swapped)  # type: ignore[arg-type]


async def _verdict(critic: LLM, messages: list[Message], sampling: SamplingParams) -> str | None:
    completion = await critic.achat(chat_request(messages, None, sampling))
    return parse_verdict(completion.message.text)


async def judge_pair(
    critic: LLM,
    prompt: Sequence[Message],
    first: str,
    second: str,
    rubric: Sequence[Criterion],
    sampling: SamplingParams,
) -> Judgement:
    """The critic's verdicts on (first, second) and on the swapped pair, asked concurrently."""
    try:
        verdicts = await asyncio.gather(
            _verdict(critic, judging_messages(list(prompt), first, second, rubric), sampling),
            _verdict(critic, judging_messages(list(prompt), second, first, rubric), sampling),
        )
    except Exception as failure:  # the critic model or its server failed: no score, never a guess
        return Judgement(None, None, f"{type(failure).__name__}: {failure}")
    return Judgement(*verdicts)


async def win_rates(
    critic: LLM,
    prompt: Sequence[Message],
    replies: Sequence[str],
    rubric: Sequence[Criterion],
    sampling: SamplingParams,
) -> tuple[list[float | None], list[Judgement]]:
    """Each reply's mean pairwise score over the others (None: a judgement of it failed), and the pairs'
    judgements in `combinations` order."""
    pairs = list(combinations(range(len(replies)), 2))
    judgements = await asyncio.gather(
        *(judge_pair(critic, prompt, replies[i], replies[j], rubric, sampling) for i, j in pairs)
    )
    totals = [0.0] * len(replies)
    failed = [False] * len(replies)
    for (i, j), judgement in zip(pairs, judgements, strict=True):
        score = judgement.score
        if score is None:
            failed[i] = failed[j] = True
            continue
        totals[i] += score
        totals[j] += 1.0 - score
    others = max(len(replies) - 1, 1)
    rates = [None if failed[index] else totals[index] / others for index in range(len(replies))]
    return rates, list(judgements)


def rubric_for(task_rubric: Sequence[Criterion], extra: Sequence[Criterion] = ()) -> list[Criterion]:
    """Core, prescriptive, then the task's and the recipe's own criteria."""
    return [*CORE_RUBRIC, *PRESCRIPTIVE_RUBRIC, *task_rubric, *extra]


def verified_pairs(outcomes: Sequence[float | None], limit: int) -> list[tuple[int, int]]:
    """Up to `limit` (better, worse) index pairs whose verified rewards differ, best-versus-worst first."""
    scored = sorted(
        (index for index, outcome in enumerate(outcomes) if outcome is not None),
        key=lambda index: -(outcomes[index] or 0.0),
    )
    pairs = [
        (better, worse)
        for better, worse in combinations(scored, 2)
        if (outcomes[better] or 0.0) > (outcomes[worse] or 0.0)
    ]
    pairs.sort(key=lambda pair: -((outcomes[pair[0]] or 0.0) - (outcomes[pair[1]] or 0.0)))
    return pairs[:limit]
