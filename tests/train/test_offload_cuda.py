"""Activation offload on a GPU: pinned host copies made on a side stream, exact on the way back.

Both tests need CUDA and are skipped elsewhere (tests/conftest.py); the CPU path is tested in test_memory.py.
"""

from __future__ import annotations

import copy

import pytest
import torch

from openk2.model import K2Config, K2ForCausalLM
from openk2.train.fp8_storage import quantize_tiles
from openk2.train.memory import apply_memory_policy
from openk2.train.offload import offload, onload
from openk2.train.recipe import MemorySection
from tests.numerics import assert_close_in_norm

pytestmark = pytest.mark.gpu


def test_a_tensor_and_fp8_tiles_go_to_pinned_memory_and_come_back_equal() -> None:
    x = torch.randn(2048, 1024, device="cuda")
    expected = x.clone()
    offloaded = offload(x)
    assert offloaded.value.device.type == "cpu" and offloaded.value.is_pinned()
    assert offloaded.copied is not None
    del x
    torch.randn(2048, 1024, device="cuda")  # may be given x's memory: only after the side stream read it
    back = onload(offloaded)
    assert back.device == expected.device and torch.equal(back, expected)

    tiles = quantize_tiles(torch.randn(64, 256, device="cuda"))
    offloaded_tiles = offload(tiles)
    assert all(t.is_pinned() for t in offloaded_tiles.value.tensors())
    restored = onload(offloaded_tiles)
    assert all(torch.equal(a, b) for a, b in zip(restored.tensors(), tiles.tensors(), strict=True))


def test_training_with_offload_on_a_gpu_gives_the_gradients_of_training_without() -> None:
    torch.manual_seed(0)
    base = K2ForCausalLM(K2Config.preset("tiny")).cuda()
    ids = torch.randint(0, base.config.vocab_size, (2, 64), device="cuda")

    def gradients(model: K2ForCausalLM) -> dict[str, torch.Tensor]:
        model(ids, labels=ids).loss.backward()
        return {name: p.grad for name, p in model.named_parameters()}

    expected = gradients(copy.deepcopy(base))
    offloaded = gradients(apply_memory_policy(copy.deepcopy(base), MemorySection(offload=True)))
    for name, grad in expected.items():
        assert_close_in_norm(offloaded[name], grad, 1e-5, name)  # MoE scatter-adds may reorder sums on a GPU
