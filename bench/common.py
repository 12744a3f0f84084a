"""Shared benchmark plumbing: alternate the compared implementations in one process, report min and median."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads must not spin on a shared machine

import statistics
import time
from collections.abc import Callable

import torch


def time_alternating(
    candidates: dict[str, Callable[[], object]], repeats: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Runs every candidate once per round, round after round, so machine noise hits them alike."""
    for _ in range(warmup):
        for run in candidates.values():
            run()
    seconds: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, run in candidates.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def summary(samples: list[float]) -> tuple[float, float]:
    return min(samples), statistics.median(samples)


def fp32_gemm_peak_flops(size: int = 1024, repeats: int = 10) -> float:
    """The machine's fp32 matmul throughput, best of `repeats` square GEMMs."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best


def _timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start
