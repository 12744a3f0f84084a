from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from openk2.data.config import DataConfig, ShardSettings, load_data_config
from openk2.train.recipe import load_data_section

REPO = Path(__file__).resolve().parents[2]


def test_tiny_recipe_data_section_is_valid() -> None:
    config = load_data_section(REPO / "recipes" / "pretrain-tiny.toml")
    assert config.corpus == "embedded:shakespeare"
    assert config.vocab_size == 8192
    assert config.shards_dir == Path("runs/pretrain-tiny/data")
    assert config.shard_settings() == ShardSettings(
        corpus="embedded:shakespeare", vocab_size=8192, val_fraction=0.05, seed=0, shard_tokens=2**24
    )


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("vocab_size = 300", "[data].vocab_size"),
        ("val_fraction = 0.0", "[data].val_fraction"),
        ("seq_len = 1", "[data].seq_len"),
        ("vocab = 8192", "[data].vocab"),  # a misspelt key is an error, not silently ignored
        ("corpus = []", "[data].corpus"),
    ],
)
def test_bad_recipe_value_names_file_and_field(tmp_path: Path, line: str, field: str) -> None:
    recipe = tmp_path / "bad.toml"
    recipe.write_text(f"[data]\n{line}\n")
    with pytest.raises(ValueError, match=re.escape(f"bad.toml: {field}:")):
        load_data_config(recipe)


def test_recipe_without_data_section_is_named(tmp_path: Path) -> None:
    recipe = tmp_path / "empty.toml"
    recipe.write_text("[training]\nsteps = 10\n")
    with pytest.raises(ValueError, match=r"empty\.toml: no \[data\] section"):
        load_data_config(recipe)


def test_config_object_rejects_bad_values_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="shard_tokens"):
        DataConfig(shard_tokens=0)


def test_recipe_with_a_corpus_list_validates_and_keeps_it_in_the_shard_settings(tmp_path: Path) -> None:
    recipe = tmp_path / "mixed.toml"
    recipe.write_text('[data]\ncorpus = ["embedded:shakespeare", "runs/rephrased/rephrased.jsonl"]\n')
    config = load_data_config(recipe)
    assert config.corpus == ["embedded:shakespeare", "runs/rephrased/rephrased.jsonl"]
    settings = config.shard_settings()
    assert ShardSettings.model_validate_json(settings.model_dump_json()) == settings
    reordered = ShardSettings(corpus=["runs/rephrased/rephrased.jsonl", "embedded:shakespeare"])
    assert reordered != settings  # a different order is a different token stream


def test_a_repeated_corpus_entry_names_both_indices(tmp_path: Path) -> None:
    recipe = tmp_path / "repeat.toml"
    recipe.write_text('[data]\ncorpus = ["raw", "rephrased.jsonl", "raw"]\n')
    with pytest.raises(
        ValueError,
        match=re.escape("repeat.toml: [data].corpus: data.corpus[2]: 'raw' repeats data.corpus[0]"),
    ):
        load_data_config(recipe)
