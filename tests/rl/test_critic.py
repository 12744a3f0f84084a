"""The self-critique rubric reward's guards, with scripted critics (the tests are about the scoring, not a
model): a critic that prefers the longer answer is caught by the prescriptive-rubric audit, a rubric-following
one passes; asking every pair in both orders cancels a position bias that one-order judging shows."""

from __future__ import annotations

import asyncio
import re

import pytest

from openk2.chat import Message
from openk2.chat.critic_format import judging_messages
from openk2.llm import ChatRequest, SamplingParams
from openk2.rl.critic import judge_pair, rubric_for, win_rates
from openk2.rl.critic_audit import PRESCRIPTIVE_PAIRS, audit_critic
from tests.gym.scripted import ScriptedLLM

GREEDY = SamplingParams(temperature=0.0, max_tokens=8)
RESPONSES = re.compile(r"# Response A\n(?P<a>.*?)\n\n# Response B\n(?P<b>.*?)\n\n", re.S)
PRAISE = ("question", "curiosity", "ideal because", "best possible", "precisely and completely")


def _pair(request: ChatRequest) -> tuple[str, str]:
    found = RESPONSES.search(request.messages[-1].text)
    assert found is not None, request.messages[-1].text
    return found["a"], found["b"]


def longer_wins(request: ChatRequest) -> str:
    a, b = _pair(request)
    return f"Verdict: {'A' if len(a) >= len(b) else 'B'}"


def rubric_follower(request: ChatRequest) -> str:
    """Applies App. F.2: an answer that praises the question or justifies itself loses."""
    a, _ = _pair(request)
    padded_a = any(word in a for word in PRAISE)
    return f"Verdict: {'B' if padded_a else 'A'}"


def test_a_length_preferring_critic_fails_the_prescriptive_audit() -> None:
    audit = asyncio.run(audit_critic(ScriptedLLM(longer_wins), GREEDY))
    assert audit.prescriptive_agreement == 0.0 and not audit.passed
    honest = asyncio.run(audit_critic(ScriptedLLM(rubric_follower), GREEDY))
    assert honest.prescriptive_agreement == 1.0 and honest.passed
    assert all(len(pair.padded) > len(pair.clean) for pair in PRESCRIPTIVE_PAIRS)  # the fixture's premise


def always_first(request: ChatRequest) -> str:
    return "Verdict: A"


def biased_toward_first(request: ChatRequest) -> str:
    """Prefers the answer holding '42'; but when that answer is second, says A anyway unless it is 'B: 42'."""
    a, b = _pair(request)
    if "42" in a:
        return "Verdict: A"
    return "Verdict: B" if b.startswith("42") else "Verdict: A"


PROMPT = [Message(role="user", content="What is 6 times 7?")]
REPLIES = ["It is 42.", "43", "42", "Maybe 40."]


def test_order_swapping_cancels_a_position_bias() -> None:
    rubric = rubric_for([])
    # one order only, the measured position bias: the first response wins every time
    first_only = ScriptedLLM(always_first)
    audit = asyncio.run(audit_critic(first_only, GREEDY))
    assert audit.position_bias == 1.0
    # both orders: every pair splits, every sample's win rate is exactly one half whatever the order
    rates, _ = asyncio.run(win_rates(first_only, PROMPT, REPLIES, rubric, GREEDY))
    assert rates == [0.5] * len(REPLIES)

    # a critic with a real preference and a position bias: both-order win rates do not depend on the order
    # in which the samples are listed, and the right answers rank above the wrong ones
    critic = ScriptedLLM(biased_toward_first)
    rates, _ = asyncio.run(win_rates(critic, PROMPT, REPLIES, rubric, GREEDY))
    reversed_rates, _ = asyncio.run(win_rates(critic, PROMPT, REPLIES[::-1], rubric, GREEDY))
    assert rates == reversed_rates[::-1]
    assert min(rates[0], rates[2]) > max(rates[1], rates[3])
    # one order only, the same critic would rank by position: the first-listed wrong answer beats '42'
    one_order = critic.chat(judging_messages(PROMPT, REPLIES[1], REPLIES[0], rubric), None, GREEDY)
    assert one_order.message.text == "Verdict: A"


def test_ties_and_split_verdicts_count_half_and_a_failed_call_is_no_score() -> None:
    def unreadable(request: ChatRequest) -> str:
        return "I cannot decide."

    judgement = asyncio.run(judge_pair(ScriptedLLM(unreadable), PROMPT, "42", "43", rubric_for([]), GREEDY))
    assert (judgement.first, judgement.swapped, judgement.score) == (None, None, 0.5)

    def broken(request: ChatRequest) -> str:
        raise RuntimeError("server went away")

    rates, judgements = asyncio.run(
        win_rates(ScriptedLLM(broken), PROMPT, ["42", "43"], rubric_for([]), GREEDY)
    )
    assert (
        rates == [None, None]
        and judgements[0].error is not None
        and "server went away" in judgements[0].error
    )


@pytest.mark.parametrize(("first", "swapped", "score"), [("A", "B", 1.0), ("B", "A", 0.0), ("A", "A", 0.5)])
def test_pairwise_scores(first: str, swapped: str, score: float) -> None:
    def script(request: ChatRequest) -> str:  # the two orders are asked concurrently: answer by content
        return f"Verdict: {first if _pair(request)[0] == 'x' else swapped}"

    critic = ScriptedLLM(script)
    judgement = asyncio.run(judge_pair(critic, PROMPT, "x", "y", rubric_for([]), GREEDY))
    assert judgement.score == score
