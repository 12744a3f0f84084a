"""Deterministic fidelity checks of a rephrased passage against its source (K2 report §2.2).

The report's fidelity verification compares "the semantic alignment of each rephrased passage with its
source" but names no metric; these checks are ours. A rewrite must keep the source's numbers, dates and
capitalised names, stay within a band of the source's length, and not repeat the rephrasing prompt.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from openk2.recipes import RecipeSection

CHECK_NAMES = ("numbers", "dates", "names", "length", "leak", "copy")
LEAK_NGRAM_WORDS = 6  # six words in a row shared with the prompt are a copy, not a coincidence of phrasing
COPY_NGRAM_WORDS = 8  # a rephrasing may keep names and short phrases, but not long runs of the source

Date = tuple[int | None, int | None, int | None]  # (year, month, day); a field the text does not give is None

MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTH_NUMBER = (
    {name: number for number, name in enumerate(MONTHS, 1)}
    | {name[:3]: number for number, name in enumerate(MONTHS, 1)}
    | {"Sept": 9}
)
NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
)  # fmt: skip
# capitalised by grammar, not because they name something
GRAMMAR_WORDS = (
    "The", "A", "An", "In", "On", "At", "Of", "For", "To", "By", "With", "From", "As", "Into", "Over",
    "Under", "After", "Before", "During", "Since", "Until", "Upon", "About", "Around", "Between", "Among",
    "Through", "Despite", "And", "But", "Or", "Nor", "So", "Yet", "If", "When", "While", "Where", "Whereas",
    "Although", "Though", "Because", "Once", "Unless", "However", "Moreover", "Furthermore", "Therefore",
    "Thus", "Hence", "Meanwhile", "Nevertheless", "Instead", "Also", "Still", "Even", "Indeed", "Finally",
    "Later", "Then", "Today", "There", "Here", "It", "Its", "This", "That", "These", "Those", "I", "He",
    "She", "We", "They", "You", "His", "Her", "Our", "Their", "My", "Your", "Some", "Many", "Most", "All",
    "Each", "Every", "Both", "Such", "Other", "Another", "No", "Not", "Only", "What", "Which", "Who", "Whom",
    "Whose", "Why", "How", "Is", "Was", "Are", "Were", "Be",
)  # fmt: skip
NOT_NAMES = frozenset(GRAMMAR_WORDS) | set(MONTH_NUMBER) | set(WEEKDAYS)  # the dates check covers these

_MONTH = "|".join(sorted(MONTH_NUMBER, key=len, reverse=True))  # longest first: "June" before "Jun"
_DAY = r"3[01]|[12]\d|0?[1-9]"
_DATE = re.compile(
    rf"""
      (?<![\w.])(?P<a_day>{_DAY})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<a_month>{_MONTH})\b\.?
          (?:,?\s+(?P<a_year>\d{{3,4}})(?!\d))?                                 # 14 July 1789, 14th of Jul.
    | \b(?P<b_month>{_MONTH})\b\.?\s+(?P<b_day>{_DAY})(?!\d)(?:st|nd|rd|th)?\b
          (?:,?\s+(?P<b_year>\d{{3,4}})(?!\d))?                                 # July 14, 1789
    | \b(?P<c_month>{_MONTH})\b\.?,?\s+(?P<c_year>\d{{3,4}})(?!\d)              # July 1789
    | (?<![\w.])(?P<d_year>\d{{4}})-(?P<d_month>0[1-9]|1[0-2])-(?P<d_day>{_DAY})(?!\d)  # 1789-07-14
    """,
    re.VERBOSE,
)
# a minus counts only when attached and not joining two numbers: "-5" is negative, "10-20" is a range
_NUMBER = re.compile(r"(?<![\w.])([-−]?)(\d{1,3}(?:,\d{3})+(?!\d)|\d+)(\.\d+)?")
# any grouping and decimal marks ("3,5" in German is "3.5" in English): only the digits are compared
_NUMBER_ANY_SEPARATORS = re.compile(r"(?<![\w.,])([-−]?)(\d+(?:[.,]\d+)*)")
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_SENTENCE_BREAK = re.compile(r"[.!?][\"'”’)\]]*\s|\n")


class FidelitySettings(RecipeSection):
    """Which checks a mode runs and their bounds (a prompt file's `[checks]` table, `[rephrase.checks]`)."""

    numbers: bool = Field(default=True, description="every number in the source appears in the rewrite")
    number_separators: Literal["english", "any"] = Field(
        default="english", description="'any' compares digits only, for translation across conventions"
    )
    dates: bool = Field(default=True, description="every date in the source appears in the rewrite")
    names: bool = Field(default=True, description="every capitalised name in the source appears")
    min_length_ratio: float = Field(default=0.5, gt=0, description="rewrite tokens / source tokens, lowest")
    max_length_ratio: float = Field(default=2.0, gt=0, description="rewrite tokens / source tokens, highest")
    max_copied_fraction: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="share of the rewrite's 8-word runs found verbatim in the source, highest (1: any copy)",
    )
    leak_markers: tuple[str, ...] = Field(
        default=(), description="phrases that betray the prompt (case-insensitive) unless the source has them"
    )

    @model_validator(mode="after")
    def _ratio_band_is_ordered(self) -> FidelitySettings:
        if self.min_length_ratio > self.max_length_ratio:
            raise ValueError(
                f"min_length_ratio ({self.min_length_ratio}) must not exceed "
                f"max_length_ratio ({self.max_length_ratio})"
            )
        return self


