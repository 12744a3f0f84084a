"""A training checkpoint's layout: the model and optimizer as shards under the unsplit model's names, read by
`from_pretrained` as they are, exported to the Hugging Face layout, refused when they do not fit the recipe.

One 2-step single-process run serves every test here (the multi-process proofs are in test_reshard.py).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from openk2.cli import main
from openk2.model import K2Config, K2ForCausalLM
from openk2.model.checkpoint import read_sharded_tensors
from openk2.train import find_checkpoints, pretrain
from openk2.train.checkpoint import rng_state, set_rng_state
from openk2.train.export import export_checkpoint
from openk2.train.sharded import MODEL_DIR, OPTIMIZER_DIR
from tests.train.small_run import SMALL_MODEL, recipe_sections, write_recipe
from tests.train.test_checkpoint_integrity import flip_a_bit

SHARD = "__0_0.distcp"  # the one rank's shard file


@pytest.fixture(scope="module")
def trained(small_data: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the recipe, the final checkpoint) of a 2-step run."""
    root = tmp_path_factory.mktemp("sharded")
    run = dict(steps=2, checkpoint_every=2, val_every=2, val_max_batches=1)
    sections = recipe_sections(root, small_data, name="s", run=run, schedule=dict(warmup_steps=1))
    recipe = write_recipe(root / "s.toml", sections)
    return recipe, pretrain(recipe, progress=False).checkpoint


def test_a_checkpoint_holds_the_unsplit_models_tensors_as_shards(trained: tuple[Path, Path]) -> None:
    _, checkpoint = trained
    files = sorted(p.relative_to(checkpoint).as_posix() for p in checkpoint.rglob("*") if p.is_file())
    assert files == sorted(
        [
            "config.json",
            "tokenizer.json",
            "scheduler.pt",
            "loader.json",
            "rng.pt",
            "trainer_state.json",
            "manifest.json",
            *(f"{part}/{name}" for part in (MODEL_DIR, OPTIMIZER_DIR) for name in (".metadata", SHARD)),
        ]
    )
    with torch.device("meta"):
        unsplit = K2ForCausalLM(K2Config.from_pretrained(checkpoint))
    shards = read_sharded_tensors(checkpoint / MODEL_DIR)
    assert {name: list(t.shape) for name, t in shards.items()} == {
        name: list(t.shape) for name, t in unsplit.state_dict().items()
    }
    loaded = K2ForCausalLM.from_pretrained(checkpoint).state_dict()  # what every stage and server reads
    assert all(torch.equal(loaded[name], tensor) for name, tensor in shards.items())


def test_the_export_is_the_hf_layout_and_its_logits_equal_the_checkpoints(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    _, checkpoint = trained
    output = tmp_path / "hf"
    main(["export", "--checkpoint", str(checkpoint), "--output", str(output)])
    assert sorted(p.name for p in output.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert (output / "tokenizer.json").read_bytes() == (checkpoint / "tokenizer.json").read_bytes()
    # the trained model: the shards' tensors put into the model by name, no layout conversion
    trained_model = K2ForCausalLM(K2Config.from_pretrained(checkpoint))
    trained_model.load_state_dict(read_sharded_tensors(checkpoint / MODEL_DIR))
    exported = K2ForCausalLM.from_pretrained(output)  # per-expert keys, stacked again on load
    ids = torch.randint(0, SMALL_MODEL["vocab_size"], (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(exported.eval()(ids).logits, trained_model.eval()(ids).logits)


@pytest.fixture
def copy(trained: tuple[Path, Path], tmp_path: Path) -> Path:
    """A copy of the final checkpoint, to damage."""
    return Path(shutil.copytree(trained[1], tmp_path / "copy"))


def test_export_refuses_a_damaged_shard_and_an_existing_output(copy: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"--output .*: already exists"):
        export_checkpoint(copy, tmp_path)
    shard = copy / OPTIMIZER_DIR / SHARD
    flip_a_bit(shard)
    with pytest.raises(
        ValueError, match=re.escape(f"not exported, the checkpoint is damaged: {shard}: SHA-256 differs")
    ):
        export_checkpoint(copy, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_truncated_shard_is_named_by_the_loaders(copy: Path) -> None:
    shard = copy / MODEL_DIR / SHARD
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(ValueError, match=re.escape(f"{copy / MODEL_DIR}: not a readable sharded checkpoint")):
        K2ForCausalLM.from_pretrained(copy)


def test_a_checkpoint_of_another_model_shape_is_refused_naming_the_tensor_and_both_shapes(
    trained: tuple[Path, Path], small_data: dict[str, Any], tmp_path: Path
) -> None:
    _, checkpoint = trained
    run_dir = checkpoint.parents[1]
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    wider = {**SMALL_MODEL, "intermediate_size": 192}
    run = dict(steps=2, checkpoint_every=2, val_every=2, val_max_batches=1)
    sections = recipe_sections(
        tmp_path, small_data, name=run_dir.name, run=run, schedule=dict(warmup_steps=1),
        model=dict(preset="tiny", overrides=wider),
    )  # fmt: skip
    with pytest.raises(ValueError) as refused:
        pretrain(write_recipe(tmp_path / "wider.toml", sections), resume=True, progress=False)
    assert str(refused.value) == (
        f"{find_checkpoints(copy).valid[-1] / MODEL_DIR}: model.layers.0.mlp.gate_proj.weight "
        "is [128, 64] in the checkpoint but [192, 64] in this recipe's model"
    )


def test_the_random_generators_are_restored() -> None:
    saved = rng_state()
    drawn = torch.rand(4)
    set_rng_state(saved)
    assert torch.equal(torch.rand(4), drawn)


@pytest.mark.gpu
def test_the_cuda_generator_is_saved_and_restored() -> None:
    torch.rand(1, device="cuda")  # a process that uses CUDA
    saved = rng_state()
    assert "cuda" in saved
    drawn = torch.rand(4, device="cuda")
    set_rng_state(saved)
    assert torch.equal(torch.rand(4, device="cuda"), drawn)


def test_openk2_export_names_a_missing_checkpoint_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none"
    with pytest.raises(SystemExit) as exited:
        main(["export", "--checkpoint", str(missing), "--output", str(tmp_path / "out")])
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"error: {missing}: no such checkpoint directory\n"
