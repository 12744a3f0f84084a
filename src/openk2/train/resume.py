"""Resuming a run exactly: the newest intact checkpoint, and a recipe that may differ from the saved one only
in bookkeeping or in how the same global batch is split over ranks, micro-batches and pipeline stages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openk2.train.checkpoint import Trainable, TrainerState, find_checkpoints, load_checkpoint, newest_intact
from openk2.train.progress import TrainingProgress
from openk2.train.recipe import TrainingRecipe
from openk2.train.world import World

# [run] fields that change only logging and bookkeeping: a resumed run may differ in them
RESUMABLE_CHANGES = {"checkpoint_every", "keep_checkpoints", "val_every", "val_max_batches", "log_every"}
RESUMABLE_CHANGES |= {"sample_prompt", "sample_tokens"}
# how the global batch is split over ranks and micro-batches: a run resumes re-split (sharded checkpoints)
GLOBAL_BATCH_SPLIT = ("[parallel].dp", "[parallel].ep", "[train].batch_size", "[train].grad_accum")
# how the layers are split into pipeline stages: the step is the same, so a run resumes re-split (pp 2 -> 1)
PIPELINE_SPLIT = {"pp", "virtual_stages", "schedule", "microbatches"}


def refuse_to_overwrite(run_dir: Path, resume: bool) -> None:
    """A run directory with checkpoints is continued (--resume) or left alone, never started over."""
    newest = find_checkpoints(run_dir).valid[-1:]
    if newest and not resume:
        raise ValueError(
            f"{run_dir}: already holds checkpoints (newest {newest[0].name}); pass --resume to "
            "continue the run, or change [run].name"
        )


def restore_if_resuming(
    run_dir: Path,
    trainable: Trainable,
    fresh: TrainerState,
    resume: bool,
    world: World,
    display: TrainingProgress,
    recipe: TrainingRecipe,
) -> TrainerState:
    refuse_to_overwrite(run_dir, resume)
    if not resume:
        return fresh
    scan = find_checkpoints(run_dir)
    for path, problem in scan.invalid:
        display.note(f"skipping incomplete checkpoint {path}: {problem}")
    latest, corrupt = newest_intact(scan.valid)
    for problem in corrupt:
        display.note(f"skipping corrupt checkpoint: {problem}")
    if latest is None:
        if scan.invalid or corrupt:
            damaged = [problem for _, problem in scan.invalid] + corrupt
            raise ValueError(f"--resume: no intact checkpoint under {run_dir}: {'; '.join(damaged)}")
        display.note(f"--resume: no checkpoint under {run_dir}, starting at step 0")
        return fresh
    saved = load_checkpoint(latest, trainable, world)
    changed = recipe_changes(saved.recipe, fresh.recipe, recipe.section_defaults())
    if changed:
        raise ValueError(
            f"{latest}: the recipe changed since this checkpoint in {changed}; cannot resume exactly"
        )
    display.note(f"resuming from {latest} (step {saved.step})")
    return saved


def recipe_changes(
    saved: dict[str, Any], current: dict[str, Any], defaults: dict[str, dict[str, Any]]
) -> list[str]:
    """Dotted names of the recipe fields that differ, ignoring the bookkeeping ones of [run] and the pipeline
    split of [parallel].

    A field the saved recipe lacks (added to the recipe since) changes nothing while it keeps its default.
    """
    changed = []
    for section in sorted(set(saved) | set(current)):
        old, new = saved.get(section, {}), current.get(section, {})
        for field in sorted(set(old) | set(new)):
            free = RESUMABLE_CHANGES if section == "run" else PIPELINE_SPLIT if section == "parallel" else ()
            if field in free:
                continue
            section_defaults = defaults.get(section, {})
            if field not in old and field in section_defaults and new.get(field) == section_defaults[field]:
                continue
            if old.get(field) != new.get(field):
                changed.append(f"[{section}].{field}")
    if global_batch(saved, defaults) == global_batch(current, defaults):
        changed = [name for name in changed if name not in GLOBAL_BATCH_SPLIT]
    return changed


def global_batch(recipe: dict[str, Any], defaults: dict[str, dict[str, Any]]) -> int:
    """Sequences per optimizer step over all ranks: dp × batch_size × grad_accum (of a recipe's JSON form)."""

    def value(section: str, field: str) -> int:
        return int(recipe.get(section, {}).get(field, defaults.get(section, {}).get(field, 1)))

    return value("parallel", "dp") * value("train", "batch_size") * value("train", "grad_accum")
