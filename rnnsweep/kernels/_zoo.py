"""The fused kernel of every cell: pointwise forward, local derivatives, pointwise backward.

Each class transcribes the equations of the matching cell in
:mod:`rnnsweep.cells.zoo` (Collins et al. 2017 eqs. (1)-(20); Chen et al. 2018
eqs. (3)-(5)). Notation in comments: ``a`` a pre-activation, ``hp = h_{t-1}``,
``dh = dL/dh_t`` (everything that reaches h_t, the output gradient included),
``dp = dL/da`` (the gradient w.r.t. the pre-activations, into ``F``), and
``sigma'(a) = g (1 - g)`` for a gate ``g = sigma(a)``.

Backward pattern, shared by all cells: the local derivatives of a step that do
not depend on the incoming gradient (``F``) are formed in bulk for a chunk of
steps (``factors``, a few passes over ``(K, n, B, .)``); the reverse loop then
only multiplies them by ``dh`` and runs the recurrent product (``back_step``).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from rnnsweep.kernels._base import SequenceKernel
from rnnsweep.kernels._ops import Run, act, act_t, at, blocks, dact, put

__all__ = [
    "GRUPostKernel",
    "GRUPreKernel",
    "LSTMKernel",
    "MinimalRNNKernel",
    "PlusRNNKernel",
    "RNNKernel",
    "UGRNNKernel",
]


def _one_minus(g: Tensor) -> Tensor:
    """``1 - g``, one pass."""
    return torch.rsub(g, 1.0)


def _slope(g: Tensor) -> Tensor:
    """``sigma'(a) = g (1 - g) = g - g^2`` from a gate ``g = sigma(a)``, one pass."""
    return torch.addcmul(g, g, g, value=-1.0)


class RNNKernel(SequenceKernel):
    """Vanilla RNN / IRNN, Collins eq. (1): ``h_t = s(a_t)``, ``a_t = W^h h_{t-1} + W^x x_t + b``.

    Backward: ``dp_t = dh_t * s'(a_t)`` with ``s'`` read off ``h_t``;
    ``dh_{t-1} += dp_t W^h^T``. Saves nothing beyond ``Hs``: ``A`` is scratch.
    """

    n_gates = 1
    native = "rnn"

    def step(self, r: Run, t: int) -> None:
        a = torch.baddbmm(r.a[t], r.h[t], r.Wh, out=r.S)  # (K, B, H): a_t
        act(a, r.s, out=r.h[t + 1])  # h_t = s(a_t)

    def saved(self, r: Run) -> dict[str, Tensor]:
        return {"Hs": r.Hs}

    def grad_buffers(self, r: Run) -> None:
        r.F = r.Hs.new_empty(r.K, self.f_steps(r), r.B, r.H)  # (K, T, B, H); no A was saved

    def factors(self, r: Run, lo: int, hi: int) -> None:
        dact(r.Hs[:, lo + 1 : hi + 1], r.s, out=r.F[:, lo:hi])  # s'(a_t) from h_t

    def back_step(self, r: Run, t: int) -> None:
        dp = r.dp[t].mul_(r.dh[t + 1])  # dp_t = dh_t s'(a_t)
        r.dh[t].baddbmm_(dp, r.WhT)  # dh_{t-1} += dp_t W^h^T

    def step_t(self, r: Run, t: Tensor) -> None:
        hp = at(r.Hs, t)  # (K, B, H)
        put(r.Hs, t + 1, act_t(torch.baddbmm(at(r.A, t), hp, r.Wh), r.s))

    def back_step_t(self, r: Run, t: Tensor) -> None:
        dp = at(r.F, t) * at(r.dH, t + 1, 0)  # (K, B, H)
        put(r.F, t, dp)
        put(r.dH, t, torch.baddbmm(at(r.dH, t, 0), dp, r.Wh.transpose(1, 2)), 0)


