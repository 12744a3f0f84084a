"""The `preference` data kind: the critic's bootstrap (K2 report §3.2.2).

A record (prompt, chosen, rejected, rubric) becomes two judging conversations in the critic's format
(`openk2.chat.critic_format`): chosen as response A with the verdict A, and the pair swapped with the verdict B,
so that SFT never teaches a preference for a position.

    {"id": "p1", "prompt": "Name a prime.", "chosen": "7.", "rejected": "Great question! 9.",
     "rubric": [{"name": "correct", "description": "The answer is right."}]}

`prompt` is a user message's text or the OpenAI messages being answered; without `rubric` the critic judges by
K2's core and prescriptive rubrics.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from openk2.chat import Message
from openk2.chat.critic_format import DEFAULT_RUBRIC, both_orders
from openk2.gym import RubricItem


class PreferenceRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    prompt: str | list[Message] = Field(min_length=1)
    chosen: str = Field(min_length=1)
    rejected: str = Field(min_length=1)
    rubric: list[RubricItem] = Field(default_factory=list)


def preference_conversations(record: PreferenceRecord) -> tuple[list[Message], list[Message]]:
    """The pair judged in both orders: chosen as A (verdict A), then chosen as B (verdict B)."""
    return both_orders(record.prompt, record.chosen, record.rejected, record.rubric or DEFAULT_RUBRIC)
