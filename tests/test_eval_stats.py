"""evaluation.analysis.stats: Wilson intervals, seeded bootstrap, % change, paired comparison."""

import math
from statistics import NormalDist

import numpy as np
import pytest

from evaluation.analysis.stats import bootstrap_ci, paired_comparison, percent_change, wilson_interval


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


# -- against independent answers -------------------------------------------------------------
@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.95, 0.99])
@pytest.mark.parametrize("successes, n", [(0, 1), (1, 1), (0, 7), (3, 7), (7, 7), (1, 50), (43, 50), (25, 50), (199, 200)])
def test_wilson_equals_scipys_binomtest(successes, n, confidence):
    from scipy.stats import binomtest

    expected = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    low, high = wilson_interval(successes, n, confidence)
    assert low == pytest.approx(expected.low, abs=1e-12)
    assert high == pytest.approx(expected.high, abs=1e-12)


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.975])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bootstrap_of_a_binary_sample_equals_the_binomial_quantiles(confidence, seed):
    # 20 ones and 20 zeros: a resample's mean is Binomial(40, 1/2) / 40, so the percentile
    # interval of the mean is the binomial's (1 - c)/2 and (1 + c)/2 quantiles over 40. The
    # chosen levels sit >= 7 standard errors (of 20000 resamples) away from the CDF's jumps.
    from scipy.stats import binom

    values = np.r_[np.ones(20), np.zeros(20)]
    alpha = (1.0 - confidence) / 2.0
    expected = tuple(binom.ppf([alpha, 1.0 - alpha], 40, 0.5) / 40)
    assert bootstrap_ci(values, confidence, resamples=20000, seed=seed) == pytest.approx(expected, abs=1e-12)


def test_bootstrap_interval_covers_the_true_mean_at_its_level():
    # 600 normal samples of 40: a 95% interval misses the true mean in about 5% of them (the
    # percentile bootstrap runs a little narrow at n = 40: 93-95%); a 90% or 99% interval would not
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(600):
        sample = rng.normal(3.0, 2.0, size=40)
        low, high = bootstrap_ci(sample, 0.95, resamples=1000, seed=int(rng.integers(1 << 30)))
        assert low <= sample.mean() <= high
        hits += low <= 3.0 <= high
    assert 0.915 <= hits / 600 <= 0.975, hits / 600


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_paired_comparison_against_a_known_answer(sign):
    # 40 shared seeds; the variant adds sign * d_s with d_s in {0, 1}, twenty of each: the paired
    # mean is sign * 0.5 and its interval the binomial quantiles (see above)
    from scipy.stats import binom

    rng = np.random.default_rng(5)
    base_values = rng.normal(-4.0, 1.0, size=40)  # a negative mean: the % divides by |mean|
    steps = rng.permutation(np.r_[np.ones(20), np.zeros(20)])
    base = {seed: float(v) for seed, v in enumerate(base_values)}
    variant = {seed: float(v + sign * d) for seed, (v, d) in enumerate(zip(base_values, steps))}
    variant[99] = 1e6  # a seed only the variant solved: ignored
    result = paired_comparison(base, variant, resamples=20000, seed=3)
    assert result.n_pairs == 40
    assert result.mean_difference == pytest.approx(sign * 0.5, abs=1e-12)
    q = binom.ppf([0.025, 0.975], 40, 0.5) / 40
    expected = (q[0], q[1]) if sign > 0 else (-q[1], -q[0])
    assert (result.ci_low, result.ci_high) == pytest.approx(expected, abs=1e-12)
    assert result.ci_low <= result.mean_difference <= result.ci_high
    mean_b = base_values.mean()
    mean_v = np.mean([variant[s] for s in range(40)])
    assert result.percent_change == pytest.approx(100.0 * (mean_v - mean_b) / abs(mean_b), rel=1e-12)
    assert np.sign(result.percent_change) == sign


# -- edges (each found by a surviving mutant, docs/testing.md) ----------------------------------
def test_confidence_must_be_strictly_between_0_and_1():
    for confidence in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match=rf"confidence={confidence}: expected a value in \(0, 1\)"):
            wilson_interval(1, 2, confidence)
        with pytest.raises(ValueError, match="confidence"):
            bootstrap_ci([1.0, 2.0], confidence)
    with pytest.raises(ValueError, match="successes=1, n=0"):
        wilson_interval(1, 0)


@pytest.mark.parametrize("n", range(1, 80))
def test_wilson_bounds_are_exact_at_the_ends_and_inside_the_unit_interval(n):
    assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0
    for k in range(n + 1):
        low, high = wilson_interval(k, n)
        assert 0.0 <= low <= k / n <= high <= 1.0


