"""The plan: which stages a recipe runs, in which order, each as the `openk2` command a user could run alone.

    rephrase (optional) → data → pretrain → eval-pretrain → synth (optional) → tasks → sft → eval-sft
    → rl (optional) → eval-rl

Every stage lives in `runs/<name>/<stage>/` (evaluations in `runs/<name>/eval/<stage>/`) with its own complete
`recipe.toml`, its log, and `started.json` / `stage.json` (openk2.run.ledger). Stages hand on files only: a
checkpoint directory, a JSONL file, a results.json.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from openk2.run.recipe import PipelineRecipe
from openk2.train.checkpoint import checkpoint_name

RECIPE_FILE = "recipe.toml"
LOG_FILE = "log.txt"


@dataclass(frozen=True)
class Stage:
    name: str
    title: str  # what the plan and the report call it
    directory: Path
    commands: list[list[str]]  # `openk2` arguments; each run in turn
    output: Path  # what the next stages read: a checkpoint directory or a file
    recipe: dict[str, Any] | None = None  # written to <directory>/recipe.toml before the commands run
    inputs: list[str] = field(default_factory=list)  # stages whose outputs the commands read
    stdout_to: Path | None = None  # the commands' standard output, concatenated, is the output file
    launcher: list[str] = field(default_factory=list)  # e.g. torchrun and its flags; empty: one process
    # SFT sources that an earlier stage writes and that may hold no record (the embedded model's synthesis
    # can keep no trajectory): SFT refuses an empty source, so such a source is left out, and said so
    optional_sources: tuple[Path, ...] = ()

    @property
    def recipe_file(self) -> Path:
        return self.directory / RECIPE_FILE

    @property
    def log_file(self) -> Path:
        return self.directory / LOG_FILE

    @property
    def program(self) -> list[str]:
        """What a user types before a command's arguments: `openk2`, or the launcher and `-m openk2`."""
        return [*self.launcher, "-m", "openk2"] if self.launcher else ["openk2"]

    def shell_commands(self) -> list[str]:
        """How to run this stage alone, as the plan prints it."""
        lines = [shlex.join([*self.program, *command]) for command in self.commands]
        if self.stdout_to is not None:
            lines = [
                f"{line} {'>' if index == 0 else '>>'} {self.stdout_to}" for index, line in enumerate(lines)
            ]
        return lines


def without_empty_sources(stage: Stage) -> tuple[Stage, list[str]]:
    """The stage with its optional sources that hold no record left out of its recipe, and a note for each."""
    empty = [path for path in stage.optional_sources if not path.read_text(encoding="utf-8").strip()]
    if not empty or stage.recipe is None:
        return stage, []
    recipe = json.loads(json.dumps(stage.recipe))
    recipe["sft"]["sources"] = [s for s in recipe["sft"]["sources"] if Path(s["path"]) not in empty]
    notes = [f"{path} holds no record: SFT learns without it" for path in empty]
    return replace(stage, recipe=recipe), notes


def final_checkpoint(run_dir: Path, recipe: dict[str, Any]) -> Path:
    """A training stage always checkpoints its last step."""
    return run_dir / "checkpoints" / checkpoint_name(int(recipe["run"]["steps"]))


def training_stage(
    name: str,
    title: str,
    root: Path,
    recipe: dict[str, Any],
    inputs: list[str],
    launcher: list[str],
    optional_sources: tuple[Path, ...] = (),
) -> Stage:
    """`openk2 <name> --resume` (pretrain, sft, rl) in `root/<name>`: a rerun continues from its checkpoints."""
    directory = root / name
    return Stage(
        name,
        title,
        directory,
        [[name, "--recipe", str(directory / RECIPE_FILE), "--resume"]],
        final_checkpoint(directory, recipe),
        recipe,
        inputs=inputs,
        launcher=launcher,
        optional_sources=optional_sources,
    )


