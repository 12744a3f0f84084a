"""The run directory: append-only JSONL logs that survive a kill, the reply cache and the run manifest.

    DIR/rephrased.jsonl   accepted documents: the corpus `openk2 tokenize` reads (field `text`)
    DIR/rejects.jsonl     rejected documents with the reasons (no `text` field: never read as corpus)
    DIR/cache.jsonl       every LLM reply, by a hash of the model, prompt, sampling and attempt
    DIR/rephrase.json     what the output depends on; a resumed run must match it
    DIR/summary.json      acceptance per check, judge scores, tokens (rewritten at the end of each run)

A record is one `write` of one line followed by fsync, so a kill leaves at most a torn last line;
opening a log cuts it off. A document is done once its line is in one of the two logs.
"""

import json
from pathlib import Path
from typing import Any

from openk2.io import atomic_write_text

ACCEPTED_FILE = "rephrased.jsonl"
REJECTS_FILE = "rejects.jsonl"
CACHE_FILE = "cache.jsonl"
RUN_MANIFEST_FILE = "rephrase.json"
SUMMARY_FILE = "summary.json"


def check_run_manifest(output_dir: Path, manifest: dict[str, Any], partial: bool = False) -> None:
    """Record what the output depends on, or refuse to resume a run whose inputs or settings differ.

    `partial`: compare only the top-level fields `manifest` has (before the models are loaded) and write nothing.
    """
    path = output_dir / RUN_MANIFEST_FILE
    if not path.exists():
        if not partial:
            atomic_write_text(path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        return
    recorded = json.loads(path.read_text(encoding="utf-8"))
    if partial:
        recorded = {field: recorded.get(field) for field in manifest}
    changed = _changed_fields(recorded, manifest)
    if changed:
        raise ValueError(
            f"{path}: this directory holds a run with other inputs or settings ({', '.join(changed)}); "
            "use another --output directory or delete this one"
        )


def _changed_fields(recorded: Any, current: Any, prefix: str = "") -> list[str]:
    if isinstance(recorded, dict) and isinstance(current, dict):
        changed = []
        for field in sorted(set(recorded) | set(current)):
            changed += _changed_fields(recorded.get(field), current.get(field), f"{prefix}{field}.")
        return changed
    return [] if recorded == current else [prefix.rstrip(".")]
