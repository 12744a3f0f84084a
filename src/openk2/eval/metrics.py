"""Benchmark scores and their 95% confidence intervals (K2 report §4.1: Pass@1, Avg@k, pass^k, accuracy).

    pass@k  = 1 - C(n-c, k) / C(n, k)    a task is solved by at least one of k samples (Chen et al., 2021)
    pass^k  = C(c, k) / C(n, k)          all k of k trials succeed (tau-bench's reliability measure)
    Avg@k   = c / n per task             the mean reward of k samples

each averaged over tasks, with n samples of which c passed. Intervals:
- a proportion of independent items (one sample per item) gets the Wilson score interval, which keeps
  its coverage near 0 and 1 where the normal approximation fails;
- anything averaged per task from several samples (Avg@k, pass@k, pass^k) or a ratio of sums over
  clustered units (IFEval's instruction-level accuracy) gets a percentile bootstrap over the units
  (tasks, prompts), so the spread between tasks, not between samples of one task, sets the width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

LEVEL = 0.95
Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


class Interval(BaseModel):
    """A confidence interval and how it was computed."""

    model_config = ConfigDict(extra="forbid")

    low: float
    high: float
    method: Literal["wilson", "bootstrap"]
    level: float = LEVEL
    resamples: int | None = None  # bootstrap only


class Score(BaseModel):
    """One metric of one suite: `value` in [0, 1] over `n` units, None when nothing could be scored."""

    model_config = ConfigDict(extra="forbid")

    metric: str  # e.g. "pass@1", "avg@64", "pass^4", "prompt_strict"
    value: float | None
    n: int  # the units the value averages over: items, tasks or prompts
    interval: Interval | None = None


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion: the p whose score test does not reject."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"successes, n: expected 0 <= successes <= n and n > 0, got {successes}, {n}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    # exact ends: no successes cannot exclude 0, all successes cannot exclude 1
    return (0.0 if successes == 0 else low, 1.0 if successes == n else high)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al., 2021, eq. 1)."""
    _check_counts(n, c, k)
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """pass^k: the chance that k trials drawn without replacement from n all succeed, C(c,k)/C(n,k)."""
    _check_counts(n, c, k)
    return math.comb(c, k) / math.comb(n, k)


def _check_counts(n: int, c: int, k: int) -> None:
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"n, c, k: expected 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")


def bootstrap_interval(
    numerators: Sequence[float],
    denominators: Sequence[float] | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap of sum(numerators)/sum(denominators) over units resampled with replacement.

    Without denominators it is the mean of the per-unit values (Avg@k, pass@k per task).
    """
    values = np.asarray(numerators, dtype=np.float64)
    weights = np.ones_like(values) if denominators is None else np.asarray(denominators, dtype=np.float64)
    if values.ndim != 1 or values.shape != weights.shape or len(values) == 0:
        raise ValueError("numerators, denominators: expected two equally long, non-empty sequences")
    draws = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    statistics = values[draws].sum(axis=1) / weights[draws].sum(axis=1)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(statistics, [tail, 100 - tail])
    return float(low), float(high)


def proportion(metric: str, passed: Sequence[bool]) -> Score:
    """The share of items that passed, with a Wilson interval."""
    if not passed:
        return Score(metric=metric, value=None, n=0)
    successes = sum(passed)
    low, high = wilson_interval(successes, len(passed))
    return Score(
        metric=metric,
        value=successes / len(passed),
        n=len(passed),
        interval=Interval(low=low, high=high, method="wilson"),
    )


def mean_over_units(
    metric: str, numerators: Sequence[float], denominators: Sequence[float] | None = None
) -> Score:
    """sum(numerators)/sum(denominators) (a plain mean without denominators), with a bootstrap interval."""
    if not numerators:
        return Score(metric=metric, value=None, n=0)
    weights = denominators if denominators is not None else [1.0] * len(numerators)
    low, high = bootstrap_interval(numerators, weights)
    return Score(
        metric=metric,
        value=sum(numerators) / sum(weights),
        n=len(numerators),
        interval=Interval(low=low, high=high, method="bootstrap", resamples=BOOTSTRAP_RESAMPLES),
    )