@dataclass(frozen=True)
class CheckResult:
    name: str  # one of CHECK_NAMES
    passed: bool
    detail: str  # "" when passed, "off" when disabled, else what failed


def source_numbers(text: str) -> set[str]:
    """The numbers a rewrite must keep, normalised ("1,000" -> "1000", "45%" -> "45"); dates excluded."""
    return set(_numbers(text, skip_dates=True))


def source_dates(text: str) -> set[Date]:
    """The dates in `text` as (year, month, day), whatever the English format; a bare year is not a date."""
    return set(_dates(text))


def capitalised_names(text: str) -> set[str]:
    """Capitalised words and runs of them ("Gustave Eiffel", "New York") that are names, not grammar."""
    return set(_names(text))


def check_fidelity(
    source: str,
    rewrite: str,
    settings: FidelitySettings,
    instructions: Sequence[str],
    count_tokens: Callable[[str], int],
) -> list[CheckResult]:
    """One result per check, in CHECK_NAMES order; a disabled check passes with detail "off"."""
    return [
        _check_numbers(source, rewrite, settings.number_separators == "any")
        if settings.numbers
        else CheckResult("numbers", True, "off"),
        _check_dates(source, rewrite) if settings.dates else CheckResult("dates", True, "off"),
        _check_names(source, rewrite) if settings.names else CheckResult("names", True, "off"),
        _check_length(source, rewrite, settings, count_tokens),
        _check_leak(source, rewrite, instructions, settings.leak_markers),
        _check_copy(source, rewrite, settings.max_copied_fraction),
    ]


def _check_numbers(source: str, rewrite: str, any_separators: bool) -> CheckResult:
    spelled = {str(NUMBER_WORDS.index(word)) for word in _plain_words(rewrite) if word in NUMBER_WORDS}
    kept = set(_numbers(rewrite, False, any_separators)) | spelled
    wanted = _numbers(source, True, any_separators)
    return _missing("numbers", [number for number in wanted if number not in kept])


def _check_dates(source: str, rewrite: str) -> CheckResult:
    kept = _dates(rewrite)
    missing = [date for date in _dates(source) if not any(_same_fields(date, other) for other in kept)]
    return _missing("dates", [_format_date(date) for date in missing])


def _check_names(source: str, rewrite: str) -> CheckResult:
    # a name is kept when each of its words is: "Eiffel" alone does not keep "Gustave Eiffel"
    kept = {_without_possessive(word) for word in _WORD.findall(rewrite)}
    return _missing("names", [name for name in _names(source) if not set(name.split()) <= kept])


def _check_length(
    source: str, rewrite: str, settings: FidelitySettings, count_tokens: Callable[[str], int]
) -> CheckResult:
    rewrite_tokens = count_tokens(rewrite) if rewrite.strip() else 0  # whitespace is no rewrite at all
    ratio = rewrite_tokens / max(1, count_tokens(source))
    low, high = settings.min_length_ratio, settings.max_length_ratio
    passed = low <= ratio <= high
    return CheckResult("length", passed, "" if passed else f"ratio {ratio:.2f} outside [{low}, {high}]")


def _check_leak(
    source: str, rewrite: str, instructions: Sequence[str], markers: Sequence[str]
) -> CheckResult:
    leaked = _copied_instruction(source, rewrite, instructions) or _leaked_marker(source, rewrite, markers)
    return CheckResult("leak", leaked is None, "" if leaked is None else f"leaked: {leaked!r}")


def _check_copy(source: str, rewrite: str, max_copied_fraction: float) -> CheckResult:
    """K2 rephrases to avoid repeating text: a rewrite that mostly repeats its source adds no variety."""
    rewrite_ngrams = _ngrams(rewrite, COPY_NGRAM_WORDS)
    if not rewrite_ngrams:
        return CheckResult("copy", True, "")
    source_ngrams = set(_ngrams(source, COPY_NGRAM_WORDS))
    copied = sum(ngram in source_ngrams for ngram in rewrite_ngrams) / len(rewrite_ngrams)
    if copied <= max_copied_fraction:
        return CheckResult("copy", True, "")
    return CheckResult(
        "copy",
        False,
        f"{copied:.0%} of 8-word runs copied from the source (at most {max_copied_fraction:.0%})",
    )


