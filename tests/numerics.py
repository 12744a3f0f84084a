"""Tolerances that hold on any CPU: a tensor's error measured in norm, relative to its reference.

Two fp32 computations of the same quantity (a grouped GEMM and a per-token loop, two attention kernels,
one batch and three micro-batches) sum in different orders, and how a given element rounds depends on the
CPU's kernels: one element of thousands can land far from its twin while the tensor as a whole stays
within a few fp32 roundings. So the tests bound ‖actual − expected‖ / ‖expected‖, and compare against a
float64 reference where one exists, never an element-wise tolerance tuned on one machine.
"""

from __future__ import annotations

import torch

FP32_EPS = torch.finfo(torch.float32).eps  # 1.19e-7, one fp32 rounding


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """‖actual − expected‖₂ / ‖expected‖₂, computed in float64."""
    expected = expected.detach().double()
    return ((actual.detach().double() - expected).norm() / expected.norm()).item()


def assert_close_in_norm(actual: torch.Tensor, expected: torch.Tensor, bound: float, what: str = "") -> None:
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    error = relative_error(actual, expected)
    assert error <= bound, f"{what}: relative error {error:.2e} exceeds {bound:.1e}"
