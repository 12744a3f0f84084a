"""The critic's pairwise judging conversation (K2 report §3.2.2): a prompt, two responses, a rubric → a verdict.

K2's critic "ranks all results by performing pairwise evaluations" against core, prescriptive and task
rubrics, and SFT on preference data gives it that ability before RL starts. Both stages must speak the same
format, so it lives here, once: SFT renders (prompt, chosen, rejected, rubric) with `judging_conversation`,
RL asks the critic with `judging_messages` and reads its reply with `parse_verdict`.

    system     CRITIC_SYSTEM_PROMPT
    user       # Rubric / # Conversation / # Response A / # Response B / the question
    assistant  Verdict: A        (or B)

A model prefers one position more often than chance (position bias). Every pair is therefore judged in both
orders, A/B swapped: SFT trains on both (`both_orders`), RL asks both and averages (`pairwise_score`), so a
critic that always answers "A" scores every pair 0.5.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from openk2.chat.messages import Message, validate_messages

Verdict = Literal["A", "B"]

CRITIC_SYSTEM_PROMPT = (
    "You are a critic. You compare two responses to the same conversation against a rubric and decide "
    "which one is better. End your reply with a line `Verdict: A` or `Verdict: B`."
)
JUDGING_QUESTION = "Which response better satisfies the rubric? Answer with `Verdict: A` or `Verdict: B`."
_VERDICT_LINE = re.compile(r"^\s*Verdict:\s*([AB])\s*$", re.MULTILINE)


class Criterion(Protocol):
    """One rubric criterion; `openk2.gym.RubricItem` is one."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...


@dataclass(frozen=True)
class RubricCriterion:
    name: str
    description: str


# K2 report App. F.1 (core) and F.2 (prescriptive), in our words: the rubric when a record brings none.
DEFAULT_RUBRIC: tuple[RubricCriterion, ...] = (
    RubricCriterion(
        "clarity_and_relevance",
        "Answers what was asked, concisely and completely; no padding or needless lists; one clear answer "
        "when a choice is expected.",
    ),
    RubricCriterion(
        "conversational_fluency",
        "Coherent and engaged; adds insight where it helps; asks follow-up questions only when needed; "
        "fits its tone to the conversation.",
    ),
    RubricCriterion(
        "objective_and_grounded",
        "Neutral and task-focused; no meta-commentary about the question and no flattery.",
    ),
    RubricCriterion(
        "no_initial_praise",
        "Does not open with a compliment to the user or the question.",
    ),
    RubricCriterion(
        "no_self_justification",
        "Does not explain why the response itself is good or how it fulfilled the request.",
    ),
)


def _rubric_text(rubric: Sequence[Criterion]) -> str:
    return "\n".join(f"- {criterion.name}: {criterion.description}" for criterion in rubric)


def _conversation_text(prompt: str | Sequence[Message | Mapping[str, Any]]) -> str:
    """The conversation being answered, one `[role]` block per message (tool calls as their JSON)."""
    if isinstance(prompt, str):
        return f"[user]\n{prompt}"
    blocks = []
    for message in validate_messages(prompt):
        text = message.text
        for call in message.tool_calls or []:
            text += f"\n(calls {call.function.name} with {call.function.arguments})"
        blocks.append(f"[{message.role}]\n{text.strip()}")
    return "\n\n".join(blocks)


def judging_messages(
    prompt: str | Sequence[Message | Mapping[str, Any]],
    response_a: str,
    response_b: str,
    rubric: Sequence[Criterion] = DEFAULT_RUBRIC,
) -> list[Message]:
    """The system and user messages asking the critic to compare response A with response B."""
    if not rubric:
        raise ValueError("rubric: a judgement needs at least one criterion")
    question = (
        f"# Rubric\n{_rubric_text(rubric)}\n\n"
        f"# Conversation\n{_conversation_text(prompt)}\n\n"
        f"# Response A\n{response_a}\n\n"
        f"# Response B\n{response_b}\n\n"
        f"{JUDGING_QUESTION}"
    )
    return [Message(role="system", content=CRITIC_SYSTEM_PROMPT), Message(role="user", content=question)]


def verdict_message(winner: Verdict) -> Message:
    """The critic's reply naming the better response."""
    return Message(role="assistant", content=f"Verdict: {winner}")


def parse_verdict(reply: str) -> Verdict | None:
    """The last `Verdict: A|B` line of a critic's reply; None when there is none."""
    found = _VERDICT_LINE.findall(reply)
    return found[-1] if found else None


def judging_conversation(
    prompt: str | Sequence[Message | Mapping[str, Any]],
    response_a: str,
    response_b: str,
    winner: Verdict,
    rubric: Sequence[Criterion] = DEFAULT_RUBRIC,
) -> list[Message]:
    """A complete judgement, as SFT trains on it."""
    return [*judging_messages(prompt, response_a, response_b, rubric), verdict_message(winner)]


def both_orders(
    prompt: str | Sequence[Message | Mapping[str, Any]],
    preferred: str,
    other: str,
    rubric: Sequence[Criterion] = DEFAULT_RUBRIC,
) -> tuple[list[Message], list[Message]]:
    """The preferred response judged better as A (first) and as B (second, the pair swapped)."""
    return (
        judging_conversation(prompt, preferred, other, "A", rubric),
        judging_conversation(prompt, other, preferred, "B", rubric),
    )


def pairwise_score(first_order: Verdict | None, swapped_order: Verdict | None) -> float:
    """How much response 1 beat response 2, from the verdict with 1 as A and the verdict with 1 as B.

    1.0: won in both orders; 0.0: lost in both; 0.5: a split (position bias) or no usable verdicts.
    An unparsable verdict counts half a win for each side.
    """
    wins = {"A": 1.0, "B": 0.0, None: 0.5}[first_order] + {"A": 0.0, "B": 1.0, None: 0.5}[swapped_order]
    return wins / 2
