"""`openk2 pretrain`: the pre-training stage (K2 report §2.5) on the shared loop.

A model initialised from the recipe's preset reads fixed-length windows of the tokenized corpus; every token
is a label. Validation reads the held-out documents' windows.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

from openk2.data import PackedSequenceLoader, validation_batches
from openk2.train.device import DeviceName, resolve_device
from openk2.train.loop import RunSummary, train
from openk2.train.recipe import Recipe, load_recipe
from openk2.train.sample import sample_text
from openk2.train.stage import Stage
from openk2.train.world import join_world


def pretrain(
    recipe_path: Path, resume: bool = False, progress: bool = True, device: DeviceName | None = None
) -> RunSummary:
    """What `openk2 pretrain --recipe PATH [--resume] [--device D]` runs; device replaces [train].device."""
    recipe: Recipe = load_recipe(recipe_path).on_device(device)
    return train(pretraining_stage(recipe), resume=resume, progress=progress)


def pretraining_stage(recipe: Recipe) -> Stage:
    world = join_world(resolve_device(recipe.train.device))  # a missing GPU is refused before any work
    data, run = recipe.data, recipe.run
    shard, shards = world.data_shard(recipe.parallel.pp)
    loader = PackedSequenceLoader(
        data.shards_dir,
        seq_len=data.seq_len,
        batch_size=recipe.train.batch_size,
        seed=data.seed,
        rank=shard,
        world_size=shards,
    )
    check_shards_match_recipe(loader, recipe)
    # every rank runs the same number of forwards (sharded models gather weights in each one)
    windows_per_rank = loader.manifest.val.num_tokens // data.seq_len // shards
    num_val_batches = math.ceil(windows_per_rank / recipe.train.batch_size)

    def held_out() -> itertools.islice:
        batches = validation_batches(
            data.shards_dir,
            seq_len=data.seq_len,
            batch_size=recipe.train.batch_size,
            rank=shard,
            world_size=shards,
        )
        return itertools.islice(batches, num_val_batches)

    def sample(checkpoint: Path) -> str:
        return sample_text(checkpoint, run.sample_prompt, run.sample_tokens, seed=run.seed)

    return Stage(
        title="pre-training",
        recipe=recipe,
        config=recipe.model_config_k2(),
        batches=loader,
        validation_batches=held_out,
        tokenizer=data.shards_dir / "tokenizer.json",
        initial_weights=None,
        model_description=f"{recipe.model.preset} {recipe.model.overrides or ''}",
        sample=sample if run.sample_tokens else None,
    )


def check_shards_match_recipe(loader: PackedSequenceLoader, recipe: Recipe) -> None:
    manifest = loader.manifest
    if manifest.settings != recipe.data.shard_settings():
        raise ValueError(
            f"{recipe.data.shards_dir}: its shards were built with other [data] settings "
            f"({manifest.settings}); run `openk2 tokenize` with this recipe first"
        )
