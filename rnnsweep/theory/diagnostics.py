"""Smoothness-vs-memory diagnostics of a trained or untrained pack (SCIENCE.md section 5).

Ribeiro et al. read an RNN as a map on its *full* recurrent state. For a stack
of ``depth`` layers, each with S state tensors of width H (S = 2 for the LSTM's
``(h, c)``), the state at time t is the concatenation, layer-major,

    F_t = [h^0_t, (c^0_t), h^1_t, (c^1_t), ...]        shape (K, B, D), D = depth * S * H,

and one step of the whole stack is ``F_t = f(F_{t-1}, x_t)``. Their three regions:

1. contractive, Lipschitz constant ``L < 1`` in F: smooth cost, memory fades like L^k;
2. chaotic / expanding, largest Lyapunov exponent ``lambda_1 > 0``: rough cost;
3. in between: where long memory is learnable.

Estimators (all along *real* input trajectories, not over the whole state space):

- ``step_jacobian_norms``: ``||J_t||_2`` with ``J_t = dF_t / dF_{t-1}``, by Lanczos
  on ``J^T J`` (a Krylov-accelerated power iteration: one jvp + one vjp per
  step), max and mean over (t, b). The max is a
  data-restricted estimate of L: the true Lipschitz constant is a sup over all
  states, which we cannot afford, so "region 1" means "contractive along the data".
- ``lyapunov_exponent``: Benettin et al. (1980): push one tangent vector through
  ``J_t``, renormalise every step, average ``log`` of the growth after a burn-in.
  With one vector QR reduces to normalisation; only lambda_1 is needed.
- ``end_to_end_spectrum``: singular values of ``dF_T / dF_0 = J_T ... J_1``.

Every member k and batch element b is an independent map, so every Jacobian is
block diagonal over (k, b): one batched jvp or vjp handles all blocks at once,
and a non-finite member (a diverged trial) yields nan for itself only.

The estimators are generic in a step function ``step_fn(F, x_t) -> F'`` on
``(K, N, D)`` states and ``(K, N, I)`` inputs, rows independent (the tests run
them on linear maps with known spectra); the model-level wrappers build the step
from a :class:`~rnnsweep.cells.PackedRNN` with :class:`StackMap`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from rnnsweep.cells.base import Cell, Params, State
    from rnnsweep.cells.stack import PackedRNN

__all__ = [
    "REGION_CHAOTIC",
    "REGION_CONTRACTIVE",
    "REGION_EDGE",
    "REGION_UNKNOWN",
    "StackMap",
    "StepFn",
    "diagnose",
    "end_to_end_spectrum",
    "initial_state",
    "jacobian_norms",
    "largest_lyapunov",
    "lyapunov_exponent",
    "ribeiro_region",
    "run_states",
    "spectrum_summary",
    "stack_step",
    "step_jacobian_norms",
    "trajectory",
    "unrolled_singular_values",
]

# ``step_fn(F_{t-1}, x_t) -> F_t``: ``(K, N, D)``, ``(K, N, I)`` -> ``(K, N, D)``, rows independent.
StepFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

REGION_UNKNOWN = 0  # a diagnostic is nan (diverged member)
REGION_CONTRACTIVE = 1  # Ribeiro region 1: max ||J_t|| < 1 along the data
REGION_CHAOTIC = 2  # Ribeiro region 2: lambda_1 > eps
REGION_EDGE = 3  # Ribeiro region 3: neither

# Default threshold on lambda_1 (nats per step) for region 2. A finite run of
# T ~ 50 steps cannot tell lambda_1 = 0 from a small positive estimate, and a
# growth of 1% per step takes ~100 steps to e-fold, longer than the tasks'
# sequences: below that the expansion is invisible to training. A judgement
# call, not a number from the paper.
LYAPUNOV_EPS = 0.01

# Rows per batched jvp/vjp in ``jacobian_norms``, as state entries K * rows * D:
# the recorded graph of one chunk holds a few times that (the gates), so this
# bounds memory for wide, deep packs (2^22 float64 entries = 32 MiB per vector).
CHUNK_ENTRIES = 1 << 22

# Copies of a state per recorded step in ``unrolled_singular_values`` on the CPU (see
# ``_rows_per_pass``): a step is recorded once on r = ROWS_PER_PASS copies of each state
# and its m (co)tangents go through that graph r at a time (retain_graph), instead of
# through one graph on m copies. The step's forward then runs on r rows, not m, and the
# smaller passes stay in cache. Measured (one thread, gru depth 2 hidden 64, the exact
# spectrum: m = D = 128, 50 steps, one sequence, median of 5): 385 -> 242 ms at K = 13
# members, 1032 -> 673 at K = 32, 141 -> 121 at K = 5, but 44 -> 66 ms for a pack of one,
# whose 32-row passes are too small to pay their overhead (64 rows: 264, 726, 118 and
# 49 ms). Fixed rather than sized by K, so that a member's numbers cannot depend on its
# pack. The outputs are the m-row pass's to the bit as long as the BLAS computes a row of
# a product the same way in an r-row as in an m-row product: MKL on this machine does for
# any r >= 4 in float32 and for r a multiple of 4 in float64 (its kernels' row block; 32
# is a multiple of the usual blocks). Elsewhere the difference would be one rounding per
# product, like any change of BLAS.
ROWS_PER_PASS = 32


# ---- the stack as a map on its full state --------------------------------------------------


@dataclass(frozen=True, eq=False)
class StackMap:
    """``F_t = f(F_{t-1}, x_t)`` of a :class:`PackedRNN`, its parameters frozen at construction.

    The parameters are detached (no graph into the model) and cast to ``dtype``:
    float64 by default in the diagnostics, because the end-to-end singular values
    of a contracting net span many decades and float32 floors them at ~1e-7.
    """

    cell: Cell
    s: str  # the resolved nonlinearity name
    params: tuple[Params, ...]  # one dict per layer, leading K axis
    hidden: int

    @classmethod
    def of(cls, model: PackedRNN, dtype: torch.dtype | None = None) -> StackMap:
        """Snapshot ``model``'s parameters (detached; cast to ``dtype`` when given)."""
        params = []
        for layer in range(model.cfg.depth):
            p = model.layer_params(layer)
            params.append({k: v.detach().to(dtype=dtype or v.dtype) for k, v in p.items()})
        return cls(model.cell, model.s, tuple(params), model.cfg.hidden)

    @property
    def depth(self) -> int:
        return len(self.params)

    @property
    def K(self) -> int:
        return self.params[0]["Wh"].shape[0]

    @property
    def dim(self) -> int:
        """D = depth * S * H."""
        return self.depth * self.cell.n_states * self.hidden

    @property
    def dtype(self) -> torch.dtype:
        return self.params[0]["Wh"].dtype

    @property
    def device(self) -> torch.device:
        return self.params[0]["Wh"].device

    def split(self, F: torch.Tensor) -> list[State]:
        """``(K, N, D)`` -> per layer, the cell's state tuple of S tensors ``(K, N, H)``."""
        chunks = F.split(self.hidden, dim=-1)  # depth * S x (K, N, H)
        S = self.cell.n_states
        return [tuple(chunks[layer * S : (layer + 1) * S]) for layer in range(self.depth)]

    def initial_state(self, batch: int) -> torch.Tensor:
        """The learned initial states of all layers, ``(K, batch, D)``."""
        parts = [s for p in self.params for s in self.cell.initial_state(p, batch)]
        return torch.cat(parts, dim=-1)  # (K, B, D)

    def step(self, F: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        """One step of the whole stack: ``(K, N, D)``, ``(K, N, I)`` -> ``(K, N, D)``."""
        new: list[torch.Tensor] = []
        inp = x_t
        for p, state in zip(self.params, self.split(F), strict=True):
            if "P" in p:  # +RNN layer 0 maps the input to width H first (PlusRNNCell)
                inp = torch.bmm(inp, p["P"]) + p["Pb"]  # (K, N, H)
            xp = self.cell.input_projection(p, inp.unsqueeze(1))[:, 0]  # (K, N, X)
            state, inp = self.cell.step(p, xp, inp, state, self.s)
            new.extend(state)
        return torch.cat(new, dim=-1)  # (K, N, D)


def stack_step(model: PackedRNN, state: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
    """One step of ``model``'s full state: ``(K, B, D)``, ``(K, B, I)`` -> ``(K, B, D)``.

    Computed in ``state``'s dtype with the parameters detached (a diagnostic, not
    a training path).
    """
    return StackMap.of(model, state.dtype).step(state, x_t.to(state.dtype))


def initial_state(model: PackedRNN, batch: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The learned initial full state ``F_0``, ``(K, batch, D)``."""
    return StackMap.of(model, dtype).initial_state(batch)


@torch.no_grad()
def trajectory(step_fn: StepFn, F0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``F_0 .. F_T`` of ``step_fn`` driven by ``x`` ``(K, T, N, I)``: ``(K, T+1, N, D)``."""
    states = [F0]
    for t in range(x.shape[1]):
        states.append(step_fn(states[-1], x[:, t]))
    return torch.stack(states, dim=1)  # (K, T+1, N, D)


def run_states(model: PackedRNN, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The full-state trajectory of ``model`` on ``x`` ``(K, T, B, I)``: ``(K, T+1, B, D)``."""
    smap = StackMap.of(model, dtype)
    x = x.to(device=smap.device, dtype=smap.dtype)
    return trajectory(smap.step, smap.initial_state(x.shape[2]), x)


# ---- generic estimators on a step function --------------------------------------------------


def _bind(step_fn: StepFn, x_t: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``F -> step_fn(F, x_t)``: the map whose Jacobian we want."""
    return lambda F: step_fn(F, x_t)


def _tiny(t: torch.Tensor) -> float:
    return torch.finfo(t.dtype).tiny


def _unit_rows(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``v / ||v||`` along the last axis, and ``||v||``; a zero row stays zero."""
    norm = v.norm(dim=-1)
    return v / norm.clamp_min(_tiny(v)).unsqueeze(-1), norm


def _gaussian(shape: tuple[int, ...], like: torch.Tensor, seed: int) -> torch.Tensor:
    """Reproducible N(0, 1) probes ``(K, ...)``, drawn on the CPU so the device does not
    change them. Every member gets the same draw, so a member's diagnostics do not
    depend on its position in the pack or on the pack's size."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(shape[1:], generator=gen, dtype=torch.float64).expand(shape)
    return z.to(device=like.device, dtype=like.dtype).contiguous()


def _linearize(
    f: Callable[[torch.Tensor], torch.Tensor], F: torch.Tensor
) -> tuple[
    torch.Tensor, Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]
]:
    """``f(F)`` and the linear maps ``v -> J v`` and ``u -> J^T u`` of ``J = df/dF``, graph reused.

    ``J^T u`` is a vjp on the graph of ``f(F)``; ``J v`` is the vjp *of* that
    vjp, recorded once at ``u = 0`` (linear in u, so its own vjp is its
    transpose, J). This "double-vjp" needs reverse mode only: per call it was
    ~2x cheaper here than ``torch.func.jvp`` (which recomputes the primal), it
    needs no tracing (unlike ``torch.func.linearize``), and it avoids forward-mode
    AD, whose first use scripts decompositions with the deprecated
    ``torch.jit.script`` (~1 s, a warning). Plain ``torch.autograd.grad`` on
    graphs kept with ``retain_graph`` does what ``torch.func.vjp`` did here, the
    same operations, without its per-call wrapping.
    """
    with torch.enable_grad():  # the callers may run under no_grad (the training loop does)
        F = F.detach().requires_grad_()
        out = f(F)
        u0 = torch.zeros_like(out, requires_grad=True)
        jt_u0 = _vjp(out, F, u0, create_graph=True)  # J^T u0, recorded as a function of u0

    def jt(u: torch.Tensor) -> torch.Tensor:  # J^T u
        return _vjp(out, F, u)

    def j(v: torch.Tensor) -> torch.Tensor:  # J v
        return _vjp(jt_u0, u0, v)

    return out.detach(), j, jt


def _vjp(
    out: torch.Tensor, inp: torch.Tensor, cot: torch.Tensor, *, create_graph: bool = False
) -> torch.Tensor:
    """``cot^T d out / d inp`` on the recorded graph, which stays for the next call; zeros
    where ``out`` does not depend on ``inp`` (as ``torch.func.vjp`` returns)."""
    if not out.requires_grad:  # a map that ignores its input: no graph at all
        return torch.zeros_like(inp)
    (g,) = torch.autograd.grad(
        out, inp, cot, retain_graph=True, create_graph=create_graph, materialize_grads=True
    )
    return g


def _lanczos_top(
    apply_A: Callable[[torch.Tensor], torch.Tensor], v0: torch.Tensor, steps: int
) -> torch.Tensor:
    """Largest eigenvalue of a symmetric PSD ``A`` per row by Lanczos: ``(..., D)`` -> ``(...)``.

    Plain three-term recurrence (Golub & Van Loan 2013, Alg. 10.1.1) plus local
    reorthogonalisation against the last two vectors; no full reorthogonalisation,
    which would store ``steps`` vectors per row. Lost orthogonality only makes
    ghost copies of converged Ritz values, and every Ritz value stays inside the
    spectrum up to rounding (Paige 1980), so the top one is a lower bound that
    converges like a Chebyshev polynomial in the relative gap: far faster than
    the power method when sigma_1 ~ sigma_2 (a step Jacobian with near-degenerate
    top values needed > 100 power steps for 1e-3 in the tests). A row whose
    Krylov space is exhausted (D < steps, or A = 0) stops with ``beta = 0`` and
    ``q = 0``, which only adds zero Ritz values.
    """
    q, _ = _unit_rows(v0)
    q_prev = torch.zeros_like(q)
    beta = torch.zeros(q.shape[:-1], dtype=q.dtype, device=q.device)
    scale = torch.zeros_like(beta)  # max |alpha| so far: the breakdown threshold's unit
    alphas, betas = [], []
    for _ in range(steps):
        w = apply_A(q)
        alpha = (q * w).sum(-1)
        w = w - alpha.unsqueeze(-1) * q - beta.unsqueeze(-1) * q_prev
        for u in (q, q_prev):  # local reorthogonalisation: cheap, delays ghosts
            w = w - (u * w).sum(-1, keepdim=True) * u
        scale = torch.maximum(scale, alpha.abs())
        beta = w.norm(dim=-1)
        alive = beta > 1e-10 * scale
        beta = torch.where(alive, beta, torch.zeros_like(beta))
        q_prev, q = q, w / torch.where(alive, beta, torch.ones_like(beta)).unsqueeze(-1)
        q = torch.where(alive.unsqueeze(-1), q, torch.zeros_like(q))
        alphas.append(alpha)
        betas.append(beta)
    a = torch.stack(alphas, dim=-1)  # (..., steps)
    off = torch.stack(betas[:-1], dim=-1)  # (..., steps - 1)
    rows = a.reshape(-1, steps)
    off = off.reshape(-1, steps - 1)
    ok = torch.isfinite(rows).all(-1) & torch.isfinite(off).all(-1)
    rows = torch.where(ok.unsqueeze(-1), rows, torch.zeros_like(rows))
    off = torch.where(ok.unsqueeze(-1), off, torch.zeros_like(off))
    top = torch.empty(rows.shape[0], dtype=rows.dtype, device=rows.device)
    for lo in range(0, rows.shape[0], 4096):  # chunks: (4096, steps, steps) at most
        T = torch.diag_embed(rows[lo : lo + 4096])
        T = T + torch.diag_embed(off[lo : lo + 4096], 1) + torch.diag_embed(off[lo : lo + 4096], -1)
        top[lo : lo + 4096] = torch.linalg.eigvalsh(T)[:, -1]
    top = torch.where(ok, top, torch.full_like(top, math.nan))
    return top.reshape(a.shape[:-1])


def jacobian_norms(
    step_fn: StepFn, F: torch.Tensor, x: torch.Tensor, *, iters: int = 30, seed: int = 0
) -> torch.Tensor:
    """Largest singular value of ``d step_fn / dF`` at every row: ``(K, N, D)`` -> ``(K, N)``.

    ``sigma_1 = sqrt(lambda_max(J^T J))`` by ``iters`` Lanczos steps on ``J^T J``
    (:func:`_lanczos_top`), every row at once: the Jacobian of a row-independent
    map is block diagonal, so one batched jvp and one batched vjp per step (see
    :func:`_linearize`) serve all (k, n) blocks. A lower bound, exact to rounding
    once ``iters >= D``.
    """
    if iters < 2:
        raise ValueError(f"iters must be >= 2, got {iters}")
    K, N, D = F.shape
    v0 = _gaussian((K, N, D), F, seed)  # drawn whole, so chunking does not change the answer
    chunk = max(1, CHUNK_ENTRIES // (K * D))
    out = []
    for lo in range(0, N, chunk):
        sl = slice(lo, lo + chunk)
        _, j, jt = _linearize(_bind(step_fn, x[:, sl]), F[:, sl])
        out.append(_lanczos_top(lambda v, j=j, jt=jt: jt(j(v)), v0[:, sl], iters))  # (K, n)
    return torch.cat(out, dim=1).clamp_min(0).sqrt().detach()  # (K, N)


def largest_lyapunov(
    step_fn: StepFn, F0: torch.Tensor, x: torch.Tensor, *, burn_in: int, seed: int = 0
) -> torch.Tensor:
    """lambda_1 per row in nats per step (Benettin): ``(K, N, D)``, ``(K, T, N, I)`` -> ``(K, N)``.

    A unit tangent vector ``v`` rides along the orbit: ``u = J_t v``,
    ``r_t = ||u||``, ``v = u / r_t``; ``lambda_1 = mean_{t > burn_in} log r_t``. The
    burn-in lets ``v`` align with the most expanding direction. ``r_t = 0`` (a
    dead ReLU net) is floored at the dtype's smallest normal, so the estimate is
    finite and very negative rather than -inf.
    """
    T = x.shape[1]
    if not 0 <= burn_in < T:
        raise ValueError(f"burn_in must be in [0, T={T}), got {burn_in}")
    v, _ = _unit_rows(_gaussian(tuple(F0.shape), F0, seed))  # (K, N, D)
    F = F0
    total = torch.zeros(F0.shape[:2], dtype=F0.dtype, device=F0.device)  # (K, N)
    for t in range(T):
        F, j, _ = _linearize(_bind(step_fn, x[:, t]), F)
        v, r = _unit_rows(j(v).detach())
        if t >= burn_in:
            total = total + torch.log(r.clamp_min(_tiny(r)))
    return (total / (T - burn_in)).detach()


def _copies(a: torch.Tensor, r: int) -> torch.Tensor:
    """Every row of ``a`` ``(K, N, ...)`` r times over: ``(K, N*r, ...)``."""
    return a.repeat_interleave(r, dim=1)


def _rows_per_pass(m: int, device: torch.device) -> int:
    """r for m (co)tangents: ``ROWS_PER_PASS`` on the CPU, where it was measured; elsewhere
    m (one pass, as before): on a GPU these small kernels are bound by their launches, so
    more passes would likely cost more than the forward they save (not measured there)."""
    return min(m, ROWS_PER_PASS) if device.type == "cpu" else m


def _in_passes(
    apply: Callable[[torch.Tensor], torch.Tensor], V: torch.Tensor, r: int
) -> torch.Tensor:
    """``apply`` (linear, recorded on r copies of each of N states: ``(K, N*r, D)``) on
    every row of ``V`` ``(K, N, m, D)``, r rows per state at a time; m a multiple of r."""
    K, N, _, D = V.shape
    out = [apply(v.reshape(K, N * r, D)).reshape(K, N, r, D) for v in V.split(r, dim=2)]
    return torch.cat(out, dim=2)  # (K, N, m, D)


def _pad_rows(V: torch.Tensor, r: int) -> torch.Tensor:
    """``V`` ``(K, N, m, D)`` with zero rows up to a multiple of r."""
    K, N, m, D = V.shape
    pad = -m % r
    return torch.cat([V, V.new_zeros(K, N, pad, D)], dim=2) if pad else V


def _push_tangents(
    step_fn: StepFn, states: torch.Tensor, x: torch.Tensor, V: torch.Tensor
) -> torch.Tensor:
    """Rows of ``V`` ``(K, N, m, D)`` pushed forward through ``J_T ... J_1``: ``J v`` per row.

    Each step is linearised once on r copies of each state (:func:`_rows_per_pass`)
    and takes the m tangents r at a time.
    """
    K, N, m, D = V.shape
    r = _rows_per_pass(m, states.device)
    V = _pad_rows(V, r)
    for t in range(x.shape[1]):
        _, j, _ = _linearize(_bind(step_fn, _copies(x[:, t], r)), _copies(states[:, t], r))
        V = _in_passes(j, V, r)
    return V[:, :, :m]


def _pull_cotangents(
    step_fn: StepFn, states: torch.Tensor, x: torch.Tensor, U: torch.Tensor
) -> torch.Tensor:
    """Rows of ``U`` ``(K, N, m, D)`` pulled back through ``J_T ... J_1``: ``J^T u`` per row.

    One step's vjp at a time from the stored states, so memory is one step's
    graph rather than T steps'; each step is recorded once on r copies of each
    state (:func:`_rows_per_pass`) and takes the m cotangents r at a time.
    """
    K, N, m, D = U.shape
    r = _rows_per_pass(m, states.device)
    U = _pad_rows(U, r)
    for t in reversed(range(x.shape[1])):
        with torch.enable_grad():
            F = _copies(states[:, t], r).detach().requires_grad_()  # (K, N*r, D)
            out = step_fn(F, _copies(x[:, t], r))
        U = _in_passes(functools.partial(_vjp, out, F), U, r)
    return U[:, :, :m]


def _svdvals(M: torch.Tensor) -> torch.Tensor:
    """Singular values of every matrix in ``M`` ``(..., m, n)``; nan for non-finite matrices.

    LAPACK refuses a batch holding a nan, so bad matrices are zeroed first.
    """
    ok = torch.isfinite(M).flatten(-2).all(-1)  # (...)
    sv = torch.linalg.svdvals(torch.where(ok[..., None, None], M, torch.zeros_like(M)))
    return torch.where(ok[..., None], sv, torch.full_like(sv, math.nan))


def unrolled_singular_values(
    step_fn: StepFn,
    states: torch.Tensor,
    x: torch.Tensor,
    *,
    max_dim: int = 256,
    rank: int = 64,
    seed: int = 0,
) -> torch.Tensor:
    """Singular values of ``dF_T / dF_0``, descending: ``(K, T+1, N, D)`` -> ``(K, N, r)``.

    D <= ``max_dim``: exact, r = D. The Jacobian is built row by row by pulling
    the D basis vectors back through the T step Jacobians (D cotangents per
    trajectory, so the cost is D x T batched vjps, on T steps each recorded once on
    a few copies of its state, :func:`_rows_per_pass`; a plain vjp per step is the
    cheapest way through, see :func:`_linearize`).

    D > ``max_dim``: the *leading* r = ``rank`` singular values, by a Gaussian range
    finder (Halko, Martinsson & Tropp 2011, Alg. 4.1 + 5.1): ``Y = J Omega`` (jvp),
    ``Q = qr(Y)``, then ``svd(Q^T J)`` from the vjp ``J^T Q``; 2r passes instead
    of D. These are lower bounds of the true leading values (exact when the
    spectrum decays fast, as products of many Jacobians' do), and a summary of
    them (its min, its condition number) describes the top r only: not
    comparable with an exact summary of all D.
    """
    K, T1, N, D = states.shape
    if D <= max_dim:
        eye = torch.eye(D, dtype=states.dtype, device=states.device)
        J = _pull_cotangents(step_fn, states, x, eye.expand(K, N, D, D))  # rows J^T e_i: J
        return _svdvals(J)
    r = min(rank, D)
    Y = _push_tangents(step_fn, states, x, _gaussian((K, N, r, D), states, seed))  # (K,N,r,D)
    ok = torch.isfinite(Y).flatten(-2).all(-1)[..., None, None]
    Q, _ = torch.linalg.qr(torch.where(ok, Y, torch.zeros_like(Y)).transpose(-1, -2))  # (.., D, r)
    BT = _pull_cotangents(step_fn, states, x, Q.transpose(-1, -2))  # rows J^T q_j: (Q^T J)^T
    return _svdvals(torch.where(ok, BT, torch.full_like(BT, math.nan)))


def spectrum_summary(sv: torch.Tensor) -> dict[str, torch.Tensor]:
    """Summary of singular values ``(K, N, r)``, averaged over N: each entry ``(K,)``.

    ``log10_condition`` uses ``max(sigma_min, eps * sigma_max)``: below that the
    SVD returns rounding noise, so the number saturates at ``-log10(eps)`` (~15.7
    in float64, ~6.9 in float32) instead of being noise. Every rank-deficient J
    reads as saturated, J = 0 included (a ReLU stack whose units all died at
    some step): it has lost all information about F_0, not "undefined".
    """
    eps = torch.finfo(sv.dtype).eps
    smax = sv.amax(-1)
    smin = sv.amin(-1)
    cond = torch.log10(smax / torch.maximum(smin, smax * eps))
    cond = torch.where(smax == 0, -math.log10(eps), cond)
    stats = {
        "mean": sv.mean(-1),
        "std": sv.std(-1, correction=0),
        "max": smax,
        "min": smin,
        "log10_condition": cond,
    }
    return {k: _finite_or_nan(v.mean(-1)) for k, v in stats.items()}


# ---- model-level wrappers -------------------------------------------------------------------


def _finite_or_nan(v: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(v), v, torch.full_like(v, math.nan))


def _prepare(
    model: PackedRNN, x: torch.Tensor, dtype: torch.dtype | None
) -> tuple[StackMap, torch.Tensor, torch.Tensor]:
    """The frozen map, ``x`` in its dtype, and the trajectory ``(K, T+1, B, D)``."""
    assert x.dim() == 4 and x.shape[0] == model.K, (
        f"expected x of shape (K={model.K}, T, B, I), got {tuple(x.shape)}"
    )
    smap = StackMap.of(model, dtype)
    x = x.to(device=smap.device, dtype=smap.dtype)
    states = trajectory(smap.step, smap.initial_state(x.shape[2]), x)
    return smap, x, states


def _jac_norms(
    smap: StackMap, x: torch.Tensor, states: torch.Tensor, iters: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    K, T, B, _ = x.shape
    F = states[:, :T].reshape(K, T * B, smap.dim)  # (K, T*B, D): F_{t-1} for t = 1..T
    sig = jacobian_norms(smap.step, F, x.reshape(K, T * B, -1), iters=iters, seed=seed)
    sig = sig.reshape(K, T * B)
    return _finite_or_nan(sig.amax(-1)), _finite_or_nan(sig.mean(-1))


def _lyapunov(smap: StackMap, x: torch.Tensor, burn_in: int | None, seed: int) -> torch.Tensor:
    T = x.shape[1]
    burn = T // 4 if burn_in is None else burn_in
    lam = largest_lyapunov(smap.step, smap.initial_state(x.shape[2]), x, burn_in=burn, seed=seed)
    return _finite_or_nan(lam.mean(-1))  # (K,): a nan element makes its member nan


def _e2e(
    smap: StackMap,
    x: torch.Tensor,
    states: torch.Tensor,
    n_batch: int,
    max_dim: int,
    rank: int,
    seed: int,
) -> dict[str, torch.Tensor]:
    n = min(n_batch, x.shape[2])
    sv = unrolled_singular_values(
        smap.step, states[:, :, :n], x[:, :, :n], max_dim=max_dim, rank=rank, seed=seed
    )
    return spectrum_summary(sv)


def step_jacobian_norms(
    model: PackedRNN,
    x: torch.Tensor,
    iters: int = 30,
    *,
    dtype: torch.dtype | None = torch.float64,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``||dF_t / dF_{t-1}||_2`` along ``model``'s orbits on ``x``: (max, mean) over (t, b).

    Each ``(K,)``; nan for a member with a non-finite norm anywhere.

    ``dtype=None`` computes in the model's dtype. See :func:`jacobian_norms`.
    """
    smap, x, states = _prepare(model, x, dtype)
    return _jac_norms(smap, x, states, iters, seed)


def lyapunov_exponent(
    model: PackedRNN,
    x: torch.Tensor,
    burn_in: int | None = None,
    *,
    dtype: torch.dtype | None = torch.float64,
    seed: int = 0,
) -> torch.Tensor:
    """Largest Lyapunov exponent per member (nats per step), mean over the batch: ``(K,)``.

    The run is ``x``'s T steps from the learned initial state, the first
    ``burn_in`` (default T // 4) discarded. T ~ 50 gives a rough estimate; pass
    longer sequences for a sharper one. See :func:`largest_lyapunov`.
    """
    smap = StackMap.of(model, dtype)
    return _lyapunov(smap, x.to(device=smap.device, dtype=smap.dtype), burn_in, seed)


def end_to_end_spectrum(
    model: PackedRNN,
    x: torch.Tensor,
    *,
    n_batch: int = 2,
    max_dim: int = 256,
    rank: int = 64,
    dtype: torch.dtype | None = torch.float64,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Singular-value summary of ``dF_T / dF_0`` on the first ``n_batch`` sequences of ``x``.

    Keys ``mean, std, max, min, log10_condition``, each ``(K,)``, averaged over
    the sequences. Exact for D <= ``max_dim``, else over the leading ``rank``
    values only (see :func:`unrolled_singular_values`, :func:`spectrum_summary`).
    """
    smap, x, states = _prepare(model, x, dtype)
    return _e2e(smap, x, states, n_batch, max_dim, rank, seed)


def ribeiro_region(
    lyapunov: torch.Tensor, jac_max: torch.Tensor, eps: float = LYAPUNOV_EPS
) -> torch.Tensor:
    """Ribeiro et al.'s region per member (SCIENCE.md section 5): int64 ``(K,)``.

    1. ``jac_max < 1``: every step contracts along the data (Lipschitz L < 1 on
       the orbit), so perturbations and memory fade at least like ``jac_max^k``.
    2. ``lyapunov > eps``: nearby orbits separate exponentially (chaos/expansion).
    3. otherwise: some steps expand but not on average; the edge where long
       memory is learnable.
    0 when either input is nan. Region 1 is tested first; the two cannot both
    hold on the same orbit since ``lambda_1 <= mean_t log ||J_t|| < 0`` there.
    ``eps`` absorbs the finite-run noise of lambda_1 (see ``LYAPUNOV_EPS``).
    """
    lam = torch.as_tensor(lyapunov, dtype=torch.float64)
    jac = torch.as_tensor(jac_max, dtype=torch.float64)
    region = torch.full(lam.shape, REGION_EDGE, dtype=torch.int64)
    region = torch.where(lam > eps, REGION_CHAOTIC, region)
    region = torch.where(jac < 1.0, REGION_CONTRACTIVE, region)
    return torch.where(torch.isnan(lam) | torch.isnan(jac), REGION_UNKNOWN, region)


def diagnose(
    model: PackedRNN,
    x: torch.Tensor,
    iters: int = 30,
    *,
    burn_in: int | None = None,
    n_batch: int = 2,
    max_dim: int = 256,
    rank: int = 64,
    eps: float = LYAPUNOV_EPS,
    dtype: torch.dtype | None = torch.float64,
    seed: int = 0,
) -> list[dict[str, float | int]]:
    """All section 5 diagnostics for every member of ``model`` on ``x`` ``(K, T, B, I)``.

    One dict per member: ``jac_max``, ``jac_mean`` (step Jacobian norm over (t, b)),
    ``lyapunov`` (nats per step), ``e2e_sv_mean``, ``e2e_sv_std``,
    ``e2e_log10_cond`` (end-to-end Jacobian over T steps) and ``region`` (0-3,
    see :func:`ribeiro_region`). Floats are nan for a diverged member.
    """
    smap, x, states = _prepare(model, x, dtype)
    jac_max, jac_mean = _jac_norms(smap, x, states, iters, seed)
    lam = _lyapunov(smap, x, burn_in, seed)
    e2e = _e2e(smap, x, states, n_batch, max_dim, rank, seed)
    region = ribeiro_region(lam.cpu(), jac_max.cpu(), eps)
    cols = {
        "jac_max": jac_max,
        "jac_mean": jac_mean,
        "lyapunov": lam,
        "e2e_sv_mean": e2e["mean"],
        "e2e_sv_std": e2e["std"],
        "e2e_log10_cond": e2e["log10_condition"],
    }
    host = {k: v.detach().cpu().tolist() for k, v in cols.items()}
    return [
        {**{k: float(v[i]) for k, v in host.items()}, "region": int(region[i])}
        for i in range(smap.K)
    ]
