from __future__ import annotations

import math
from collections.abc import Callable
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, trainers

from openk2.rephrase.chunking import Chunk, chunk_document, sentence_spans, stitch
from openk2.tokenizer.bpe import k2_pre_tokenizer


def words(text: str) -> int:
    return len(text.split())


def characters_over_4(text: str) -> int:
    """Not additive across whitespace, like BPE: the join counts the spaces between sentences too."""
    return math.ceil(len(text) / 4)


def sentences(text: str) -> list[str]:
    return [text[start:end] for start, end in sentence_spans(text)]


def chunk_texts(text: str, chunk_tokens: int) -> list[str]:
    return [chunk.text for chunk in chunk_document(text, chunk_tokens, words)]


def test_sentence_spans_skip_abbreviations_decimals_and_initials() -> None:
    paragraph = (
        "Dr. Smith met Mrs. Jones at 3.14 p.m. on Jan. 5 near Mt. Hood. The U.S. Army band played "
        "J. S. Bach, e.g. the fugues, i.e. the hard ones, etc. and more. See Fig. 2 and No. 7 vs. No. 8. "
        "Prices rose 2.5% in 1999. Then they fell."
    )
    assert sentences(paragraph) == [
        "Dr. Smith met Mrs. Jones at 3.14 p.m. on Jan. 5 near Mt. Hood.",
        "The U.S. Army band played J. S. Bach, e.g. the fugues, i.e. the hard ones, etc. and more.",
        "See Fig. 2 and No. 7 vs. No. 8.",
        "Prices rose 2.5% in 1999.",
        "Then they fell.",
    ]


def test_sentence_spans_handle_quotes_questions_exclamations_and_ellipses() -> None:
    paragraph = (
        "He said 'Stop.' Then he left! Was it late? \"Yes!\" she cried. Wait... what happened? "
        'Nothing... Silence (or so it seemed.) Later, "Why?" (He never knew.)'
    )
    assert sentences(paragraph) == [
        "He said 'Stop.'",
        "Then he left!",
        "Was it late?",
        '"Yes!" she cried.',  # a quoted exclamation followed by lowercase is a dialogue tag
        "Wait... what happened?",  # an ellipsis followed by lowercase is inside the sentence
        "Nothing...",
        "Silence (or so it seemed.)",
        'Later, "Why?"',
        "(He never knew.)",
    ]


def test_sentence_spans_split_cjk_without_spaces() -> None:
    assert sentences("今天天气很好。我们去公园吧！你来吗？「好。」他说。") == [
        "今天天气很好。",
        "我们去公园吧！",
        "你来吗？",
        "「好。」",
        "他说。",
    ]


def test_sentence_spans_follow_paragraphs_lines_lists_and_headings() -> None:
    text = (
        "  # Notes\n"
        "A title without a stop\n\n"
        "a wrapped line\n"
        "continues here. and so\n"
        "- first item\n"
        "2. second item\n"
        "Last line ends.\n"
        "next line starts lowercase \r\n\r\n"
        "Tail"
    )
    assert sentences(text) == [
        "# Notes",
        "A title without a stop",  # a blank line always ends a sentence
        "a wrapped line\ncontinues here. and so",  # a single newline without punctuation does not
        "- first item",
        "2. second item",
        "Last line ends.",  # a line ending in punctuation ends the sentence whatever follows
        "next line starts lowercase",
        "Tail",
    ]


def test_sentence_spans_of_empty_text() -> None:
    assert sentence_spans("") == []
    assert sentence_spans(" \n\n\t ") == []


THREE_PARAGRAPHS = (
    "The cat sat on the mat. It was warm. The dog watched from the door.\n\n"
    "Rain fell all night long. By morning the garden was a pond. Nobody minded.\n\n"
    "The sun came out at noon. Everyone went outside to play.\n"
)  # sentences of 6, 3, 6 | 5, 7, 2 | 6, 5 words


def test_chunk_document_packs_whole_sentences_greedily() -> None:
    assert chunk_texts(THREE_PARAGRAPHS, 10) == [
        "The cat sat on the mat. It was warm.",
        "The dog watched from the door.",
        "Rain fell all night long.",
        "By morning the garden was a pond. Nobody minded.",
        "The sun came out at noon.",
        "Everyone went outside to play.",
    ]


