"""evaluation.stats: Wilson intervals, seeded bootstrap, % change, paired comparison."""

import math

import numpy as np
import pytest

from evaluation.stats import bootstrap_ci, paired_comparison, percent_change, wilson_interval


def test_wilson_known_values():
    # reference values (Wilson 1927 / statsmodels proportion_confint(method="wilson"))
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.236593, abs=1e-5) and high == pytest.approx(0.763407, abs=1e-5)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.277533, abs=1e-5)
    low, high = wilson_interval(10, 10)
    assert low == pytest.approx(0.722467, abs=1e-5) and high == 1.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_wilson_rejects_impossible_counts():
    with pytest.raises(ValueError, match="successes=11, n=10"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, confidence=1.5)


def test_bootstrap_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(3).normal(10.0, 2.0, size=30)
    a = bootstrap_ci(values, resamples=1000, seed=7)
    assert a == bootstrap_ci(values, resamples=1000, seed=7)
    assert a != bootstrap_ci(values, resamples=1000, seed=8)
    assert a[0] < values.mean() < a[1]
    # roughly the normal-theory interval for 30 samples
    half = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    assert (a[1] - a[0]) == pytest.approx(2 * half, rel=0.25)
    assert bootstrap_ci([4.0]) == (4.0, 4.0)
    assert all(math.isnan(v) for v in bootstrap_ci([]))


def test_percent_change():
    assert percent_change(12.0, 10.0) == pytest.approx(20.0)
    assert percent_change(-12.0, -10.0) == pytest.approx(-20.0)
    assert math.isnan(percent_change(1.0, 0.0))
    assert math.isnan(percent_change(1.0, float("nan")))


def test_paired_comparison_uses_only_shared_seeds():
    base = {0: 1.0, 1: 2.0, 2: 3.0}
    variant = {1: 2.5, 2: 3.5, 5: 100.0}  # seed 0 failed for the variant, 5 for the base
    result = paired_comparison(base, variant, resamples=500, seed=0)
    assert result.n_pairs == 2
    assert result.mean_difference == pytest.approx(0.5)
    assert result.ci_low == pytest.approx(0.5) and result.ci_high == pytest.approx(0.5)
    assert result.percent_change == pytest.approx(100 * (3.0 - 2.5) / 2.5)
    empty = paired_comparison({0: 1.0}, {1: 1.0})
    assert empty.n_pairs == 0 and math.isnan(empty.mean_difference)
