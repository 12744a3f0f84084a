"""SFT recipes for the tests: the shared sections of the pre-training tests plus [init] and [sft] with sources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openk2.data import DataConfig, tokenize_corpus
from openk2.recipes import validate_recipe
from openk2.train import pretrain
from tests.train.small_run import SMALL_MODEL, data_section, recipe_sections, write_corpus, write_recipe

PRETRAIN_STEPS = 30
SFT_MODEL = {**SMALL_MODEL, "max_position_embeddings": 512}


def pretrain_small(root: Path, steps: int = PRETRAIN_STEPS, positions: int = 512) -> Path:
    """The small K2 of the pre-training tests with room for `positions` tokens, pre-trained briefly on
    Shakespeare; returns its checkpoint (the starting point of the SFT, RL and synthesis tests)."""
    root.mkdir(parents=True, exist_ok=True)
    data = data_section(write_corpus(root), root / "data")
    tokenize_corpus(validate_recipe(DataConfig, data, "[data]"), progress=False)
    sections = recipe_sections(
        root,
        data,
        name="pretrained",
        run=dict(steps=steps, checkpoint_every=steps, val_every=steps, val_max_batches=1),
        model=dict(preset="tiny", overrides={**SFT_MODEL, "max_position_embeddings": positions}),
    )
    return pretrain(write_recipe(root / "pretrain.toml", sections), progress=False).checkpoint


def sft_sections(
    output_dir: Path, checkpoint: Path, name: str = "sft", **sections: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """A complete SFT recipe without its sources; `sections` update single fields, e.g. run={"steps": 4}."""
    recipe: dict[str, dict[str, Any]] = {
        "run": dict(
            name=name,
            output_dir=str(output_dir),
            seed=0,
            steps=6,
            checkpoint_every=3,
            keep_checkpoints=2,
            val_every=3,
            log_every=1,
        ),
        "init": dict(checkpoint=str(checkpoint)),
        "sft": dict(seq_len=512, val_fraction=0.2, seed=0),
        "optim": dict(lr=3e-3, weight_decay=0.0),
        "schedule": dict(warmup_steps=1, decay="cosine", decay_fraction=0.5, final_lr=3e-4),
        "train": dict(batch_size=2, grad_accum=2, expert_bias_update_rate=1e-3),
    }
    for section, fields in sections.items():
        recipe.setdefault(section, {}).update(fields)
    return recipe


def write_sft_recipe(path: Path, sections: dict[str, dict[str, Any]], sources: list[dict[str, Any]]) -> Path:
    """The sections as tables, then one `[[sft.sources]]` table per source."""
    write_recipe(path, sections)
    tables = [
        "[[sft.sources]]\n"
        + "".join(
            f"{key} = {json.dumps(str(v) if isinstance(v, Path) else v)}\n" for key, v in source.items()
        )
        for source in sources
    ]
    with path.open("a", encoding="utf-8") as file:
        file.write("\n".join(tables))
    return path
