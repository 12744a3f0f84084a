"""The RL recipe: the training sections every stage shares, plus [init] (the policy) and [rl].

K2 report §3.2.3 sets the shape: the K1.5 objective with a regularisation τ, K samples per prompt, a token
budget per task type with a penalty, a PTX loss, a decaying temperature; §3.2.2 adds the policy's own
pairwise rubric reward for open-ended prompts. The report gives none of the numbers; the defaults are ours.
Validated before any work starts; a problem is an error naming the file and `[section].field`.

    [init]  policy = "runs/sft/checkpoints/step_000300"     (or a transformers directory, or "teacher")
    [rl]    objective, tau, groups_per_iteration, samples_per_group, updates_per_iteration, rollout, ...
    [[rl.tasks]]    env = "logic", settings = {difficulty = 1}, weight = 1   |   file = "prompts.jsonl"
    [rl.temperature] [rl.budget] [rl.rewards] [rl.partial] [rl.critic] [rl.ptx] [rl.eval] [rl.endpoint]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from openk2.gym.environment import ENVIRONMENTS, environment_class
from openk2.gym.records import TaskKind
from openk2.model import K2Config
from openk2.recipes import RecipeSection
from openk2.sft.recipe import SourceSection
from openk2.train.recipe import TrainingRecipe, load_recipe

TEACHER = "teacher"  # [init].policy naming the embedded SmolLM2-135M-Instruct
OPENK2_MODEL_TYPES = ("deepseek_v3", "kimi_k2")  # config.json model types that OpenK2's own model loads


class InitSection(RecipeSection):
    policy: Path = Field(
        description="an OpenK2 checkpoint (config.json with model_type deepseek_v3, model/ shards or "
        "model.safetensors, tokenizer.json), any transformers causal-LM directory with a chat template, or 'teacher'"
    )

    @field_validator("policy")
    @classmethod
    def _is_a_model_directory(cls, policy: Path) -> Path:
        if str(policy) == TEACHER:
            return policy
        if not (policy / "config.json").is_file():
            raise ValueError(f"{policy} holds no config.json")
        return policy

    @property
    def is_teacher(self) -> bool:
        return str(self.policy) == TEACHER

    def is_openk2(self) -> bool:
        """An OpenK2 checkpoint (trained with K2's chat format), rather than another transformers model."""
        if self.is_teacher:
            return False
        model_type = json.loads((self.policy / "config.json").read_text()).get("model_type")
        return model_type in OPENK2_MODEL_TYPES


class TaskSource(RecipeSection):
    """Where a share of each iteration's groups comes from: a gym environment, or a file of tasks."""

    env: str | None = Field(default=None, description="a gym environment (openk2 gym list)")
    file: Path | None = Field(
        default=None, description="gym Task records (JSONL): open_ended ones are judged by the critic"
    )
    settings: dict[str, Any] = Field(default_factory=dict, description="the environment's settings")
    weight: float = Field(default=1.0, gt=0, description="relative share of each iteration's groups")
    pool: int | None = Field(default=None, gt=0, description="train tasks drawn from the environment")

    @field_validator("env")
    @classmethod
    def _known_environment(cls, env: str | None) -> str | None:
        if env is not None and env not in ENVIRONMENTS:
            raise ValueError(f"unknown environment {env!r}; known environments: {', '.join(ENVIRONMENTS)}")
        return env

    @field_validator("file")
    @classmethod
    def _exists(cls, file: Path | None) -> Path | None:
        if file is not None and not file.is_file():
            raise ValueError(f"{file} is not a file")
        return file

    @model_validator(mode="after")
    def _one_origin_with_valid_settings(self) -> TaskSource:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env and file")
        if self.env is not None:
            settings_type = environment_class(self.env).Settings
            unknown = sorted(set(self.settings) - set(settings_type.model_fields))
            if unknown:
                raise ValueError(f"settings: {self.env} has no settings {unknown}")
            settings_type(**self.settings)
        if self.file is not None and self.pool is not None:
            raise ValueError("pool: a file's tasks are all used")
        return self


class TemperatureSection(RecipeSection):
    """K2 report §3.2.3: a high temperature early for exploration, decayed toward exploitation."""

    start: float = Field(default=1.0, gt=0, le=2, description="sampling temperature of iteration 1")
    end: float = Field(default=1.0, gt=0, le=2, description="the temperature once the decay is over")
    decay_iterations: int = Field(default=0, ge=0, description="iterations from start to end; 0: constant")
    shape: Literal["linear", "cosine", "exponential"] = "linear"

    def at(self, iteration: int) -> float:
        """The sampling temperature of `iteration` (1-based)."""
        import math

        if self.decay_iterations == 0:
            return self.start
        progress = min(max(iteration - 1, 0) / self.decay_iterations, 1.0)
        if self.shape == "linear":
            return self.start + (self.end - self.start) * progress
        if self.shape == "cosine":
            return self.end + (self.start - self.end) * 0.5 * (1 + math.cos(math.pi * progress))
        return self.start * (self.end / self.start) ** progress


class RewardWeights(RecipeSection):
    """r = verifiable·score + critic·win rate − budget_penalty when a reply ran over its budget."""

    verifiable: float = Field(default=1.0, ge=0, description="weight of the gym's verified reward")
    critic: float = Field(default=1.0, ge=0, description="weight of the self-critique win rate")
    budget_penalty: float = Field(default=0.5, ge=0, description="subtracted from a truncated reply's reward")


class PartialRollouts(RecipeSection):
    """K1.5's partial rollouts (K2 report §3.3): an episode generates at most this many tokens per
    iteration; one that needs more is paused and continued in the next iteration by the newer policy."""

    tokens_per_iteration: int = Field(default=0, ge=0, description="per episode; 0: episodes never pause")

    @property
    def enabled(self) -> bool:
        return self.tokens_per_iteration > 0


class CriticSection(RecipeSection):
    """The policy as its own critic (K2 report §3.2.2)."""

    max_tokens: int = Field(default=32, gt=0, description="the critic's reply, ending in 'Verdict: A|B'")
    temperature: float = Field(default=0.0, ge=0, le=2, description="0: greedy verdicts")
    verified_pairs_per_group: int = Field(
        default=2,
        ge=0,
        description="closed loop: pairs with different verified outcomes judged per verifiable group",
    )
    train_weight: float = Field(
        default=0.0,
        ge=0,
        description="weight of a supervised loss on earlier iterations' verified pairs; 0: only written",
    )
    rubric_file: Path | None = Field(
        default=None, description="JSONL of RubricItem records added to every open-ended judgement"
    )


class PTXSection(RecipeSection):
    """InstructGPT's PTX loss, which K2 adds (K2 report §3.2.3): language modelling on curated data."""

    weight: float = Field(default=0.0, ge=0, description="0: no PTX loss")
    sources: list[SourceSection] = Field(default_factory=list, description="as [[sft.sources]]")
    seq_len: int = Field(default=512, ge=2)
    batch_size: int = Field(default=2, gt=0, description="packed rows per optimizer step")
    seed: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _sources_when_weighted(self) -> PTXSection:
        if self.weight > 0 and not self.sources:
            raise ValueError("sources: a PTX weight needs at least one source")
        return self


class EvalSection(RecipeSection):
    every: int = Field(default=0, ge=0, description="greedy held-out reward every N iterations; 0: never")
    tasks: int = Field(default=64, gt=0, description="test-split tasks per environment")


class EndpointSection(RecipeSection):
    """An OpenAI-compatible server that samples for the trainer and loads its weights after each update."""

    base_url: str = Field(description="e.g. http://127.0.0.1:8000/v1")
    model: str | None = None
    timeout_s: float = Field(default=120.0, gt=0)


class RLSection(RecipeSection):
    tasks: list[TaskSource] = Field(min_length=1)
    objective: Literal["k15", "grpo"] = "k15"
    tau: float = Field(default=0.1, gt=0, description="K1.5's regularisation toward π_old")
    clip_eps: float = Field(default=0.2, gt=0, lt=1, description="GRPO's ratio clip")
    groups_per_iteration: int = Field(default=16, gt=0, description="prompts per iteration")
    samples_per_group: int = Field(default=8, ge=2, description="K: samples of each prompt")
    updates_per_iteration: int = Field(
        default=1, gt=0, description="optimizer steps per iteration, each on a share of the groups"
    )
    max_tokens: int = Field(default=512, gt=0, description="a reply's budget when [rl.budget] names none")
    max_turns: int = Field(default=8, gt=0)
    max_concurrency: int = Field(default=64, gt=0, description="episodes in flight")
    max_batch_size: int = Field(default=64, gt=0, description="the in-process engine's batch")
    seed: int = Field(default=0, ge=0, description="task order and sampling seeds")
    rollout: Literal["colocated", "endpoint"] = Field(
        default="colocated",
        description="colocated: the trainer's own weights sample, in process; endpoint: a server told "
        "to load the new weights after each iteration (message-level: re-tokenised, not token-exact)",
    )
    budget: dict[str, int] = Field(
        default_factory=dict, description="max tokens per reply by task kind (K2's budget control)"
    )
    temperature: TemperatureSection = Field(default_factory=TemperatureSection)
    rewards: RewardWeights = Field(default_factory=RewardWeights)
    partial: PartialRollouts = Field(default_factory=PartialRollouts)
    critic: CriticSection = Field(default_factory=CriticSection)
    ptx: PTXSection = Field(default_factory=PTXSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    endpoint: EndpointSection | None = None

    @field_validator("budget")
    @classmethod
    def _budgets_by_known_kind(cls, budget: dict[str, int]) -> dict[str, int]:
        kinds = get_args(TaskKind)
        for kind, tokens in budget.items():
            if kind not in kinds:
                raise ValueError(f"{kind}: not a task kind; expected one of {list(kinds)}")
            if not isinstance(tokens, int) or tokens <= 0:
                raise ValueError(f"{kind}: a budget is a positive number of tokens, got {tokens!r}")
        return budget

    @model_validator(mode="after")
    def _endpoint_when_used(self) -> RLSection:
        if (self.rollout == "endpoint") != (self.endpoint is not None):
            raise ValueError("endpoint: required exactly when rollout is 'endpoint'")
        if self.rollout == "endpoint" and self.partial.enabled:
            raise ValueError(
                "partial: an endpoint continues messages, not token ids; partial rollouts need "
                "rollout = 'colocated'"
            )
        if self.groups_per_iteration < self.updates_per_iteration:
            raise ValueError(
                f"updates_per_iteration {self.updates_per_iteration} exceeds groups_per_iteration "
                f"{self.groups_per_iteration}: each update needs a group"
            )
        return self


class RLRecipe(TrainingRecipe):
    init: InitSection
    rl: RLSection

    @model_validator(mode="after")
    def _openk2_only_features(self) -> RLRecipe:
        if self.init.is_openk2():
            return self
        if self.rl.ptx.weight > 0:
            raise ValueError(
                "[rl.ptx].weight: the PTX loss packs K2-format conversations; an OpenK2 policy only"
            )
        if self.rl.critic.train_weight > 0:
            raise ValueError("[rl.critic].train_weight: critic SFT renders K2-format judgements; OpenK2 only")
        if not self.parallel.is_default:
            raise ValueError(
                "[parallel]: FSDP2 wraps OpenK2 models; a transformers policy runs in one process"
            )
        return self

    def model_config_k2(self) -> K2Config:
        """The OpenK2 policy's config, with the [train] balance-loss weight."""
        config = K2Config.from_pretrained(self.init.policy)
        return K2Config(**{**config.model_dump(), "aux_loss_alpha": self.train.aux_loss_alpha})


def load_rl_recipe(path: Path) -> RLRecipe:
    """Read and validate an RL recipe; every problem is reported as `<file>: [section].field: message`."""
    return load_recipe(path, RLRecipe)
