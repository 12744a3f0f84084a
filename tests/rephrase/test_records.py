from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from openk2.rephrase.records import RUN_MANIFEST_FILE, check_run_manifest

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
