"""The LLM judge of fidelity verification: how well a rewrite keeps its source's meaning, 1-5 with a reason.

K2 report §2.2 compares "the semantic alignment of each rephrased passage with its source" before
training and gives neither the metric nor the threshold; a 1-5 score from a judge model is ours.
"""

import re
from dataclasses import dataclass

from openk2.llm import SamplingParams

JUDGE_SAMPLING = SamplingParams(temperature=0.0, max_tokens=96)  # a verdict is two short lines
_SCORE = re.compile(r"score\**\s*[:=]?\s*\**\s*([1-5])\b", re.IGNORECASE)
_REASON = re.compile(r"reason\**\s*[:=]\s*\**\s*(.+)", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Verdict:
    score: int | None  # None: the judge's reply held no score (counted as a failure)
    reason: str


def parse_verdict(reply: str) -> Verdict:
    """'Score: 4\\nReason: ...' in any case, with markdown bold or '=' tolerated."""
    score = _SCORE.search(reply)
    if score is None:
        return Verdict(None, f"no score in the judge's reply: {reply.strip()[:200]!r}")
    reason = _REASON.search(reply, score.end())
    reason_lines = reason.group(1).strip().splitlines() if reason else []
    return Verdict(int(score.group(1)), reason_lines[0] if reason_lines else "")
