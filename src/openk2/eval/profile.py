"""K2's evaluation settings as the default profile, and the resolved settings each suite runs with.

K2 report §4.1.1: every model runs non-thinking; replies are capped at 8,192 tokens; tool use is
sampled at temperature 0; high-variance benchmarks report Avg@k (AIME: Avg@64); tau2-bench is
averaged over 4 trials. Each value can be overridden (`openk2 eval --max-tokens ... --set
aime2024.samples=8`); the resolved `SuiteSettings` of every suite are stored with its results.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from openk2.llm import RECOMMENDED_TEMPERATURE

SplitChoice = Literal["test", "all"]  # the gym's held-out split, or every task the benchmark has


class EvalProfile(BaseModel):
    """Run-wide defaults; a suite derives its settings from them (see `suites.py`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "k2"
    thinking: bool = False  # K2 evaluates non-thinking; OpenK2 models have no thinking mode to switch off
    max_tokens: int = Field(default=8192, ge=1)  # the reply cap; clipped to the model's context when larger
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)  # single-sample suites decode greedily
    tool_temperature: float = Field(default=0.0, ge=0.0, le=2.0)  # K2: tool use at temperature 0
    sampled_temperature: float = Field(default=RECOMMENDED_TEMPERATURE, ge=0.0, le=2.0)  # Avg@k, pass@k
    avg_k: int = Field(default=64, ge=1)  # K2: AIME 2024/2025 Avg@64
    tau2_trials: int = Field(default=4, ge=1)  # K2: tau2 averaged over 4 trials
    split: SplitChoice = "test"


class SuiteSettings(BaseModel):
    """Everything that decides a suite's tasks and samples; a resumed run must use the same."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split: SplitChoice = "test"
    n: int | None = Field(default=None, ge=1)  # at most this many tasks (a seeded choice); None: all
    seed: int = 0  # which tasks, in which order
    samples: int = Field(default=1, ge=1)  # per task: the k of Avg@k, pass@k and pass^k
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=8192, ge=1)  # None: up to the end of the model's context
    max_turns: int = Field(default=30, ge=1)  # multi-turn episodes (tau2)
    # "required" makes a model call a tool (constrained decoding where the back end has it); BFCL sends
    # "auto", and a multi-turn agent under "required" could never answer the user
    tool_choice: Literal["auto", "required"] = "auto"
    env: dict[str, Any] = Field(default_factory=dict)  # the gym environment's settings

    def with_overrides(self, overrides: dict[str, Any]) -> SuiteSettings:
        """A copy with `overrides` applied and validated (unknown names are errors); `env` is merged."""
        merged = {**self.model_dump(), **overrides}
        merged["env"] = {**self.env, **overrides.get("env", {})}
        return SuiteSettings.model_validate(merged)
