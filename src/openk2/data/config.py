"""DataConfig: the `[data]` section of a recipe, validated before any work starts."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from openk2.recipes import RecipeSection, read_recipe_toml, validate_recipe
from openk2.tokenizer.special_tokens import NUM_RESERVED_TOKENS


class ShardSettings(RecipeSection):
    """Everything that determines the bytes of the tokenizer and the shards (recorded in the manifest)."""

    corpus: str | list[str] = Field(
        default="embedded:shakespeare",
        description="'embedded:shakespeare', a directory of .txt / .jsonl files, a single .txt / .jsonl file, "
        "or a non-empty list of these read in order (e.g. raw text plus rephrased.jsonl); a .txt file is "
        "one document, a .jsonl file one document per line (field 'text', optional string 'id')",
    )
    vocab_size: int = Field(
        default=8192,
        gt=2 * NUM_RESERVED_TOKENS,
        le=2**32,
        description="BPE ids plus the 256 reserved K2 special tokens on top",
    )
    val_fraction: float = Field(default=0.05, gt=0, lt=1, description="share of documents held out")
    seed: int = Field(default=0, ge=0, description="chooses the held-out documents and the loader's shuffle")
    shard_tokens: int = Field(
        default=2**24,
        gt=0,
        description="a shard holds whole documents up to this many tokens; a longer document gets its own",
    )

    @field_validator("corpus")
    @classmethod
    def _corpus_list_is_non_empty_and_distinct(cls, corpus: str | list[str]) -> str | list[str]:
        if isinstance(corpus, str):
            return corpus
        if not corpus:
            raise ValueError("an empty list names no corpus; give at least one entry")
        for index, entry in enumerate(corpus):
            if (first := corpus.index(entry)) != index:
                raise ValueError(f"data.corpus[{index}]: {entry!r} repeats data.corpus[{first}]")
        return corpus


class DataConfig(ShardSettings):
    """Tokenisation settings plus where the shards live and how the loader cuts them."""

    shards_dir: Path = Field(default=Path("runs/tiny/data"), description="tokenizer.json, shards, manifest")
    seq_len: int = Field(default=256, ge=2, description="tokens per packed training sequence")

    def shard_settings(self) -> ShardSettings:
        return ShardSettings(**self.model_dump(include=set(ShardSettings.model_fields)))


class DataRecipe(RecipeSection):
    """A recipe that only tokenizes: a [data] section and nothing else."""

    data: DataConfig


def load_data_config(recipe: Path) -> DataConfig:
    """The `[data]` table of a tokenize-only recipe (a pre-training recipe is read by `openk2.train`, whole);
    errors name the file and the field."""
    document = read_recipe_toml(recipe)
    if "data" not in document:
        raise ValueError(f"{recipe}: no [data] section")
    return validate_recipe(DataRecipe, document, str(recipe)).data
