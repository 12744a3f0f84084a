"""The whole-pipeline recipe: one table per stage, each in that stage's own recipe format.

    [run]                    name and output directory of the whole run (runs/<name>/...)
    [rephrase] (optional)    an `openk2 rephrase` recipe's [rephrase] table; [run].rephrase_input is its input
    [pretrain.*]             an `openk2 pretrain` recipe ([pretrain.data], [pretrain.model], [pretrain.optim] ...)
    [synth.*] (optional)     an `openk2 synth` recipe's [synth] table
    [sft_data]               the gym tasks SFT learns from, and the share of the synthesised trajectories
    [sft.*]                  an `openk2 sft` recipe ([sft.run], [sft.sft], [[sft.sft.sources]], [sft.optim] ...)
    [rl.*] (optional)        an `openk2 rl` recipe ([rl.run], [rl.rl], [[rl.rl.tasks]], [rl.optim] ...)
    [eval] (optional)        `openk2 eval` after the stages it names

The paths one stage reads from another are left out: `openk2 run` fills them in (the run directories, the
shard directory, [sft.init] and [rl.init], the synthesis output). The whole file is validated before any
work starts, each stage's table by that stage's own model, and every problem names `[stage.section].field`.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, ValidationError, field_validator

from openk2.model import PRESETS, K2Config
from openk2.recipes import RecipeSection, describe_errors, read_recipe_toml, validate_recipe
from openk2.rephrase.config import RephraseRecipe
from openk2.rl.recipe import RLRecipe, TaskSource
from openk2.sft.recipe import SFTRecipe
from openk2.synth.recipe import SynthRecipeFile
from openk2.train.recipe import ModelSection, Recipe

EvaluatedStage = Literal["pretrain", "sft", "rl"]
# what `openk2 run` writes into each stage's recipe: a recipe that sets one of these is refused
FILLED_IN: dict[str, list[tuple[str, ...]]] = {
    "pretrain": [("run", "name"), ("run", "output_dir"), ("data", "shards_dir")],
    "synth": [("output",)],
    "sft": [("run", "name"), ("run", "output_dir"), ("init",)],
    "rl": [("run", "name"), ("run", "output_dir"), ("init",)],
}
FILLED_BY = {
    ("run", "name"): "the stage's name",
    ("run", "output_dir"): "runs/<name>",
    ("data", "shards_dir"): "runs/<name>/data/shards",
    ("output",): "runs/<name>/synth",
    ("init",): "the previous stage's final checkpoint",
}


class RunSection(RecipeSection):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="the run is runs/<name>/")
    output_dir: Path = Path("runs")
    rephrase_input: Path | None = Field(
        default=None, description="the documents [rephrase] rewrites (.jsonl with 'text', or .txt)"
    )
    nproc_per_node: int = Field(
        default=1, ge=1, description="> 1: pretrain, sft and rl run under torchrun with this many processes"
    )

    def launcher(self) -> list[str]:
        """What precedes `-m openk2 <verb>` for a training stage (torchrun reads [parallel] dp and ep)."""
        if self.nproc_per_node == 1:
            return []
        return ["torchrun", "--standalone", "--nproc-per-node", str(self.nproc_per_node)]

    @property
    def root(self) -> Path:
        return self.output_dir / self.name


class GymTasks(RecipeSection):
    """Train-split tasks of a gym environment, as `openk2 gym show ENV --split train -n N --json` prints them."""

    env: str
    settings: dict[str, Any] = Field(default_factory=dict, description="the environment's settings")
    n: int = Field(gt=0, description="how many train-split tasks")
    validation: int = Field(
        default=0, ge=0, description="test-split tasks too: SFT's validation loss, never trained on"
    )
    seed: int = Field(default=0, ge=0)


class SFTDataSection(RecipeSection):
    """What `openk2 run` adds to [[sft.sft.sources]]: gym tasks and the synthesised trajectories."""

    tasks: list[GymTasks] = Field(default_factory=list, description="gym tasks with reference answers")
    tasks_weight: float = Field(default=1.0, gt=0, description="their share of the SFT mixture")
    trajectories_weight: float = Field(
        default=1.0, gt=0, description="the share of [synth]'s kept trajectories (when [synth] is given)"
    )


class EvalSection(RecipeSection):
    """`openk2 eval` on each named stage's final checkpoint, with these flags."""

    after: list[EvaluatedStage] = Field(default_factory=lambda: list(get_args(EvaluatedStage)))
    suites: str = Field(default="tiny", min_length=1, description="as --suite: suites and groups")
    n: int | None = Field(default=None, gt=0, description="at most this many tasks per suite")
    max_tokens: int | None = Field(default=None, gt=0, description="the reply cap")
    concurrency: int = Field(default=8, gt=0)
    set: dict[str, Any] = Field(default_factory=dict, description="as --set SUITE.FIELD=VALUE")

    @field_validator("suites")
    @classmethod
    def _known_suites(cls, suites: str) -> str:
        from openk2.eval.suites import resolve_suites

        resolve_suites(suites)
        return suites

    def flags(self) -> list[str]:
        flags = ["--suite", self.suites, "--concurrency", str(self.concurrency)]
        if self.n is not None:
            flags += ["--n", str(self.n)]
        if self.max_tokens is not None:
            flags += ["--max-tokens", str(self.max_tokens)]
        for key, value in self.set.items():
            flags += ["--set", f"{key}={json.dumps(value)}"]
        return flags


