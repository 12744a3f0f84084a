"""openk2.io: atomic replacement of files and directories, the fsync'd JSONL log, the reply cache."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from openk2.io import JsonlLog, ReplyCache, atomic_path, atomic_write_text, publish_directory

# --- atomic replacement -------------------------------------------------------------------------


def test_atomic_write_replaces_the_file_and_leaves_no_partial(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text("old")
    atomic_write_text(path, "new ü")
    assert path.read_text(encoding="utf-8") == "new ü"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_partial(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="writer failed"), atomic_path(path) as partial:
        partial.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_a_writer_killed_mid_write_leaves_the_old_file(tmp_path: Path) -> None:
    """A real SIGKILL while the new content is being written: the target still holds the old bytes."""
    path = tmp_path / "state.json"
    path.write_text("old")
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from openk2.io import atomic_path\n"
        "with atomic_path(Path(sys.argv[1])) as partial:\n"
        "    partial.write_text('half of the new')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    completed = subprocess.run([sys.executable, "-c", script, str(path)], check=False)
    assert completed.returncode == -signal.SIGKILL
    assert path.read_text() == "old"


def test_publish_directory_swaps_a_whole_directory(tmp_path: Path) -> None:
    target = tmp_path / "step_000002"
    for version in ("first", "second"):
        staging = tmp_path / f".{target.name}.tmp"
        (staging / "nested").mkdir(parents=True)
        (staging / "nested" / "weights.bin").write_text(version)
        publish_directory(staging, target)
        assert (target / "nested" / "weights.bin").read_text() == version
        assert not staging.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000002"]  # the retired copy is gone
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]


# --- JsonlLog -----------------------------------------------------------------------------------

RECORDS = [
    {"id": "doc-a#knowledge-0", "text": "Die Brücke wurde 1932 eröffnet.", "tokens": 9},
    {"id": "doc-b#knowledge-0", "text": 'Line one\nline two, with a "quote"', "scores": [4, 5]},
]


def lines_of(path: Path) -> list[dict[str, Any]]:
    """The file parsed line by line: fails unless every line is one complete JSON record."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.split("\n")[:-1]]


def test_appended_records_come_back_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = JsonlLog(path)
    assert log.records == []
    for record in RECORDS:
        log.append(record)
    assert log.records == RECORDS
    assert JsonlLog(path).records == RECORDS
    assert lines_of(path) == RECORDS


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_text_with_unicode_line_separators_round_trips(tmp_path: Path, separator: str) -> None:
    # json.dumps(ensure_ascii=False) writes these characters raw; they are not JSONL line breaks
    path = tmp_path / "log.jsonl"
    record = {"id": "doc", "text": f"first{separator}second"}
    JsonlLog(path).append(record)
    assert JsonlLog(path).records == [record]


