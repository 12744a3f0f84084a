"""Training recipes: every TOML section as a pydantic model, validated before any work starts.

Every training stage shares [run] [optim] [schedule] [train] [parallel] [memory] (`TrainingRecipe`);
pre-training adds [model] and [data] (`Recipe`), SFT adds [init] and [sft] (`openk2.sft.SFTRecipe`).
K2 report §2.5 sets the defaults: MuonClip with τ = 100, peak lr 2e-4 after a 500-step warm-up, cosine
decay to 2e-5, weight decay 0.1. A misspelt key or a bad value is an error naming the file and the field.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import to_jsonable_python

from openk2.data import DataConfig, load_data_config
from openk2.model import PRESETS, K2Config
from openk2.optim import WSDSchedule
from openk2.recipes import (
    RecipeSection,
    describe_errors,
    load_recipe_file,
    read_recipe_toml,
    validate_recipe,
)
from openk2.train.device import DeviceName, DtypeName


class RunSection(RecipeSection):
    name: str = Field(default="tiny", min_length=1, description="the run directory is <output_dir>/<name>")
    output_dir: Path = Path("runs")
    seed: int = Field(default=0, ge=0, description="seeds the model initialisation")
    steps: int = Field(gt=0, description="optimizer steps")
    checkpoint_every: int = Field(default=100, gt=0, description="a checkpoint every N steps and at the end")
    keep_checkpoints: int = Field(default=2, gt=0, description="how many of the newest checkpoints to keep")
    val_every: int = Field(default=100, gt=0, description="validation loss every N steps and at the end")
    val_max_batches: int | None = Field(default=None, gt=0, description="None: the whole held-out split")
    log_every: int = Field(default=1, gt=0, description="a metrics.jsonl record every N steps")
    sample_prompt: str = Field(
        default="",
        description="the report's sample: pre-training continues this text, SFT answers it as a user message",
    )
    sample_tokens: int = Field(default=0, ge=0, description="0: no sample")

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.name


class ModelSection(RecipeSection):
    preset: str = "tiny"
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="K2Config fields replacing the preset's"
    )

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, preset: str) -> str:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
        return preset

    @field_validator("overrides")
    @classmethod
    def _known_fields(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(overrides) - set(K2Config.model_fields))
        if unknown:
            raise ValueError(f"unknown K2Config fields {unknown}")
        if "aux_loss_alpha" in overrides:
            raise ValueError("aux_loss_alpha is a training choice: set [train].aux_loss_alpha instead")
        return overrides

    @model_validator(mode="after")
    def _overrides_make_a_valid_config(self) -> ModelSection:
        try:
            K2Config.model_validate({**PRESETS[self.preset], **self.overrides}, strict=True)
        except ValidationError as error:
            raise ValueError(f"overrides: {describe_errors(error, within='')}") from None
        return self


MUON_ONLY_FIELDS = ("momentum", "nesterov", "ns_steps", "qk_clip_tau")


class OptimSection(RecipeSection):
    """MuonClip (K2 report §2.1): Muon for hidden matrices, AdamW for the rest, QK-Clip after each step.

    `optimizer = "adamw"` trains every parameter with AdamW and never clips (the max logits are still
    measured): the baseline K2's report compares Muon against.
    """

    optimizer: Literal["muonclip", "adamw"] = "muonclip"
    lr: float = Field(default=2e-4, gt=0, description="peak learning rate")
    weight_decay: float = Field(default=0.1, ge=0)
    momentum: float = Field(default=0.95, ge=0, lt=1)
    nesterov: bool = True
    ns_steps: int = Field(default=5, gt=0, description="Newton–Schulz iterations")
    qk_clip_tau: float = Field(
        default=100.0, gt=0, description="τ: heads whose max logit exceeds it are clipped"
    )
    grad_clip: float | None = Field(default=1.0, gt=0, description="max global gradient norm; None: off")
    adamw_betas: tuple[float, float] = (0.9, 0.95)
    adamw_eps: float = Field(default=1e-8, gt=0)

    @field_validator("adamw_betas")
    @classmethod
    def _betas_in_unit_interval(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= beta < 1 for beta in betas):
            raise ValueError(f"expected two values in [0, 1), got {list(betas)}")
        return betas

    @model_validator(mode="after")
    def _muon_settings_need_muon(self) -> OptimSection:
        if self.optimizer == "adamw":
            for field in MUON_ONLY_FIELDS:
                if field in self.model_fields_set:
                    raise ValueError(f"{field}: only MuonClip uses it, and optimizer is 'adamw'")
        return self


class ScheduleSection(RecipeSection):
    """WSD (K2 report §2.5): linear warm-up, constant, then a decay over the last `decay_fraction` of steps.

    `kind = "cosine"`: the warm-up, then one cosine decay over every remaining step (no constant phase).
    """

    kind: Literal["wsd", "cosine"] = "wsd"
    warmup_steps: int = Field(default=500, ge=0)
    decay: Literal["cosine", "linear"] = "cosine"
    decay_fraction: float = Field(default=0.35, ge=0, le=1, description="K2: 5.5T of 15.5T tokens")
    final_lr: float = Field(default=2e-5, ge=0, description="the floor the decay ends at")

    @model_validator(mode="after")
    def _cosine_has_no_wsd_settings(self) -> ScheduleSection:
        if self.kind == "cosine":
            for field in ("decay", "decay_fraction"):
                if field in self.model_fields_set:
                    raise ValueError(
                        f"{field}: a WSD setting; kind 'cosine' decays over every step after warm-up"
                    )
        return self


class TrainSection(RecipeSection):
    batch_size: int = Field(default=8, gt=0, description="sequences per micro-batch (per rank)")
    grad_accum: int = Field(default=1, gt=0, description="micro-batches per optimizer step")
    device: DeviceName = Field(
        default="auto", description="auto: a GPU where torch sees one (LOCAL_RANK's under torchrun), else CPU"
    )
    dtype: DtypeName = Field(
        default="auto",
        description="autocast of the forward; auto: bfloat16 on a GPU, float32 on the CPU (bf16 is slow there)",
    )
    expert_bias_update_rate: float = Field(
        default=1e-3, ge=0, description="u: per-step move of each expert's routing bias toward balance"
    )
    aux_loss_alpha: float = Field(
        default=0.0, ge=0, description="α of the sequence-wise balance loss; 0: off"
    )


class ParallelSection(RecipeSection):
    """Read by `openk2.train.parallel` under torchrun; 1 means not split along that dimension.

    The processes form a (pp, dp) grid: pp pipeline ranks, each holding its stages' layers, times dp data-parallel
    ranks reading different data (FSDP2); expert parallelism borrows its ep ranks from dp, as in torchtitan.
    """

    pp: int = Field(default=1, gt=0, description="pipeline-parallel degree (ranks the layers are split over)")
    dp: int = Field(default=1, gt=0, description="data-parallel (FSDP2) degree")
    ep: int = Field(default=1, gt=0, description="expert-parallel degree (a divisor of dp)")
    virtual_stages: int = Field(default=1, gt=0, description="pipeline stages per pp rank (Interleaved1F1B)")
    schedule: Literal["1F1B", "Interleaved1F1B"] = Field(default="1F1B", description="the pipeline schedule")
    microbatches: int = Field(
        default=1, gt=0, description="pipeline micro-batches each [train] batch is cut into (pp > 1)"
    )

    @model_validator(mode="after")
    def _schedule_fits_the_stages(self) -> ParallelSection:
        if self.dp % self.ep:
            raise ValueError(f"ep: must divide dp={self.dp}, got {self.ep}")
        if self.schedule == "Interleaved1F1B" and self.virtual_stages < 2:
            raise ValueError(
                f"virtual_stages: Interleaved1F1B runs several stages per pp rank, got {self.virtual_stages} "
                "(set virtual_stages ≥ 2, or schedule = '1F1B')"
            )
        if self.schedule == "1F1B" and self.virtual_stages != 1:
            raise ValueError(f"virtual_stages: 1F1B runs one stage per pp rank, got {self.virtual_stages}")
        if self.pp > 1 and self.microbatches % self.pp:
            raise ValueError(f"microbatches: must be a multiple of pp={self.pp}, got {self.microbatches}")
        if self.pp == 1 and (self.microbatches, self.virtual_stages) != (1, 1):
            raise ValueError(
                f"microbatches={self.microbatches}, virtual_stages={self.virtual_stages}: "
                "pipeline settings need pp > 1"
            )
        return self

    @property
    def is_default(self) -> bool:
        return self == ParallelSection()

    @property
    def num_stages(self) -> int:
        """Pipeline stages of the whole model: pp ranks × virtual_stages each."""
        return self.pp * self.virtual_stages

    @property
    def world_size(self) -> int:
        """The processes the layout needs: pp × dp."""
        return self.pp * self.dp


class MemorySection(RecipeSection):
    """Read by `openk2.train.memory.apply_memory_policy` (K2 report §2.4: activation reduction)."""

    recompute: bool = Field(default=False, description="recompute RMSNorms, SwiGLU and MLA up-projections")
    recompute_moe_down_proj: bool = Field(default=False, description="also recompute routed down GEMMs")
    fp8: bool = Field(default=False, description="FP8-E4M3 storage of MoE up-projection and SwiGLU inputs")
    offload: bool = Field(default=False, description="remaining saved activations to host memory")

    @property
    def is_default(self) -> bool:
        return self == MemorySection()


class TrainingRecipe(RecipeSection):
    """The sections every training stage shares; a stage adds where its model and its data come from."""

    run: RunSection
    optim: OptimSection = Field(default_factory=OptimSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    train: TrainSection = Field(default_factory=TrainSection)
    parallel: ParallelSection = Field(default_factory=ParallelSection)
    memory: MemorySection = Field(default_factory=MemorySection)

    @model_validator(mode="after")
    def _schedule_fits_the_run(self) -> TrainingRecipe:
        if self.schedule.warmup_steps > self.run.steps:
            raise ValueError(
                f"[schedule].warmup_steps {self.schedule.warmup_steps} exceeds [run].steps {self.run.steps}"
            )
        if self.schedule.warmup_steps + self.decay_steps() > self.run.steps:
            raise ValueError(
                f"[schedule] warmup_steps {self.schedule.warmup_steps} + decay steps {self.decay_steps()} "
                f"exceed [run].steps {self.run.steps}"
            )
        if self.parallel.pp > 1:
            self._pipeline_fits_the_batch()
        if self.schedule.final_lr > self.optim.lr:
            raise ValueError(
                f"[schedule].final_lr {self.schedule.final_lr} exceeds [optim].lr {self.optim.lr}"
            )
        return self

    def _pipeline_fits_the_batch(self) -> None:
        parallel, train = self.parallel, self.train
        if train.batch_size % parallel.microbatches:
            raise ValueError(
                f"[parallel].microbatches {parallel.microbatches} does not divide [train].batch_size "
                f"{train.batch_size}: every pipeline micro-batch holds the same number of sequences"
            )
        if train.aux_loss_alpha > 0:
            raise ValueError(
                f"[train].aux_loss_alpha {train.aux_loss_alpha}: the sequence-wise balance loss is not "
                f"carried through pipeline stages; use [parallel].pp = 1 or aux_loss_alpha = 0"
            )

    @abstractmethod
    def model_config_k2(self) -> K2Config:
        """The model's config, with the [train] balance-loss weight."""

    def on_device(self, device: DeviceName | None) -> Self:
        """The recipe with [train].device replaced (the CLI's --device); itself for None."""
        if device is None:
            return self
        return self.model_copy(update={"train": self.train.model_copy(update={"device": device})})

    def decay_steps(self) -> int:
        if self.schedule.kind == "cosine":
            return self.run.steps - self.schedule.warmup_steps
        return round(self.schedule.decay_fraction * self.run.steps)

    def lr_schedule(self) -> WSDSchedule:
        decay_steps = self.decay_steps()
        return WSDSchedule(
            peak_lr=self.optim.lr,
            warmup_steps=self.schedule.warmup_steps,
            stable_steps=self.run.steps - self.schedule.warmup_steps - decay_steps,
            decay_steps=decay_steps,
            final_lr=self.schedule.final_lr,
            decay_shape=self.schedule.decay,
        )

    def section_defaults(self) -> dict[str, dict[str, Any]]:
        """Each section's optional fields and their defaults (JSON form), for comparing saved recipes."""
        defaults = {}
        for name in type(self).model_fields:
            fields = type(getattr(self, name)).model_fields
            defaults[name] = {
                field: to_jsonable_python(info.get_default(call_default_factory=True))
                for field, info in fields.items()
                if not info.is_required()
            }
        return defaults


