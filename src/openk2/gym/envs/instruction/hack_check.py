"""The hack-check layer (K2 report §3.2.1, hybrid rule verification, part 3): a reply that *claims*
compliance without complying is caught, even where the rules themselves would not look.

Two kinds of claims are checked against the reply itself:
  - counts it states about itself ("I used exactly 3 bullet points", "in 4 paragraphs", "50 words")
    are recounted;
  - blanket claims ("all constraints are met", "I followed every instruction", "no commas",
    "all lowercase") are held against the rule checks and the text.
"""

from __future__ import annotations

import re
from typing import Any

from openk2.gym.envs.instruction.constraints import (
    PLACEHOLDER,
    bullet_points,
    divided_paragraphs,
    highlighted_sections,
    sections,
    sentences,
    words,
)
from openk2.gym.verifiers import Verdict

NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20,
}  # fmt: skip
NUMBER = rf"(\d+|{'|'.join(NUMBER_WORDS)})"
UNITS = {
    "bullet": lambda text: bullet_points(text),
    "paragraph": lambda text: max(len(divided_paragraphs(text)), len(re.split(r"\n\s*\n", text.strip()))),
    "sentence": lambda text: len(sentences(text)),
    "word": lambda text: len(words(text)),
    "section": lambda text: max(len(sections(text, "SECTION")), len(sections(text, "PART"))),
    "highlight": lambda text: highlighted_sections(text),
    "placeholder": lambda text: len(PLACEHOLDER.findall(text)),
}
QUALIFIER = r"(?:exactly|only|precisely|just)"
# "I used exactly 3 bullet points", "this answer has five paragraphs", "in exactly 50 words"
COUNT_CLAIM = re.compile(
    rf"(?:\bI(?:'ve| have)?\s+(?:used|written|wrote|included|provided|made|listed|given)\s+(?:{QUALIFIER}\s+)?|"
    rf"\b(?:this|the|my)\s+(?:response|answer|reply|text)\s+(?:has|contains|uses|includes)\s+(?:{QUALIFIER}\s+)?|"
    rf"\b(?:in|with)\s+{QUALIFIER}\s+){NUMBER}\s+"
    rf"(bullet(?:\s+points?)?|bullets|paragraphs?|sentences?|words?|sections?|highlighted\s+sections?|highlights?|placeholders?)\b",
    re.IGNORECASE,
)
BLANKET_CLAIM = re.compile(
    r"\b(?:all|every)\s+(?:the\s+)?(?:constraints|instructions|requirements|rules)\s+(?:are|were|have been)\s+"
    r"(?:met|satisfied|followed|fulfilled)|\bI\s+(?:have\s+)?(?:followed|satisfied|met|fulfilled)\s+"
    r"(?:all|every)\b|\bfully\s+compliant\b|\bcomplies\s+with\s+all\b",
    re.IGNORECASE,
)
NO_COMMA_CLAIM = re.compile(r"\b(?:no|without(?:\s+any)?)\s+commas\b", re.IGNORECASE)
LOWERCASE_CLAIM = re.compile(r"\ball\s+(?:in\s+)?lower\s*case\b", re.IGNORECASE)


def _unit(label: str) -> str:
    label = label.casefold()
    return next(unit for unit in UNITS if label.startswith(unit[:5]))


def hack_check(reply: str, failed_rules: list[str]) -> Verdict:
    """0 when the reply states something about itself that is false, else 1."""
    false_claims: list[dict[str, Any]] = []
    for match in COUNT_CLAIM.finditer(reply):
        number, label = match.group(1).casefold(), match.group(2)
        claimed = int(number) if number.isdigit() else NUMBER_WORDS[number]
        actual = UNITS[_unit(label)](reply)
        if claimed != actual:
            false_claims.append({"claim": match.group(0), "claimed": claimed, "actual": actual})
    refuted: dict[re.Pattern[str], str | bool] = {
        BLANKET_CLAIM: bool(failed_rules) and f"failed: {', '.join(failed_rules)}",
        NO_COMMA_CLAIM: "," in reply and f"{reply.count(',')} commas",
        LOWERCASE_CLAIM: reply != reply.lower() and "has capital letters",
    }
    for claim, refutation in refuted.items():
        found = claim.search(reply)
        if found and refutation:
            false_claims.append({"claim": found.group(0), "actual": refutation})
    return Verdict(0.0 if false_claims else 1.0, {"false_claims": false_claims})