def test_torn_last_line_is_cut_off_on_open(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = JsonlLog(path)
    for record in RECORDS:
        log.append(record)
    with path.open("ab") as file:
        file.write(b'{"id": "doc-c#knowledge-0", "text": "cut of')

    reopened = JsonlLog(path)
    assert reopened.records == RECORDS
    assert path.read_bytes().endswith(b"\n")
    assert lines_of(path) == RECORDS

    reopened.append({"id": "doc-d#knowledge-0"})
    assert lines_of(path) == [*RECORDS, {"id": "doc-d#knowledge-0"}]
    assert JsonlLog(path).records == [*RECORDS, {"id": "doc-d#knowledge-0"}]


def test_file_holding_only_a_torn_line_opens_empty(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"id": "half')
    log = JsonlLog(path)
    assert log.records == []
    assert path.read_bytes() == b""
    log.append({"id": "whole"})
    assert path.read_bytes() == b'{"id": "whole"}\n'


def test_torn_multibyte_character_is_cut_off_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "Br\xc3')  # the first byte of "ü" only
    assert JsonlLog(path).records == [{"id": "a"}]
    assert path.read_bytes() == b'{"id": "a"}\n'


def test_corrupt_middle_line_is_an_error_naming_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "c"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="not a JSON record") as error:
        JsonlLog(path)
    assert str(error.value).startswith(f"{path}:2: ")


def test_rewrite_sorted_puts_records_in_the_given_order(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = JsonlLog(path)
    for name in ("c", "a", "b"):
        log.append({"id": name, "text": f"text of {name}"})
    log.rewrite_sorted({"a": 0, "b": 1, "c": 2})

    expected = [{"id": name, "text": f"text of {name}"} for name in ("a", "b", "c")]
    assert log.records == expected
    assert lines_of(path) == expected
    assert JsonlLog(path).records == expected
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["log.jsonl"]


def test_rewrite_sorted_follows_the_order_not_the_ids(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = JsonlLog(path)
    for name in ("x", "y", "z"):
        log.append({"id": name})
    log.rewrite_sorted({"x": 2, "y": 0, "z": 1})
    assert [record["id"] for record in lines_of(path)] == ["y", "z", "x"]


# --- ReplyCache ---------------------------------------------------------------------------------

KEY_MATERIAL: dict[str, Any] = {
    "model": "teacher",
    "messages": [{"role": "system", "content": "Rewrite."}, {"role": "user", "content": "The cat sat."}],
    "sampling": {"temperature": 0.6, "max_tokens": 40},
    "attempt": 0,
}


def test_cache_returns_what_was_put_and_counts_hits_and_misses(tmp_path: Path) -> None:
    cache = ReplyCache(tmp_path / "cache.jsonl")
    key = ReplyCache.key(**KEY_MATERIAL)
    assert cache.get(key) is None
    assert (cache.hits, cache.misses) == (0, 1)

    cache.put(key, {"text": "A cat was sitting.", "finish_reason": "stop"})
    assert cache.get(key) == {"key": key, "text": "A cat was sitting.", "finish_reason": "stop"}
    assert cache.get(key) is not None
    assert cache.get("another key") is None
    assert (cache.hits, cache.misses) == (2, 2)


def test_cache_survives_reopen_with_fresh_counters(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl"
    first = ReplyCache(path)
    key = ReplyCache.key(**KEY_MATERIAL)
    first.put(key, {"text": "A cat was sitting.", "finish_reason": "stop"})
    first.put("other", {"text": "x", "finish_reason": "length"})

    reopened = ReplyCache(path)
    assert (reopened.hits, reopened.misses) == (0, 0)
    assert reopened.get(key) == {"key": key, "text": "A cat was sitting.", "finish_reason": "stop"}
    assert reopened.get("other") == {"key": "other", "text": "x", "finish_reason": "length"}
    assert (reopened.hits, reopened.misses) == (2, 0)


def test_key_does_not_depend_on_keyword_or_dict_order() -> None:
    reordered = ReplyCache.key(
        attempt=0,
        sampling={"max_tokens": 40, "temperature": 0.6},
        messages=[{"content": "Rewrite.", "role": "system"}, {"content": "The cat sat.", "role": "user"}],
        model="teacher",
    )
    assert reordered == ReplyCache.key(**KEY_MATERIAL)


@pytest.mark.parametrize(
    "change",
    [
        {"model": "teacher-2"},
        {"attempt": 1},
        {"sampling": {"temperature": 0.7, "max_tokens": 40}},
        {"sampling": {"temperature": 0.6, "max_tokens": 41}},
        {
            "messages": [
                {"role": "system", "content": "Rewrite."},
                {"role": "user", "content": "The cat sat!"},
            ]
        },
        {"messages": [{"role": "user", "content": "Rewrite."}, {"role": "user", "content": "The cat sat."}]},
        {
            "messages": [
                {"role": "user", "content": "The cat sat."},
                {"role": "system", "content": "Rewrite."},
            ]
        },
    ],
)
def test_key_changes_with_any_value(change: dict[str, Any]) -> None:
    assert ReplyCache.key(**(KEY_MATERIAL | change)) != ReplyCache.key(**KEY_MATERIAL)


def test_key_changes_with_an_added_field() -> None:
    assert ReplyCache.key(**KEY_MATERIAL, judge=True) != ReplyCache.key(**KEY_MATERIAL)
