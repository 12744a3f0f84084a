"""Files that survive a kill: atomic replacement of files and directories, fsync'd append-only JSONL logs,
and a reply cache.

Every long job in OpenK2 (pre-training checkpoints, rephrasing, synthesis, SFT, RL, evaluation) writes
through these, so that a SIGKILL leaves either the old file or the new one, and at most a torn last line
of a log, which the next open cuts off.
"""

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A path to write `path`'s new content to (for writers that want a file name: safetensors, torch.save).

    On leaving the block the file is fsynced, renamed over `path` and the directory fsynced, so a kill or a
    power loss leaves the old file or the new one, never half; on an error the partial file is removed.
    """
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        yield partial
        fsync_file(partial)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    fsync_directory(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically and durably (see `atomic_path`)."""
    with atomic_path(path) as partial:
        partial.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    """`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def publish_directory(staging: Path, target: Path) -> None:
    """Rename a fully written `staging` directory to `target`, durably: a kill leaves the old `target` or
    the new one, never a half-written one under its name.

    Every file and directory in `staging` is fsynced first. An existing `target` is renamed aside to a hidden
    `.<name>.retired-<pid>` (which a kill may leave behind; it is never read) and deleted after the swap.
    """
    fsync_tree(staging)
    retired = None
    if target.exists():
        retired = target.with_name(f".{target.name}.retired-{os.getpid()}")
        target.replace(retired)
    staging.replace(target)
    fsync_directory(target.parent)
    if retired is not None:
        shutil.rmtree(retired)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory below `root`, and `root` itself."""
    for directory, _, files in os.walk(root):
        for name in files:
            fsync_file(Path(directory, name))
        fsync_directory(Path(directory))


def fsync_file(path: Path) -> None:
    with path.open("rb") as file:
        os.fsync(file.fileno())


def fsync_directory(directory: Path) -> None:
    """Make the entries of `directory` (a rename, a new file) durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
