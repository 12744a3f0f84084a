"""The `[synth]` section of a recipe, validated before any server starts or model loads.

    [synth]                output directory, seed, episodes in flight
    [synth.models.ROLE]    an `LLMConfig` per role (generator, agent, user, tool_simulator, judge)
    [synth.tools]          real MCP servers to import, categories, domains, evolution steps, dedup
    [synth.tasks]          agents, tools per agent, tasks per agent, difficulty levels
    [synth.run]            turns, sampling, the tool simulator's outcome rates

Errors name the file and `[synth.section].field`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from openk2.llm import LLMConfig
from openk2.recipes import RecipeSection, read_recipe_toml, validate_recipe
from openk2.synth.categories import CATEGORY_NAMES
from openk2.synth.models import ROLES, Role

BuiltinServer = Literal["time", "git", "airline", "retail", "sandbox"]
EvolutionStep = Literal["deepen", "widen", "specialise"]
Outcome = Literal["success", "partial_failure", "edge_case"]
ALL_BUILTIN_SERVERS: list[BuiltinServer] = ["time", "git", "airline", "retail", "sandbox"]
ALL_EVOLUTION_STEPS: list[EvolutionStep] = ["deepen", "widen", "specialise"]
DEFAULT_OUTCOMES: dict[Outcome, float] = {"success": 0.8, "partial_failure": 0.1, "edge_case": 0.1}


class ServerConfig(RecipeSection):
    """An MCP server started over stdio: `command args...` with `env` added to a minimal environment."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,30}$")
    command: str
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    agent_tools: list[str] | None = None  # the tools agents may use (None: all); the rest are imported only
    fixed_arguments: dict[str, Any] = Field(default_factory=dict)  # hidden from the agent, added to each call
    category: str | None = None  # the map's label (default: the server's name)


class Models(RecipeSection):
    generator: LLMConfig = LLMConfig()
    agent: LLMConfig = LLMConfig()
    user: LLMConfig = LLMConfig()
    tool_simulator: LLMConfig = LLMConfig()
    judge: LLMConfig = LLMConfig()

    def by_role(self) -> dict[Role, LLMConfig]:
        return {role: getattr(self, role) for role in ROLES}


class ToolsSection(RecipeSection):
    builtin_servers: list[BuiltinServer] = Field(default_factory=ALL_BUILTIN_SERVERS.copy)
    servers: list[ServerConfig] = Field(default_factory=list)
    server_start_timeout_s: float = Field(default=30.0, gt=0)
    call_timeout_s: float = Field(default=30.0, gt=0)
    categories: list[str] = Field(default_factory=lambda: list(CATEGORY_NAMES))
    domains_per_category: int = Field(default=3, ge=1, le=20)
    model_domains: bool = True  # the generator proposes the domains (widening the tree); else seed domains
    evolution: list[EvolutionStep] = Field(default_factory=ALL_EVOLUTION_STEPS.copy)
    evolution_rounds: int = Field(default=1, ge=0, le=4)  # each round evolves every tool of the last
    near_duplicate_threshold: float = Field(default=0.92, gt=0, le=1)  # cosine of description embeddings
    tool_tokens: int = Field(default=320, ge=64)  # the generator's budget for one tool

    @field_validator("categories")
    @classmethod
    def _known_categories(cls, categories: list[str]) -> list[str]:
        unknown = [name for name in categories if name not in CATEGORY_NAMES]
        if unknown:
            raise ValueError(f"{unknown}: not categories of K2 Fig. 9 ({', '.join(CATEGORY_NAMES)})")
        if not categories:
            raise ValueError("at least one category")
        return categories

    @model_validator(mode="after")
    def _unique_server_names(self) -> ToolsSection:
        names = [*self.builtin_servers, *(server.name for server in self.servers)]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"servers: names repeat: {repeated}")
        return self


class TasksSection(RecipeSection):
    agents: int = Field(default=24, ge=1)
    tools_per_agent: tuple[int, int] = (2, 4)  # (fewest, most)
    real_tool_share: float = Field(default=0.5, ge=0, le=1)  # agents that get one real tool
    tasks_per_agent: int = Field(default=2, ge=1)
    levels: tuple[int, ...] = (1, 2, 3)  # simple (one call) to complex (several dependent calls)
    # > 1 discourages the generator from repeating itself: a 135M model otherwise fills every string of a
    # task with one repeated token until its budget runs out
    repetition_penalty: float = Field(default=1.0, gt=0, le=2)

    @field_validator("tools_per_agent")
    @classmethod
    def _ordered(cls, bounds: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= bounds[0] <= bounds[1]:
            raise ValueError(f"expected 1 <= fewest <= most, got {list(bounds)}")
        return bounds

    @field_validator("levels")
    @classmethod
    def _levels_in_range(cls, levels: tuple[int, ...]) -> tuple[int, ...]:
        if not levels or any(level not in (1, 2, 3) for level in levels):
            raise ValueError(f"expected levels among 1, 2, 3, got {list(levels)}")
        return levels


class RunSection(RecipeSection):
    max_turns: int = Field(default=8, ge=1)
    temperature: float = Field(default=0.0, ge=0, le=2)  # 0: greedy, deterministic for a seed
    reply_tokens: int = Field(default=256, ge=16)  # budget of the agent's and the user's replies
    # K2 report §3.1.1: controlled stochasticity of the tool simulator, the share of each outcome
    outcomes: dict[Outcome, float] = Field(default_factory=DEFAULT_OUTCOMES.copy)
    # a small agent never calls a tool unprompted: force a call (any tool, schema-valid arguments) while
    # the agent has made fewer calls than the task's expected pattern (a generator's aid, not a test)
    force_tool_calls: bool = False

    @field_validator("outcomes")
    @classmethod
    def _rates_sum_to_one(cls, outcomes: dict[str, float]) -> dict[str, float]:
        if any(rate < 0 for rate in outcomes.values()) or abs(sum(outcomes.values()) - 1) > 1e-9:
            raise ValueError(f"rates must be >= 0 and sum to 1, got {outcomes}")
        return outcomes


class SynthRecipe(RecipeSection):
    output: Path = Path("runs/synth")
    seed: int = 0
    concurrency: int = Field(default=8, ge=1)  # episodes (and generator calls) in flight at once
    models: Models = Models()
    tools: ToolsSection = ToolsSection()
    tasks: TasksSection = TasksSection()
    run: RunSection = RunSection()

    def stage_settings(self) -> dict[str, Any]:
        """What the outputs depend on: a resumed run into the same directory must match it."""
        return self.model_dump(mode="json", exclude={"output", "concurrency", "models"})


class SynthRecipeFile(RecipeSection):
    """A synthesis recipe file: the [synth] section and nothing else."""

    synth: SynthRecipe


def load_synth_recipe(path: Path, overrides: dict[str, Any] | None = None) -> SynthRecipe:
    """The recipe's `[synth]` table with command-line `overrides` (e.g. `output`) on top; the whole file is
    validated first, and every problem names the file (or the command line) and `[synth].field`."""
    document = read_recipe_toml(path)
    if "synth" not in document:
        raise ValueError(f"{path}: no [synth] section")
    recipe = validate_recipe(SynthRecipeFile, document, str(path)).synth
    flags = {key: value for key, value in (overrides or {}).items() if value is not None}
    if not flags:
        return recipe
    return validate_recipe(SynthRecipe, {**document["synth"], **flags}, "command line", within="synth")