class UGRNNKernel(SequenceKernel):
    """Update-gate RNN, Collins eqs. (2)-(4); blocks [c, g].

    ``c = s(a_c)``, ``g = sigma(a_g + b^{fg})``, ``h_t = c + g (h_{t-1} - c)``.
    Backward: ``dp_c = dh (1-g) s'(c)``, ``dp_g = dh (hp - c) g(1-g)``,
    ``dh_{t-1} += dh g + dp W^h^T``. Saves A = [c, g].
    """

    n_gates = 2
    native = "ugrnn"

    def prepare_forward(self, r: Run) -> None:
        r.c, r.g = blocks(r.A, r.H)
        r.S_c, r.S_g = r.S.split(r.H, dim=-1)

    def step(self, r: Run, t: int) -> None:
        hp = r.h[t]
        torch.baddbmm(r.a[t], hp, r.Wh, out=r.S)  # a_t = [a_c, a_g]
        c = act(r.S_c, r.s, out=r.c[t])
        g = torch.sigmoid(r.S_g, out=r.g[t])
        torch.sub(hp, c, out=r.tmp)
        torch.addcmul(c, g, r.tmp, out=r.h[t + 1])  # h_t = c + g (hp - c)

    def prepare_backward(self, r: Run) -> None:
        super().prepare_backward(r)
        r.g = r.A[..., r.H :].unbind(1)
        r.dp2 = r.F.unflatten(-1, (2, r.H)).unbind(1)  # (K, B, 2, H) per step

    def factors(self, r: Run, lo: int, hi: int) -> None:
        C, G = r.A[:, lo:hi].split(r.H, dim=-1)  # (K, n, B, H) each
        Fc, Fg = r.F[:, lo:hi].split(r.H, dim=-1)
        torch.sub(r.Hs[:, lo:hi], C, out=Fg).mul_(_slope(G))  # (hp - c) g (1 - g)
        torch.mul(_one_minus(G), dact(C, r.s), out=Fc)  # (1 - g) s'(c)

    def back_step(self, r: Run, t: int) -> None:
        dh = r.dh[t + 1]
        r.dp2[t].mul_(dh.unsqueeze(2))  # both blocks scale with dh
        r.dh[t].addcmul_(dh, r.g[t]).baddbmm_(r.dp[t], r.WhT)

    def step_t(self, r: Run, t: Tensor) -> None:
        H, hp = r.H, at(r.Hs, t)  # (K, B, H)
        pre = torch.baddbmm(at(r.A, t), hp, r.Wh)  # (K, B, 2H): [a_c, a_g]
        c, g = act_t(pre[..., :H], r.s), torch.sigmoid(pre[..., H:])
        put(r.A, t, torch.cat([c, g], dim=-1))
        put(r.Hs, t + 1, c + g * (hp - c))

    def back_step_t(self, r: Run, t: Tensor) -> None:
        dh = at(r.dH, t + 1, 0)  # (K, B, H)
        dp = at(r.F, t) * dh.repeat(1, 1, 2)  # (K, B, 2H): both blocks scale with dh
        put(r.F, t, dp)
        g = at(r.A, t)[..., r.H :]
        put(r.dH, t, torch.baddbmm(at(r.dH, t, 0) + dh * g, dp, r.Wh.transpose(1, 2)), 0)


