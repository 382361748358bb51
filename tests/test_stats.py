"""Wilson interval against independent references: high-precision numbers, a direct
root-solve of the defining quadratic, and a Monte-Carlo coverage check."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from rnnsweep.report.stats import Z_95, feasible_fraction, wilson_interval

# Reference values computed once with mpmath at 40 significant digits by solving
# (p̂ - p)² = z² p (1 - p) / n for p, with z = sqrt(2)·erfinv(0.95). Independent of the
# closed form in stats.py; 5/10 -> (0.2366, 0.7634) matches the usual tables.
REFERENCE = [
    (0, 10, 0.0, 0.27753279986288925),
    (10, 10, 0.72246720013711075, 1.0),
    (5, 10, 0.23659309051256398, 0.76340690948743602),
    (1, 10, 0.017876213095072904, 0.4041500267952385),
    (3, 50, 0.020614970348973953, 0.16217091688838173),
    (0, 1, 0.0, 0.79345068562276261),
    (7, 20, 0.18119182410108205, 0.56714572331476377),
]


def test_z_95_is_the_normal_quantile() -> None:
    assert Z_95 == pytest.approx(NormalDist().inv_cdf(0.975), abs=1e-15)


@pytest.mark.parametrize(("k", "n", "lower", "upper"), REFERENCE)
def test_wilson_matches_reference(k: int, n: int, lower: float, upper: float) -> None:
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(lower, abs=1e-9)
    assert hi == pytest.approx(upper, abs=1e-9)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (5, 10), (10, 10), (13, 40), (1, 3), (99, 100)])
@pytest.mark.parametrize("z", [1.0, Z_95, 2.5758293035489004])
def test_wilson_is_the_score_test_inversion(k: int, n: int, z: float) -> None:
    """Roots of (1 + z²/n) p² - (2p̂ + z²/n) p + p̂² = 0, found by numpy.roots."""
    p_hat = k / n
    roots = np.sort(np.roots([1 + z * z / n, -(2 * p_hat + z * z / n), p_hat * p_hat]).real)
    lo, hi = wilson_interval(k, n, z=z)
    assert (lo, hi) == pytest.approx((max(roots[0], 0.0), min(roots[1], 1.0)), abs=1e-9)


@pytest.mark.parametrize(("k", "n"), [(0, 7), (2, 7), (30, 50)])
def test_wilson_is_symmetric_under_relabelling(k: int, n: int) -> None:
    lo, hi = wilson_interval(k, n)
    lo_c, hi_c = wilson_interval(n - k, n)
    assert (lo, hi) == pytest.approx((1 - hi_c, 1 - lo_c), abs=1e-12)


def test_wilson_stays_in_unit_interval_and_contains_estimate() -> None:
    for n in range(1, 60):
        for k in range(n + 1):
            lo, hi = wilson_interval(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0, (k, n, lo, hi)


def test_wilson_coverage_monte_carlo() -> None:
    """95% interval covers the true p about 95% of the time (p = 0.3, n = 50)."""
    p, n, draws = 0.3, 50, 4000
    successes = np.random.default_rng(20240601).binomial(n, p, size=draws)
    covered = 0
    for k in successes:
        lo, hi = wilson_interval(int(k), n)
        covered += lo <= p <= hi
    coverage = covered / draws
    # Exact coverage here is ~0.95; 4000 draws give a standard error of ~0.0035.
    assert 0.92 <= coverage <= 0.98, coverage


def test_empty_sample_gives_nan() -> None:
    lo, hi = wilson_interval(0, 0)
    assert math.isnan(lo) and math.isnan(hi)
    assert math.isnan(feasible_fraction(0, 0))


def test_feasible_fraction() -> None:
    assert feasible_fraction(3, 12) == 0.25
    assert feasible_fraction(0, 5) == 0.0
    assert feasible_fraction(5, 5) == 1.0


@pytest.mark.parametrize(("k", "n"), [(-1, 5), (6, 5), (0, -1)])
def test_invalid_counts_raise(k: int, n: int) -> None:
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(k, n)
    with pytest.raises(ValueError, match="successes"):
        feasible_fraction(k, n)


def test_non_positive_z_raises() -> None:
    with pytest.raises(ValueError, match="z must be positive"):
        wilson_interval(1, 2, z=0.0)
