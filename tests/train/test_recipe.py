"""The recipe: every section validated before any work, errors naming the file and the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from openk2.model import K2Config
from openk2.train import load_recipe

REPO = Path(__file__).resolve().parents[2]


def test_tiny_recipe_is_valid_and_scales_k2_schedule() -> None:
    recipe = load_recipe(REPO / "recipes" / "pretrain-tiny.toml")
    assert recipe.model_config_k2() == K2Config.preset("tiny")
    schedule = recipe.lr_schedule()
    assert schedule.warmup_steps + schedule.stable_steps + schedule.decay_steps == recipe.run.steps
    assert schedule.final_lr == pytest.approx(schedule.peak_lr / 10)  # K2: 2e-4 -> 2e-5
    assert recipe.parallel.is_default and recipe.memory.is_default


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ("[run]\nsteps = 9\nstep = 5", "[run].step: Extra inputs are not permitted"),
        ("[run]\nname = 'x'", "[run].steps: Field required"),
        ("[trian]\nbatch_size = 4", "[trian]: Extra inputs are not permitted"),
        ("[train]\nbatch_size = 0", "[train].batch_size: Input should be greater than 0"),
        ("[train]\ndtype = 'float16'", "[train].dtype: Input should be 'auto', 'float32' or 'bfloat16'"),
        ("[train]\ndevice = 'tpu'", "[train].device: Input should be 'auto', 'cpu' or 'cuda'"),
        ("[data]\nvocab = 8192", "[data].vocab: Extra inputs are not permitted"),
        ("[model]\npreset = 'huge'", "[model].preset: unknown preset 'huge'"),
        ("[model.overrides]\nhidden = 64", "[model].overrides: unknown K2Config fields ['hidden']"),
        (
            "[model.overrides]\nnum_hidden_layers = 0",
            "[model]: overrides: num_hidden_layers: Input should be",
        ),
        ("[model.overrides]\naux_loss_alpha = 0.1", "set [train].aux_loss_alpha instead"),
        ("[optim]\nadamw_betas = [0.9, 1.5]", "[optim].adamw_betas: expected two values in [0, 1)"),
        ("[parallel]\nep = 0", "[parallel].ep: Input should be greater than 0"),
        ("[memory]\nrecompute = 'yes'", "[memory].recompute: Input should be a valid boolean"),
        ("[data]\nvocab_size = 4096", "[model] vocab_size 8192 differs from [data].vocab_size 4096"),
        ("[data]\nseq_len = 2048", "[data].seq_len 2048 exceeds [model] max_position_embeddings 1024"),
        (
            "[run]\nsteps = 100\n[schedule]\nwarmup_steps = 80",
            "warmup_steps 80 + decay steps 35 exceed [run].steps",
        ),
    ],
)
def test_bad_recipe_names_file_and_field(tmp_path: Path, toml: str, problem: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml if toml.startswith("[run]") else f"[run]\nsteps = 1000\n{toml}\n")
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: .*{re.escape(problem)}"):
        load_recipe(path)


def test_unreadable_recipe_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[run\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}: cannot read recipe")):
        load_recipe(path)
