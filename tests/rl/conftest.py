"""Session fixtures: the tiny pre-trained K2 of the SFT tests, and that model warmed up by `openk2 sft` on
the reversal task (tests/rl/rl_setup.py) — the policy the RL tests start from."""

from __future__ import annotations

from pathlib import Path

import pytest

from openk2.sft.run import sft
from tests.rl.rl_setup import flawed_demonstrations
from tests.sft.conftest import pretrained_checkpoint
from tests.sft.sft_recipe import sft_sections, write_sft_recipe

__all__ = ["pretrained_checkpoint", "warm_policy"]

WARM_UP_STEPS = 160  # enough to reverse 3-digit numbers, with the period (tests/rl/rl_setup.py)


@pytest.fixture(scope="session")
def warm_policy(pretrained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("warm")
    sections = sft_sections(
        root,
        pretrained_checkpoint,
        name="warm",
        run=dict(steps=WARM_UP_STEPS, checkpoint_every=WARM_UP_STEPS, val_every=WARM_UP_STEPS, log_every=10),
        sft=dict(seq_len=512, val_fraction=0.05),
        optim=dict(lr=1e-2, weight_decay=0.0),
        schedule=dict(warmup_steps=5, decay="cosine", decay_fraction=0.2, final_lr=1e-3),
        train=dict(batch_size=4, grad_accum=1),
    )
    tasks = flawed_demonstrations(root / "tasks.jsonl")
    recipe = write_sft_recipe(root / "warm.toml", sections, [dict(kind="tasks", path=tasks)])
    return sft(recipe, progress=False).run.checkpoint