class PipelineSections(RecipeSection):
    """The tables `openk2 run` reads itself; each stage's table is checked by its own model (below)."""

    run: RunSection
    rephrase: dict[str, Any] | None = None
    pretrain: dict[str, Any]
    synth: dict[str, Any] | None = None
    sft_data: SFTDataSection = Field(default_factory=SFTDataSection)
    sft: dict[str, Any]
    rl: dict[str, Any] | None = None
    eval: EvalSection | None = None


class PipelineRecipe(BaseModel):
    """A validated whole-pipeline recipe: `openk2 run`'s own tables, and each stage's table as written."""

    path: Path
    text: str  # the file as written, for the report's exact settings
    sections: PipelineSections

    @property
    def root(self) -> Path:
        return self.sections.run.root

    def has(self, stage: str) -> bool:
        return getattr(self.sections, stage, None) is not None

    def evaluated(self) -> list[EvaluatedStage]:
        evaluation = self.sections.eval
        return [stage for stage in evaluation.after if self.has(stage)] if evaluation else []

    # --- each stage's own recipe, with what openk2 run fills in ------------------------------------------

    def rephrase_recipe(self) -> dict[str, Any]:
        return {"rephrase": self.sections.rephrase or {}}

    def data_recipe(self) -> dict[str, Any]:
        return {"data": self.pretrain_recipe()["data"]}

    def pretrain_recipe(self) -> dict[str, Any]:
        recipe = _copy(self.sections.pretrain)
        recipe.setdefault("run", {}).update(name="pretrain", output_dir=str(self.root))
        data = recipe.setdefault("data", {})
        data["shards_dir"] = str(self.root / "data" / "shards")
        if self.has("rephrase"):  # the rewritten documents join the corpus
            corpus = data.get("corpus", "embedded:shakespeare")
            rephrased = str(self.root / "rephrase" / "rephrased.jsonl")
            data["corpus"] = [*(corpus if isinstance(corpus, list) else [corpus]), rephrased]
        return recipe

    def synth_recipe(self) -> dict[str, Any]:
        return {"synth": {**_copy(self.sections.synth or {}), "output": str(self.root / "synth")}}

    def sft_recipe(self, checkpoint: Path, tasks: Path | None, trajectories: Path | None) -> dict[str, Any]:
        recipe = _copy(self.sections.sft)
        recipe.setdefault("run", {}).update(name="sft", output_dir=str(self.root))
        recipe["init"] = {"checkpoint": str(checkpoint)}
        data = self.sections.sft_data
        sources = recipe.setdefault("sft", {}).setdefault("sources", [])
        if tasks is not None:
            sources.append({"kind": "tasks", "path": str(tasks), "weight": data.tasks_weight})
        if trajectories is not None:
            sources.append(
                {"kind": "trajectories", "path": str(trajectories), "weight": data.trajectories_weight}
            )
        return recipe

    def rl_recipe(self, policy: Path) -> dict[str, Any]:
        recipe = _copy(self.sections.rl or {})
        recipe.setdefault("run", {}).update(name="rl", output_dir=str(self.root))
        recipe["init"] = {"policy": str(policy)}
        return recipe


def _copy(table: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(table, default=str))


