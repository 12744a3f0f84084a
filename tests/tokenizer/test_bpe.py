from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import decoders

from openk2.data.corpus import corpus_files, read_documents
from openk2.data.shards import TOKENIZER_NAME, Manifest
from openk2.tokenizer.bpe import (
    k2_pre_tokenizer,
    load_tokenizer,
    plain_text_tokenizer,
    train_k2_tokenizer,
)
from openk2.tokenizer.special_tokens import first_reserved_id
from tests.data.small_corpus import SMALL_VOCAB, UNICODE_DOCUMENTS


def pieces(text: str) -> list[str]:
    """The pre-tokeniser's pieces, mapped back from byte-level symbols to text."""
    byte_level = decoders.ByteLevel()
    return [byte_level.decode([piece]) for piece, _ in k2_pre_tokenizer().pre_tokenize_str(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1234567 apples", ["123", "456", "7", " apples"]),  # numbers in groups of at most 3 digits
        ("I'm here", ["I'm", " here"]),  # contractions stay attached to their word
        ("they're", ["they're"]),
        ("HAMLET'S ghost", ["HAMLET'S", " ghost"]),  # (?i:'s) also takes the upper-case form
        ("我爱北京 abc", ["我爱北京", " abc"]),  # a Han run is one piece
        ("abc我def", ["abc", "我", "def"]),  # `&&[^\p{Han}]`: Han never joins a letter run
        ("hello!!\n\nworld", ["hello", "!!\n\n", "world"]),  # punctuation keeps its trailing newlines
        ("a  b", ["a", " ", " b"]),  # the space before a word goes with the word
        ("x\n\n  y", ["x", "\n\n", " ", " y"]),
        (" $100", [" $", "100"]),
        ("Enter Hamlet.", ["Enter", " Hamlet", "."]),
    ],
)
def test_pre_tokenizer_splits_hand_checked_examples_as_k2_pattern_reads(
    text: str, expected: list[str]
) -> None:
    assert pieces(text) == expected


# K2's pat_str as the released tokenization_kimi.py has it, typed independently of the implementation's constant
SPEC_PATTERN_PIECES = [
    r"[\p{Han}]+",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"\p{N}{1,3}",
    r" ?[^\s\p{L}\p{N}]+[\r\n]*",
    r"\s*[\r\n]+",
    r"\s+(?!\S)",
    r"\s+",
]


def python_regex_reference():
    regex = pytest.importorskip("regex", reason="the independent reference needs the `regex` module")
    # V1 semantics: nested classes and `&&` intersection, as tiktoken's fancy-regex reads K2's pattern
    return regex.compile("|".join(SPEC_PATTERN_PIECES), flags=regex.V1)


def test_pre_tokenizer_splits_corpus_text_like_python_regex(small_corpus: Path) -> None:
    reference = python_regex_reference()
    for file in corpus_files(str(small_corpus)):
        for document in read_documents(file):
            assert pieces(document.text) == reference.findall(document.text), document.source


MIXED_SCRIPT_CHARACTERS = [
    *"aZéÆßİǅµ\u0301 09٣½¹\t\n\r\u2028\u00a0\u3000!?'’-_.,;:$€@#&|[]<>我爱東京ひらカタ한글Жжωψ🙂𝔘",
    *("'s", "'T", "'re", "'LL", "'d", "  ", "\r\n"),
]


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.lists(st.sampled_from(MIXED_SCRIPT_CHARACTERS), max_size=40).map("".join))
def test_pre_tokenizer_splits_mixed_scripts_like_python_regex(text: str) -> None:
    assert pieces(text) == python_regex_reference().findall(text)


def test_round_trip_is_exact_on_corpus_and_unicode_text(
    small_shards: tuple[Path, Manifest], small_corpus: Path
) -> None:
    tokenizer = load_tokenizer(small_shards[0] / TOKENIZER_NAME)
    encoder = plain_text_tokenizer(tokenizer)
    texts = [document.text for file in corpus_files(str(small_corpus)) for document in read_documents(file)]
    assert set(UNICODE_DOCUMENTS) <= set(texts)
    for text in texts:
        ids = encoder.encode(text).ids
        assert max(ids) < first_reserved_id(SMALL_VOCAB)  # corpus text never produces a reserved id
        assert tokenizer.decode(ids, skip_special_tokens=False) == text


def test_plain_text_tokenizer_reads_spelled_out_special_tokens_as_text(
    small_shards: tuple[Path, Manifest],
) -> None:
    tokenizer = load_tokenizer(small_shards[0] / TOKENIZER_NAME)
    text = "say [EOS] then <|tool_call_begin|>"
    assert len(tokenizer.encode(text).ids) < len(plain_text_tokenizer(tokenizer).encode(text).ids)
    assert tokenizer.encode("[EOS]").ids == [first_reserved_id(SMALL_VOCAB) + 1]


def test_bpe_compresses_shakespearean_text_to_over_two_bytes_per_token(
    small_shards: tuple[Path, Manifest],
) -> None:
    encoder = plain_text_tokenizer(load_tokenizer(small_shards[0] / TOKENIZER_NAME))
    line = "To be, or not to be, that is the Question"
    assert len(encoder.encode(line).ids) < len(line.encode("utf-8")) / 2


def test_a_vocab_larger_than_the_corpus_supports_is_refused() -> None:
    with pytest.raises(ValueError, match="vocab_size: BPE learned only"):
        train_k2_tokenizer(["tiny corpus, tiny corpus"], vocab_size=4096)
