"""Device-aware training: the device a recipe or the CLI asks for, models materialised there from the meta
device, autocast and the process-group backend from the device type.

The `gpu`-marked tests need CUDA and are skipped without it (tests/conftest.py); this CPU machine runs the rest.
"""

from __future__ import annotations

import math
import resource
from pathlib import Path
from typing import Any

import pytest
import torch

from openk2.model import K2Config, K2ForCausalLM
from openk2.model.moe import Router
from openk2.model.norm import RMSNorm
from openk2.train import pretrain
from openk2.train.device import (
    autocast_for,
    build_on_device,
    compute_dtype,
    process_group_backend,
    resolve_device,
)
from openk2.train.metrics import read_metrics
from tests.test_cli_messages import assert_clean_error, openk2
from tests.train.small_run import SMALL_MODEL, recipe_sections, write_recipe

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where torch sees no GPU")


@no_cuda
def test_auto_is_the_cpu_and_cuda_is_refused_with_the_reason() -> None:
    assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"device: 'cuda' asked for, but .*(without CUDA|sees no GPU)"):
        resolve_device("cuda")


@no_cuda
def test_cli_refuses_cuda_before_any_work(small_data: dict[str, Any], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    recipe = write_recipe(tmp_path / "r.toml", recipe_sections(runs, small_data))
    completed = openk2("pretrain", "--recipe", str(recipe), "--device", "cuda")
    assert_clean_error(completed, "device: 'cuda' asked for")
    assert not runs.exists()  # nothing was written
    recipe.write_text(recipe.read_text().replace("[train]\n", '[train]\ndevice = "cuda"\n'))
    assert_clean_error(openk2("pretrain", "--recipe", str(recipe)), "device: 'cuda' asked for")
    assert_clean_error(openk2("generate", "1,2", "--ids", "--preset", "tiny", "--device", "cuda"), "'cuda'")


def test_backend_and_autocast_follow_the_device_type() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert (process_group_backend(cpu), process_group_backend(gpu)) == ("gloo", "nccl")
    assert (compute_dtype("auto", cpu), compute_dtype("auto", gpu)) == (torch.float32, torch.bfloat16)
    assert compute_dtype("bfloat16", cpu) == torch.bfloat16 and compute_dtype("float32", gpu) == torch.float32
    autocast = autocast_for(cpu, torch.bfloat16)
    assert (autocast.device, autocast.fast_dtype, autocast._enabled) == ("cpu", torch.bfloat16, True)
    assert not autocast_for(cpu, torch.float32)._enabled


@pytest.mark.parametrize("tied", [False, True])
def test_a_model_materialised_from_meta_initialises_every_tensor(tied: bool) -> None:
    """to_empty leaves memory uninitialised: every parameter and buffer must be written by the initialisation
    (N(0, 0.02) matrices, unit norms, zero router bias), and tied embeddings must stay one tensor."""
    config = K2Config(**{**SMALL_MODEL, "tie_word_embeddings": tied})
    torch.manual_seed(0)
    model = build_on_device(config, torch.device("cpu"))
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied
    for name, module in model.named_modules():
        if isinstance(module, RMSNorm):
            assert torch.equal(module.weight, torch.ones_like(module.weight)), name
        if isinstance(module, Router):
            assert torch.equal(
                module.e_score_correction_bias, torch.zeros_like(module.e_score_correction_bias)
            )
    for name, parameter in model.named_parameters():
        if parameter.ndim >= 2:
            std = parameter.detach().std().item()
            assert math.isclose(std, config.initializer_range, rel_tol=0.1), (name, std)
            assert abs(parameter.detach().mean().item()) < 0.2 * config.initializer_range, name
    torch.manual_seed(0)
    again = build_on_device(config, torch.device("cpu"))  # the seed alone decides the weights
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    )


def test_a_k2_size_model_is_built_on_meta_without_host_memory() -> None:
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = build_on_device(K2Config.preset("kimi-k2"), torch.device("meta"))
    assert sum(p.numel() for p in model.parameters()) == 1_026_408_209_408
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kib < 2**20, f"{grown_kib} KiB"  # under 1 GiB of the 4 TB an fp32 host copy would take


@pytest.mark.gpu
def test_a_model_materialises_on_the_gpu_without_a_host_copy() -> None:
    config = K2Config.preset("small")
    torch.cuda.reset_peak_memory_stats()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = build_on_device(config, resolve_device("cuda"))
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    assert model.lm_head.weight.device.type == "cuda"
    assert torch.cuda.max_memory_allocated() >= weights
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) * 1024 < weights / 2


@pytest.mark.gpu
def test_pretraining_on_the_gpu_matches_the_cpu_run(small_data: dict[str, Any], tmp_path: Path) -> None:
    """fp32 on both: the same losses up to GEMM rounding; then bf16 autocast (auto) trains too."""
    losses = {}
    for device in ("cpu", "cuda"):
        sections = recipe_sections(
            tmp_path / device, small_data, run={"steps": 6, "val_every": 6}, train={"dtype": "float32"}
        )
        summary = pretrain(write_recipe(tmp_path / f"{device}.toml", sections), progress=False, device=device)
        losses[device] = [record.loss for record in read_metrics(summary.run_dir / "metrics.jsonl")]
    assert losses["cpu"] == pytest.approx(losses["cuda"], rel=1e-4)
    sections = recipe_sections(tmp_path / "bf16", small_data, run={"steps": 6, "val_every": 6})
    summary = pretrain(write_recipe(tmp_path / "bf16.toml", sections), progress=False, device="cuda")
    assert summary.final_loss == pytest.approx(losses["cpu"][-1], rel=0.05)
    assert K2ForCausalLM.from_pretrained(summary.checkpoint).lm_head.weight.dtype == torch.float32
