"""Session fixtures: the tiny pre-trained K2 of the SFT tests, and that model warmed up by `openk2 sft` on
the reversal task (tests/rl/rl_setup.py) — the policy the RL tests start from."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rl.rl_setup import warm_up
from tests.sft.conftest import pretrained_checkpoint

__all__ = ["pretrained_checkpoint", "warm_policy"]


@pytest.fixture(scope="session")
def warm_policy(pretrained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return warm_up(pretrained_checkpoint, tmp_path_factory.mktemp("warm"))
