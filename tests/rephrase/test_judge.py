from __future__ import annotations

import pytest

from openk2.rephrase.judge import Verdict, parse_verdict


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Score: 4\nReason: fine.", Verdict(4, "fine.")),
        ("score=5", Verdict(5, "")),
        ("**Score:** 3", Verdict(3, "")),
        ("Score: **3**\nReason: close enough.", Verdict(3, "close enough.")),
        ("SCORE: 2 Reason: x", Verdict(2, "x")),
        ("Score: 1", Verdict(1, "")),
        ("score:5\nreason = same facts", Verdict(5, "same facts")),
        ("  Score: 4  \nReason:   padded.  ", Verdict(4, "padded.")),
        ("Score: 4/5\nReason: one date is missing.", Verdict(4, "one date is missing.")),
    ],
)
def test_score_and_reason_are_read(reply: str, expected: Verdict) -> None:
    assert parse_verdict(reply) == expected


@pytest.mark.parametrize(
    "reply",
    [
        "**Score:** 3\n**Reason:** close enough.",  # reason read as "** close enough."
        "**Score**: 3\n**Reason**: close enough.",  # no score found at all: the chunk fails the judge
    ],
)
def test_markdown_bold_labels_are_tolerated(reply: str) -> None:
    assert parse_verdict(reply) == Verdict(3, "close enough.")


def test_only_the_first_line_of_a_multi_line_reason_is_kept() -> None:
    reply = "Score: 3\nReason: the year is changed.\nAlso the name is dropped.\nOverall mediocre."
    assert parse_verdict(reply) == Verdict(3, "the year is changed.")


def test_reason_starting_on_the_next_line_is_read() -> None:
    assert parse_verdict("Score: 5\nReason:\nThe same facts.") == Verdict(5, "The same facts.")


@pytest.mark.parametrize(
    "reply",
    [
        "The rewrite looks faithful.",
        "Score: 0\nReason: nothing.",
        "Score: 6\nReason: excellent.",
        "Score: 45\nReason: typo.",
        "Score: 10",
        "",
    ],
)
def test_reply_without_a_score_from_1_to_5_has_no_score_and_is_quoted(reply: str) -> None:
    verdict = parse_verdict(reply)
    assert verdict.score is None
    assert verdict.reason == f"no score in the judge's reply: {reply.strip()!r}"


def test_quoted_reply_is_cut_to_200_characters() -> None:
    reply = "x" * 500
    assert parse_verdict(reply).reason == f"no score in the judge's reply: {'x' * 200!r}"


def test_first_score_wins_when_two_appear() -> None:
    assert parse_verdict("Score: 2\nReason: lost facts.\nScore: 5") == Verdict(2, "lost facts.")


def test_out_of_range_score_is_passed_over_for_a_later_valid_one() -> None:
    assert parse_verdict("Score: 7 (typo)\nScore: 4\nReason: ok.") == Verdict(4, "ok.")


def test_reason_before_the_score_is_not_taken() -> None:
    # the reason is searched for after the score only
    assert parse_verdict("Reason: earlier.\nScore: 4") == Verdict(4, "")
