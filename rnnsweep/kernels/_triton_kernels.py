"""The two persistent ``@triton.jit`` time loops of :mod:`rnnsweep.kernels._triton`.

Imported lazily, on the first Triton layer call: ``@triton.jit`` decides at
decoration time whether a kernel compiles for the GPU or runs in Triton's NumPy
interpreter (``TRITON_INTERPRET=1``), so this module must be imported after that
variable is set.

One program per (member ``k``, batch tile): it loads the member's ``W^h`` (``G``
blocks of ``(HP, HP)``, H padded to ``HP`` and masked) once and runs all T steps.
``CELL`` (a ``tl.constexpr``) selects the cell's gate math at compile time, so
each cell compiles to its own straight-line loop. Buffers are contiguous and
K-major, ``(K, T, B, n*H)``; the nonlinearity ``s`` is read per member from
``CODES`` (0 = tanh, 1 = relu).

Equations (see :mod:`rnnsweep.cells.zoo`; ``a_j`` is block j of the input part
plus ``h_{t-1} W^h_j``, ``hp = h_{t-1}``, ``dh = dL/dh_t``, ``dp_j = dL/da_j``)::

    rnn       h = s(a0)                                   saves -        (s' off h)
    ugrnn     c = s(a0), g = sig(a1), h = c + g (hp - c)  saves c, g
    gru pre   r, u = sig(a0, a1), c = s(A2 + (r hp) W2)   saves r, u, c
    gru post  n = hp W2 + b_hn, c = s(A2 + r n)           saves r, u, c, n
    lstm      i, f, o = sig, g = s(a3), c = f c + i g,    saves i, f, o, g  (+ c in CS)
              h = o tanh(c)
    plusrnn   y_in = relu(a0), h_in = tanh(a1), gy, gh    saves y_in, h_in, gy, gh
              y = gy x + (1-gy) y_in, h = gh hp + (1-gh) h_in                (y into Y)
    minimal   u = sig(A0 + hp W0), z = A1, h = u hp + (1-u) z   saves u, z
"""

from __future__ import annotations

import triton
import triton.language as tl

from rnnsweep.kernels._triton import _interpreting


