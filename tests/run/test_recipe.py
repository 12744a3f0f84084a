"""The pipeline recipe is validated whole before anything runs: every stage's table by that stage's own
model, every problem named `[stage.section].field`, all of them at once. Fast: nothing is trained."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from openk2.cli import main
from openk2.run.recipe import load_pipeline_recipe
from openk2.run.stages import plan
from tests.run.micro import micro_recipe, write_pipeline_recipe

REPO = Path(__file__).resolve().parents[2]
PIPELINE_RECIPES = ["tiny.toml", "small.toml", "gpu.toml"]


@pytest.mark.parametrize("name", PIPELINE_RECIPES)
def test_every_pipeline_recipe_in_recipes_validates(name: str) -> None:
    recipe = load_pipeline_recipe(REPO / "recipes" / name)
    stages, _ = plan(recipe)
    assert [stage.name for stage in stages][:2] == ["data", "pretrain"]


def test_the_tiny_recipe_runs_every_stage_and_evaluates_after_each_training_stage() -> None:
    stages, not_run = plan(load_pipeline_recipe(REPO / "recipes" / "tiny.toml"))
    assert [stage.name for stage in stages] == [
        "data", "pretrain", "eval-pretrain", "synth", "tasks", "sft", "eval-sft", "rl", "eval-rl",
    ]  # fmt: skip
    assert not_run == ["rephrase: no [rephrase] table (the corpus is pre-trained on as it is)"]
    sft = next(stage for stage in stages if stage.name == "sft")
    assert (
        sft.recipe is not None
        and sft.recipe["init"]["checkpoint"] == "runs/tiny/pretrain/checkpoints/step_000300"
    )
    kinds = [source["kind"] for source in sft.recipe["sft"]["sources"]]
    assert kinds == ["chat", "tasks", "trajectories"]  # the recipe's own, then the gym's and synthesis'


def edited(tmp_path: Path, change: dict[str, Any], drop: tuple[str, ...] = ()) -> Path:
    recipe = micro_recipe(tmp_path)
    for dotted, value in change.items():
        *tables, field = dotted.split(".")
        table = recipe
        for name in tables:
            table = table.setdefault(name, {})
        table[field] = value
    for name in drop:
        del recipe[name]
    return write_pipeline_recipe(tmp_path / "recipe.toml", recipe)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"sft.optim.lr": "3e-3"}, "[sft.optim].lr: Input should be a valid number"),
        ({"rl.rl.groups_per_iteraton": 2, "rl.rl.tasks": [{"env": "logic"}]}, "[rl.rl].groups_per_iteraton: Extra inputs are not permitted"),
        ({"pretrain.train.batch_size": 0}, "[pretrain.train].batch_size: Input should be greater than 0"),
        ({"pretrain.schedule.warmup_steps": 40}, "[pretrain.schedule].warmup_steps 40 exceeds [pretrain.run].steps 4"),
        ({"sft.sft.seq_len": 4096}, "[sft.sft].seq_len 4096 exceeds the checkpoint's max_position_embeddings 128"),
        ({"synth.tools": {"categories": ["cooking"]}}, "[synth.tools].categories: ['cooking']: not categories"),
        ({"sft.init": {"checkpoint": "x"}}, "[sft].init: openk2 run fills it in (the previous stage's final checkpoint)"),
        ({"pretrain.data.shards_dir": "x"}, "[pretrain.data].shards_dir: openk2 run fills it in"),
        ({"eval.suites": "humaneval,nope"}, "[eval].suites: --suite: unknown suite 'nope'"),
        ({"sft_data.tasks": [{"env": "logic", "n": 4, "settings": {"difficulty": 1, "colour": 2}}]}, "[sft_data.tasks][0]: settings: logic has no settings ['colour']"),
        ({"sfft.run": {}}, "[sfft]: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_a_bad_value_is_named_by_stage_section_and_field(tmp_path: Path, change: dict, problem: str) -> None:
    recipe = edited(tmp_path, change)
    with pytest.raises(ValueError, match="^" + str(recipe).replace(".", r"\.") + ": ") as raised:
        load_pipeline_recipe(recipe)
    assert problem in str(raised.value)


def test_every_problem_of_every_stage_is_reported_at_once(tmp_path: Path) -> None:
    recipe = edited(tmp_path, {"pretrain.optim.lr": -1.0, "sft.run.steps": 0, "sft.train.batch_sise": 2})
    with pytest.raises(ValueError) as raised:
        load_pipeline_recipe(recipe)
    for problem in ("[pretrain.optim].lr", "[sft.run].steps", "[sft.train].batch_sise"):
        assert problem in str(raised.value)


def test_a_recipe_without_sft_is_refused_and_one_without_rl_ends_at_sft(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\[sft\]: Field required"):
        load_pipeline_recipe(edited(tmp_path, {}, drop=("sft",)))
    stages, not_run = plan(load_pipeline_recipe(edited(tmp_path, {})))
    assert stages[-1].name == "sft"
    assert [note.split(":")[0] for note in not_run] == ["rephrase", "synth", "rl", "eval"]


def test_the_command_refuses_a_bad_recipe_in_one_line_before_any_stage_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = edited(tmp_path, {"sft.optim.lr": "fast"})
    with pytest.raises(SystemExit) as exited:
        main(["run", "--recipe", str(recipe)])
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "[sft.optim].lr: Input should be a valid number" in error
    assert not (tmp_path / "runs").exists()


def test_the_stage_recipes_written_are_the_stages_own_format(tmp_path: Path) -> None:
    """What openk2 run writes into runs/<name>/<stage>/recipe.toml is what `openk2 <verb> --recipe` reads."""
    import tomli_w

    from openk2.recipes import validate_recipe
    from openk2.sft.recipe import SFTRecipe

    stages, _ = plan(load_pipeline_recipe(edited(tmp_path, {})))
    sft = next(stage for stage in stages if stage.name == "sft")
    assert sft.recipe is not None
    document = tomllib.loads(tomli_w.dumps(sft.recipe))
    assert document["run"]["output_dir"] == str(tmp_path / "runs" / "micro")
    with pytest.raises(ValueError, match=r"\[init\]\.checkpoint: .*step_000004 lacks"):
        validate_recipe(SFTRecipe, document, "recipe.toml")  # the checkpoint pre-training will write


def test_every_recipe_in_recipes_is_a_pipeline_or_a_valid_stage_recipe(tmp_path: Path) -> None:
    """The stage recipes too; [init] and data files that earlier runs write are stood in for here."""
    from openk2.model import K2Config
    from openk2.recipes import validate_recipe
    from openk2.rephrase.config import RephraseRecipe
    from openk2.rl.recipe import RLRecipe
    from openk2.sft.recipe import SFTRecipe
    from openk2.synth.recipe import SynthRecipeFile
    from openk2.train.recipe import Recipe

    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps(K2Config.preset("tiny").to_hf_dict()))
    (checkpoint / "tokenizer.json").write_text("{}")
    stage_models = {"data": Recipe, "synth": SynthRecipeFile, "rephrase": RephraseRecipe}
    names = sorted(path.name for path in (REPO / "recipes").glob("*.toml"))
    assert set(PIPELINE_RECIPES) <= set(names)
    for name in set(names) - set(PIPELINE_RECIPES):
        document = tomllib.loads((REPO / "recipes" / name).read_text())
        if "init" in document:
            model: type = SFTRecipe if "sft" in document else RLRecipe
            document["init"] = {"checkpoint" if model is SFTRecipe else "policy": str(checkpoint)}
            for source in document.get("sft", {}).get("sources", []):
                if not (REPO / source["path"]).is_file():  # written by bench/sft.py --write-samples
                    source["path"] = str(tmp_path / Path(source["path"]).name)
                    Path(source["path"]).write_text("")
        else:
            model = next(stage_models[table] for table in document if table in stage_models)
        validate_recipe(model, document, name)


def test_sft_learns_without_an_empty_synthesis_output_and_says_so(tmp_path: Path) -> None:
    from openk2.run.stages import without_empty_sources

    recipe = micro_recipe(tmp_path)
    recipe["synth"] = {"seed": 0}
    stages, _ = plan(load_pipeline_recipe(write_pipeline_recipe(tmp_path / "recipe.toml", recipe)))
    sft = next(stage for stage in stages if stage.name == "sft")
    (trajectories,) = sft.optional_sources
    trajectories.parent.mkdir(parents=True)
    trajectories.write_text("")  # the judge kept no trajectory
    resolved, notes = without_empty_sources(sft)
    assert resolved.recipe is not None
    assert [source["kind"] for source in resolved.recipe["sft"]["sources"]] == ["tasks"]
    assert notes == [f"{trajectories} holds no record: SFT learns without it"]
    trajectories.write_text('{"id": "a"}\n')
    assert without_empty_sources(sft) == (sft, [])


def test_a_rephrase_table_adds_the_rewritten_documents_to_the_corpus(tmp_path: Path) -> None:
    recipe = micro_recipe(tmp_path)
    recipe["rephrase"] = {"mode": "knowledge", "variants": 1, "rewriter": {"backend": "teacher"}}
    with pytest.raises(ValueError, match=r"\[run\]\.rephrase_input: \[rephrase\] needs the documents"):
        load_pipeline_recipe(write_pipeline_recipe(tmp_path / "recipe.toml", recipe))
    recipe["run"]["rephrase_input"] = str(REPO / "samples" / "knowledge.jsonl")
    stages, not_run = plan(load_pipeline_recipe(write_pipeline_recipe(tmp_path / "recipe.toml", recipe)))
    rephrase, data = stages[0], stages[1]
    assert (rephrase.name, data.inputs) == ("rephrase", ["rephrase"])
    assert data.recipe is not None and data.recipe["data"]["corpus"] == [
        str(tmp_path / "corpus"),
        str(rephrase.output),
    ]
    assert not any(note.startswith("rephrase") for note in not_run)
