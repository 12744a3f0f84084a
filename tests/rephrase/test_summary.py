from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from openk2.io import ReplyCache
from openk2.rephrase.summary import CHUNK_CHECKS, CheckTally, summarize

# Records in the shape pipeline.py writes. Nine chunk attempts in all, seven of them judged.
ACCEPTED: list[dict[str, Any]] = [
    {
        "id": "a#knowledge-0",
        "attempts": [
            {"chunk": 0, "attempt": 0, "failed": {"numbers": "missing: 330"}},
            {"chunk": 0, "attempt": 1, "failed": {}, "judge_score": 5, "judge_reason": "same facts"},
            {"chunk": 1, "attempt": 0, "failed": {}, "judge_score": 4, "judge_reason": "minor"},
        ],
        "document_failed": {},
        "source_tokens": 100,
        "tokens": 120,
    },
    {
        "id": "e#knowledge-0",
        "attempts": [{"chunk": 0, "attempt": 0, "failed": {}, "judge_score": 3, "judge_reason": "ok"}],
        "document_failed": {},
        "source_tokens": 50,
        "tokens": 40,
    },
]
REJECTED: list[dict[str, Any]] = [
    {  # a chunk failed every attempt: no stitched document, so no document checks
        "id": "b#knowledge-0",
        "attempts": [
            {
                "chunk": 0,
                "attempt": 0,
                "failed": {"complete": "finish_reason 'length'", "length": "too long"},
            },
            {
                "chunk": 0,
                "attempt": 1,
                "failed": {"judge": "score 2 < 3: lost facts"},
                "judge_score": 2,
                "judge_reason": "lost facts",
            },
        ],
        "rejected": {"chunk 0": "score 2 < 3: lost facts"},
    },
    {  # every chunk passed, the stitched document did not
        "id": "c#knowledge-0",
        "attempts": [
            {"chunk": 0, "attempt": 0, "failed": {}, "judge_score": 4, "judge_reason": "fine"},
            {
                "chunk": 1,
                "attempt": 0,
                "failed": {"judge": "score None < 3: no score"},
                "judge_score": None,
                "judge_reason": "no score in the judge's reply: 'hm'",
            },
            {"chunk": 1, "attempt": 1, "failed": {}, "judge_score": 5, "judge_reason": "same"},
        ],
        "document_failed": {"names": "missing: Paris", "length": "too short"},
        "rejected": {"names": "missing: Paris", "length": "too short"},
    },
    {  # an empty document: no attempts at all
        "id": "d#knowledge-0",
        "attempts": [],
        "rejected": {"document": "the document has no text"},
    },
]


@pytest.fixture
def cache(tmp_path: Path) -> ReplyCache:
    """A cache that has answered one hit and two misses."""
    cache = ReplyCache(tmp_path / "cache.jsonl")
    cache.put("k", {"text": "x", "finish_reason": "stop"})
    cache.get("k")
    cache.get("absent")
    cache.get("also absent")
    return cache


def tallies(checks: dict[str, CheckTally]) -> dict[str, tuple[int, int]]:
    return {name: (tally.evaluated, tally.passed) for name, tally in checks.items()}


def test_chunk_checks_count_every_attempt_and_judge_only_judged_ones(cache: ReplyCache) -> None:
    summary = summarize(ACCEPTED, REJECTED, 5, 3, 90.0, cache)
    assert list(summary.chunk_checks) == list(CHUNK_CHECKS)
    assert tallies(summary.chunk_checks) == {
        "complete": (9, 8),
        "numbers": (9, 8),
        "dates": (9, 9),
        "names": (9, 9),
        "length": (9, 8),
        "leak": (9, 9),
        "copy": (9, 9),
        "judge": (7, 5),
    }


def test_document_checks_count_only_stitched_documents(cache: ReplyCache) -> None:
    summary = summarize(ACCEPTED, REJECTED, 5, 3, 90.0, cache)
    assert tallies(summary.document_checks) == {
        "numbers": (3, 3),
        "dates": (3, 3),
        "names": (3, 2),
        "length": (3, 2),
        "leak": (3, 3),
        "copy": (3, 3),
        "judge": (0, 0),  # no record carries a document_judge_score
    }


def test_judge_histogram_leaves_out_missing_scores(cache: ReplyCache) -> None:
    summary = summarize(ACCEPTED, REJECTED, 5, 3, 90.0, cache)
    assert summary.judge_scores == {2: 1, 3: 1, 4: 2, 5: 2}
    assert list(summary.judge_scores) == [2, 3, 4, 5]


def test_counts_tokens_throughput_and_cache(cache: ReplyCache) -> None:
    summary = summarize(ACCEPTED, REJECTED, 5, 3, 90.0, cache)
    assert (summary.items, summary.accepted, summary.rejected) == (5, 2, 3)
    assert summary.acceptance_rate == 0.4
    assert (summary.source_tokens, summary.rephrased_tokens) == (150, 160)
    assert summary.documents_per_minute == 2.0
    assert (summary.cache_hits, summary.cache_misses) == (1, 2)
    assert summary.chunk_checks["judge"].rate == 5 / 7


def test_summary_survives_a_json_round_trip(cache: ReplyCache) -> None:
    summary = summarize(ACCEPTED, REJECTED, 5, 3, 90.0, cache)
    assert type(summary).model_validate_json(summary.model_dump_json()) == summary


def test_empty_run_has_undefined_rates(tmp_path: Path) -> None:
    summary = summarize([], [], 0, 0, 0.0, ReplyCache(tmp_path / "cache.jsonl"))
    assert all(tally == CheckTally() for tally in summary.chunk_checks.values())
    assert all(tally == CheckTally() for tally in summary.document_checks.values())
    assert summary.judge_scores == {}
    assert math.isnan(summary.acceptance_rate)
    assert math.isnan(summary.documents_per_minute)
    assert math.isnan(summary.chunk_checks["judge"].rate)
