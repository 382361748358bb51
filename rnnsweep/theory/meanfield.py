"""Mean-field signal propagation in wide random RNNs (Chen, Pennington & Schoenholz 2018).

SCIENCE.md section 4. A random network at initialisation has

- ``W_ij ~ N(0, sigma_w^2 / N)`` (recurrent), ``V_ij ~ N(0, sigma_v^2 / N_in)`` (input),
  ``b_i ~ N(mu_b, sigma_b^2)`` (bias, fixed in time);
- i.i.d. inputs with per-unit second moment ``R``, so ``(V x)_i`` has variance
  ``sigma_v^2 R``;
- pre-activations ``e = W h + V x + b``.

As ``N -> inf`` each ``e_i`` is Gaussian and the forward pass reduces to scalar
maps for second moments (``q``: pre-activation variance; ``Q``: state second
moment) and a per-step growth factor ``chi`` of the squared distance between two
trajectories driven by the same inputs. The memory timescale is
``xi = 1 / |ln chi|`` steps (see :func:`timescale`).

These maps treat successive steps as independent (the fixed weights are
"re-drawn" every step, as in the deep feed-forward theory of Schoenholz et al.
2017). That is an approximation for an RNN, so the recurrences here are
"derived here" in SCIENCE.md's sense: :func:`simulate_vanilla` and
:func:`simulate_minimalrnn` run finite wide networks to check them, and
``tests/test_theory.py`` holds them to explicit tolerances.

Gaussian expectations use a trapezoid rule on a uniform grid in ``e`` (see
:func:`gaussian_expectation` for why not Gauss-Hermite).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.special import expit

from rnnsweep.cells.base import haar_orthogonal

__all__ = [
    "MeanField",
    "gaussian_expectation",
    "mean_field",
    "minimalrnn_Q_map",
    "minimalrnn_chi",
    "minimalrnn_fixed_point",
    "simulate_minimalrnn",
    "simulate_vanilla",
    "timescale",
    "vanilla_chi",
    "vanilla_fixed_point",
    "vanilla_q_map",
]

Phi = Literal["tanh"]  # the only nonlinearity with a validated theory
Arch = Literal["rnn", "minimalrnn"]

# ---- Gaussian expectations ---------------------------------------------------------------


def gaussian_expectation(
    f: Callable[[np.ndarray], np.ndarray],
    q: float | np.ndarray,
    mu: float = 0.0,
    *,
    h_max: float = 0.2,
) -> float | np.ndarray:
    """``E_{e ~ N(mu, q)}[f(e)]`` by the trapezoid rule on a uniform grid in ``e``.

    The nodes are ``e = mu + sqrt(q) z`` with ``z`` uniform on ``[-12, 12]`` and
    step ``min(1/4, h_max / sqrt(q))``, so the grid resolves both the Gaussian
    (width ``sqrt(q)``) and ``f`` (features of width ~1 for tanh, sech^4,
    sigmoid). For integrands analytic in a strip, the trapezoid rule on the
    whole line converges geometrically in ``1/h`` (Trefethen & Weideman 2014,
    SIAM Review 56(3), sec. 5): against ``scipy.integrate.quad`` it is accurate
    to ~1e-15 relative for ``tanh^2``, ``sech^4``, ``sigma'^2``, ``(1 - sigma)^2``
    over ``q in [1e-8, 400]``, ``mu in {0, 3}``.

    Why not Gauss-Hermite in ``z``: its nodes are spaced ~``pi/sqrt(n)`` near 0,
    too coarse for ``f(sqrt(q) z)`` once ``sqrt(q)`` is large. Measured:
    ``E[sech^4(sqrt(q) z)]`` at ``q = 36`` is 43% off with 101 nodes and 12% off
    with 201, and the minimalRNN's gate variance ``q = sigma_w^2 Q + ...`` reaches
    such values on the phase diagram.

    ``q`` may be an array (one grid, step set by its largest entry): the result
    then has ``q``'s shape. ``f`` must be a vectorised NumPy function. ``q = 0``
    gives ``f(mu)``.
    """
    e, w = _nodes(q, mu, h_max)
    out = f(e) @ w  # (*q.shape,)
    return float(out) if np.ndim(q) == 0 else out


def _nodes(q: float | np.ndarray, mu: float, h_max: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Trapezoid nodes ``e`` ``(*q.shape, n)`` and weights ``w`` ``(n,)`` for
    :func:`gaussian_expectation`: ``E[f(e)] ~ f(e) @ w``."""
    q_arr = np.asarray(q, dtype=np.float64)
    if np.any(q_arr < 0) or not np.all(np.isfinite(q_arr)):
        raise ValueError(f"variance q must be finite and >= 0, got {q!r}")
    s = np.sqrt(q_arr)
    s_max = float(s.max()) if s.size else 0.0
    h_z = 0.25 if s_max == 0.0 else min(0.25, h_max / s_max)
    n = math.ceil(12.0 / h_z)
    z = h_z * np.arange(-n, n + 1, dtype=np.float64)  # (2n+1,)
    w = np.exp(-0.5 * z**2)
    w /= w.sum()  # discrete normalisation; equals h_z / sqrt(2 pi) to ~1e-16 here
    return mu + s[..., None] * z, w  # (*q.shape, 2n+1), (2n+1,)


