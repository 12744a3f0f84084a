"""Token shards on disk: raw little-endian token arrays plus a manifest that pins their sizes and hashes.

A shard directory holds `tokenizer.json`, `train_000000.bin ...`, `val_000000.bin ...` and `manifest.json`.
Each document is stored as `[BOS] tokens [EOS]`; a shard holds whole documents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openk2.data.config import ShardSettings
from openk2.data.corpus import file_sha256

MANIFEST_NAME = "manifest.json"
TOKENIZER_NAME = "tokenizer.json"
MANIFEST_FORMAT: Literal["openk2-token-shards/1"] = "openk2-token-shards/1"

SplitName = Literal["train", "val"]
TokenDtype = Literal["uint16", "uint32"]


class ShardError(ValueError):
    """A file of a shard directory is missing, truncated, corrupt or disagrees with the manifest."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShardFile(_Record):
    name: str
    num_tokens: int = Field(gt=0)
    num_documents: int = Field(gt=0)
    sha256: str


class SplitRecord(_Record):
    num_tokens: int = Field(ge=0)
    num_documents: int = Field(ge=0)
    documents: list[str] = Field(description="source of each document, in stream order")
    shards: list[ShardFile]


class SourceFile(_Record):
    name: str
    sha256: str
    num_documents: int = Field(ge=0)


class Manifest(_Record):
    format: Literal["openk2-token-shards/1"] = MANIFEST_FORMAT
    dtype: TokenDtype
    vocab_size: int
    bos_id: int
    eos_id: int
    tokenizer_sha256: str
    settings: ShardSettings
    sources: list[SourceFile]
    train: SplitRecord
    val: SplitRecord

    def split(self, name: SplitName) -> SplitRecord:
        return self.train if name == "train" else self.val

    def stream_sha256(self, name: SplitName) -> str:
        """One fingerprint of a split's token stream: the hash of its shards' hashes, in order."""
        return hashlib.sha256("".join(shard.sha256 for shard in self.split(name).shards).encode()).hexdigest()


def token_dtype(vocab_size: int) -> TokenDtype:
    """The narrowest unsigned type that holds every id."""
    return "uint16" if vocab_size <= 2**16 else "uint32"


def write_split(
    directory: Path,
    split: SplitName,
    documents: Sequence[tuple[str, np.ndarray]],
    shard_tokens: int,
    dtype: TokenDtype,
) -> SplitRecord:
    """Write (source, `[BOS] tokens [EOS]`) documents into shards of whole documents, at most
    shard_tokens each unless one document alone is longer."""
    groups: list[list[np.ndarray]] = []
    group_tokens = 0
    for _, tokens in documents:
        if not groups or group_tokens + len(tokens) > shard_tokens:
            groups.append([])
            group_tokens = 0
        groups[-1].append(tokens)
        group_tokens += len(tokens)
    shards = []
    for index, group in enumerate(groups):
        path = directory / f"{split}_{index:06d}.bin"
        path.write_bytes(np.concatenate(group).astype(np.dtype(dtype).newbyteorder("<")).tobytes())
        shards.append(
            ShardFile(
                name=path.name,
                num_tokens=sum(len(tokens) for tokens in group),
                num_documents=len(group),
                sha256=file_sha256(path),
            )
        )
    return SplitRecord(
        num_tokens=sum(shard.num_tokens for shard in shards),
        num_documents=len(documents),
        documents=[source for source, _ in documents],
        shards=shards,
    )


def read_manifest(shards_dir: Path) -> Manifest:
    path = shards_dir / MANIFEST_NAME
    if not path.is_file():
        raise ShardError(f"{path}: missing; run `openk2 tokenize` to create the shard directory")
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except ValidationError as error:
        raise ShardError(f"{path}: not a valid shard manifest ({error})") from error


def verify_file(path: Path, expected_bytes: int | None, expected_sha256: str, check_hash: bool) -> None:
    """Raise ShardError naming the file unless it exists with the manifest's size (and hash)."""
    if not path.is_file():
        raise ShardError(f"{path}: missing (listed in {MANIFEST_NAME})")
    size = path.stat().st_size
    if expected_bytes is not None and size != expected_bytes:
        raise ShardError(
            f"{path}: {size} bytes, but {MANIFEST_NAME} expects {expected_bytes}; the file is truncated or corrupt"
        )
    if check_hash and (actual := file_sha256(path)) != expected_sha256:
        raise ShardError(
            f"{path}: sha256 {actual} differs from {expected_sha256} in {MANIFEST_NAME}; the file is corrupt"
        )


def verify_shards_dir(shards_dir: Path, check_hashes: bool = True) -> Manifest:
    """Check the tokenizer and every shard against the manifest; return the manifest."""
    manifest = read_manifest(shards_dir)
    # the tokenizer has no size in the manifest, and hashing it is cheap: always check its hash
    verify_file(shards_dir / TOKENIZER_NAME, None, manifest.tokenizer_sha256, check_hash=True)
    itemsize = np.dtype(manifest.dtype).itemsize
    for split in ("train", "val"):
        for shard in manifest.split(split).shards:
            verify_file(shards_dir / shard.name, shard.num_tokens * itemsize, shard.sha256, check_hashes)
    return manifest


@dataclass
class SplitTokens:
    """One split's shards read as a single token stream through memory maps."""

    paths: list[Path]
    arrays: Sequence[np.ndarray]  # each [num_tokens] of the manifest's dtype (memory maps)
    shard_starts: np.ndarray = field(
        init=False
    )  # [num_shards + 1] stream offset of each shard, then the total

    def __post_init__(self) -> None:
        self.shard_starts = np.cumsum([0] + [len(array) for array in self.arrays])

    def __len__(self) -> int:
        return int(self.shard_starts[-1])

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) of the stream as int64, crossing shard boundaries as needed."""
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"token range [{start}, {stop}) outside the split's {len(self)} tokens")
        pieces = []
        first = int(np.searchsorted(self.shard_starts, start, side="right")) - 1
        for index in range(first, len(self.arrays)):
            shard_start = int(self.shard_starts[index])
            if shard_start >= stop:
                break
            pieces.append(self.arrays[index][max(start - shard_start, 0) : stop - shard_start])
        return np.concatenate(pieces).astype(np.int64) if pieces else np.empty(0, dtype=np.int64)


def open_split(shards_dir: Path, split: SplitName, check_hashes: bool = True) -> tuple[Manifest, SplitTokens]:
    """Verify the whole shard directory, then memory-map one split."""
    manifest = verify_shards_dir(shards_dir, check_hashes)
    dtype = np.dtype(manifest.dtype).newbyteorder("<")
    paths = [shards_dir / shard.name for shard in manifest.split(split).shards]
    arrays = [np.memmap(path, dtype=dtype, mode="r") for path in paths]
    return manifest, SplitTokens(paths=paths, arrays=arrays)
