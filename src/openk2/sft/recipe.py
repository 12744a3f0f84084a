"""The SFT recipe: the training sections every stage shares, plus [init] (the starting checkpoint) and [sft]
(the conversations, how they are rendered, held out and mixed). Validated before any work starts; a problem
is an error naming the file and `[section].field`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from openk2.chat.template import DeclarationStyle, TemplateName
from openk2.model import K2Config
from openk2.recipes import RecipeSection
from openk2.train.recipe import TrainingRecipe, load_recipe

SourceKind = Literal["chat", "trajectories", "preference", "tasks"]
CHECKPOINT_FILES = ("config.json", "tokenizer.json")


class InitSection(RecipeSection):
    checkpoint: Path = Field(
        description="any OpenK2 checkpoint directory: a training checkpoint (config.json, model/ shards, "
        "tokenizer.json) or config.json, model.safetensors and tokenizer.json"
    )

    @field_validator("checkpoint")
    @classmethod
    def _is_a_checkpoint(cls, checkpoint: Path) -> Path:
        missing = [name for name in CHECKPOINT_FILES if not (checkpoint / name).is_file()]
        if missing:
            raise ValueError(f"{checkpoint} lacks {missing}")
        return checkpoint


class SourceSection(RecipeSection):
    """One JSONL file of conversations and its share of the training mixture."""

    kind: SourceKind = Field(
        description="chat: OpenAI {messages, tools}; trajectories: gym Trajectory records; preference: "
        "{prompt, chosen, rejected, rubric} judged pairwise; tasks: gym Task records with "
        "verification.answer"
    )
    path: Path
    weight: float = Field(default=1.0, gt=0, description="relative share of the training conversations")
    val_fraction: float | None = Field(
        default=None, ge=0, lt=1, description="held out for validation; None: [sft].val_fraction"
    )
    min_reward: float | None = Field(
        default=None, description="trajectories only: keep those whose reward is at least this"
    )

    @field_validator("path")
    @classmethod
    def _exists(cls, path: Path) -> Path:
        if not path.is_file():
            raise ValueError(f"{path} is not a file")
        return path

    @model_validator(mode="after")
    def _fits_its_kind(self) -> SourceSection:
        if self.min_reward is not None and self.kind != "trajectories":
            raise ValueError(f"min_reward: only trajectories carry a reward, not {self.kind}")
        return self


class SFTSection(RecipeSection):
    sources: list[SourceSection] = Field(min_length=1)
    seq_len: int = Field(default=512, ge=2, description="tokens per packed row; longer conversations are cut")
    template: TemplateName = Field(default="k2-0905", description="K2's chat template version")
    declaration_style: DeclarationStyle = Field(default="json", description="how tools are declared")
    val_fraction: float = Field(default=0.05, ge=0, lt=1, description="held-out share of every source")
    seed: int = Field(default=0, ge=0, description="chooses the held-out records and the mixture order")


class SFTRecipe(TrainingRecipe):
    init: InitSection
    sft: SFTSection

    @model_validator(mode="after")
    def _rows_fit_the_model(self) -> SFTRecipe:
        positions = self.model_config_k2().max_position_embeddings
        if self.sft.seq_len > positions:
            raise ValueError(
                f"[sft].seq_len {self.sft.seq_len} exceeds the checkpoint's max_position_embeddings {positions}"
            )
        return self

    def model_config_k2(self) -> K2Config:
        """The starting checkpoint's config, with the [train] balance-loss weight."""
        config = K2Config.from_pretrained(self.init.checkpoint)
        return K2Config(**{**config.model_dump(), "aux_loss_alpha": self.train.aux_loss_alpha})


def load_sft_recipe(path: Path) -> SFTRecipe:
    """Read and validate an SFT recipe; every problem is reported as `<file>: [section].field: message`."""
    return load_recipe(path, SFTRecipe)