def _sigmoid(e: np.ndarray) -> np.ndarray:
    return expit(e)  # logistic, accurate to relative precision in both tails


def _sech2(e: np.ndarray) -> np.ndarray:
    return 1.0 / np.cosh(np.clip(e, -350.0, 350.0)) ** 2  # tanh'; clip avoids cosh overflow


def timescale(chi: float) -> float:
    """Memory timescale ``xi = 1 / |ln chi|`` in steps (Chen et al. 2018 sec. 3; SCIENCE.md 4).

    For ``chi < 1`` (ordered phase) this is the paper's ``xi = -1/ln chi``: the
    squared distance between two trajectories with the same inputs decays as
    ``exp(-t/xi)``, so the network forgets its initial state (and gradients
    vanish) over ``xi`` steps. For ``chi > 1`` (chaotic phase) we report the
    divergence time ``1/ln chi``: perturbations grow as ``exp(t/xi)`` and
    gradients explode on that scale. Chen's chaotic-phase depth scale uses the
    slope of the correlation map at its fixed point ``c* < 1`` instead; we do
    not model correlations, and ``1/ln chi`` keeps ``xi`` a single number that
    peaks on the critical line from both sides, which is what the phase
    diagrams need. Use ``chi < 1`` (:attr:`MeanField.ordered`) to tell the
    phases apart. ``chi == 1`` gives ``inf``.
    """
    if not chi > 0:
        raise ValueError(f"chi must be > 0, got {chi!r}")
    log_chi = math.log(chi)
    return math.inf if log_chi == 0.0 else 1.0 / abs(log_chi)


@dataclass(frozen=True)
class MeanField:
    """Mean-field fixed point and perturbation growth of one random network.

    Produced both by the theory (:func:`mean_field`) and by simulation
    (:func:`simulate_vanilla`, :func:`simulate_minimalrnn`), so the two compare
    field by field.
    """

    q_star: float  # fixed-point variance of the pre-activation e (minimalRNN: of the gate)
    Q_star: float | None  # fixed-point state second moment E[h^2] (minimalRNN); None for vanilla
    chi: float  # per-step growth factor of the squared distance between trajectories
    xi: float  # timescale 1/|ln chi| in steps, see `timescale`

    @property
    def ordered(self) -> bool:
        """True in the ordered phase (``chi < 1``): perturbations die out."""
        return self.chi < 1.0


# ---- vanilla RNN ---------------------------------------------------------------------------


def _check_phi(phi: str) -> None:
    """Only tanh has a validated theory; see the note in :func:`vanilla_q_map`."""
    if phi != "tanh":
        raise ValueError(
            f"mean-field theory is offered for phi='tanh' only, got phi={phi!r}: for relu "
            "the tied recurrent weights feed the activation's non-zero mean back as a "
            "persistent drive the independent-steps theory misses (q* 12-14% low, N = 1000)"
        )


