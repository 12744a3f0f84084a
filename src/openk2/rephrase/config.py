"""RephraseConfig: the `[rephrase]` section of a recipe, validated (with command-line overrides) before any work."""

from pathlib import Path
from typing import Any

from pydantic import Field

from openk2.llm import LLMConfig
from openk2.recipes import RecipeSection, read_recipe_toml, validate_recipe
from openk2.rephrase.prompts import BUILTIN_LIBRARY, Mode


class RephraseConfig(RecipeSection):
    mode: Mode = Field(default="knowledge", description="knowledge | math-notes | translate")
    language: str = Field(default="English", min_length=1, description="the target language of translate")
    variants: int = Field(default=1, ge=1, description="rephrasings per document, each in its own style")
    chunk_tokens: int = Field(default=256, ge=16, description="about this many tokens per chunk (K2 Fig. 4)")
    context_tokens: int = Field(
        default=512, ge=0, description="at most this much preceding source and rewrite go into a prompt"
    )
    tokenizer: str = Field(
        default="teacher",
        description="counts tokens for chunking and the length check: 'teacher', a checkpoint directory or a tokenizer.json path",
    )
    prompt_library: Path = Field(default=BUILTIN_LIBRARY, description="a directory of prompt TOML files")
    temperature: float = Field(default=0.6, ge=0.0, le=2.0)
    max_attempts: int = Field(
        default=2, ge=1, description="tries per chunk before the document is rejected (1 at temperature 0)"
    )
    judge_threshold: int = Field(default=3, ge=1, le=5, description="chunks the judge scores below fail")
    concurrency: int = Field(
        default=4,
        ge=1,
        description="model requests in flight at once; documents take turns, so a long one starves none",
    )
    max_document_tokens: int = Field(
        default=32_768,
        ge=1,
        description="a longer document is rejected with a warning (128 chunks of 256 tokens: split books "
        "into chapters, or raise it knowingly)",
    )
    checks: dict[str, Any] = Field(
        default_factory=dict, description="overrides of the mode's fidelity settings (numbers, names, ...)"
    )
    rewriter: LLMConfig = LLMConfig()
    judge: LLMConfig | None = Field(default=None, description="the judge's model; default: the rewriter")

    def output_settings(self) -> dict[str, Any]:
        """What the output depends on, for a resumed run to match: not concurrency, not how models are reached
        (the models' names and the prompt library's hash are recorded beside it)."""
        return self.model_dump(mode="json", exclude={"concurrency", "rewriter", "judge", "prompt_library"})


class RephraseRecipe(RecipeSection):
    """A rephrasing recipe: the [rephrase] section and nothing else."""

    rephrase: RephraseConfig


def load_rephrase_config(recipe: Path | None, overrides: dict[str, Any]) -> RephraseConfig:
    """The recipe's `[rephrase]` table (or the defaults without a recipe) with command-line `overrides` on top."""
    table: dict[str, Any] = {}
    origin = "defaults"
    if recipe is not None:
        document = read_recipe_toml(recipe)
        if "rephrase" not in document:
            raise ValueError(f"{recipe}: no [rephrase] section")
        validate_recipe(RephraseRecipe, document, str(recipe))  # the whole file, before any flag
        table, origin = document["rephrase"], str(recipe)
    flags = {key: value for key, value in overrides.items() if value is not None}
    if flags:
        origin = "command line"
    return validate_recipe(RephraseConfig, {**table, **flags}, origin, within="rephrase")