def load_pipeline_recipe(path: Path) -> PipelineRecipe:
    """Read and validate the whole file; every problem of every stage is reported at once, as
    `<file>: [stage.section].field: message; ...`."""
    document = read_recipe_toml(path)
    try:
        sections = PipelineSections.model_validate_json(json.dumps(document, default=str), strict=True)
    except ValidationError as error:
        raise ValueError(f"{path}: {_stage_paths(describe_errors(error, data=document))}") from None
    recipe = PipelineRecipe(path=path, text=path.read_text(encoding="utf-8"), sections=sections)
    problems = [*_filled_in_problems(sections), *_stage_problems(recipe)]
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return recipe


def _filled_in_problems(sections: PipelineSections) -> list[str]:
    problems = []
    for stage, fields in FILLED_IN.items():
        table = getattr(sections, stage)
        for field in fields:
            value: Any = table
            for part in field:
                value = value.get(part) if isinstance(value, dict) else None
            if value is not None:
                where = ".".join((stage, *field[:-1]))
                problems.append(f"[{where}].{field[-1]}: openk2 run fills it in ({FILLED_BY[field]})")
    return problems


def _stage_problems(recipe: PipelineRecipe) -> list[str]:
    """Each stage's complete recipe (with stand-ins for what earlier stages will write) validated by that
    stage's own model, so that a bad [sft.optim].lr fails now, not after pre-training."""
    sections = recipe.sections
    problems = []
    with tempfile.TemporaryDirectory(prefix="openk2-run-check-") as scratch:
        stand_ins = Path(scratch)
        checks: list[tuple[str, type[BaseModel], dict[str, Any]]] = [
            ("pretrain", Recipe, recipe.pretrain_recipe())
        ]
        if sections.rephrase is not None:
            checks.append(("rephrase", RephraseRecipe, recipe.rephrase_recipe()))
            if sections.run.rephrase_input is None:
                problems.append("[run].rephrase_input: [rephrase] needs the documents to rewrite")
            elif not sections.run.rephrase_input.is_file():
                problems.append(f"[run].rephrase_input: {sections.run.rephrase_input} is not a file")
        if sections.synth is not None:
            checks.append(("synth", SynthRecipeFile, recipe.synth_recipe()))
        for index, tasks in enumerate(sections.sft_data.tasks):  # as RL checks its environments
            try:
                validate_recipe(TaskSource, {"env": tasks.env, "settings": tasks.settings}, None, within="")
            except ValueError as error:
                problems.append(f"[sft_data.tasks][{index}]: {error}")
        try:  # the model pre-training will build, even when another of its tables has a problem
            built = validate_recipe(ModelSection, sections.pretrain.get("model", {}), origin=None)
            checkpoint = _stand_in_checkpoint(stand_ins / "checkpoint", built)
        except ValueError:
            checkpoint = None  # reported by the pre-training check; SFT and RL cannot be checked without it
        if checkpoint is not None:
            tasks_file = _stand_in_file(stand_ins / "tasks.jsonl") if sections.sft_data.tasks else None
            trajectories = _stand_in_file(stand_ins / "trajectories.jsonl") if sections.synth else None
            checks.append(("sft", SFTRecipe, recipe.sft_recipe(checkpoint, tasks_file, trajectories)))
            if sections.rl is not None:
                checks.append(("rl", RLRecipe, recipe.rl_recipe(checkpoint)))
        for stage, stage_model, table in checks:
            try:
                validate_recipe(stage_model, table, origin=None)
            except ValueError as error:
                problems.append(_within(stage, str(error)))
    return problems


def _stand_in_checkpoint(directory: Path, model: ModelSection) -> Path:
    """What the stages' validators read of a checkpoint: its config.json, and a tokenizer.json file."""
    directory.mkdir(parents=True)
    config = K2Config(**{**PRESETS[model.preset], **model.overrides})
    (directory / "config.json").write_text(json.dumps(config.to_hf_dict()))
    (directory / "tokenizer.json").write_text("{}")
    return directory


def _stand_in_file(path: Path) -> Path:
    path.write_text("")
    return path


def _within(stage: str, problems: str) -> str:
    """`[run].steps: ...` of a stage's own recipe -> `[sft.run].steps: ...` ([synth...] already names itself)."""
    if stage in ("synth", "rephrase"):  # their recipes are one table of that name
        return _stage_paths(problems)
    return re.sub(r"\[([a-z_]+)([\].])", lambda match: f"[{stage}.{match[1]}{match[2]}", problems)


def _stage_paths(problems: str) -> str:
    """`[sft].optim.lr` -> `[sft.optim].lr`: a stage's tables are named as the file writes them."""
    return re.sub(r"\[(pretrain|synth|sft|rl|rephrase)\]\.([a-z_]+)\.", r"[\1.\2].", problems)