def _without_slp_vectorizer() -> None:
    """Compile with LLVM's SLP vectorizer off (when compiling for a GPU, not interpreting).

    Compiled ahead of time for sm_90 with triton 3.9 (``_triton.compile_report``), the
    LSTM kernels crashed LLVM's SLP vectorizer (an assertion in ``scheduleBlock`` that
    aborts the process) at some widths, and small rewrites only moved the crash. Triton
    itself turns the pass off for sm_80; on a GPU it packs scalar code into short vectors,
    which matters little here. This wraps ``llvm.optimize_module`` for this process, so
    torch.compile's Triton kernels compile without the pass too. Only where the binding
    takes the flag (not in older Triton releases).
    """
    try:
        from triton._C.libtriton import llvm
    except ImportError:  # pragma: no cover - a Triton build without the LLVM bindings
        return
    original = llvm.optimize_module
    if getattr(original, "_rnnsweep", False) or "disable_slp_vectorizer" not in (
        original.__doc__ or ""
    ):
        return

    def optimize_module(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        kwargs["disable_slp_vectorizer"] = True
        return original(*args, **kwargs)

    optimize_module._rnnsweep = True  # type: ignore[attr-defined]
    llvm.optimize_module = optimize_module


if not _interpreting():
    _without_slp_vectorizer()

# CELL codes (the constexpr that selects the gate math); compiled kernels may read only
# tl.constexpr globals
RNN, UGRNN, GRU_PRE, GRU_POST, LSTM, PLUS, MINIMAL = (tl.constexpr(i) for i in range(7))


@triton.jit
def _sig(a):
    return 1.0 / (1.0 + tl.exp(-a))


@triton.jit
def _tanh(a):
    # 2 sigma(2a) - 1: saturates to +-1 for large |a| (exp overflows to inf, not NaN)
    return 2.0 / (1.0 + tl.exp(-2.0 * a)) - 1.0


@triton.jit
def _relu(a):
    return tl.where(a < 0.0, 0.0, a)  # NaN propagates, as in torch.relu: NaN < 0 is false


@triton.jit
def _step(y):
    return tl.where(y > 0.0, 1.0, 0.0)  # relu'(a) read off y = relu(a), 0 at a = 0


@triton.jit
def _act(a, code):
    """s(a): tanh for code 0, relu for code 1."""
    return tl.where(code == 0, _tanh(a), _relu(a))


@triton.jit
def _dact(y, code):
    """s'(a) from y = s(a): ``1 - y^2`` or ``[y > 0]``."""
    return tl.where(code == 0, 1.0 - y * y, _step(y))


@triton.jit
def _mm(a, b, PREC: tl.constexpr):
    return tl.dot(a, b, input_precision=PREC)


@triton.jit
def _mmT(a, b, PREC: tl.constexpr):
    """``a^T b``: the per-program weight-gradient product ``(HP, BB) @ (BB, HP)``."""
    return tl.dot(tl.trans(a), b, input_precision=PREC)


@triton.jit
def _w(Wk, j, H, GH, HP: tl.constexpr, TRANS: tl.constexpr):
    """Block j of one member's ``W^h`` ``(H, G*H)`` as an ``(HP, HP)`` tile, zero-padded;
    ``TRANS``: its transpose (the backward's ``dh_{t-1} += dp_j W_j^T``)."""
    i = tl.arange(0, HP)
    r, c = i[:, None], i[None, :]
    m = (r < H) & (c < H)
    if TRANS:
        return tl.load(Wk + c * GH + j * H + r, mask=m, other=0.0)
    return tl.load(Wk + r * GH + j * H + c, mask=m, other=0.0)


@triton.jit
def _rows(P, k, t, T, B, width, rows, cols):
    """Pointers to the tile's rows of step t in a contiguous ``(K, T, B, width)`` buffer."""
    return P + ((k * T + t) * B + rows)[:, None] * width + cols[None, :]


@triton.jit
def fwd_kernel(
    A, WH, S0, X, BHN, CODES, HS, Y, Z, CS,
    T, B, H, SW,
    CELL: tl.constexpr, G: tl.constexpr, WA: tl.constexpr, NZ: tl.constexpr,
    BB: tl.constexpr, HP: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Forward loop: ``A`` (K, T, B, WA*H) input parts -> ``HS`` (K, T+1, B, H) states,
    ``Z`` (K, T, B, NZ*H) saved gates, ``Y`` (+RNN outputs), ``CS`` (LSTM cells, T+1);
    ``S0`` (K, 1, SW) the learned initial state, ``SW`` = S*H."""
    k = tl.program_id(0).to(tl.int64)
    rows = tl.program_id(1) * BB + tl.arange(0, BB)
    cols = tl.arange(0, HP)
    m = (rows < B)[:, None] & (cols < H)[None, :]
    code = tl.load(CODES + k)
    GH = G * H
    Wk = WH + k * H * GH
    w0 = _w(Wk, 0, H, GH, HP, False)
    if G > 1:
        w1 = _w(Wk, 1, H, GH, HP, False)
    if G > 2:
        w2 = _w(Wk, 2, H, GH, HP, False)
    if G > 3:
        w3 = _w(Wk, 3, H, GH, HP, False)
    s0 = S0 + k * SW + cols[None, :] + 0 * rows[:, None]
    h = tl.load(s0, mask=m, other=0.0)  # h_{-1} = s0, broadcast over the batch
    tl.store(_rows(HS, k, 0, T + 1, B, H, rows, cols), h, mask=m)
    c = tl.zeros_like(h)
    if CELL == LSTM:
        c = tl.load(s0 + H, mask=m, other=0.0)
        tl.store(_rows(CS, k, 0, T + 1, B, H, rows, cols), c, mask=m)
    if CELL == GRU_POST:
        bhn = tl.load(BHN + k * H + cols, mask=cols < H, other=0.0)[None, :]
    for t in range(T):
        pa = _rows(A, k, t, T, B, WA * H, rows, cols)
        pz = _rows(Z, k, t, T, B, NZ * H, rows, cols)
        a0 = tl.load(pa, mask=m, other=0.0)
        if CELL == RNN:
            hn = _act(a0 + _mm(h, w0, PREC), code)
        elif CELL == UGRNN:
            cc = _act(a0 + _mm(h, w0, PREC), code)
            g = _sig(tl.load(pa + H, mask=m, other=0.0) + _mm(h, w1, PREC))
            hn = cc + g * (h - cc)
            tl.store(pz, cc, mask=m)
            tl.store(pz + H, g, mask=m)
        elif CELL == GRU_PRE or CELL == GRU_POST:
            r = _sig(a0 + _mm(h, w0, PREC))
            u = _sig(tl.load(pa + H, mask=m, other=0.0) + _mm(h, w1, PREC))
            a2 = tl.load(pa + 2 * H, mask=m, other=0.0)
            if CELL == GRU_PRE:
                cc = _act(a2 + _mm(r * h, w2, PREC), code)
            else:
                n = _mm(h, w2, PREC) + bhn
                cc = _act(a2 + r * n, code)
                tl.store(pz + 3 * H, n, mask=m)
            hn = cc + u * (h - cc)
            tl.store(pz, r, mask=m)
            tl.store(pz + H, u, mask=m)
            tl.store(pz + 2 * H, cc, mask=m)
        elif CELL == LSTM:
            i = _sig(a0 + _mm(h, w0, PREC))
            f = _sig(tl.load(pa + H, mask=m, other=0.0) + _mm(h, w1, PREC))
            o = _sig(tl.load(pa + 2 * H, mask=m, other=0.0) + _mm(h, w2, PREC))
            g = _act(tl.load(pa + 3 * H, mask=m, other=0.0) + _mm(h, w3, PREC), code)
            c = tl.where(m, f * c + i * g, 0.0)
            hn = o * _tanh(c)
            tl.store(_rows(CS, k, t + 1, T + 1, B, H, rows, cols), c, mask=m)
            tl.store(pz, i, mask=m)
            tl.store(pz + H, f, mask=m)
            tl.store(pz + 2 * H, o, mask=m)
            tl.store(pz + 3 * H, g, mask=m)
        elif CELL == PLUS:
            yin = _relu(a0 + _mm(h, w0, PREC))
            hin = _tanh(tl.load(pa + H, mask=m, other=0.0) + _mm(h, w1, PREC))
            gy = _sig(tl.load(pa + 2 * H, mask=m, other=0.0) + _mm(h, w2, PREC))
            gh = _sig(tl.load(pa + 3 * H, mask=m, other=0.0) + _mm(h, w3, PREC))
            xt = tl.load(_rows(X, k, t, T, B, H, rows, cols), mask=m, other=0.0)
            tl.store(_rows(Y, k, t, T, B, H, rows, cols), gy * xt + (1.0 - gy) * yin, mask=m)
            hn = gh * h + (1.0 - gh) * hin
            tl.store(pz, yin, mask=m)
            tl.store(pz + H, hin, mask=m)
            tl.store(pz + 2 * H, gy, mask=m)
            tl.store(pz + 3 * H, gh, mask=m)
        else:  # MINIMAL
            u = _sig(a0 + _mm(h, w0, PREC))
            z = tl.load(pa + H, mask=m, other=0.0)
            hn = u * h + (1.0 - u) * z
            tl.store(pz, u, mask=m)
            tl.store(pz + H, z, mask=m)
        # padding stays exactly zero (an inf times a padded zero weight would be NaN)
        h = tl.where(m, hn, 0.0)
        tl.store(_rows(HS, k, t + 1, T + 1, B, H, rows, cols), h, mask=m)


@triton.jit
def bwd_kernel(
    DOUT, HS, Z, CS, X, WH, CODES, F, DWH, DH0, DC0, DXD,
    T, B, H,
    CELL: tl.constexpr, G: tl.constexpr, WA: tl.constexpr, NZ: tl.constexpr,
    BB: tl.constexpr, HP: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Reverse loop: ``F`` (K, T, B, WA*H) = dL/dA, ``DWH`` (K, tiles, H, G*H) this tile's
    dL/dW^h, ``DH0``/``DC0`` (K, B, H) the gradient at ``h_{-1}``/``c_{-1}``, ``DXD`` the
    +RNN's direct ``dL/dx = dy g_y``. ``DOUT`` is dL/d(output), (K, T, B, H)."""
    k = tl.program_id(0).to(tl.int64)
    tile = tl.program_id(1)
    rows = tile * BB + tl.arange(0, BB)
    cols = tl.arange(0, HP)
    m = (rows < B)[:, None] & (cols < H)[None, :]
    code = tl.load(CODES + k)
    GH = G * H
    Wk = WH + k * H * GH
    v0 = _w(Wk, 0, H, GH, HP, True)
    dw0 = tl.zeros((HP, HP), dtype=v0.dtype)
    if G > 1:
        v1 = _w(Wk, 1, H, GH, HP, True)
        dw1 = tl.zeros((HP, HP), dtype=v0.dtype)
    if G > 2:
        v2 = _w(Wk, 2, H, GH, HP, True)
        dw2 = tl.zeros((HP, HP), dtype=v0.dtype)
    if G > 3:
        v3 = _w(Wk, 3, H, GH, HP, True)
        dw3 = tl.zeros((HP, HP), dtype=v0.dtype)
    dh = tl.zeros((BB, HP), dtype=v0.dtype)  # dL/dh_t from step t+1
    dc = tl.zeros((BB, HP), dtype=v0.dtype)  # LSTM: dL/dc_t from step t+1
    for tt in range(T):
        t = T - 1 - tt
        pz = _rows(Z, k, t, T, B, NZ * H, rows, cols)
        pf = _rows(F, k, t, T, B, WA * H, rows, cols)
        hp = tl.load(_rows(HS, k, t, T + 1, B, H, rows, cols), mask=m, other=0.0)
        dy = tl.load(_rows(DOUT, k, t, T, B, H, rows, cols), mask=m, other=0.0)
        if CELL != PLUS:
            dh = dh + dy  # the output is h_t itself
        if CELL == RNN:
            hn = tl.load(_rows(HS, k, t + 1, T + 1, B, H, rows, cols), mask=m, other=0.0)
            dp0 = dh * _dact(hn, code)
            dhp = _mm(dp0, v0, PREC)
            dw0 += _mmT(hp, dp0, PREC)
        elif CELL == UGRNN:
            cc = tl.load(pz, mask=m, other=0.0)
            g = tl.load(pz + H, mask=m, other=0.0)
            dp0 = dh * (1.0 - g) * _dact(cc, code)
            dp1 = dh * (hp - cc) * g * (1.0 - g)
            dhp = dh * g + _mm(dp0, v0, PREC) + _mm(dp1, v1, PREC)
        elif CELL == GRU_PRE or CELL == GRU_POST:
            r = tl.load(pz, mask=m, other=0.0)
            u = tl.load(pz + H, mask=m, other=0.0)
            cc = tl.load(pz + 2 * H, mask=m, other=0.0)
            dp2 = dh * (1.0 - u) * _dact(cc, code)
            dp1 = dh * (hp - cc) * u * (1.0 - u)
            if CELL == GRU_PRE:
                drh = _mm(dp2, v2, PREC)  # dL/d(r hp)
                dp0 = drh * hp * r * (1.0 - r)
                dhp = dh * u + drh * r + _mm(dp0, v0, PREC) + _mm(dp1, v1, PREC)
                dw2 += _mmT(r * hp, dp2, PREC)
            else:
                n = tl.load(pz + 3 * H, mask=m, other=0.0)
                dn = dp2 * r  # dL/d(hp W2 + b_hn)
                dp0 = dp2 * n * r * (1.0 - r)
                dhp = dh * u + _mm(dp0, v0, PREC) + _mm(dp1, v1, PREC) + _mm(dn, v2, PREC)
                dw2 += _mmT(hp, dn, PREC)
            tl.store(pf + 2 * H, dp2, mask=m)
        elif CELL == LSTM:
            i = tl.load(pz, mask=m, other=0.0)
            f = tl.load(pz + H, mask=m, other=0.0)
            o = tl.load(pz + 2 * H, mask=m, other=0.0)
            g = tl.load(pz + 3 * H, mask=m, other=0.0)
            c = tl.load(_rows(CS, k, t + 1, T + 1, B, H, rows, cols), mask=m, other=0.0)
            cp = tl.load(_rows(CS, k, t, T + 1, B, H, rows, cols), mask=m, other=0.0)
            tc = _tanh(c)
            dc = dc + dh * o * (1.0 - tc * tc)
            dp0 = dc * g * i * (1.0 - i)
            dp1 = dc * cp * f * (1.0 - f)
            dp2 = dh * tc * o * (1.0 - o)
            dp3 = dc * i * _dact(g, code)
            dc = tl.where(m, dc * f, 0.0)
            dhp = _mm(dp0, v0, PREC) + _mm(dp1, v1, PREC) + _mm(dp2, v2, PREC)
            dhp += _mm(dp3, v3, PREC)
            dw2 += _mmT(hp, dp2, PREC)
            dw3 += _mmT(hp, dp3, PREC)
            tl.store(pf + 2 * H, dp2, mask=m)
            tl.store(pf + 3 * H, dp3, mask=m)
        elif CELL == PLUS:
            yin = tl.load(pz, mask=m, other=0.0)
            hin = tl.load(pz + H, mask=m, other=0.0)
            gy = tl.load(pz + 2 * H, mask=m, other=0.0)
            gh = tl.load(pz + 3 * H, mask=m, other=0.0)
            xt = tl.load(_rows(X, k, t, T, B, H, rows, cols), mask=m, other=0.0)
            dp0 = dy * (1.0 - gy) * _step(yin)
            dp1 = dh * (1.0 - gh) * (1.0 - hin * hin)
            dp2 = dy * (xt - yin) * gy * (1.0 - gy)
            dp3 = dh * (hp - hin) * gh * (1.0 - gh)
            dhp = dh * gh + _mm(dp0, v0, PREC) + _mm(dp1, v1, PREC) + _mm(dp2, v2, PREC)
            dhp += _mm(dp3, v3, PREC)
            dw2 += _mmT(hp, dp2, PREC)
            dw3 += _mmT(hp, dp3, PREC)
            tl.store(pf + 2 * H, dp2, mask=m)
            tl.store(pf + 3 * H, dp3, mask=m)
            tl.store(_rows(DXD, k, t, T, B, H, rows, cols), dy * gy, mask=m)
        else:  # MINIMAL
            u = tl.load(pz, mask=m, other=0.0)
            z = tl.load(pz + H, mask=m, other=0.0)
            dp0 = dh * (hp - z) * u * (1.0 - u)
            dp1 = dh * (1.0 - u)  # dL/dz
            dhp = dh * u + _mm(dp0, v0, PREC)
        # blocks 0 and 1 and their W^h gradients: common to all cells but the vanilla RNN
        tl.store(pf, dp0, mask=m)
        if CELL != RNN:
            tl.store(pf + H, dp1, mask=m)
            dw0 += _mmT(hp, dp0, PREC)
            if CELL != MINIMAL:
                dw1 += _mmT(hp, dp1, PREC)
        dh = tl.where(m, dhp, 0.0)
    tl.store(_rows(DH0, k, 0, 1, B, H, rows, cols), dh, mask=m)
    if CELL == LSTM:
        tl.store(_rows(DC0, k, 0, 1, B, H, rows, cols), dc, mask=m)
    # this tile's dW^h, block by block: (H, G*H) at DWH[k, tile]
    i = tl.arange(0, HP)
    pw = DWH + (k * tl.num_programs(1) + tile) * H * GH + i[:, None] * GH + i[None, :]
    mw = (i < H)[:, None] & (i < H)[None, :]
    tl.store(pw, dw0, mask=mw)
    if G > 1:
        tl.store(pw + H, dw1, mask=mw)
    if G > 2:
        tl.store(pw + 2 * H, dw2, mask=mw)
    if G > 3:
        tl.store(pw + 3 * H, dw3, mask=mw)
