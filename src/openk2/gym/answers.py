"""Where a reply states its final answer: `<answer>…</answer>`, `\\boxed{…}`, or a last "Answer:" line.

The last marker wins (models restate). A reply without any marker is its own answer, so a reference
answer stored as `task.verification["answer"]` scores 1 when sent as the whole reply. An opened but
unclosed marker is malformed, and says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
ANSWER_LINE = re.compile(r"(?:^|\n)\s*\**(?:final answer|answer)\**\s*[:：]\s*\**", re.IGNORECASE)
BOXED = "\\boxed{"


@dataclass(frozen=True)
class Extracted:
    answer: str | None  # None: malformed, see `problem`
    marker: str  # "answer tag", "boxed", "answer line", "whole reply"
    problem: str | None = None


def boxed_contents(text: str) -> list[str] | None:
    """The contents of every `\\boxed{...}` (nested braces kept); None when one is never closed."""
    found = []
    start = text.find(BOXED)
    while start != -1:
        depth, position = 1, start + len(BOXED)
        while position < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[position], 0)
            position += 1
        if depth:
            return None
        found.append(text[start + len(BOXED) : position - 1])
        start = text.find(BOXED, position)
    return found


def extract_answer(reply: str) -> Extracted:
    """The final answer of a reply, and which marker gave it."""
    text = reply.strip()
    tags = ANSWER_TAG.findall(text)
    if tags:
        return Extracted(tags[-1].strip(), "answer tag")
    if "<answer>" in text:
        return Extracted(None, "answer tag", "an <answer> tag is never closed")
    boxes = boxed_contents(text)
    if boxes is None:
        return Extracted(None, "boxed", "a \\boxed{ is never closed")
    if boxes:
        return Extracted(boxes[-1].strip(), "boxed")
    lines = list(ANSWER_LINE.finditer(text))
    if lines:
        return Extracted(text[lines[-1].end() :].strip().rstrip("*").strip(), "answer line")
    if not text:
        return Extracted(None, "whole reply", "the reply is empty")
    return Extracted(text, "whole reply")
