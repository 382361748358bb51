"""Leaf helpers of the fused kernels: the per-call state and pointwise math.

Imported by the base kernel (:mod:`._base`), the cells' kernels (:mod:`._zoo`) and the
compiled steps (:mod:`._compiled`); imports none of them, so none imports another in a
circle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from rnnsweep.kernels import _native

if TYPE_CHECKING:
    from rnnsweep.cells.base import Params
    from rnnsweep.kernels.loops import TimeLoop

__all__ = ["Run", "act", "act_t", "at", "blocks", "dact", "put"]


# ---- pointwise helpers ---------------------------------------------------------------------


def _relu_mask(s: Tensor, like: Tensor) -> Tensor:
    """Per-member codes ``s`` ``(K,)`` as a bool mask broadcasting over ``like`` ``(K, ...)``
    (a no-op conversion for the mask :class:`Run` already made)."""
    return s.to(device=like.device, dtype=torch.bool).view(-1, *([1] * (like.dim() - 1)))


def act(a: Tensor, s: str | Tensor, out: Tensor) -> Tensor:
    """``out = s(a)`` for ``s`` in {tanh, relu}; ``out`` may be ``a`` (in place).

    ``s`` may also be ``(K,)`` per-member codes (0 tanh, 1 relu) for a pack ``a``
    ``(K, ...)`` that mixes them: both are computed, elementwise as for a pack of one
    nonlinearity, and each member keeps its own, so its numbers do not change with
    the pack.

    On CPU, tanh is computed as ``2 sigmoid(2a) - 1``: torch 2.13's vectorised CPU
    ``tanh`` measured ~9x slower than ``sigmoid`` here (159 vs 17 us for 65k
    float32), so four cheap passes beat one slow one. The identity is exact in
    real arithmetic; in floating point it differs from ``torch.tanh`` by a few ulp
    of 1 (absolute), which the tests bound. ``relu`` is ``clamp_min(a, 0)``,
    which like ``torch.relu`` propagates NaN.
    """
    if isinstance(s, Tensor):
        relu = torch.clamp_min(a, 0.0)  # before out is written: out may be a
        return torch.where(_relu_mask(s, a), relu, act(a, "tanh", out=out), out=out)
    if s == "relu":
        return torch.clamp_min(a, 0.0, out=out)
    if s == "tanh":
        if a.device.type == "cpu":
            return torch.mul(a, 2.0, out=out).sigmoid_().mul_(2.0).sub_(1.0)
        return torch.tanh(a, out=out)
    raise ValueError(f"unknown nonlinearity {s!r}; choose tanh or relu")


def dact(y: Tensor, s: str | Tensor, out: Tensor | None = None) -> Tensor:
    """``s'(a)`` from the activation ``y = s(a)``: ``1 - y^2`` (tanh) or ``[y > 0]`` (relu).

    ``[y > 0]`` is the subgradient torch's own ``relu`` backward uses (0 at ``a = 0``).
    ``s`` may be ``(K,)`` per-member codes, as for :func:`act`.
    """
    if out is None:
        out = torch.empty_like(y)
    if isinstance(s, Tensor):
        relu = torch.gt(y, 0.0).to(out.dtype)  # before out is written: out may alias y
        return torch.where(_relu_mask(s, y), relu, dact(y, "tanh", out=out), out=out)
    if s == "tanh":
        return torch.addcmul(y.new_ones(()), y, y, value=-1.0, out=out)  # one pass
    if s == "relu":
        return torch.gt(y, 0.0, out=out)  # bool result cast into out's dtype
    raise ValueError(f"unknown nonlinearity {s!r}; choose tanh or relu")


# ---- the per-call state ----------------------------------------------------------------------


class Run:
    """Buffers and per-step views of one forward or backward sweep over a sequence.

    A plain attribute bag: the base sets the common fields below, a cell adds its
    own (gate views, extra state buffers) in ``prepare_forward``/``prepare_backward``.
    Big buffers are K-major, ``(K, T, B, .)``, except those a per-step product
    accumulates into; see :mod:`rnnsweep.kernels` for why.
    """

    s: str | Tensor  # the nonlinearity: the pack's, or (K,) per-member codes (0 tanh, 1 relu)
    loop: TimeLoop  # the time loop chosen for this call (see rnnsweep.kernels.loops)
    native: bool  # the time loop runs in native/layers.c (else torch ops, step by step)
    saves: bool  # a backward will read what this forward saves (False: inference only)
    own_gemm: bool  # float32 products through native/gemm.h (the native loop)
    x: Tensor  # (K, T, B, I): the layer input
    p: Params
    K: int
    T: int
    B: int
    H: int
    Wh: Tensor  # (K, H, G*H)
    A: Tensor  # (K, T, B, G*H): input part of the pre-activations, then activations
    a: tuple[Tensor, ...]  # T views (K, B, G*H) of A
    Hs: Tensor  # (K, T+1, B, H): h_{-1} = s0, h_0, ..., h_{T-1}
    h: tuple[Tensor, ...]  # T+1 views (K, B, H) of Hs
    S: Tensor  # (K, B, G*H) dense scratch: the step's pre-activations
    tmp: Tensor  # (K, B, H) dense scratch
    # backward only
    F: Tensor  # (K, T, B, G*H): local derivatives, turned into dL/d(pre) in place
    dp: tuple[Tensor, ...]  # T views (K, B, G*H) of F
    dH: Tensor  # (T+1, K, B, H), time-major: dL/dh_t accumulated; [0] is dL/dh_{-1}
    dh: tuple[Tensor, ...]  # T+1 dense views (K, B, H) of dH
    WhT: Tensor  # (K, G*H, H)

    def __init__(self, loop: TimeLoop, s: str | Tensor, x: Tensor, p: Params, **more: Any) -> None:
        self.loop, self.s, self.x, self.p = loop, s, x, p
        self.saves = True
        self.native = loop.native and _native.supports(x)
        if isinstance(s, Tensor) and not self.native:
            # the torch-op loop reads per-member codes as a mask at every step: once here
            self.s = s.to(device=x.device, dtype=torch.bool)
        self.own_gemm = loop.own_gemm
        self.K, self.T, self.B, _ = x.shape
        self.Wh = p["Wh"]
        self.H = self.Wh.shape[1]
        self.__dict__.update(more)

    def bmm(self, a: Tensor, b: Tensor) -> Tensor:
        """``torch.bmm(a, b)``, through the own GEMM where this loop's products use it."""
        return _native.bmm(a, b, own=self.own_gemm)


