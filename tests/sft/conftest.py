"""Session fixtures: a tiny pre-trained OpenK2 checkpoint (the starting point of every SFT test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sft.sft_recipe import pretrain_small


@pytest.fixture(scope="session")
def pretrained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small K2 of the pre-training tests with room for 512 positions, pre-trained briefly on Shakespeare."""
    return pretrain_small(tmp_path_factory.mktemp("pretrained"))
