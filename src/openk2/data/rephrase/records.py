"""The run directory: append-only JSONL logs that survive a kill, the reply cache and the run manifest.

    DIR/rephrased.jsonl   accepted documents: the corpus `openk2 tokenize` reads (field `text`)
    DIR/rejects.jsonl     rejected documents with the reasons (no `text` field: never read as corpus)
    DIR/cache.jsonl       every LLM reply, by a hash of the model, prompt, sampling and attempt
    DIR/rephrase.json     what the output depends on; a resumed run must match it
    DIR/summary.json      acceptance per check, judge scores, tokens (rewritten at the end of each run)

A record is one `write` of one line followed by fsync, so a kill leaves at most a torn last line;
opening a log cuts it off. A document is done once its line is in one of the two logs.
"""

import hashlib
import json
import os
from pathlib import Path
from typing import Any

ACCEPTED_FILE = "rephrased.jsonl"
REJECTS_FILE = "rejects.jsonl"
CACHE_FILE = "cache.jsonl"
RUN_MANIFEST_FILE = "rephrase.json"
SUMMARY_FILE = "summary.json"


class JsonlLog:
    """An append-only JSONL file; opening it drops a torn last line left by a kill."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        if path.exists():
            content = path.read_bytes()
            complete = content[: content.rfind(b"\n") + 1]  # everything up to the last full line
            if len(complete) != len(content):
                with path.open("r+b") as file:
                    file.truncate(len(complete))
            # split on "\n" only: str.splitlines() would also break at U+2028 inside a JSON string
            for line_number, line in enumerate(complete.decode("utf-8").split("\n")[:-1], start=1):
                try:
                    self.records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{line_number}: not a JSON record ({error})") from error

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self.path.open("ab") as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())
        self.records.append(record)

    def rewrite_sorted(self, order: dict[str, int]) -> None:
        """Put the records in `order` of their ids (input order), atomically: a kill keeps the old file."""
        self.records.sort(key=lambda record: order[record["id"]])
        write_atomically(
            self.path, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in self.records)
        )


class ReplyCache:
    """Finished LLM replies by content hash: a resumed or repeated run asks the model nothing twice."""

    def __init__(self, path: Path) -> None:
        self._log = JsonlLog(path)
        self._replies: dict[str, dict[str, Any]] = {record["key"]: record for record in self._log.records}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(**material: Any) -> str:
        return hashlib.sha256(json.dumps(material, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        reply = self._replies.get(key)
        if reply is None:
            self.misses += 1
        else:
            self.hits += 1
        return reply

    def put(self, key: str, reply: dict[str, Any]) -> None:
        record = {"key": key, **reply}
        self._log.append(record)
        self._replies[key] = record


def write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    with partial.open("w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    partial.replace(path)


def check_run_manifest(output_dir: Path, manifest: dict[str, Any], partial: bool = False) -> None:
    """Record what the output depends on, or refuse to resume a run whose inputs or settings differ.

    `partial`: compare only the top-level fields `manifest` has (before the models are loaded) and write nothing.
    """
    path = output_dir / RUN_MANIFEST_FILE
    if not path.exists():
        if not partial:
            write_atomically(path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
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