def blocks(t: Tensor, width: int) -> list[tuple[Tensor, ...]]:
    """Split the last axis of ``t`` ``(K, T, B, n*width)`` into n gate blocks, each
    unbound over time: ``blocks(A, H)[j][t]`` is block j at step t, ``(K, B, H)``.

    Views made once per sweep, so the time loop does no slicing.
    """
    return [blk.unbind(1) for blk in t.split(width, dim=-1)]


# ---- the compiled steps' forms (see _compiled) ------------------------------------------


def at(X: Tensor, t: Tensor, axis: int = 1) -> Tensor:
    """Row ``t`` (a one-element long tensor) of ``X`` along ``axis``, the axis dropped."""
    return X.index_select(axis, t).squeeze(axis)


def put(X: Tensor, t: Tensor, value: Tensor, axis: int = 1) -> None:
    """Write ``value`` into row ``t`` of ``X`` along ``axis``, in place."""
    X.index_copy_(axis, t, value.unsqueeze(axis))


def act_t(a: Tensor, s: str) -> Tensor:
    """``s(a)`` for ``s`` in {tanh, relu}, as plain ops for the compiler to fuse."""
    if s == "tanh":
        return torch.tanh(a)
    if s == "relu":
        return torch.clamp_min(a, 0.0)
    raise ValueError(f"unknown nonlinearity {s!r}; choose tanh or relu")
