"""Critical initialisation and the end-to-end Jacobian spectrum (SCIENCE.md 4).

Critical ("dynamical isometry") initialisation, Chen, Pennington & Schoenholz
2018 sec. 3-4 after Pennington et al. 2017: put the network on the critical line
``chi = 1`` (so perturbations neither shrink nor grow on average) *and* draw ``W``
orthogonal, so that the singular values of ``dh_T/dh_0`` concentrate near 1
instead of merely having mean square 1.

How "critical" is chosen here: the caller fixes the input scale ``sigma_v``,
``R`` and the bias (``sigma_b`` for the vanilla cell, ``mu_b`` for the
minimalRNN); :func:`critical_vanilla` / :func:`critical_minimalrnn` return the
``sigma_w`` on the ``chi = 1`` line for those, by bracketing and Brent's method
(bisection safeguarded by secant steps) on ``chi(sigma_w) - 1``.

For the tanh vanilla RNN, ``chi = 1`` alone does not give isometry: the step
Jacobian is ``diag(tanh'(e)) W`` and ``tanh'(e)`` spreads over units as soon as
``q* > 0``; the spread compounds over ``T`` steps. Exact isometry needs
``q* -> 0`` (then ``sigma_w -> 1``). So choose a point on the line with small
``q*``, i.e. tiny ``sigma_v`` and ``sigma_b``. Care: on the line ``q*`` shrinks
only like the *cube root* of ``q_in = sigma_v^2 R + sigma_b^2`` (the ``O(q)``
terms of ``sigma_w^2 E[tanh^2]`` and ``1/E[sech^4]`` cancel), so
``sigma_v = 0.05`` still gives ``q* = 0.15``, ``sigma_w = 1.12`` and a useless
spread (max/min singular value ~1e7 at T = 50). ``sigma_v = 1e-3, R = 1``
gives ``q* = 0.0093, sigma_w = 1.0091``; ``sigma_v = 1e-4`` gives
``q* = 0.0020, sigma_w = 1.0020`` (spectra measured in ``tests/test_theory.py``).

The minimalRNN's fixed-point map can be bistable (small ``sigma_v``, large
``mu_b``; see :func:`~rnnsweep.theory.meanfield.minimalrnn_fixed_point`):
``chi`` then jumps over 1 at a saddle-node and no ``sigma_w`` gives
``chi = 1``; :func:`critical_minimalrnn` raises ``ValueError`` there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from scipy.optimize import brentq

from rnnsweep.theory.meanfield import (
    _recurrent_matrix,
    mean_field,
    minimalrnn_chi,
    vanilla_chi,
)

__all__ = [
    "critical_minimalrnn",
    "critical_vanilla",
    "end_to_end_jacobian_singular_values",
]


def _solve_chi_one(chi: Callable[[float], float], what: str) -> float:
    """The ``sigma_w > 0`` with ``chi(sigma_w) = 1``: bracket by doubling, then Brent.

    ``chi(0) < 1`` for both cells (vanilla: 0; minimalRNN: ``E[u^2] < 1``) and
    ``chi -> inf`` as ``sigma_w -> inf``, so ``chi - 1`` changes sign in the
    bracket. If ``chi`` jumps over 1 instead of crossing it (a saddle-node of
    the fixed-point map), Brent converges to the jump; that is detected and
    raised.
    """
    lo, hi = 0.0, 1.0
    while chi(hi) < 1.0:
        lo, hi = hi, 2.0 * hi
        if hi > 1e6:
            raise ValueError(f"no chi = 1 crossing below sigma_w = 1e6 for {what}")
    sigma_w = brentq(lambda s: chi(s) - 1.0, lo, hi, xtol=1e-14, rtol=4 * np.finfo(float).eps)
    if abs(chi(sigma_w) - 1.0) > 1e-9:
        below, above = chi(sigma_w * (1 - 1e-9)), chi(sigma_w * (1 + 1e-9))
        raise ValueError(
            f"chi jumps from {below:.4f} to {above:.4f} at sigma_w = {sigma_w:.6f} for {what} "
            "(saddle-node of the fixed-point map): no sigma_w gives chi = 1"
        )
    return sigma_w


def critical_vanilla(sigma_v: float, R: float, sigma_b: float = 0.0) -> float:
    """``sigma_w`` with ``chi = sigma_w^2 E[tanh'(sqrt(q*) z)^2] = 1`` (tanh vanilla RNN).

    With ``sigma_v = sigma_b = 0`` this is exactly 1 (``q* = 0``). ReLU is not
    offered: its ``chi = sigma_w^2 / 2`` puts the critical point at
    ``sigma_w = sqrt(2)``, where ``q*`` diverges unless the inputs vanish.
    """
    if sigma_v == 0.0 and sigma_b == 0.0:
        return 1.0
    return _solve_chi_one(
        lambda s: vanilla_chi(s, sigma_v, sigma_b, R),
        f"rnn sigma_v={sigma_v} R={R} sigma_b={sigma_b}",
    )


def critical_minimalrnn(sigma_v: float, R: float, mu_b: float, sigma_b: float = 0.0) -> float:
    """``sigma_w`` with ``chi = E[u^2] + sigma_w^2 (Q* + R) E[sigma'(e)^2] = 1`` (minimalRNN)."""
    return _solve_chi_one(
        lambda s: minimalrnn_chi(s, sigma_v, R, mu_b, sigma_b),
        f"minimalrnn sigma_v={sigma_v} R={R} mu_b={mu_b} sigma_b={sigma_b}",
    )


def end_to_end_jacobian_singular_values(
    arch: Literal["rnn", "minimalrnn"],
    N: int,
    T: int,
    sigma_w: float,
    sigma_v: float,
    R: float,
    *,
    sigma_b: float = 0.0,
    mu_b: float = 0.0,
    orthogonal: bool = True,
    seed: int = 0,
    burn_in: int = 200,
) -> np.ndarray:
    """Singular values of ``dh_T/dh_0`` for one random network, float64, descending ``(N,)``.

    The network is drawn as in :func:`rnnsweep.theory.meanfield.simulate_vanilla`
    / ``simulate_minimalrnn`` (``W`` = ``sigma_w`` times Haar orthogonal if
    ``orthogonal`` else i.i.d. ``N(0, sigma_w^2/N)``; ``V_ij ~ N(0, sigma_v^2/N)``;
    ``b_i ~ N(mu_b, sigma_b^2)``; inputs ``N(0, R)`` i.i.d.), run ``burn_in``
    steps to reach the fixed point, then ``J = J_T ... J_1`` is accumulated over
    ``T`` more steps with the step Jacobians

    - vanilla tanh: ``J_t = diag(tanh'(e_t)) W``;
    - minimalRNN: ``J_t = diag(u_t) + diag((h_{t-1} - z_t) sigma'(e_t)) W``
      (differentiating Chen et al. 2018 eq. (5) through the gate, eq. (4)).
    """
    if arch not in ("rnn", "minimalrnn"):
        raise ValueError(f"arch must be 'rnn' or 'minimalrnn', got {arch!r}")
    if arch == "rnn" and mu_b != 0.0:
        raise ValueError(f"the vanilla RNN theory has mu_b = 0, got mu_b={mu_b!r}")
    gen = torch.Generator().manual_seed(seed)
    W = _recurrent_matrix(N, sigma_w, orthogonal, gen)  # (N, N)
    V = torch.randn(N, N, generator=gen, dtype=torch.float64) * (sigma_v / math.sqrt(N))
    b = mu_b + torch.randn(N, generator=gen, dtype=torch.float64) * sigma_b  # (N,)
    x = torch.randn(burn_in + T, N, generator=gen, dtype=torch.float64) * math.sqrt(R)
    drive = x @ V.T + b  # (steps, N): V x_t + b
    # Start on the mean-field fixed point: near the critical line the variance map
    # converges only algebraically as q* -> 0, so a cold start would still be
    # drifting after any affordable burn-in (seen: singular values all < 1).
    mf = mean_field(arch, sigma_w, sigma_v, R, sigma_b=sigma_b, mu_b=mu_b)
    n0 = torch.randn(N, generator=gen, dtype=torch.float64)
    if arch == "rnn":
        h = torch.tanh(math.sqrt(mf.q_star) * n0)  # e_0 ~ N(0, q*)
    else:
        h = math.sqrt(mf.Q_star) * n0  # E[h_0^2] = Q*
    J = torch.eye(N, dtype=torch.float64)
    for t in range(burn_in + T):
        e = W @ h + drive[t]  # (N,)
        if arch == "rnn":
            h_next = torch.tanh(e)
            if t >= burn_in:
                J = (1.0 - h_next**2).unsqueeze(1) * (W @ J)  # diag(tanh'(e)) W J
        else:
            u = torch.sigmoid(e)
            h_next = u * h + (1.0 - u) * x[t]
            if t >= burn_in:
                c = (h - x[t]) * u * (1.0 - u)  # (h_{t-1} - z_t) sigma'(e_t)
                J = u.unsqueeze(1) * J + c.unsqueeze(1) * (W @ J)
        h = h_next
    return torch.linalg.svdvals(J).numpy()