def plan(recipe: PipelineRecipe) -> tuple[list[Stage], list[str]]:
    """The stages the recipe runs, in order, and a note for each optional stage it leaves out."""
    root, sections = recipe.root, recipe.sections
    stages: list[Stage] = []
    skipped: list[str] = []

    if sections.rephrase is not None:
        directory = root / "rephrase"
        stages.append(
            Stage(
                "rephrase",
                "rephrasing (K2 report §2.2)",
                directory,
                [
                    [
                        "rephrase",
                        "--recipe",
                        str(directory / RECIPE_FILE),
                        "--input",
                        str(sections.run.rephrase_input),
                        "--output",
                        str(directory),
                    ]
                ],
                directory / "rephrased.jsonl",
                recipe.rephrase_recipe(),
            )
        )
    else:
        skipped.append("rephrase: no [rephrase] table (the corpus is pre-trained on as it is)")

    data_dir = root / "data"
    stages.append(
        Stage(
            "data",
            "tokenizer and token shards",
            data_dir,
            [["tokenize", "--recipe", str(data_dir / RECIPE_FILE)]],
            data_dir / "shards" / "manifest.json",
            recipe.data_recipe(),
            inputs=["rephrase"] if sections.rephrase is not None else [],
        )
    )
    launcher = sections.run.launcher()
    stages.append(
        training_stage(
            "pretrain",
            "pre-training with MuonClip (K2 report §2)",
            root,
            recipe.pretrain_recipe(),
            ["data"],
            launcher,
        )
    )

    trajectories = None
    if sections.synth is not None:
        synth_dir = root / "synth"
        trajectories = synth_dir / "trajectories.jsonl"
        stages.append(
            Stage(
                "synth",
                "agentic data synthesis (K2 report §3.1.1)",
                synth_dir,
                [["synth", "--recipe", str(synth_dir / RECIPE_FILE)]],
                trajectories,
                recipe.synth_recipe(),
            )
        )
    else:
        skipped.append("synth: no [synth] table (SFT learns from the gym tasks alone)")

    tasks_file = None
    if sections.sft_data.tasks:
        tasks_dir = root / "tasks"
        tasks_file = tasks_dir / "tasks.jsonl"
        commands = [
            [
                "gym", "show", tasks.env, "--split", split, "-n", str(n), "--seed", str(tasks.seed),
                *[part for name, value in tasks.settings.items() for part in ("--set", f"{name}={json.dumps(value)}")],
                "--json",
            ]
            for tasks in sections.sft_data.tasks
            for split, n in (("train", tasks.n), ("test", tasks.validation))
            if n > 0
        ]  # fmt: skip
        stages.append(
            Stage("tasks", "gym tasks for SFT (K2 report §3.2.1)", tasks_dir, commands, tasks_file,
                  stdout_to=tasks_file)
        )  # fmt: skip

    stages.append(
        training_stage(
            "sft",
            "supervised fine-tuning (K2 report §3.1)",
            root,
            recipe.sft_recipe(_stage(stages, "pretrain").output, tasks_file, trajectories),
            ["pretrain", *(["tasks"] if tasks_file else []), *(["synth"] if trajectories else [])],
            launcher,
            optional_sources=(trajectories,) if trajectories else (),
        )
    )

    if sections.rl is not None:
        rl = recipe.rl_recipe(_stage(stages, "sft").output)
        stages.append(
            training_stage("rl", "reinforcement learning (K2 report §3.2)", root, rl, ["sft"], launcher)
        )
    else:
        skipped.append("rl: no [rl] table (the SFT checkpoint is the result)")

    if sections.eval is not None:
        for evaluated in recipe.evaluated():
            position = stages.index(_stage(stages, evaluated)) + 1
            directory = root / "eval" / evaluated
            command = [
                "eval", "--model", str(_stage(stages, evaluated).output), "--output", str(directory),
                *sections.eval.flags(),
            ]  # fmt: skip
            evaluation = Stage(
                f"eval-{evaluated}",
                f"evaluation of the {evaluated} checkpoint (K2 report §4)",
                directory,
                [command],
                directory / "results.json",
                inputs=[evaluated],
            )
            stages.insert(position, evaluation)
    else:
        skipped.append("eval: no [eval] table (no evaluation table in the report)")
    return stages, skipped


def _stage(stages: list[Stage], name: str) -> Stage:
    return next(stage for stage in stages if stage.name == name)