def _copied_instruction(source: str, rewrite: str, instructions: Sequence[str]) -> str | None:
    """The rewrite's first run of six words copied from the instructions and not found in the source."""
    instruction_ngrams = set().union(*(_ngrams(instruction) for instruction in instructions))
    source_ngrams = set(_ngrams(source))
    for ngram in _ngrams(rewrite):
        if ngram in instruction_ngrams and ngram not in source_ngrams:
            return " ".join(ngram)
    return None


def _leaked_marker(source: str, rewrite: str, markers: Sequence[str]) -> str | None:
    source_text, rewrite_text = (" ".join(text.lower().split()) for text in (source, rewrite))
    for marker in markers:
        phrase = " ".join(marker.lower().split())
        if phrase in rewrite_text and phrase not in source_text:
            return marker
    return None


def _missing(name: str, missing: list[str]) -> CheckResult:
    return CheckResult(name, not missing, f"missing: {', '.join(missing)}" if missing else "")


def _numbers(text: str, skip_dates: bool, any_separators: bool = False) -> list[str]:
    """Normalised numbers in order of first appearance; `skip_dates` leaves dates' digits to the dates check."""
    date_spans = [match.span() for match in _DATE.finditer(text)] if skip_dates else []
    numbers = []
    for match in (_NUMBER_ANY_SEPARATORS if any_separators else _NUMBER).finditer(text):
        if any(start <= match.start() < end for start, end in date_spans):
            continue
        if any_separators:
            minus, digits = match.groups()
            numbers.append(("-" if minus else "") + (re.sub(r"[.,]", "", digits).lstrip("0") or "0"))
            continue
        minus, integer, fraction = match.groups()
        numbers.append(
            ("-" if minus else "") + (integer.replace(",", "").lstrip("0") or "0") + (fraction or "")
        )
    return list(dict.fromkeys(numbers))


def _dates(text: str) -> list[Date]:
    dates = []
    for match in _DATE.finditer(text):
        fields = {name[2:]: value for name, value in match.groupdict().items() if value is not None}
        month = fields["month"]
        dates.append(
            (
                int(fields["year"]) if "year" in fields else None,
                int(month) if month.isdigit() else MONTH_NUMBER[month],
                int(fields["day"]) if "day" in fields else None,
            )
        )
    return list(dict.fromkeys(dates))


def _same_fields(source_date: Date, rewrite_date: Date) -> bool:
    """Every field the source gives agrees; the rewrite may be more precise ("14 July 1789" keeps "July 1789")."""
    return all(
        wanted is None or wanted == given for wanted, given in zip(source_date, rewrite_date, strict=True)
    )


def _format_date(date: Date) -> str:
    year, month, day = date
    parts = [day, None if month is None else MONTHS[month - 1], year]
    return " ".join(str(part) for part in parts if part is not None)


def _names(text: str) -> list[str]:
    """Names in order; a sentence's opening word counts only if it is also capitalised mid-sentence."""
    runs = _capitalised_runs(text)
    mid_sentence_words = {word for words, opens in runs for word in (words[1:] if opens else words)}
    names = []
    for words, opens_sentence in runs:
        if opens_sentence and words[0] not in mid_sentence_words:
            words = words[1:]
        if words:
            names.append(" ".join(words))
    return list(dict.fromkeys(names))


def _capitalised_runs(text: str) -> list[tuple[list[str], bool]]:
    """Runs of adjacent capitalised words, split at grammar words, each with whether it opens a sentence."""
    runs: list[tuple[list[str], bool]] = []
    previous_end, run_open = 0, False  # run_open: the next capitalised word may extend the last run
    for match in _WORD.finditer(text):
        word = _without_possessive(match.group())
        gap = text[previous_end : match.start()]
        opens_sentence = previous_end == 0 or bool(_SENTENCE_BREAK.search(gap))
        previous_end = match.end()
        if not word[0].isupper() or word in NOT_NAMES:
            run_open = False
            continue
        if run_open and gap.strip(" \t") == "":
            runs[-1][0].append(word)
        else:
            runs.append(([word], opens_sentence))
        run_open = word == match.group()  # a possessive ends its name: "Eiffel's Paris" is two names
    return runs


def _without_possessive(word: str) -> str:
    return re.sub(r"['’]s$", "", word)


def _plain_words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _ngrams(text: str, size: int = LEAK_NGRAM_WORDS) -> list[tuple[str, ...]]:
    words = _plain_words(text)
    return [tuple(words[i : i + size]) for i in range(len(words) - size + 1)]
