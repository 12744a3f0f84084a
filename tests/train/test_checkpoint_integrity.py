"""Checkpoints prove their integrity: every damage to every file of the newest checkpoint is found before
anything is loaded, named, and resumed past, continuing exactly as the uninterrupted run."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from openk2.train import find_checkpoints, pretrain
from openk2.train.checkpoint import REQUIRED_FILES, newest_intact
from openk2.train.integrity import MANIFEST
from openk2.train.metrics import read_metrics
from openk2.train.sharded import MODEL_DIR, OPTIMIZER_DIR
from tests.train.small_run import recipe_sections, write_recipe
from tests.train.test_resume import _trajectory

# the files a checkpoint must have, and the one shard file each of model and optimizer a single process writes
SHARDS = (f"{MODEL_DIR}/__0_0.distcp", f"{OPTIMIZER_DIR}/__0_0.distcp")
CHECKPOINT_FILES = (*REQUIRED_FILES, *SHARDS)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def empty(path: Path) -> None:
    path.write_bytes(b"")


def remove(path: Path) -> None:
    path.unlink()


DAMAGES: dict[str, Callable[[Path], None]] = {
    "truncate": truncate,
    "bit flip": flip_a_bit,
    "empty": empty,
    "missing": remove,
}


@pytest.fixture(scope="module")
def finished(small_data: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 12-step run with checkpoints at steps 4, 8 and 12: (its recipe, its run directory)."""
    root = tmp_path_factory.mktemp("integrity")
    recipe = write_recipe(root / "r.toml", recipe_sections(root, small_data, name="r"))
    pretrain(recipe, progress=False)
    return recipe, root / "r"


def damaged_copy(run_dir: Path, destination: Path, file: str, damage: str) -> Path:
    shutil.copytree(run_dir, destination)
    DAMAGES[damage](destination / "checkpoints" / "step_000012" / file)
    return destination


def resume_choice(run_dir: Path) -> tuple[Path | None, list[str]]:
    """What --resume picks, and the reasons given for each checkpoint it skipped."""
    scan = find_checkpoints(run_dir)
    chosen, corrupt = newest_intact(scan.valid)
    return chosen, [f"{path}: {problem}" for path, problem in scan.invalid] + corrupt


def test_the_manifest_lists_every_other_file_of_a_checkpoint(finished: tuple[Path, Path]) -> None:
    _, run_dir = finished
    for checkpoint in find_checkpoints(run_dir).valid:
        listed = json.loads((checkpoint / MANIFEST).read_text())["files"]
        assert sorted(listed) == sorted(set(CHECKPOINT_FILES) - {MANIFEST})
        assert all(len(entry["sha256"]) == 64 and entry["bytes"] > 0 for entry in listed.values())


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("file", CHECKPOINT_FILES)
def test_each_damage_to_each_file_is_named_and_skipped(
    finished: tuple[Path, Path], tmp_path: Path, file: str, damage: str
) -> None:
    _, run_dir = finished
    copy = damaged_copy(run_dir, tmp_path / "run", file, damage)
    chosen, problems = resume_choice(copy)
    assert chosen == copy / "checkpoints" / "step_000008"
    [problem] = problems
    assert "step_000012" in problem and file in problem, problem


# one full continuation per kind of damage, each on a different file (the choice above covers every pair)
CONTINUED = [
    (SHARDS[0], "truncate"),
    (SHARDS[1], "bit flip"),
    ("rng.pt", "empty"),
    ("loader.json", "missing"),
]


@pytest.mark.slow
def test_resume_falls_back_and_continues_exactly_as_the_uninterrupted_run(
    small_data: dict[str, Any], tmp_path: Path
) -> None:
    """Damage, resume, compare; then the next damage on the same (rewritten) run."""
    recipe = write_recipe(tmp_path / "r.toml", recipe_sections(tmp_path, small_data, name="r"))
    pretrain(recipe, progress=False)
    run_dir = tmp_path / "r"
    expected = _trajectory(read_metrics(run_dir / "metrics.jsonl"))
    newest = run_dir / "checkpoints" / "step_000012"
    for file, damage in CONTINUED:
        DAMAGES[damage](newest / file)
        summary = pretrain(recipe, resume=True, progress=False)
        assert _trajectory(read_metrics(run_dir / "metrics.jsonl")) == expected, (file, damage)
        assert summary.checkpoint == newest
        assert resume_choice(run_dir) == (newest, [])  # the damaged checkpoint was rewritten whole


def write_recipe_at(recipe: Path, output_dir: Path) -> Path:
    """The same recipe with [run] output_dir = `output_dir`."""
    moved = output_dir / recipe.name
    moved.write_text(
        recipe.read_text().replace(
            f"output_dir = {json.dumps(str(recipe.parent))}", f"output_dir = {json.dumps(str(output_dir))}"
        )
    )
    return moved


def test_no_intact_checkpoint_stops_with_every_damaged_file_named(
    finished: tuple[Path, Path], tmp_path: Path
) -> None:
    recipe, run_dir = finished
    copy = tmp_path / "r"
    shutil.copytree(run_dir, copy)
    for step, file in (("4", SHARDS[0]), ("8", SHARDS[1]), ("12", "trainer_state.json")):
        flip_a_bit(copy / "checkpoints" / f"step_{int(step):06d}" / file)
    with pytest.raises(ValueError, match="no intact checkpoint") as raised:
        pretrain(write_recipe_at(recipe, tmp_path), resume=True, progress=False)
    for file in (
        f"step_000004/{SHARDS[0]}",
        f"step_000008/{SHARDS[1]}",
        "step_000012/trainer_state.json",
    ):
        assert file in str(raised.value)
