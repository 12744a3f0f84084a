"""Files that survive a kill: atomic replacement, fsync'd append-only JSONL logs, and a reply cache.

Every long job in OpenK2 (pre-training checkpoints, rephrasing, synthesis, SFT, RL, evaluation) writes
through these, so that a SIGKILL leaves either the old file or the new one, and at most a torn last line
of a log, which the next open cuts off.
"""

import hashlib
import json
import os
from pathlib import Path
from typing import Any


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
        atomic_write_text(
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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a kill or a power loss leaves the old file or the new one, never half.

    The bytes are written beside the target and fsynced, renamed over it, and the directory is fsynced so
    that the rename itself is durable.
    """
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    with partial.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    partial.replace(path)
    fsync_directory(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def fsync_directory(directory: Path) -> None:
    """Make the entries of `directory` (a rename, a new file) durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
