"""`openk2 tokenize`: corpus -> K2-style BPE tokenizer + train/val token shards + manifest."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from openk2.data.config import DataConfig, ShardSettings
from openk2.data.corpus import (
    CorpusFile,
    Document,
    corpus_files,
    file_sha256,
    hold_out_documents,
    read_documents,
)
from openk2.data.shards import (
    MANIFEST_NAME,
    TOKENIZER_NAME,
    Manifest,
    ShardError,
    SourceFile,
    SplitName,
    SplitRecord,
    token_dtype,
    verify_shards_dir,
    write_split,
)
from openk2.io import publish_directory
from openk2.progress import log_console
from openk2.tokenizer.bpe import plain_text_tokenizer, train_k2_tokenizer
from openk2.tokenizer.special_tokens import BOS, EOS, special_token_id

ENCODE_BATCH_DOCUMENTS = 16


def tokenize_corpus(config: DataConfig, progress: bool = True) -> Manifest:
    """Build `config.shards_dir`; a no-op when it already holds verified shards of the same settings and sources."""
    files = corpus_files(config.corpus)
    shards_dir = config.shards_dir
    if shards_dir.exists() and any(shards_dir.iterdir()) and not (shards_dir / MANIFEST_NAME).exists():
        raise ValueError(
            f"data.shards_dir: {shards_dir} is not empty and has no {MANIFEST_NAME}; refusing to replace it"
        )
    console = log_console(quiet=not progress)
    sources = [(file, file_sha256(file.path)) for file in files]
    settings = config.shard_settings()
    if (manifest := _up_to_date_manifest(shards_dir, settings, sources, console)) is not None:
        console.print(f"{shards_dir}: up to date with the corpus and settings, nothing to do")
        return manifest

    # build next to the target, then swap directories: readers never see a half-written shard directory
    staging = shards_dir.parent / f".{shards_dir.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not progress,
        ) as bars:
            manifest = _build(config, settings, sources, staging, bars)
        publish_directory(staging, shards_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _up_to_date_manifest(
    shards_dir: Path, settings: ShardSettings, sources: list[tuple[CorpusFile, str]], console: Console
) -> Manifest | None:
    if not (shards_dir / MANIFEST_NAME).exists():
        return None
    try:
        manifest = verify_shards_dir(shards_dir)
    except ShardError as error:
        console.print(f"[yellow]rebuilding a damaged shard directory:[/yellow] {error}")
        return None
    same_sources = [(source.name, source.sha256) for source in manifest.sources] == [
        (file.name, sha256) for file, sha256 in sources
    ]
    return manifest if manifest.settings == settings and same_sources else None


def _build(
    config: DataConfig,
    settings: ShardSettings,
    sources: list[tuple[CorpusFile, str]],
    staging: Path,
    bars: Progress,
) -> Manifest:
    documents_per_file = []
    for file, _ in bars.track(sources, description="reading corpus"):
        documents_per_file.append(read_documents(file))
    documents = [document for file_documents in documents_per_file for document in file_documents]
    train_documents, val_documents = hold_out_documents(documents, config.val_fraction, config.seed)

    training = bars.add_task(f"training BPE on {len(train_documents)} documents", total=1)
    tokenizer = train_k2_tokenizer((document.text for document in train_documents), config.vocab_size)
    bars.advance(training)
    tokenizer.save(str(staging / TOKENIZER_NAME))

    encoder = plain_text_tokenizer(tokenizer)
    bos_id = special_token_id(BOS, config.vocab_size)
    eos_id = special_token_id(EOS, config.vocab_size)
    dtype = token_dtype(config.vocab_size)
    splits: dict[SplitName, SplitRecord] = {}
    held_out: list[tuple[SplitName, list[Document]]] = [("train", train_documents), ("val", val_documents)]
    for split, split_documents in held_out:
        encoding = bars.add_task(f"encoding {split}", total=len(split_documents))
        wrapped = []
        for start in range(0, len(split_documents), ENCODE_BATCH_DOCUMENTS):
            batch = split_documents[start : start + ENCODE_BATCH_DOCUMENTS]
            for document, encoded in zip(batch, encoder.encode_batch([d.text for d in batch]), strict=True):
                wrapped.append((document.source, _with_boundaries(encoded.ids, bos_id, eos_id)))
            bars.advance(encoding, len(batch))
        splits[split] = write_split(staging, split, wrapped, config.shard_tokens, dtype)

    manifest = Manifest(
        dtype=dtype,
        vocab_size=config.vocab_size,
        bos_id=bos_id,
        eos_id=eos_id,
        tokenizer_sha256=file_sha256(staging / TOKENIZER_NAME),
        settings=settings,
        sources=[
            SourceFile(name=file.name, sha256=sha256, num_documents=len(file_documents))
            for (file, sha256), file_documents in zip(sources, documents_per_file, strict=True)
        ],
        train=splits["train"],
        val=splits["val"],
    )
    (staging / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return manifest


def _with_boundaries(ids: list[int], bos_id: int, eos_id: int) -> np.ndarray:
    # [BOS] too, not only [EOS]: the stream's first document and any [BOS]-led prompt then start like all others
    return np.array([bos_id, *ids, eos_id], dtype=np.int64)