def test_chunk_document_ends_chunks_at_paragraph_breaks_once_half_full() -> None:
    # at 20 words the greedy chunks would be P1 + "Rain fell all night long." and P2 + "The sun came out at noon."
    assert chunk_texts(THREE_PARAGRAPHS, 20) == [
        "The cat sat on the mat. It was warm. The dog watched from the door.",
        "Rain fell all night long. By morning the garden was a pond. Nobody minded.",
        "The sun came out at noon. Everyone went outside to play.",
    ]


def test_chunk_document_crosses_a_paragraph_break_while_under_half_full() -> None:
    text = "Hello there.\n\nThe cat sat on the mat. It was warm. The dog watched from the door."
    assert chunk_texts(text, 12) == [
        "Hello there.\n\nThe cat sat on the mat. It was warm.",  # 2 words is under half of 12
        "The dog watched from the door.",
    ]


def test_chunk_document_records_offsets_and_separators() -> None:
    chunks = chunk_document("\n  One two. Three four.\n\nFive six.  ", 2, words)
    assert chunks == [
        Chunk(index=0, start=3, end=11, text="One two.", separator=" "),
        Chunk(index=1, start=12, end=23, text="Three four.", separator="\n\n"),
        Chunk(index=2, start=25, end=34, text="Five six.", separator=""),
    ]


def test_chunk_document_splits_an_over_long_sentence_at_whitespace() -> None:
    text = "Short one. One two three four five six seven eight nine ten eleven. End."
    assert chunk_texts(text, 4) == [
        "Short one.",
        "One two three four",
        "five six seven eight",
        "nine ten eleven. End.",  # the sentence's tail packs with the next sentence
    ]


def test_chunk_document_gives_a_word_over_budget_a_chunk_of_its_own() -> None:
    chunks = chunk_document("abcdefgh ij kl.", 5, len)
    assert [chunk.text for chunk in chunks] == ["abcdefgh", "ij", "kl."]


def test_chunk_document_of_blank_text_is_empty() -> None:
    assert chunk_document("", 8, words) == []
    assert chunk_document(" \n\n ", 8, words) == []


def test_chunk_document_rejects_a_budget_below_one() -> None:
    with pytest.raises(ValueError, match=r"chunk_tokens: expected >= 1, got 0"):
        chunk_document("Some text.", 0, words)


def test_stitch_keeps_line_breaks_and_collapses_other_separators() -> None:
    chunks = chunk_document("A b. C d.\n\nE f. \t G h.\nI j.", 2, words)
    assert [chunk.separator for chunk in chunks] == [" ", "\n\n", " \t ", "\n", ""]
    rewritten = ["  V.  ", "W.", "X.\n", "Y.", " Z. "]
    assert stitch(rewritten, chunks) == "V. W.\n\nX. Y.\nZ."


def test_stitch_joins_cjk_chunks_without_a_space() -> None:
    chunks = chunk_document("你好。再见。", 1, len)
    assert [chunk.separator for chunk in chunks] == ["", ""]
    assert stitch(["您好。", "再会。"], chunks) == "您好。再会。"


def test_stitch_rejects_a_count_mismatch() -> None:
    chunks = chunk_document("One. Two.", 1, words)
    with pytest.raises(ValueError, match=r"rewritten: expected 2 texts, one per chunk, got 1"):
        stitch(["Uno."], chunks)


VOCABULARY = ["alpha", "Beta", "gamma", "Dr.", "3.14", "e.g.", "U.S.", "J.", "délta", "今天", "x", "Omega"]
VOCABULARY += ["supercalifragilisticexpialidocious", "'quoted'", "(aside)", "end...", "wait", "No."]


@st.composite
def documents(draw: st.DrawFn) -> str:
    sentence = st.builds(
        lambda body, mark: " ".join(body) + mark,
        st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=14),
        st.sampled_from([".", "!", "?", "…", "", "。", '."', "?)"]),
    )
    separator = st.sampled_from([" ", "  ", "\n", "\n\n", " \n \n\t", "\t", "\r\n\r\n", ""])
    parts = draw(st.lists(st.tuples(sentence, separator), max_size=25))
    whitespace = st.sampled_from(["", " ", "\n\n", "\t "])
    return draw(whitespace) + "".join(text + gap for text, gap in parts) + draw(whitespace)


