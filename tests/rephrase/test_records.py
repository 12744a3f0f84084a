from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from openk2.io import JsonlLog, ReplyCache
from openk2.rephrase.records import RUN_MANIFEST_FILE, check_run_manifest

RECORDS = [
    {"id": "doc-a#knowledge-0", "text": "Die Brücke wurde 1932 eröffnet.", "tokens": 9},
    {"id": "doc-b#knowledge-0", "text": 'Line one\nline two, with a "quote"', "scores": [4, 5]},
]


def lines_of(path: Path) -> list[dict[str, Any]]:
    """The file parsed line by line: fails unless every line is one complete JSON record."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.split("\n")[:-1]]


# --- JsonlLog -----------------------------------------------------------------------------------


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


# --- the run manifest ---------------------------------------------------------------------------

MANIFEST: dict[str, Any] = {
    "input": {"name": "docs.jsonl", "sha256": "ab12"},
    "rewriter": "teacher",
    "settings": {"mode": "knowledge", "variants": 2, "checks": {"names": False}},
}


def test_first_call_writes_the_manifest(tmp_path: Path) -> None:
    check_run_manifest(tmp_path, MANIFEST)
    assert json.loads((tmp_path / RUN_MANIFEST_FILE).read_text(encoding="utf-8")) == MANIFEST
    assert sorted(entry.name for entry in tmp_path.iterdir()) == [RUN_MANIFEST_FILE]


def test_same_manifest_passes_and_leaves_the_file_alone(tmp_path: Path) -> None:
    check_run_manifest(tmp_path, MANIFEST)
    written = (tmp_path / RUN_MANIFEST_FILE).read_bytes()
    check_run_manifest(tmp_path, json.loads(json.dumps(MANIFEST)))
    assert (tmp_path / RUN_MANIFEST_FILE).read_bytes() == written


def test_changed_nested_field_is_named(tmp_path: Path) -> None:
    check_run_manifest(tmp_path, MANIFEST)
    changed = {**MANIFEST, "settings": {**MANIFEST["settings"], "variants": 3}}
    with pytest.raises(ValueError) as error:
        check_run_manifest(tmp_path, changed)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / RUN_MANIFEST_FILE}: ")
    assert "(settings.variants)" in message
    assert json.loads((tmp_path / RUN_MANIFEST_FILE).read_text(encoding="utf-8")) == MANIFEST


def test_every_changed_field_is_named_in_order(tmp_path: Path) -> None:
    check_run_manifest(tmp_path, MANIFEST)
    changed = {
        "input": {"name": "docs.jsonl", "sha256": "cd34"},
        "rewriter": "teacher",
        "settings": {"mode": "knowledge", "variants": 2, "checks": {"names": True}},
    }
    with pytest.raises(ValueError, match=r"\(input\.sha256, settings\.checks\.names\)"):
        check_run_manifest(tmp_path, changed)


def test_added_and_removed_fields_are_named(tmp_path: Path) -> None:
    check_run_manifest(tmp_path, MANIFEST)
    added = {**MANIFEST, "settings": {**MANIFEST["settings"], "language": "French"}}
    with pytest.raises(ValueError, match=r"\(settings\.language\)"):
        check_run_manifest(tmp_path, added)
    removed = {key: value for key, value in MANIFEST.items() if key != "rewriter"}
    with pytest.raises(ValueError, match=r"\(rewriter\)"):
        check_run_manifest(tmp_path, removed)


def test_a_partial_check_compares_only_the_given_fields_and_writes_nothing(tmp_path: Path) -> None:
    without_models = {key: value for key, value in MANIFEST.items() if key != "rewriter"}
    check_run_manifest(tmp_path, without_models, partial=True)
    assert not (tmp_path / RUN_MANIFEST_FILE).exists()
    check_run_manifest(tmp_path, MANIFEST)
    check_run_manifest(tmp_path, without_models, partial=True)  # the missing model name is not a change
    changed = {**without_models, "settings": {**MANIFEST["settings"], "variants": 9}}
    with pytest.raises(ValueError, match=r"\(settings\.variants\)"):
        check_run_manifest(tmp_path, changed, partial=True)
