"""Binomial statistics for feasible fractions: point estimate and Wilson interval.

A study's headline number is the fraction of sampled hyperparameter settings that
train ("feasible"), a binomial proportion over ``n`` trials. Wilson's interval is used
rather than the textbook Wald interval ``p̂ ± z·sqrt(p̂(1 - p̂)/n)`` because Wald collapses
to zero width at 0/n and n/n, exactly the fractions deep vanilla RNNs produce, and
undercovers badly even at moderate ``n`` (Brown, Cai & DasGupta 2001, who recommend
Wilson for small ``n``).
"""

from __future__ import annotations

import math

__all__ = ["Z_95", "feasible_fraction", "wilson_interval"]

Z_95 = 1.959963984540054
"""The standard normal 0.975 quantile, Φ⁻¹(0.975): z for a two-sided 95% interval."""


def _check_counts(successes: int, n: int) -> None:
    # ValueError, not an rnnsweep error: bad counts are a bug in the caller, not bad input.
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")


def feasible_fraction(feasible: int, n: int) -> float:
    """Fraction ``feasible / n`` of settings that trained; NaN when ``n == 0``."""
    _check_counts(feasible, n)
    return feasible / n if n else math.nan


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval ``(lower, upper)`` for a binomial proportion.

    With ``p̂ = successes / n`` the interval is (E. B. Wilson 1927, "Probable inference,
    the law of succession, and statistical inference", JASA 22(158):209-212; in the form
    of Brown, Cai & DasGupta 2001, "Interval estimation for a binomial proportion",
    Statistical Science 16(2):101-133, "Wilson interval")::

        centre     = (p̂ + z²/(2n)) / (1 + z²/n)
        half-width = z / (1 + z²/n) · sqrt(p̂(1 - p̂)/n + z²/(4n²))
        interval   = centre ∓ half-width

    i.e. the set of ``p`` with ``|p̂ - p| <= z·sqrt(p(1 - p)/n)``. It stays inside
    [0, 1] and has non-zero width at 0/n and n/n. ``z`` defaults to the two-sided 95%
    normal quantile. Returns ``(nan, nan)`` when ``n == 0``: no trials, no information.
    """
    _check_counts(successes, n)
    if not z > 0:
        raise ValueError(f"z must be positive, got {z}")
    if n == 0:
        return (math.nan, math.nan)
    if 2 * successes > n:
        # Reflect so the arithmetic below always runs with p̂ <= 1/2; the interval of
        # n - k successes mirrored about 1/2 is exactly the interval of k.
        lower, upper = wilson_interval(n - successes, n, z)
        return (1.0 - upper, 1.0 - lower)
    p_hat = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p_hat + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p_hat * (1.0 - p_hat) / n + z2 / (4 * n * n))
    upper = centre + half
    # centre - half cancels catastrophically for small p̂ (it gave 2.8e-17, not 0, at
    # 0/7). The endpoints are the roots of denom·p² - (2p̂ + z²/n)·p + p̂² = 0, so by
    # Vieta lower = p̂² / (denom · upper): exactly 0 at 0/n, accurate near it.
    lower = p_hat * p_hat / (denom * upper)
    return (lower, min(1.0, upper))