@settings(max_examples=300, deadline=None)
@given(
    text=documents(),
    chunk_tokens=st.integers(1, 60),
    count_tokens=st.sampled_from([words, characters_over_4]),
)
def test_chunks_rebuild_the_document_within_budget_on_sentence_boundaries(
    text: str, chunk_tokens: int, count_tokens: Callable[[str], int]
) -> None:
    chunks = chunk_document(text, chunk_tokens, count_tokens)
    assert "".join(chunk.text + chunk.separator for chunk in chunks) == text.strip()
    spans = sentence_spans(text)
    sentence_ends = {end for _, end in spans}
    for index, chunk in enumerate(chunks):
        assert chunk.index == index
        assert chunk.text == text[chunk.start : chunk.end] == chunk.text.strip() != ""
        assert count_tokens(chunk.text) <= chunk_tokens or len(chunk.text.split()) == 1
        if index + 1 < len(chunks):
            over_long_sentences = [
                (start, end)
                for start, end in spans
                if start < chunk.end < end and count_tokens(text[start:end]) > chunk_tokens
            ]
            assert chunk.end in sentence_ends or over_long_sentences
    assert not chunks or chunks[-1].separator == ""


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("ab A.!?…。\n\t\"')(3")), max_size=80))
def test_sentence_spans_cover_every_non_space_character_once(text: str) -> None:
    spans = sentence_spans(text)
    covered = "".join(text[start:end] for start, end in spans)
    assert [character for character in covered if not character.isspace()] == [
        character for character in text if not character.isspace()
    ]
    for (_, end), (next_start, _) in pairwise(spans):
        assert end <= next_start and text[end:next_start].strip() == ""
    assert all(text[start:end] == text[start:end].strip() != "" for start, end in spans)


STORY = (
    "The old lighthouse keeper climbed the stairs every evening. He lit the lamp at dusk, "
    "and the beam swept across the dark water. Ships passed safely through the narrow strait.\n\n"
    "One winter night, a storm knocked out the power. The keeper lit an oil lantern instead! "
    "Would the sailors see it? They did, and every crew came home.\n\n"
    "Years later, the town built a museum in the keeper's honour. Children still climb the stairs."
)


@pytest.fixture(scope="module")
def bpe() -> Tokenizer:
    """A byte-level BPE behind K2's pre-tokeniser, trained on the story so words merge into few tokens."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = k2_pre_tokenizer()
    trainer = trainers.BpeTrainer(vocab_size=400, show_progress=False)
    tokenizer.train_from_iterator([STORY], trainer)
    return tokenizer


def bpe_counter(tokenizer: Tokenizer) -> Callable[[str], int]:
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


@pytest.mark.parametrize("chunk_tokens", [8, 16, 24, 40])
def test_chunks_fill_but_never_exceed_the_budget_in_bpe_tokens(bpe: Tokenizer, chunk_tokens: int) -> None:
    count_tokens = bpe_counter(bpe)
    chunks = chunk_document(STORY, chunk_tokens, count_tokens)
    assert "".join(chunk.text + chunk.separator for chunk in chunks) == STORY
    sentence_at = {start: STORY[start:end] for start, end in sentence_spans(STORY)}
    for chunk, next_chunk in zip(chunks, [*chunks[1:], None], strict=True):
        assert count_tokens(chunk.text) <= chunk_tokens or len(chunk.text.split()) == 1
        next_sentence = sentence_at.get(next_chunk.start) if next_chunk else None
        if next_sentence and "\n\n" not in chunk.separator and count_tokens(next_sentence) <= chunk_tokens:
            # greedy: the chunk stopped only because the next whole sentence would not fit
            assert count_tokens(chunk.text + chunk.separator + next_sentence) > chunk_tokens


def test_chunk_document_counts_each_character_a_few_times_only(bpe: Tokenizer) -> None:
    document = "\n\n".join([STORY] * 60)  # ~40 kB
    counted_characters = 0

    def count_tokens(text: str) -> int:
        nonlocal counted_characters
        counted_characters += len(text)
        return bpe_counter(bpe)(text)

    chunks = chunk_document(document, 256, count_tokens)
    assert len(chunks) > bpe_counter(bpe)(document) // 256
    # each sentence once, then each chunk's join a few times: linear in the document, not quadratic
    assert counted_characters <= 6 * len(document)


def test_rewrites_of_sentences_written_without_spaces_are_joined_as_their_language_needs() -> None:
    chunks = chunk_document("长城很长。它在中国。", 1, lambda text: text.count("。"))
    assert [chunk.separator for chunk in chunks] == ["", ""]
    assert stitch(["The wall is long.", "It is in China."], chunks) == "The wall is long. It is in China."
    assert stitch(["长城很长。", "它在中国。"], chunks) == "长城很长。它在中国。"
    assert stitch([], []) == ""