class Recipe(TrainingRecipe):
    """The pre-training recipe: a model built from a preset, trained on the token shards of [data]."""

    model: ModelSection = Field(default_factory=ModelSection)
    data: DataConfig = Field(default_factory=DataConfig)

    @model_validator(mode="after")
    def _model_fits_the_data(self) -> Recipe:
        config = self.model_config_k2()
        if config.vocab_size != self.data.vocab_size:
            raise ValueError(
                f"[model] vocab_size {config.vocab_size} differs from [data].vocab_size {self.data.vocab_size}"
            )
        if self.parallel.num_stages > config.num_hidden_layers:
            raise ValueError(
                f"[parallel] pp × virtual_stages = {self.parallel.pp} × {self.parallel.virtual_stages} = "
                f"{self.parallel.num_stages} pipeline stages exceed the model's num_hidden_layers = "
                f"{config.num_hidden_layers}: every stage needs at least one decoder layer"
            )
        if self.data.seq_len > config.max_position_embeddings:
            raise ValueError(
                f"[data].seq_len {self.data.seq_len} exceeds [model] max_position_embeddings "
                f"{config.max_position_embeddings}"
            )
        return self

    def model_config_k2(self) -> K2Config:
        """The preset with the recipe's overrides and the [train] balance-loss weight."""
        return K2Config(
            **{
                **PRESETS[self.model.preset],
                **self.model.overrides,
                "aux_loss_alpha": self.train.aux_loss_alpha,
            }
        )


RecipeType = TypeVar("RecipeType", bound=TrainingRecipe)


# mypy cannot see that the default is one of the types RecipeType stands for
def load_recipe(path: Path, recipe_type: type[RecipeType] = Recipe) -> RecipeType:  # type: ignore[assignment]
    """Read and validate a whole TOML recipe (pre-training's unless told); every problem is reported as
    `<file>: [section].field: message`."""
    return load_recipe_file(path, recipe_type)


def load_data_section(path: Path) -> DataConfig:
    """What `openk2 tokenize` reads: a recipe of [data] alone, or the [data] of a pre-training recipe validated
    whole, so that a typo in [train] fails now rather than at `openk2 pretrain`."""
    document = read_recipe_toml(path)
    if "data" not in document:
        raise ValueError(f"{path}: no [data] section")
    if set(document) == {"data"}:
        return load_data_config(path)
    return validate_recipe(Recipe, document, str(path)).data
