"""The critic's judging format, shared by SFT (which teaches it) and RL (which asks it)."""

from __future__ import annotations

import pytest

from openk2.chat.critic_format import (
    DEFAULT_RUBRIC,
    RubricCriterion,
    both_orders,
    judging_messages,
    pairwise_score,
    parse_verdict,
)
from openk2.gym import RubricItem


def test_judging_messages_lay_out_rubric_conversation_and_both_responses() -> None:
    prompt = [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "2C"},
    ]
    rubric = [RubricItem(name="grounded", description="Uses the tool result.", kind="task")]
    system, user = judging_messages(prompt, "It is 2C.", "It is warm.", rubric)
    assert system.role == "system" and user.role == "user"
    text = user.text
    sections = ["# Rubric\n- grounded: Uses the tool result.", "# Conversation\n[user]\nWeather in Oslo?"]
    sections += ['(calls get_weather with {"city": "Oslo"})', "[tool]\n2C", "# Response A\nIt is 2C."]
    sections += ["# Response B\nIt is warm.", "Verdict: A` or `Verdict: B`"]
    positions = [text.index(section) for section in sections]
    assert positions == sorted(positions)


def test_both_orders_put_the_preferred_response_first_then_second_with_matching_verdicts() -> None:
    first, swapped = both_orders("Name a prime.", "7", "9")
    assert "# Response A\n7\n\n# Response B\n9" in first[1].text and first[2].text == "Verdict: A"
    assert "# Response A\n9\n\n# Response B\n7" in swapped[1].text and swapped[2].text == "Verdict: B"
    assert all(f"- {criterion.name}: " in first[1].text for criterion in DEFAULT_RUBRIC)


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("Verdict: A", "A"),
        ("B is clearer.\nVerdict: B\n", "B"),
        ("Verdict: A\nOn reflection:\nVerdict: B", "B"),
        ("The verdict: A is better", None),
        ("Verdict: C", None),
        ("", None),
    ],
)
def test_parse_verdict_reads_the_last_verdict_line(reply: str, verdict: str | None) -> None:
    assert parse_verdict(reply) == verdict


def test_pairwise_score_cancels_a_critic_that_always_prefers_one_position() -> None:
    assert pairwise_score("A", "B") == 1.0 and pairwise_score("B", "A") == 0.0
    assert pairwise_score("A", "A") == pairwise_score("B", "B") == 0.5
    assert pairwise_score(None, "B") == 0.75


def test_a_judgement_needs_a_rubric() -> None:
    with pytest.raises(ValueError, match="rubric: a judgement needs at least one criterion"):
        judging_messages("Q", "a", "b", [])
    assert "- x: y" in judging_messages("Q", "a", "b", [RubricCriterion("x", "y")])[1].text