class _GRUBase(SequenceKernel):
    """What both GRU conventions share: blocks [r, u, c], ``h_t = c + u (h_{t-1} - c)``."""

    n_gates = 3

    def prepare_forward(self, r: Run) -> None:
        H = r.H
        # contiguous copies once per call, so the per-step products see dense operands
        r.Wru = r.Wh[..., : 2 * H].contiguous()  # (K, H, 2H)
        r.Wc = r.Wh[..., 2 * H :].contiguous()  # (K, H, H)
        r.ru, r.a_c = (blk.unbind(1) for blk in r.A.split([2 * H, H], dim=-1))
        r.r, r.u, r.c = blocks(r.A, H)
        # dense scratch: a product's destination must be dense to run as one batched GEMM
        r.S_ru, r.S_c = r.A.new_empty(r.K, r.B, 2 * H), r.A.new_empty(r.K, r.B, H)

    def prepare_backward(self, r: Run) -> None:
        super().prepare_backward(r)
        H = r.H
        r.r, r.u, _ = blocks(r.A, H)
        r.dp_r, _, r.dp_c = blocks(r.F, H)
        r.dp_ru = r.F[..., : 2 * H].unbind(1)
        r.dp_uc = r.F[..., H:].unflatten(-1, (2, H)).unbind(1)  # (K, B, 2, H) per step
        r.WruT = r.Wh[..., : 2 * H].transpose(1, 2)  # (K, 2H, H)
        r.WcT = r.Wh[..., 2 * H :].transpose(1, 2)  # (K, H, H)

    def factors_uc(self, r: Run, lo: int, hi: int) -> tuple[Tensor, Tensor]:
        """Fill the u and c blocks of ``F[:, lo:hi]``; return its r block and ``r (1 - r)``."""
        R, U, C = r.A[:, lo:hi].split(r.H, dim=-1)  # (K, n, B, H) each
        Fr, Fu, Fc = r.F[:, lo:hi].split(r.H, dim=-1)
        torch.sub(r.Hs[:, lo:hi], C, out=Fu).mul_(_slope(U))  # (hp - c) u (1 - u)
        torch.mul(_one_minus(U), dact(C, r.s), out=Fc)  # (1 - u) s'(c)
        return Fr, _slope(R)

    def gates_t(self, r: Run, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For ``step_t``: ``h_{t-1}``, the step's input pre-activations and ``[r, u]``."""
        H, hp, a = r.H, at(r.Hs, t), at(r.A, t)  # (K, B, H), (K, B, 3H)
        ru = torch.sigmoid(torch.baddbmm(a[..., : 2 * H], hp, r.Wh[..., : 2 * H]))  # r, u
        return hp, a, ru

    def update_t(self, r: Run, t: Tensor, hp: Tensor, ru: Tensor, c: Tensor) -> None:
        """For ``step_t``: save ``[r, u, c]`` and ``h_t = c + u (h_{t-1} - c)``."""
        put(r.A, t, torch.cat([ru, c], dim=-1))
        put(r.Hs, t + 1, c + ru[..., r.H :] * (hp - c))

    def scaled_t(self, r: Run, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """For ``back_step_t``: ``dh``, ``F``'s r block, ``[dp_u, dp_c]`` and the gates r, u."""
        H, dh = r.H, at(r.dH, t + 1, 0)  # (K, B, H)
        Fr, Fuc = at(r.F, t).split([H, 2 * H], dim=-1)
        gr, gu = at(r.A, t)[..., : 2 * H].split(H, dim=-1)
        return dh, Fr, Fuc * dh.repeat(1, 1, 2), gr, gu


class GRUPreKernel(_GRUBase):
    """GRU, Collins eqs. (5)-(8), reset before ``W^{ch}``: ``c = s(a_c + (r h_{t-1}) W^{ch})``.

    Two recurrent products per step: ``[a_r, a_u] += h W^{ru}``, then ``(r h) W^{ch}``.
    Backward: ``dp_c = dh (1-u) s'(c)``, ``dp_u = dh (hp - c) u(1-u)``,
    ``d(rh) = dp_c W^{ch}^T``, ``dp_r = d(rh) hp r(1-r)``,
    ``dh_{t-1} += dh u + d(rh) r + [dp_r, dp_u] W^{ru}^T``;
    ``dW^{ch} = (r h)^T dp_c`` with ``r h`` rebuilt in bulk. Saves A = [r, u, c].
    """

    native = "grupre"

    def native_tensors(self, r: Run, direction: str) -> dict[str, Tensor]:
        scratch = r.Hs.new_empty(r.K, r.B, r.H)  # r h_{t-1} / d(r h_{t-1}) per step
        if direction == "bwd" and "dWh" in vars(r):  # r h_{t-1} of a pass, for dW^{ch}
            return {"scratch": scratch, "gscratch": r.Hs.new_empty(r.K, r.F.shape[1], r.B, r.H)}
        return {"scratch": scratch}

    def step(self, r: Run, t: int) -> None:
        hp = r.h[t]
        torch.baddbmm(r.ru[t], hp, r.Wru, out=r.S_ru)  # [a_r, a_u]
        torch.sigmoid(r.S_ru, out=r.ru[t])  # r, u
        rh = torch.mul(r.r[t], hp, out=r.tmp)  # r h_{t-1}
        c = act(torch.baddbmm(r.a_c[t], rh, r.Wc, out=r.S_c), r.s, out=r.c[t])
        torch.sub(hp, c, out=r.tmp)
        torch.addcmul(c, r.u[t], r.tmp, out=r.h[t + 1])  # h_t = c + u (hp - c)

    def prepare_backward(self, r: Run) -> None:
        super().prepare_backward(r)
        r.tmp = r.Hs.new_empty(r.K, r.B, r.H)  # d(r h) of one step

    def factors(self, r: Run, lo: int, hi: int) -> None:
        Fr, slope_r = self.factors_uc(r, lo, hi)
        torch.mul(r.Hs[:, lo:hi], slope_r, out=Fr)  # hp r (1 - r)

    def back_step(self, r: Run, t: int) -> None:
        dh, dhp = r.dh[t + 1], r.dh[t]
        r.dp_uc[t].mul_(dh.unsqueeze(2))  # dp_u, dp_c
        drh = torch.bmm(r.dp_c[t], r.WcT, out=r.tmp)  # d(r h) = dp_c W^{ch}^T
        r.dp_r[t].mul_(drh)  # dp_r
        dhp.addcmul_(dh, r.u[t]).addcmul_(drh, r.r[t]).baddbmm_(r.dp_ru[t], r.WruT)

    def step_t(self, r: Run, t: Tensor) -> None:
        H = r.H
        hp, a, ru = self.gates_t(r, t)
        c = act_t(torch.baddbmm(a[..., 2 * H :], ru[..., :H] * hp, r.Wh[..., 2 * H :]), r.s)
        self.update_t(r, t, hp, ru, c)

    def back_step_t(self, r: Run, t: Tensor) -> None:
        H = r.H
        dh, Fr, dp_uc, gr, gu = self.scaled_t(r, t)
        drh = torch.bmm(dp_uc[..., H:], r.Wh[..., 2 * H :].transpose(1, 2))  # d(r h)
        dp_ru = torch.cat([Fr * drh, dp_uc[..., :H]], dim=-1)  # dp_r, dp_u
        put(r.F, t, torch.cat([dp_ru, dp_uc[..., H:]], dim=-1))
        dhp = at(r.dH, t, 0) + dh * gu + drh * gr
        put(r.dH, t, torch.baddbmm(dhp, dp_ru, r.Wh[..., : 2 * H].transpose(1, 2)), 0)

    def grads(self, r: Run, needs: dict[str, bool]) -> dict[str, Tensor | None]:
        wh_needed = needs["Wh"]
        g = super().grads(r, {**needs, "Wh": False})
        if wh_needed:
            K, T, B, H = r.K, r.T, r.B, r.H
            hp = r.Hs[:, :-1]  # (K, T, B, H)
            R = r.A[..., :H]  # (K, T, B, H)
            rh = (R * hp).view(K, T * B, H)  # (K, T*B, H): r_t h_{t-1}
            dP = r.F.view(K, T * B, 3 * H)  # (K, T*B, 3H)
            dWru = r.bmm(hp.reshape(K, T * B, H).transpose(1, 2), dP[..., : 2 * H])
            dWc = r.bmm(rh.transpose(1, 2), dP[..., 2 * H :])
            g["Wh"] = torch.cat([dWru, dWc], dim=-1)  # (K, H, 3H)
        return g


class GRUPostKernel(_GRUBase):
    """GRU in torch.nn.GRU's convention: ``c = s(a_c + r n)``, ``n = h_{t-1} W^{ch} + b^{hn}``.

    Backward: ``dp_c = dh (1-u) s'(c)`` (input side), ``dn = dp_c r`` (recurrent
    side), ``dp_r = dp_c n r(1-r)``, ``dp_u = dh (hp - c) u(1-u)``,
    ``dh_{t-1} += dh u + [dp_r, dp_u] W^{ru}^T + dn W^{ch}^T``. Saves A = [r, u, c]
    and N = n.
    """

    param_names = ("Wx", "Wh", "b", "fg", "s0", "b_hn")
    native = "grupost"

    def native_tensors(self, r: Run, direction: str) -> dict[str, Tensor]:
        if direction == "fwd":
            return {"N": r.N, "bhn": r.p["b_hn"]}
        return {"N": r.N, "dN": r.dN}

    def state_buffers(self, r: Run) -> None:
        # time-major: each step's product writes a dense (K, B, H) block
        r.N = r.A.new_empty(r.T, r.K, r.B, r.H)  # (T, K, B, H)

    def prepare_forward(self, r: Run) -> None:
        super().prepare_forward(r)
        r.n = r.N.unbind(0)

    def step(self, r: Run, t: int) -> None:
        hp = r.h[t]
        torch.baddbmm(r.ru[t], hp, r.Wru, out=r.S_ru)  # [a_r, a_u]
        torch.sigmoid(r.S_ru, out=r.ru[t])  # r, u
        n = torch.baddbmm(r.p["b_hn"], hp, r.Wc, out=r.n[t])  # n = h W^{ch} + b^{hn}
        c = act(torch.addcmul(r.a_c[t], r.r[t], n, out=r.S_c), r.s, out=r.c[t])
        torch.sub(hp, c, out=r.tmp)
        torch.addcmul(c, r.u[t], r.tmp, out=r.h[t + 1])  # h_t = c + u (hp - c)

    def saved(self, r: Run) -> dict[str, Tensor]:
        return {"A": r.A, "Hs": r.Hs, "N": r.N}

    def grad_buffers(self, r: Run) -> None:
        super().grad_buffers(r)
        r.dN = r.A.new_empty(r.K, r.T, r.B, r.H)  # (K, T, B, H): dL/dn

    def prepare_backward(self, r: Run) -> None:
        super().prepare_backward(r)
        r.dn = r.dN.unbind(1)

    def factors(self, r: Run, lo: int, hi: int) -> None:
        Fr, slope_r = self.factors_uc(r, lo, hi)
        torch.mul(r.N[lo:hi].transpose(0, 1), slope_r, out=Fr)  # n r (1 - r)

    def back_step(self, r: Run, t: int) -> None:
        dh, dhp = r.dh[t + 1], r.dh[t]
        r.dp_uc[t].mul_(dh.unsqueeze(2))  # dp_u, dp_c
        dpc = r.dp_c[t]
        r.dp_r[t].mul_(dpc)  # dp_r = dp_c n r (1 - r)
        dn = torch.mul(dpc, r.r[t], out=r.dn[t])
        dhp.addcmul_(dh, r.u[t]).baddbmm_(r.dp_ru[t], r.WruT).baddbmm_(dn, r.WcT)

    def step_t(self, r: Run, t: Tensor) -> None:
        H = r.H
        hp, a, ru = self.gates_t(r, t)
        n = torch.baddbmm(r.p["b_hn"], hp, r.Wh[..., 2 * H :])  # n = h W^{ch} + b^{hn}
        c = act_t(a[..., 2 * H :] + ru[..., :H] * n, r.s)
        put(r.N, t, n, 0)
        self.update_t(r, t, hp, ru, c)

    def back_step_t(self, r: Run, t: Tensor) -> None:
        H = r.H
        dh, Fr, dp_uc, gr, gu = self.scaled_t(r, t)
        dpc = dp_uc[..., H:]
        dp_ru = torch.cat([Fr * dpc, dp_uc[..., :H]], dim=-1)  # dp_r, dp_u
        dn = dpc * gr
        put(r.F, t, torch.cat([dp_ru, dpc], dim=-1))
        put(r.dN, t, dn)
        dhp = torch.baddbmm(at(r.dH, t, 0) + dh * gu, dp_ru, r.Wh[..., : 2 * H].transpose(1, 2))
        put(r.dH, t, torch.baddbmm(dhp, dn, r.Wh[..., 2 * H :].transpose(1, 2)), 0)

    def grads(self, r: Run, needs: dict[str, bool]) -> dict[str, Tensor | None]:
        wh_needed = needs["Wh"]
        g = super().grads(r, {**needs, "Wh": False})
        K, T, B, H = r.K, r.T, r.B, r.H
        dN = r.dN.view(K, T * B, H)  # (K, T*B, H)
        if wh_needed:
            hpT = r.Hs[:, :-1].reshape(K, T * B, H).transpose(1, 2)  # (K, H, T*B)
            dP = r.F.view(K, T * B, 3 * H)
            g["Wh"] = torch.cat([r.bmm(hpT, dP[..., : 2 * H]), r.bmm(hpT, dN)], dim=-1)
        if needs["b_hn"]:
            g["b_hn"] = dN.sum(1, keepdim=True)  # (K, 1, H)
        return g


class LSTMKernel(SequenceKernel):
    """LSTM, Collins eqs. (9)-(14); blocks [i, f, o, g] (g = c^{in}), state (h, c).

    ``c_t = f c_{t-1} + i g``, ``h_t = o tanh(c_t)``. Backward, with the carried
    ``dc``: ``dc += dh o (1 - tanh^2 c_t)``; ``dp_i = dc g i(1-i)``,
    ``dp_f = dc c_{t-1} f(1-f)``, ``dp_o = dh tanh(c_t) o(1-o)``, ``dp_g = dc i s'(g)``;
    ``dc_{t-1} = dc f``; ``dh_{t-1} += dp W^h^T``. Saves A and Cs = c; ``tanh(c_t)`` is
    recomputed backwards (one more pass over c, N fewer elements saved per layer).
    """

    n_gates = 4
    native = "lstm"

    def native_tensors(self, r: Run, direction: str) -> dict[str, Tensor]:
        if direction == "fwd":
            return {"Cs": r.Cs}
        return {"Cs": r.Cs, "carry": r.dc}

    def state_buffers(self, r: Run) -> None:
        r.Cs = r.A.new_empty(r.K, r.T + 1, r.B, r.H)  # (K, T+1, B, H): c_{-1}, c_0, ...
        r.Cs[:, 0] = r.p["s0"][..., r.H :]

    def prepare_forward(self, r: Run) -> None:
        H = r.H
        r.cs = r.Cs.unbind(1)
        r.ifo = r.A[..., : 3 * H].unbind(1)
        r.i, r.f, r.o, r.g = blocks(r.A, H)
        r.S_ifo, r.S_g = r.S.split([3 * H, H], dim=-1)

    def step(self, r: Run, t: int) -> None:
        torch.baddbmm(r.a[t], r.h[t], r.Wh, out=r.S)  # [a_i, a_f, a_o, a_g]
        torch.sigmoid(r.S_ifo, out=r.ifo[t])
        g = act(r.S_g, r.s, out=r.g[t])
        c = torch.mul(r.f[t], r.cs[t], out=r.cs[t + 1]).addcmul_(r.i[t], g)  # c_t
        tc = act(c, "tanh", out=r.tmp)  # tanh(c_t), not saved
        torch.mul(r.o[t], tc, out=r.h[t + 1])  # h_t = o tanh(c_t)

    def saved(self, r: Run) -> dict[str, Tensor]:
        return {"A": r.A, "Hs": r.Hs, "Cs": r.Cs}

    def grad_buffers(self, r: Run) -> None:
        super().grad_buffers(r)
        r.dc = r.A.new_zeros(r.K, r.B, r.H)  # dL/dc carried backwards

    def prepare_backward(self, r: Run) -> None:
        super().prepare_backward(r)
        H = r.H
        r.Gc = r.A.new_empty(r.K, r.T, r.B, H)  # (K, T, B, H): o (1 - tanh^2 c_t)
        r.gc, r.f = r.Gc.unbind(1), r.A[..., H : 2 * H].unbind(1)
        r.dp_if = r.F[..., : 2 * H].unflatten(-1, (2, H)).unbind(1)  # (K, B, 2, H)
        _, _, r.dp_o, r.dp_g = blocks(r.F, H)

    def factors(self, r: Run, lo: int, hi: int) -> None:
        gi, gf, go, gg = r.A[:, lo:hi].split(r.H, dim=-1)  # (K, n, B, H): i, f, o, g
        Fi, Ff, Fo, Fg = r.F[:, lo:hi].split(r.H, dim=-1)
        c = r.Cs[:, lo + 1 : hi + 1]  # (K, n, B, H): c_t
        tc = act(c, "tanh", out=torch.empty(c.shape, dtype=c.dtype, device=c.device))
        torch.mul(gg, _slope(gi), out=Fi)  # g i (1 - i)
        torch.mul(r.Cs[:, lo:hi], _slope(gf), out=Ff)  # c_{t-1} f (1 - f)
        torch.mul(tc, _slope(go), out=Fo)  # tanh(c_t) o (1 - o)
        torch.mul(gi, dact(gg, r.s), out=Fg)  # i s'(g)
        torch.mul(go, dact(tc, "tanh"), out=r.Gc[:, lo:hi])  # o (1 - tanh^2 c_t)

    def back_step(self, r: Run, t: int) -> None:
        dh, dc = r.dh[t + 1], r.dc
        dc.addcmul_(dh, r.gc[t])  # dL/dc_t, total
        r.dp_if[t].mul_(dc.unsqueeze(2))  # dp_i, dp_f
        r.dp_o[t].mul_(dh)
        r.dp_g[t].mul_(dc)
        dc.mul_(r.f[t])  # dL/dc_{t-1} (direct part)
        r.dh[t].baddbmm_(r.dp[t], r.WhT)

    def step_t(self, r: Run, t: Tensor) -> None:
        H, hp = r.H, at(r.Hs, t)  # (K, B, H)
        pre = torch.baddbmm(at(r.A, t), hp, r.Wh)  # (K, B, 4H): [a_i, a_f, a_o, a_g]
        ifo, g = torch.sigmoid(pre[..., : 3 * H]), act_t(pre[..., 3 * H :], r.s)
        i, f, o = ifo.split(H, dim=-1)
        c = f * at(r.Cs, t) + i * g  # c_t
        put(r.A, t, torch.cat([ifo, g], dim=-1))
        put(r.Cs, t + 1, c)
        put(r.Hs, t + 1, o * torch.tanh(c))

    def back_step_t(self, r: Run, t: Tensor) -> None:
        H, dh = r.H, at(r.dH, t + 1, 0)  # (K, B, H)
        dc = r.dc + dh * at(r.Gc, t)  # dL/dc_t, total
        Fif, Fo, Fg = at(r.F, t).split([2 * H, H, H], dim=-1)
        dp = torch.cat([Fif * dc.repeat(1, 1, 2), Fo * dh, Fg * dc], dim=-1)  # (K, B, 4H)
        put(r.F, t, dp)
        r.dc.copy_(dc * at(r.A, t)[..., H : 2 * H])  # dL/dc_{t-1} (direct part)
        put(r.dH, t, torch.baddbmm(at(r.dH, t, 0), dp, r.Wh.transpose(1, 2)), 0)

    def grad_s0(self, r: Run) -> Tensor:
        dh0 = r.dH[0].sum(1, keepdim=True)  # (K, 1, H)
        return torch.cat([dh0, r.dc.sum(1, keepdim=True)], dim=-1)  # (K, 1, 2H)


class PlusRNNKernel(SequenceKernel):
    """+RNN, Collins eqs. (15)-(20); blocks [y_in, h_in, g_y, g_h]; input width = H.

    ``y_t = y_in + g_y (x_t - y_in)``, ``h_t = h_in + g_h (h_{t-1} - h_in)``, with
    ``y_in = relu(.)``, ``h_in = tanh(.)``. The layer outputs y; h is carried.
    Backward: ``dp_yin = dy (1-g_y)[y_in>0]``, ``dp_gy = dy (x - y_in) g_y(1-g_y)``,
    ``dp_hin = dh (1-g_h)(1-h_in^2)``, ``dp_gh = dh (hp - h_in) g_h(1-g_h)``,
    ``dh_{t-1} = dh g_h + dp W^h^T``, ``dx = dp W^x^T + dy g_y``. Saves A and Hs
    (the output Ys is not needed).
    """

    n_gates = 4
    native = "plusrnn"
    native_grads = ("Wh", "Wx")  # dx adds the direct path dy g_y (grads)

    def native_tensors(self, r: Run, direction: str) -> dict[str, Tensor]:
        if direction == "fwd":
            return {"X": r.x, "Ys": r.Ys}
        return {"X": r.x, "dY": r.dY, "carry": r.dhc}

    def state_buffers(self, r: Run) -> None:
        r.Ys = r.A.new_empty(r.K, r.T, r.B, r.H)  # (K, T, B, H): the depth output

    def prepare_forward(self, r: Run) -> None:
        H = r.H
        r.ys, r.xs = r.Ys.unbind(1), r.x.unbind(1)
        r.yin, r.hin, r.gy, r.gh = blocks(r.A, H)
        r.gates = r.A[..., 2 * H :].unbind(1)
        r.S_yin, r.S_hin, r.S_gates = r.S.split([H, H, 2 * H], dim=-1)

    def step(self, r: Run, t: int) -> None:
        hp = r.h[t]
        torch.baddbmm(r.a[t], hp, r.Wh, out=r.S)
        yin = act(r.S_yin, "relu", out=r.yin[t])
        hin = act(r.S_hin, "tanh", out=r.hin[t])
        torch.sigmoid(r.S_gates, out=r.gates[t])  # g_y, g_h
        torch.sub(r.xs[t], yin, out=r.tmp)
        torch.addcmul(yin, r.gy[t], r.tmp, out=r.ys[t])  # y_t
        torch.sub(hp, hin, out=r.tmp)
        torch.addcmul(hin, r.gh[t], r.tmp, out=r.h[t + 1])  # h_t

    def output(self, r: Run) -> Tensor:
        return r.Ys

    def init_grad(self, r: Run, dout: Tensor) -> None:
        # dout is dL/dy; dL/dh only arrives through the recurrence: one carried buffer
        r.dy = dout.unbind(1)
        r.dY = dout
        r.dhc = dout.new_zeros(r.K, r.B, r.H)

    def prepare_backward(self, r: Run) -> None:
        super().prepare_backward(r)
        H = r.H
        r.gh = r.A[..., 3 * H :].unbind(1)
        F22 = r.F.unflatten(-1, (2, 2, H))  # (K, T, B, 2, 2, H): [j, k] = block 2j + k
        r.dp_y = F22[..., 0, :].unbind(1)  # (K, B, 2, H): y_in, g_y (scale with dy)
        r.dp_h = F22[..., 1, :].unbind(1)  # (K, B, 2, H): h_in, g_h (scale with dh)

    def factors(self, r: Run, lo: int, hi: int) -> None:
        Yin, Hin, Gy, Gh = r.A[:, lo:hi].split(r.H, dim=-1)  # (K, n, B, H) each
        Fy, Fh, Fgy, Fgh = r.F[:, lo:hi].split(r.H, dim=-1)
        torch.mul(_one_minus(Gy), dact(Yin, "relu"), out=Fy)  # (1 - g_y) [y_in > 0]
        torch.mul(_one_minus(Gh), dact(Hin, "tanh"), out=Fh)  # (1 - g_h) (1 - h_in^2)
        torch.sub(r.x[:, lo:hi], Yin, out=Fgy).mul_(_slope(Gy))  # (x - y_in) g_y (1 - g_y)
        torch.sub(r.Hs[:, lo:hi], Hin, out=Fgh).mul_(_slope(Gh))  # (hp - h_in) g_h (1 - g_h)

    def back_step(self, r: Run, t: int) -> None:
        dh = r.dhc
        r.dp_y[t].mul_(r.dy[t].unsqueeze(2))
        r.dp_h[t].mul_(dh.unsqueeze(2))
        dh.mul_(r.gh[t]).baddbmm_(r.dp[t], r.WhT)  # dL/dh_{t-1}

    def step_t(self, r: Run, t: Tensor) -> None:
        H, hp = r.H, at(r.Hs, t)  # (K, B, H)
        pre = torch.baddbmm(at(r.A, t), hp, r.Wh)  # (K, B, 4H)
        yin, hin = act_t(pre[..., :H], "relu"), act_t(pre[..., H : 2 * H], "tanh")
        gates = torch.sigmoid(pre[..., 2 * H :])  # g_y, g_h
        gy, gh = gates.split(H, dim=-1)
        put(r.A, t, torch.cat([yin, hin, gates], dim=-1))
        put(r.Ys, t, yin + gy * (at(r.x, t) - yin))  # y_t
        put(r.Hs, t + 1, hin + gh * (hp - hin))  # h_t

    def back_step_t(self, r: Run, t: Tensor) -> None:
        dy, dh = at(r.dY, t), r.dhc  # (K, B, H)
        Fy, Fh, Fgy, Fgh = at(r.F, t).split(r.H, dim=-1)
        dp = torch.cat([Fy * dy, Fh * dh, Fgy * dy, Fgh * dh], dim=-1)  # (K, B, 4H)
        put(r.F, t, dp)
        gh = at(r.A, t)[..., 3 * r.H :]
        r.dhc.copy_(torch.baddbmm(dh * gh, dp, r.Wh.transpose(1, 2)))  # dL/dh_{t-1}

    def grads(self, r: Run, needs: dict[str, bool]) -> dict[str, Tensor | None]:
        g = super().grads(r, {**needs, "x": False})
        if needs["x"]:
            K, T, B = r.K, r.T, r.B
            dP = r.F.view(K, T * B, -1)  # (K, T*B, 4H)
            direct = (r.dY * r.A[..., 2 * r.H : 3 * r.H]).reshape(K, T * B, -1)  # dy g_y
            g["x"] = torch.baddbmm(direct, dP, r.p["Wx"].transpose(1, 2)).view(r.x.shape)
        return g

    def grad_s0(self, r: Run) -> Tensor:
        return r.dhc.sum(1, keepdim=True)


class MinimalRNNKernel(SequenceKernel):
    """minimalRNN, Chen, Pennington & Schoenholz 2018 eqs. (3)-(5).

    ``z = tanh(x W^z + b^z)``, ``u = sigma(h_{t-1} W^u + z V^u + b^u (+ b^{fg}))``,
    ``h_t = z + u (h_{t-1} - z)``. ``z`` and the gate's input part are two
    products over all steps; per step one recurrent product. Backward per step:
    ``dp_u = dh (hp - z) u(1-u)``, ``dh_{t-1} += dh u + dp_u W^u^T``; after the
    loop ``dz = dh (1-u) + dp_u V^u^T`` and ``dz_pre = dz (1 - z^2)`` for all steps.
    Saves A = u and Z = z.
    """

    param_names = ("Wx", "Wh", "b", "fg", "s0", "bz", "Vu")
    n_gates = 1
    native = "minimalrnn"
    native_grads = ("Wh",)  # the input side runs through z (grads)
    # inputs whose gradient runs through z (after the time loop)
    input_names: ClassVar[tuple[str, ...]] = ("x", "Wx", "bz", "Vu")

    def project(self, r: Run) -> Tensor:
        K, T, B = r.K, r.T, r.B
        x2 = r.x.reshape(K, T * B, -1)  # (K, T*B, I)
        Z = torch.baddbmm(r.p["bz"], x2, r.p["Wx"])  # (K, T*B, H)
        act(Z, "tanh", out=Z)
        r.Z = Z.view(K, T, B, -1)  # (K, T, B, H)
        return self.with_bias(r, Z, r.p["Vu"], r.p["b"] + r.p["fg"])  # (K, T, B, H)

    def prepare_forward(self, r: Run) -> None:
        r.z = r.Z.unbind(1)

    def native_tensors(self, r: Run, direction: str) -> dict[str, Tensor]:
        return {"Z": r.Z}

    def step(self, r: Run, t: int) -> None:
        hp, z = r.h[t], r.z[t]
        u = torch.sigmoid(torch.baddbmm(r.a[t], hp, r.Wh, out=r.S), out=r.a[t])
        torch.sub(hp, z, out=r.tmp)
        torch.addcmul(z, u, r.tmp, out=r.h[t + 1])  # h_t = z + u (hp - z)

    def saved(self, r: Run) -> dict[str, Tensor]:
        return {"A": r.A, "Hs": r.Hs, "Z": r.Z}

    def prepare_backward(self, r: Run) -> None:
        super().prepare_backward(r)
        r.u = r.A.unbind(1)

    def factors(self, r: Run, lo: int, hi: int) -> None:
        U = r.A[:, lo:hi]  # (K, n, B, H)
        torch.sub(r.Hs[:, lo:hi], r.Z[:, lo:hi], out=r.F[:, lo:hi]).mul_(_slope(U))

    def back_step(self, r: Run, t: int) -> None:
        dh = r.dh[t + 1]
        dp = r.dp[t].mul_(dh)
        r.dh[t].addcmul_(dh, r.u[t]).baddbmm_(dp, r.WhT)

    def step_t(self, r: Run, t: Tensor) -> None:
        hp, z = at(r.Hs, t), at(r.Z, t)  # (K, B, H)
        u = torch.sigmoid(torch.baddbmm(at(r.A, t), hp, r.Wh))
        put(r.A, t, u)
        put(r.Hs, t + 1, z + u * (hp - z))

    def back_step_t(self, r: Run, t: Tensor) -> None:
        dh = at(r.dH, t + 1, 0)  # (K, B, H)
        dp = at(r.F, t) * dh
        put(r.F, t, dp)
        put(r.dH, t, torch.baddbmm(at(r.dH, t, 0) + dh * at(r.A, t), dp, r.Wh.transpose(1, 2)), 0)

    def grads(self, r: Run, needs: dict[str, bool]) -> dict[str, Tensor | None]:
        g = super().grads(r, {**needs, "x": False, "Wx": False})
        if not any(needs[n] for n in self.input_names):
            return g
        K, T, B, H = r.K, r.T, r.B, r.H
        dP = r.F.view(K, T * B, H)  # (K, T*B, H): dL/da_u
        Z = r.Z.view(K, T * B, H)  # (K, T*B, H)
        if needs["Vu"]:
            g["Vu"] = r.bmm(Z.transpose(1, 2), dP)  # (K, H, H)
        # dz = dh (1 - u) + dp_u V^u^T, then through tanh: dz_pre = dz (1 - z^2)
        dY = r.dH[1:].transpose(0, 1)  # (K, T, B, H): the full dL/dh_t
        dz = torch.addcmul(dY, dY, r.A, value=-1.0, out=torch.empty_like(r.A))
        dz = dz.view(K, T * B, H)
        dz.baddbmm_(dP, r.p["Vu"].transpose(1, 2)).mul_(dact(Z, "tanh"))  # (K, T*B, H)
        if needs["Wx"]:
            g["Wx"] = r.bmm(r.x.reshape(K, T * B, -1).transpose(1, 2), dz)  # (K, I, H)
        if needs["bz"]:
            g["bz"] = dz.sum(1, keepdim=True)
        if needs["x"]:
            g["x"] = r.bmm(dz, r.p["Wx"].transpose(1, 2)).view(r.x.shape)
        return g