def test_bootstrap_of_two_values_resamples_both():
    # resample means of {0, 1}: 0, 1/2 or 1 with probabilities 1/4, 1/2, 1/4
    assert bootstrap_ci([0.0, 1.0], resamples=4000) == (0.0, 1.0)
    assert bootstrap_ci([0.0, 1.0], confidence=0.4, resamples=4000) == (0.5, 0.5)


def test_percent_change_of_missing_values_is_nan():
    assert math.isnan(percent_change(None, 2.0))
    assert math.isnan(percent_change(2.0, None))
    assert math.isnan(percent_change(2.0, float("inf")))


def test_paired_comparison_is_seeded_and_empty_is_all_nan():
    rng = np.random.default_rng(0)
    base = {s: float(v) for s, v in enumerate(rng.normal(size=30))}
    variant = {s: v + float(rng.normal()) for s, v in base.items()}
    first = paired_comparison(base, variant, seed=0)
    assert first == paired_comparison(base, variant, seed=0)
    assert (first.ci_low, first.ci_high) != (paired_comparison(base, variant, seed=1).ci_low, paired_comparison(base, variant, seed=1).ci_high)
    empty = paired_comparison({0: 1.0}, {1: 1.0})
    assert empty.n_pairs == 0
    assert all(math.isnan(getattr(empty, f)) for f in ("mean_difference", "ci_low", "ci_high", "percent_change"))


def test_minimum_detectable_effect_matches_the_normal_formula():
    from evaluation.analysis.stats import minimum_detectable_effect

    differences = np.array([1.0, -1.0, 3.0, -3.0, 0.0])  # sd (ddof 1) = sqrt(5), n = 5
    expected = (1.959963984540054 + 0.8416212335729143) * math.sqrt(5.0) / math.sqrt(5.0)
    assert minimum_detectable_effect(differences) == pytest.approx(expected, rel=1e-9)
    assert math.isnan(minimum_detectable_effect([2.0]))
    comparison = paired_comparison({0: 10.0, 1: 10.0, 2: 10.0}, {0: 11.0, 1: 9.0, 2: 10.0})
    assert comparison.base_mean == 10.0
    assert comparison.mde_percent == pytest.approx(100 * minimum_detectable_effect([1.0, -1.0, 0.0]) / 10.0)


def test_expanded_confidence_is_hesterbergs_level():
    from evaluation.analysis.stats import expanded_confidence

    # n = 5: 2 Phi(sqrt(5/4) t_4(0.975)) - 1, t_4(0.975) = 2.7764451
    assert expanded_confidence(0.95, 5) == pytest.approx(2 * NormalDist().cdf(math.sqrt(1.25) * 2.7764451) - 1, abs=1e-7)
    assert expanded_confidence(0.95, 5) == pytest.approx(0.99809, abs=1e-5)
    assert expanded_confidence(0.95, 100_000) == pytest.approx(0.95, abs=1e-4)
    levels = [expanded_confidence(0.9, n) for n in (2, 3, 5, 10, 50)]
    assert levels == sorted(levels, reverse=True) and levels[-1] > 0.9
    with pytest.raises(ValueError, match="n=1: expected at least 2"):
        expanded_confidence(0.95, 1)


def test_small_sample_intervals_cover_the_mean_closer_to_their_level():
    """Five paired differences from a zero-mean normal, 150 times: the percentile interval
    misses zero far more often than 5 % of the time; the default interval much less."""
    rng = np.random.default_rng(0)
    samples = [rng.normal(0.0, 1.0, 5) for _ in range(150)]
    covered = {method: np.mean([lo <= 0 <= hi for lo, hi in (bootstrap_ci(x, 0.95, 500, i, method)
                                                             for i, x in enumerate(samples))])
               for method in ("percentile", "bca", "expanded_bca")}
    assert covered["percentile"] < 0.87
    assert covered["expanded_bca"] >= 0.89 and covered["expanded_bca"] - covered["percentile"] >= 0.05


def test_bca_needs_three_values_and_known_methods():
    assert bootstrap_ci([1.0, 2.0], method="bca") == bootstrap_ci([1.0, 2.0], method="percentile")
    assert bootstrap_ci([3.0, 3.0, 3.0], method="expanded_bca") == (3.0, 3.0)
    low, high = bootstrap_ci([0.1, 0.4, 0.2, 0.9, 0.3], method="bca")
    assert 0.1 <= low < np.mean([0.1, 0.4, 0.2, 0.9, 0.3]) < high <= 0.9
    with pytest.raises(ValueError, match="method='t': expected one of"):
        bootstrap_ci([1.0, 2.0, 3.0], method="t")
