"""K2 report §2.2, Fig. 4: split a document into chunks of whole sentences for chunk-wise rephrasing.

"The input is split into smaller chunks with preserved context, rewritten sequentially, and then
concatenated": each chunk is a partial input excerpt of about `chunk_tokens` tokens, and `stitch` joins the
rewrites with the document's own separators so paragraph breaks survive the rewrite.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from itertools import pairwise

# a period after one of these words does not end the sentence ("Dr. Smith", "Fig. 3", "Jan. 5")
ABBREVIATIONS = frozenset(
    {"Mr", "Mrs", "Ms", "Dr", "Prof", "St", "Mt", "Jr", "Sr", "etc", "vs", "cf", "No", "Fig"}
    | {"Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec"}
)
CLOSING_MARKS = "\"'”’»)]}」』"
OPENING_MARKS = "\"'“‘«([{"

_WESTERN_END = re.compile(rf"[.!?…]+[{re.escape(CLOSING_MARKS)}]*(?=\s|$)")
_CJK_END = re.compile(rf"[。！？]+[{re.escape(CLOSING_MARKS)}]*")  # CJK needs no space after it
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n")
_LIST_ITEM_OR_HEADING = re.compile(r"^[^\S\n]*(?:[-*+•]|\d+[.)]|#{1,6})[^\S\n].*$", re.MULTILINE)
_NEXT_CHARACTER = re.compile(r"(\s*)(\S?)")
_TRAILING_WORD = re.compile(r"[\w.]+$")
_DOTTED_ABBREVIATION = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")  # "e.g", "i.e", "U.S" (final period cut)
_WORD = re.compile(r"\S+")
_WRITTEN_WITHOUT_SPACES = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")

Span = tuple[int, int]


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int  # character offset of `text` in the document
    end: int  # document[start:end] == text
    text: str  # whole sentences; no leading or trailing whitespace
    separator: str  # the document's whitespace between this chunk and the next ("" for the last chunk)


def sentence_spans(text: str) -> list[Span]:
    """(start, end) of each sentence in order, surrounding whitespace excluded."""
    boundaries = {0, len(text)}
    boundaries.update(match.end() for match in _WESTERN_END.finditer(text) if _ends_sentence(text, match))
    boundaries.update(match.end() for match in _CJK_END.finditer(text))
    boundaries.update(match.start() for match in _PARAGRAPH_BREAK.finditer(text))
    for line in _LIST_ITEM_OR_HEADING.finditer(text):  # a list item or heading line stands alone
        boundaries.update(line.span())
    ordered = sorted(boundaries)
    spans = []
    for start, end in pairwise(ordered):
        segment = text[start:end]
        stripped = segment.strip()
        if stripped:
            first = start + len(segment) - len(segment.lstrip())
            spans.append((first, first + len(stripped)))
    return spans


def _ends_sentence(text: str, terminator: re.Match[str]) -> bool:
    """Whether sentence punctuation (plus closing quotes/brackets) followed by whitespace ends a sentence."""
    marks = terminator.group().rstrip(CLOSING_MARKS)
    quoted = len(marks) < len(terminator.group())
    if marks == "." and _is_abbreviation(text, terminator.start()):
        return False
    following = _NEXT_CHARACTER.match(text, terminator.end())
    assert following is not None  # both groups may be empty: the pattern matches anywhere
    whitespace, next_character = following.groups()
    if not next_character or "\n" in whitespace:  # end of text, or the line ends with sentence punctuation
        return True
    if ("!" in marks or "?" in marks) and not quoted:
        return True
    # '"Stop!" he cried', 'wait... what', '3. item' stay one sentence: the next one must start like one
    return (
        next_character.isdigit()
        or next_character in OPENING_MARKS
        or (next_character.isalpha() and not next_character.islower())
    )


def _is_abbreviation(text: str, period: int) -> bool:
    word_before = _TRAILING_WORD.search(text, max(0, period - 16), period)
    word = word_before.group() if word_before else ""
    return (
        word in ABBREVIATIONS
        or _DOTTED_ABBREVIATION.fullmatch(word) is not None
        or (len(word) == 1 and word.isupper())  # an initial: "J. S. Bach"
    )


def chunk_document(text: str, chunk_tokens: int, count_tokens: Callable[[str], int]) -> list[Chunk]:
    """Pack consecutive whole sentences greedily into chunks of at most `chunk_tokens` tokens."""
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens: expected >= 1, got {chunk_tokens}")
    units: list[Span] = []  # sentences, with any sentence over budget cut at whitespace
    costs: list[int] = []
    for start, end in sentence_spans(text):
        cost = count_tokens(text[start:end])
        if cost <= chunk_tokens:
            units.append((start, end))
            costs.append(cost)
            continue
        words = [match.span() for match in _WORD.finditer(text, start, end)]
        pieces = _pack(text, words, [count_tokens(text[s:e]) for s, e in words], chunk_tokens, count_tokens)
        units += pieces
        costs += [count_tokens(text[s:e]) for s, e in pieces]
    paragraph_ends = {
        index
        for index in range(len(units) - 1)
        if _PARAGRAPH_BREAK.search(text, units[index][1], units[index + 1][0])
    }
    spans = _pack(text, units, costs, chunk_tokens, count_tokens, paragraph_ends)
    chunks = []
    for index, (start, end) in enumerate(spans):
        next_start = spans[index + 1][0] if index + 1 < len(spans) else end
        chunks.append(Chunk(index, start, end, text=text[start:end], separator=text[end:next_start]))
    return chunks


def _pack(
    text: str,
    spans: Sequence[Span],
    costs: Sequence[int],
    budget: int,
    count_tokens: Callable[[str], int],
    paragraph_ends: Container[int] = frozenset(),
) -> list[Span]:
    """Group consecutive spans greedily so each group's text fits `budget`; a span alone over it stays alone."""

    def fits(first: int, last: int) -> bool:
        return count_tokens(text[spans[first][0] : spans[last][1]]) <= budget

    groups = []
    first = 0
    while first < len(spans):
        last, estimate = first, costs[first]
        while last + 1 < len(spans) and estimate + costs[last + 1] <= budget:
            last += 1
            estimate += costs[last]
        # BPE across whitespace is not additive: verify the joined text, then extend or back off a span at a time
        if fits(first, last):
            while last + 1 < len(spans) and fits(first, last + 1):
                last += 1
        else:
            while last > first:
                last -= 1
                if fits(first, last):
                    break
        inner_breaks = [index for index in range(first, last) if index in paragraph_ends]
        # end at the last paragraph break once the chunk is half full (by the span-by-span estimate),
        # rather than cut the next paragraph
        if inner_breaks and 2 * sum(costs[first : inner_breaks[-1] + 1]) >= budget:
            last = inner_breaks[-1]
        groups.append((spans[first][0], spans[last][1]))
        first = last + 1
    return groups


def stitch(rewritten: Sequence[str], chunks: Sequence[Chunk]) -> str:
    """Join rewritten chunks with the source's separators: line breaks kept, other whitespace one space."""
    if len(rewritten) != len(chunks):
        raise ValueError(f"rewritten: expected {len(chunks)} texts, one per chunk, got {len(rewritten)}")
    joined = []
    for position, (rewrite, chunk) in enumerate(zip(rewritten, chunks, strict=True)):
        joined.append(rewrite.strip())
        if position < len(chunks) - 1:  # nothing after the last chunk
            joined.append(_rewritten_separator(chunk.separator, joined[-1]))
    return "".join(joined)


def _rewritten_separator(separator: str, rewrite: str) -> str:
    if "\n" in separator:  # a line or paragraph break is part of the document's layout
        return separator
    if not separator and rewrite and _WRITTEN_WITHOUT_SPACES.match(rewrite[-1]):
        return ""  # Chinese or Japanese sentences follow each other without a space
    return " "  # also between sentences a translation into a spaced language needs one