def vanilla_q_map(
    q: float, sigma_w: float, sigma_v: float, sigma_b: float, R: float, phi: Phi = "tanh"
) -> float:
    """One step of the variance map, SCIENCE.md 4 (Chen et al. 2018 sec. 3.1):

    ``q_t = sigma_w^2 E_z[phi(sqrt(q_{t-1}) z)^2] + sigma_v^2 R + sigma_b^2``, ``z ~ N(0, 1)``.

    ``phi`` must be tanh. ReLU was tried and dropped: its closed form
    ``q* = q_in / (1 - sigma_w^2/2)`` gave 3.89 at ``sigma_w = 1.2, sigma_v = R = 1,
    sigma_b = 0.3`` while simulated networks (N = 1000, fixed ``W``) gave
    4.38-4.42; redrawing ``W`` every step gave 3.89. A zero-mean odd ``phi`` (tanh) has no
    such mean-driven pattern ``m W^k 1`` to accumulate, and agrees within 1%.
    """
    _check_phi(phi)
    second = gaussian_expectation(lambda e: np.tanh(e) ** 2, q)
    return sigma_w**2 * second + sigma_v**2 * R + sigma_b**2


def vanilla_fixed_point(
    sigma_w: float, sigma_v: float, sigma_b: float, R: float, phi: Phi = "tanh"
) -> float:
    """Fixed point ``q*`` of :func:`vanilla_q_map` (pre-activation variance).

    Iterating the map converges slowly near the critical line (its slope
    ``sigma_w^2 E[phi'^2 + phi phi'']`` tends to 1 as ``q* -> 0``), so we solve
    ``q_map(q) = q`` with Brent's method instead. For tanh the map is
    increasing, concave and bounded by ``sigma_w^2 + q_in`` (``q_in = sigma_v^2 R
    + sigma_b^2``), so there is exactly one fixed point above ``q_in`` and it is
    the attracting one that iteration from any ``q_0 > 0`` reaches. When
    ``q_in = 0``, ``q = 0`` is a fixed point; it attracts iff ``sigma_w <= 1``,
    otherwise the non-zero one is returned.
    """
    _check_phi(phi)
    q_in = sigma_v**2 * R + sigma_b**2
    if q_in == 0.0 and sigma_w <= 1.0:
        return 0.0

    def gap(q: float) -> float:
        return vanilla_q_map(q, sigma_w, sigma_v, sigma_b, R, phi) - q

    hi = sigma_w**2 + q_in + 1.0  # tanh^2 <= 1, so gap(hi) < 0
    lo = q_in  # gap(q_in) = sigma_w^2 E[tanh^2] >= 0
    if q_in == 0.0:  # sigma_w > 1: gap(q) ~ (sigma_w^2 - 1) q > 0 just right of 0
        lo = 1e-12
        while gap(lo) <= 0 and lo > 1e-300:
            lo /= 10.0
    return brentq(gap, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)


def vanilla_chi(
    sigma_w: float, sigma_v: float, sigma_b: float, R: float, phi: Phi = "tanh"
) -> float:
    """Perturbation growth ``chi = sigma_w^2 E_z[phi'(sqrt(q*) z)^2]`` (SCIENCE.md 4; Chen 3.1).

    From the step Jacobian ``diag(phi'(e)) W``: ``|W d|^2 ~ sigma_w^2 |d|^2`` and
    ``phi'(e_i)^2`` averaged over units at the fixed point.
    """
    _check_phi(phi)
    q_star = vanilla_fixed_point(sigma_w, sigma_v, sigma_b, R, phi)
    return sigma_w**2 * gaussian_expectation(lambda e: _sech2(e) ** 2, q_star)


# ---- minimalRNN --------------------------------------------------------------------------


def _gate_q(Q: float, sigma_w: float, sigma_v: float, R: float, sigma_b: float) -> float:
    """Gate pre-activation variance ``q = sigma_w^2 Q + sigma_v^2 R + sigma_b^2``."""
    return sigma_w**2 * Q + sigma_v**2 * R + sigma_b**2


