"""Statistics for the summary: pure functions, numbers in, numbers out.

- ``wilson_interval``: a binomial proportion's confidence interval (success rates).
- ``bootstrap_ci``: a seeded bootstrap interval of the mean (embodied metrics). With few
  values the percentile interval is too narrow: at n = 5 a nominal 95 % interval covers the
  true mean about 83 % of the time (normal data; 300 simulated samples, 1000 resamples). The
  default, ``expanded_bca``, is BCa (bias-corrected and accelerated, Efron 1987: corrects the
  bootstrap distribution's bias and skew) at Hesterberg's expanded level (2015: the level
  whose normal quantile is sqrt(n / (n - 1)) times Student's t quantile with n - 1 degrees of
  freedom), which brings that coverage to about 90 % at n = 5 and 93 % at n = 10.
- ``percent_change``: a variant against the base, the paper's reporting style.
- ``paired_comparison``: the mean difference over seeds both variants solved, with a
  bootstrap interval over those pairs.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from evaluation.schema import INTERVAL_METHODS


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence}: expected a value in (0, 1)")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``successes`` out of ``n`` (``(nan, nan)`` when n = 0).

    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0 / n and n / n.
    """
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"successes={successes}, n={n}: expected 0 <= successes <= n")
    if n == 0:
        return (math.nan, math.nan)
    z = _z(confidence)
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # at 0/n and n/n the bound is exactly 0 (or 1); floating point would leave ~1e-17
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)



def expanded_confidence(confidence: float, n: int) -> float:
    """Hesterberg's expanded level for a bootstrap interval of a mean of ``n`` values:
    2 * Phi(sqrt(n / (n - 1)) * t_{n-1}(1 - alpha / 2)) - 1, alpha = 1 - confidence (it
    approaches ``confidence`` as n grows)."""
    from scipy.stats import t

    _z(confidence)
    if n < 2:
        raise ValueError(f"n={n}: expected at least 2 values")
    quantile = math.sqrt(n / (n - 1)) * float(t.ppf(0.5 + confidence / 2.0, n - 1))
    return 2.0 * NormalDist().cdf(quantile) - 1.0


def bootstrap_ci(
    values, confidence: float = 0.95, resamples: int = 2000, seed: int = 0, method: str = "percentile"
) -> tuple[float, float]:
    """Bootstrap interval of the mean of ``values`` (seeded: same inputs, same interval) by
    ``method`` (``INTERVAL_METHODS``): ``percentile``; ``bca`` (``scipy.stats.bootstrap``'s BCa;
    where BCa is undefined, as with fewer than three values, the percentile interval);
    ``expanded_bca``, the same at ``expanded_confidence``. ``(nan, nan)`` with no values;
    ``(x, x)`` with one value or all values equal."""
    if method not in INTERVAL_METHODS:
        raise ValueError(f"method={method!r}: expected one of {tuple(INTERVAL_METHODS)}")
    values = np.asarray(values, dtype=np.float64)
    _z(confidence)  # validates confidence
    if values.size == 0:
        return (math.nan, math.nan)
    if values.size == 1 or np.all(values == values[0]):
        return (float(values[0]), float(values[0]))
    if method == "expanded_bca":
        confidence = expanded_confidence(confidence, values.size)
    if method != "percentile" and values.size >= 3:
        interval = _bca(values, confidence, resamples, seed)
        if all(math.isfinite(bound) for bound in interval):
            return interval
    rng = np.random.default_rng(seed)
    indexes = rng.integers(0, values.size, size=(resamples, values.size))
    means = values[indexes].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return (float(low), float(high))


def _bca(values: np.ndarray, confidence: float, resamples: int, seed: int) -> tuple[float, float]:
    import warnings

    from scipy.stats import bootstrap

    with warnings.catch_warnings():  # a degenerate resample gives NaN, handled by the caller
        warnings.simplefilter("ignore")
        result = bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=resamples, method="BCa",
                           rng=np.random.default_rng(seed), vectorized=True, axis=-1)
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def percent_change(value: float, reference: float) -> float:
    """100 * (value - reference) / |reference|; nan when the reference is 0 or missing."""
    if reference is None or value is None or not math.isfinite(reference) or reference == 0:
        return math.nan
    return 100.0 * (value - reference) / abs(reference)



def is_finite(value) -> bool:
    """A real number that is neither NaN nor infinite (``None``, text and NaN are not): the one
    test of "has a value" for episode rows, summaries, findings and pages."""
    return isinstance(value, numbers.Real) and math.isfinite(value)

@dataclass(frozen=True)
class PairedComparison:
    n_pairs: int  # seeds both variants solved
    mean_difference: float  # mean over pairs of (variant - base)
    ci_low: float
    ci_high: float
    percent_change: float  # of the paired means: 100 * (mean variant - mean base) / |mean base|
    base_mean: float = math.nan  # the reference's mean over the pairs (what the % are of)
    mde_percent: float = math.nan  # minimum detectable effect: see minimum_detectable_effect


def paired_comparison(
    base: dict[int, float],
    variant: dict[int, float],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    method: str = "percentile",
) -> PairedComparison:
    """Compare a metric over the seeds present in both ``base`` and ``variant`` (seed -> value,
    successful episodes only): differences come from the policy, not from the initial state.
    The interval is ``bootstrap_ci``'s of the differences, by ``method``."""
    seeds = sorted(set(base) & set(variant))
    if not seeds:
        return PairedComparison(0, math.nan, math.nan, math.nan, math.nan)
    b = np.array([base[s] for s in seeds], dtype=np.float64)
    v = np.array([variant[s] for s in seeds], dtype=np.float64)
    differences = v - b
    low, high = bootstrap_ci(differences, confidence, resamples, seed, method)
    mde = minimum_detectable_effect(differences, confidence)
    return PairedComparison(
        n_pairs=len(seeds),
        mean_difference=float(differences.mean()),
        ci_low=low,
        ci_high=high,
        percent_change=percent_change(float(v.mean()), float(b.mean())),
        base_mean=float(b.mean()),
        mde_percent=100.0 * mde / abs(float(b.mean())) if b.mean() != 0 else math.nan,
    )


def minimum_detectable_effect(differences, confidence: float = 0.95, power: float = 0.8) -> float:
    """The smallest mean paired difference a two-sided test at ``confidence`` would detect with
    probability ``power``, given the differences' spread: (z_{1-a/2} + z_power) * sd / sqrt(n)
    (normal approximation; NaN with fewer than two pairs). A change smaller than this reading
    "no change" means the run could not have told, not that there is none."""
    differences = np.asarray(differences, dtype=np.float64)
    if len(differences) < 2:
        return math.nan
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2) + NormalDist().inv_cdf(power)
    return float(z * differences.std(ddof=1) / math.sqrt(len(differences)))
