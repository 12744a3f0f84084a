"""Session fixtures: a tiny pre-trained OpenK2 checkpoint (the starting point of every SFT test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from openk2.data import DataConfig, tokenize_corpus
from openk2.recipes import validate_recipe
from openk2.train import pretrain
from tests.sft.sft_recipe import PRETRAIN_STEPS, SFT_MODEL
from tests.train.small_run import data_section, recipe_sections, write_corpus, write_recipe


@pytest.fixture(scope="session")
def pretrained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small K2 of the pre-training tests with room for 512 positions, pre-trained briefly on Shakespeare."""
    root = tmp_path_factory.mktemp("pretrained")
    data = data_section(write_corpus(root), root / "data")
    tokenize_corpus(validate_recipe(DataConfig, data, "[data]"), progress=False)
    sections = recipe_sections(
        root,
        data,
        name="pretrained",
        run=dict(
            steps=PRETRAIN_STEPS, checkpoint_every=PRETRAIN_STEPS, val_every=PRETRAIN_STEPS, val_max_batches=1
        ),
        model=dict(preset="tiny", overrides=SFT_MODEL),
    )
    return pretrain(write_recipe(root / "pretrain.toml", sections), progress=False).checkpoint
