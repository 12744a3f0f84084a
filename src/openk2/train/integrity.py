"""A checkpoint that proves its integrity: `manifest.json`, written last, lists every file's size and SHA-256.

Resuming verifies it, so a truncated, emptied, bit-flipped or missing file is found before anything is
loaded and named in the message; the run then falls back to the newest checkpoint that verifies.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MANIFEST = "manifest.json"
HASH_BLOCK = 2**20


def write_manifest(directory: Path) -> None:
    """List every file below `directory` (relative path, size, sha256), every rank's shards included; the
    caller fsyncs and publishes the directory."""
    files = {
        path.relative_to(directory).as_posix(): {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path != directory / MANIFEST
    }
    (directory / MANIFEST).write_text(json.dumps({"files": files}, indent=1))


def manifest_problem(directory: Path) -> str | None:
    """None when every file the manifest lists is there with its size and checksum, else what is wrong,
    naming the file."""
    path = directory / MANIFEST
    try:
        files = json.loads(path.read_text())["files"]
        listed = {name: (int(entry["bytes"]), str(entry["sha256"])) for name, entry in files.items()}
    except FileNotFoundError:
        return f"{path}: missing"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return f"{path}: not a valid manifest ({error!r})"
    for name, (size, checksum) in listed.items():
        file = directory / name
        if not file.is_file():
            return f"{file}: missing (listed in {MANIFEST})"
        actual_size = file.stat().st_size
        if actual_size != size:
            return f"{file}: {actual_size} bytes, {MANIFEST} says {size} (truncated or replaced)"
        if file_sha256(file) != checksum:
            return f"{file}: SHA-256 differs from {MANIFEST} (corrupted)"
    return None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()