def _gate_moments(
    q: float | np.ndarray, mu_b: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``E[u^2], E[(1-u)^2], 1 - E[u^2], E[sigma'(e)^2]`` for ``u = sigma(e)``, ``e ~ N(mu_b, q)``.

    One pass over the quadrature nodes (``q`` may be an array; results take its
    shape). ``1 - E[u^2]`` is integrated directly as ``E[sigma(-e) (1 + sigma(e))]``:
    for large ``mu_b``, ``E[u^2] -> 1`` and the subtraction would cancel digits.
    """
    e, w = _nodes(q, mu_b)
    u, v = _sigmoid(e), _sigmoid(-e)  # v = 1 - u, accurate in the upper tail
    return (u * u) @ w, (v * v) @ w, (v * (1.0 + u)) @ w, (u * v) ** 2 @ w


def minimalrnn_Q_map(
    Q: float, sigma_w: float, sigma_v: float, R: float, mu_b: float = 0.0, sigma_b: float = 0.0
) -> float:
    """One step of the state second-moment map, SCIENCE.md 4 (Chen et al. 2018 sec. 4.1):

    ``Q_t = E[u^2] Q_{t-1} + E[(1-u)^2] R`` with ``u = sigma(e)``,
    ``e ~ N(mu_b, q)``, ``q = sigma_w^2 Q_{t-1} + sigma_v^2 R + sigma_b^2``.

    From ``h_t = u_t h_{t-1} + (1 - u_t) z_t`` with ``h``, ``z``, ``u`` treated
    as independent and ``h``, ``z`` zero-mean (``E[z^2] = R``).
    """
    u2, v2, _, _ = _gate_moments(_gate_q(Q, sigma_w, sigma_v, R, sigma_b), mu_b)
    return float(u2 * Q + v2 * R)


def minimalrnn_fixed_point(
    sigma_w: float, sigma_v: float, R: float, mu_b: float = 0.0, sigma_b: float = 0.0
) -> tuple[float, float]:
    """``(Q*, q*)``: fixed point of :func:`minimalrnn_Q_map` and the gate variance there.

    ``Q* = E[(1-u)^2] R / (1 - E[u^2])`` with the gate moments taken at
    ``q(Q*)`` (SCIENCE.md 4). ``(1-u)^2 <= 1 - u^2`` for ``u in (0, 1)``, so
    every fixed point lies in ``(0, R]``.

    The map can have *three* fixed points (two attracting, one repelling):
    e.g. ``sigma_v = 0.1, R = 1, mu_b = 4, sigma_w = 5.3`` has roots near
    ``Q = 0.018, 0.050, 0.44``. We return the *smallest*, the one iteration
    from ``Q_0 = 0`` (a network started at ``h_0 = 0``) converges to. Checked on
    ``sigma_w in [0.25, 20], mu_b in [-3, 8], sigma_v in {0.1, 1}``: several
    roots occur only for ``mu_b >= 4`` (``sigma_v = 0.1``) or ``>= 5.5``
    (``sigma_v = 1``), where the map is increasing, so the iterates rise
    monotonically to the smallest root; the map decreases in places only for
    ``mu_b <= -1``, where the root was unique with slope > -1 (attracting).

    It is found by scanning ``gap(Q) = E[(1-u)^2] R / (1 - E[u^2]) - Q`` on a
    grid (geometric below ``0.01 R``, steps of ``R/400`` above; a root pair
    closer than one grid step is missed) and polishing the first sign change
    with Brent's method. The lower branch ends in a saddle-node bifurcation
    where ``Q*`` and ``chi`` jump (a first-order transition; ``sigma_w ~ 5.47``
    in the example). There (small ``sigma_v``, large ``mu_b``) the theory is
    poor: a simulated network (N = 1000, ``h_0 = 0``) stays on the lower branch
    up to ``sigma_w ~ 7``-``9``, with ``chi`` 0.98 where the theory says 1.43
    (``sigma_w = 7``).

    Known limit (measured, N = 1000-3000, see ``tests/test_theory.py``): with
    persistent gates (``mu_b > 0``, intermediate ``sigma_w``) the recurrent drive
    ``(W h)_i`` is nearly frozen over many steps, so each unit keeps its own
    gate and ``E[u^2 h^2] != E[u^2] E[h^2]``. Simulated ``Q*`` then falls below
    this prediction: -15% at ``(sigma_w, mu_b) = (2, 2)``, -65% at ``(4, 4)``
    (``sigma_v = R = 1``), while ``chi`` stays within 3%. A frozen-gate
    ("quenched") variant of the map undershoots instead; simulation lies between.
    """
    if R <= 0:
        raise ValueError(f"input second moment R must be > 0, got {R!r}")

    def gap(Q: float | np.ndarray) -> float | np.ndarray:
        q = _gate_q(Q, sigma_w, sigma_v, R, sigma_b)
        _, v2, w2, _ = _gate_moments(q, mu_b)
        return v2 * R / w2 - Q

    grid = R * np.unique(np.concatenate([np.geomspace(1e-9, 1e-2, 60), np.linspace(0, 1, 401)[1:]]))
    Q_star, lo = R, 0.0  # Q* = R only if u == 0 to machine precision (h copies z)
    for chunk in np.array_split(grid, 12):  # ascending; small Q needs fewer nodes
        g = gap(chunk)  # gap(0) > 0 always
        neg = np.flatnonzero(g < 0)
        if neg.size:
            k = int(neg[0])
            lo = lo if k == 0 else float(chunk[k - 1])
            Q_star = brentq(gap, lo, float(chunk[k]), xtol=1e-15, rtol=4 * np.finfo(float).eps)
            break
        lo = float(chunk[-1])
    return float(Q_star), float(_gate_q(Q_star, sigma_w, sigma_v, R, sigma_b))


def minimalrnn_chi(
    sigma_w: float, sigma_v: float, R: float, mu_b: float = 0.0, sigma_b: float = 0.0
) -> float:
    """Perturbation growth ``chi = E[u^2] + sigma_w^2 (Q* + R) E[sigma'(e)^2]`` at the fixed point.

    SCIENCE.md 4 (Chen et al. 2018 sec. 4.1). The step Jacobian is
    ``dh_t/dh_{t-1} = diag(u) + diag((h_{t-1} - z_t) sigma'(e)) W``; with the
    perturbation spread evenly over units and ``E[(h - z)^2] = Q* + R``, the
    squared norm grows by the two terms above (the cross term averages out).
    """
    Q_star, q_star = minimalrnn_fixed_point(sigma_w, sigma_v, R, mu_b, sigma_b)
    return _minimalrnn_chi_at(Q_star, q_star, sigma_w, R, mu_b)


def _minimalrnn_chi_at(
    Q_star: float, q_star: float, sigma_w: float, R: float, mu_b: float
) -> float:
    """:func:`minimalrnn_chi` at a fixed point already solved for."""
    u2, _, _, dsig2 = _gate_moments(q_star, mu_b)
    return float(u2 + sigma_w**2 * (Q_star + R) * dsig2)


# ---- dispatch ------------------------------------------------------------------------------


def mean_field(
    arch: Arch,
    sigma_w: float,
    sigma_v: float,
    R: float,
    sigma_b: float = 0.0,
    mu_b: float = 0.0,
    phi: Phi = "tanh",
) -> MeanField:
    """Fixed point, ``chi`` and ``xi`` of ``arch`` in {"rnn", "minimalrnn"} (SCIENCE.md 4).

    ``phi`` is the vanilla cell's nonlinearity; the minimalRNN's gate is the
    logistic sigmoid. The vanilla theory has ``mu_b = 0`` (SCIENCE.md 4); a
    non-zero ``mu_b`` there raises. For the minimalRNN keep ``sigma_b = 0``
    (every gate bias equals ``mu_b``): a random per-unit bias is fixed in time
    and breaks the step-to-step averaging the theory assumes.
    """
    if arch == "rnn":
        if mu_b != 0.0:
            raise ValueError(f"the vanilla RNN theory has mu_b = 0, got mu_b={mu_b!r}")
        q_star = vanilla_fixed_point(sigma_w, sigma_v, sigma_b, R, phi)
        chi = vanilla_chi(sigma_w, sigma_v, sigma_b, R, phi)
        return MeanField(q_star=q_star, Q_star=None, chi=chi, xi=timescale(chi))
    if arch == "minimalrnn":
        Q_star, q_star = minimalrnn_fixed_point(sigma_w, sigma_v, R, mu_b, sigma_b)
        chi = _minimalrnn_chi_at(Q_star, q_star, sigma_w, R, mu_b)
        return MeanField(q_star=q_star, Q_star=Q_star, chi=chi, xi=timescale(chi))
    raise ValueError(f"mean-field theory covers arch 'rnn' or 'minimalrnn', got {arch!r}")


# ---- Monte-Carlo simulation of wide random networks ----------------------------------------


def _recurrent_matrix(
    N: int, sigma_w: float, orthogonal: bool, gen: torch.Generator
) -> torch.Tensor:
    """``W``: ``sigma_w * O`` (Haar orthogonal) or i.i.d. ``N(0, sigma_w^2 / N)``, ``(N, N)``."""
    if orthogonal:
        return sigma_w * haar_orthogonal(N, gen)
    return torch.randn(N, N, generator=gen, dtype=torch.float64) * (sigma_w / math.sqrt(N))


def _run_pair(
    step: Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]],
    h0: torch.Tensor,
    T: int,
    burn_in: int,
    gen: torch.Generator,
    eps: float,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Run a reference and a perturbed trajectory side by side on the same inputs.

    ``h0`` is ``(N, B)``: B independent input sequences. Columns ``[:B]`` of the
    state are the reference, ``[B:]`` the perturbed copies. After every step the
    separation is measured and rescaled back to ``eps`` per unit (Benettin et
    al. 1980), so the pair stays in the linear regime in both phases.

    ``step(H, t)`` maps the ``(N, 2B)`` state to ``(H_next, e)`` with ``e`` the
    ``(N, 2B)`` pre-activations. Returns the reference pre-activations of the
    last ``T`` steps (a list of ``(N, B)``) and the ``(T, B)`` squared-distance
    growth ratios of those steps.
    """
    N, B = h0.shape
    d0 = torch.randn(N, B, generator=gen, dtype=torch.float64)
    d0 *= eps * math.sqrt(N) / d0.norm(dim=0)
    H = torch.cat([h0, h0 + d0], dim=1)  # (N, 2B)
    e_ref: list[torch.Tensor] = []
    ratios = torch.empty(T, B, dtype=torch.float64)
    for t in range(burn_in + T):
        H, e = step(H, t)
        diff = H[:, B:] - H[:, :B]  # (N, B)
        dist = diff.norm(dim=0)  # (B,)
        if t >= burn_in:
            ratios[t - burn_in] = (dist / (eps * math.sqrt(N))) ** 2
            e_ref.append(e[:, :B])
        H = torch.cat([H[:, :B], H[:, :B] + diff * (eps * math.sqrt(N) / dist)], dim=1)
    return e_ref, ratios


def simulate_vanilla(
    N: int,
    T: int,
    sigma_w: float,
    sigma_v: float,
    sigma_b: float,
    R: float,
    seed: int,
    *,
    phi: Literal["tanh", "relu"] = "tanh",
    batch: int = 2,
    burn_in: int = 200,
    orthogonal: bool = False,
    eps: float = 1e-6,
) -> MeanField:
    """Empirical ``q*`` and ``chi`` of one wide random vanilla RNN (checks :func:`vanilla_chi`).

    Network: ``h_t = phi(W h_{t-1} + V x_t + b)`` with ``N_in = N``, ``W`` Gaussian
    (or ``sigma_w`` times Haar orthogonal), ``V_ij ~ N(0, sigma_v^2/N)``,
    ``b_i ~ N(0, sigma_b^2)`` drawn once, ``x_t ~ N(0, R I)`` i.i.d. over time,
    ``batch`` independent input sequences, ``h_0 ~ N(0, 1)``.

    After ``burn_in`` steps, over ``T`` steps: ``q*`` is the mean over units,
    sequences and steps of ``e^2``; ``chi`` is the geometric mean of the
    per-step growth of ``|h' - h|^2`` between a reference and a copy perturbed
    by ``eps`` per unit, renormalised every step (so it is the exponent of the
    top Lyapunov rate; arithmetic and geometric means agree to O(1/N)).
    ``phi = "relu"`` is simulated too, to show why the theory omits it.
    """
    if phi not in ("tanh", "relu"):
        raise ValueError(f"unknown nonlinearity phi={phi!r}; choose tanh or relu")
    gen = torch.Generator().manual_seed(seed)
    act = torch.tanh if phi == "tanh" else torch.relu
    W = _recurrent_matrix(N, sigma_w, orthogonal, gen)  # (N, N)
    V = torch.randn(N, N, generator=gen, dtype=torch.float64) * (sigma_v / math.sqrt(N))
    b = torch.randn(N, 1, generator=gen, dtype=torch.float64) * sigma_b  # (N, 1)
    steps = burn_in + T
    x = torch.randn(N, steps * batch, generator=gen, dtype=torch.float64) * math.sqrt(R)
    Vx = (V @ x).reshape(N, steps, batch) + b.unsqueeze(-1)  # (N, steps, B): V x_t + b
    h0 = torch.randn(N, batch, generator=gen, dtype=torch.float64)

    def step(H: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        e = W @ H + Vx[:, t].repeat(1, 2)  # (N, 2B): same inputs for both copies
        return act(e), e

    e_ref, ratios = _run_pair(step, h0, T, burn_in, gen, eps)
    q_star = float(torch.stack(e_ref).pow(2).mean())
    chi = float(ratios.log().mean().exp())
    return MeanField(q_star=q_star, Q_star=None, chi=chi, xi=timescale(chi))


def simulate_minimalrnn(
    N: int,
    T: int,
    sigma_w: float,
    sigma_v: float,
    mu_b: float,
    R: float,
    seed: int,
    *,
    sigma_b: float = 0.0,
    batch: int = 2,
    burn_in: int = 200,
    orthogonal: bool = False,
    eps: float = 1e-6,
) -> MeanField:
    """Empirical ``Q*``, gate ``q*`` and ``chi`` of one wide random minimalRNN.

    Network (Chen et al. 2018 eqs. (3)-(5) with the embedding given directly):
    ``u_t = sigma(W h_{t-1} + V z_t + b)``, ``h_t = u_t h_{t-1} + (1 - u_t) z_t``,
    ``z_t ~ N(0, R I)`` i.i.d., ``V_ij ~ N(0, sigma_v^2/N)``,
    ``b_i = mu_b + sigma_b n_i`` drawn once, ``h_0 = 0``.

    After ``burn_in`` steps, over ``T`` steps: ``Q*`` is the mean of ``h^2``,
    ``q*`` the mean of ``(e - mu_b)^2`` over units, sequences and steps, and
    ``chi`` the geometric-mean growth of a renormalised perturbation as in
    :func:`simulate_vanilla`.
    """
    gen = torch.Generator().manual_seed(seed)
    W = _recurrent_matrix(N, sigma_w, orthogonal, gen)  # (N, N)
    V = torch.randn(N, N, generator=gen, dtype=torch.float64) * (sigma_v / math.sqrt(N))
    b = mu_b + torch.randn(N, 1, generator=gen, dtype=torch.float64) * sigma_b  # (N, 1)
    steps = burn_in + T
    z = torch.randn(N, steps * batch, generator=gen, dtype=torch.float64) * math.sqrt(R)
    Vz = (V @ z).reshape(N, steps, batch) + b.unsqueeze(-1)  # (N, steps, B): V z_t + b
    z = z.reshape(N, steps, batch)  # (N, steps, B)
    h0 = torch.zeros(N, batch, dtype=torch.float64)
    h_sq: list[torch.Tensor] = []

    def step(H: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        e = W @ H + Vz[:, t].repeat(1, 2)  # (N, 2B)
        u = torch.sigmoid(e)
        H = u * H + (1 - u) * z[:, t].repeat(1, 2)
        if t >= burn_in:
            h_sq.append(H[:, :batch].pow(2).mean())
        return H, e

    e_ref, ratios = _run_pair(step, h0, T, burn_in, gen, eps)
    q_star = float((torch.stack(e_ref) - mu_b).pow(2).mean())
    Q_star = float(torch.stack(h_sq).mean())
    chi = float(ratios.log().mean().exp())
    return MeanField(q_star=q_star, Q_star=Q_star, chi=chi, xi=timescale(chi))
