"""Shared machinery of the fused kernels: pointwise helpers, the base kernel, one Function.

A :class:`SequenceKernel` runs one layer over a whole sequence for all K members
of a pack. The base owns what every cell shares:

1. forward: the input projection of all T steps as one batched product, the state
   buffers, and the time loop that calls the cell's :meth:`~SequenceKernel.step`;
2. backward: the incoming gradient buffer, the reverse time loop (in chunks of
   steps) that calls the cell's :meth:`~SequenceKernel.factors` and
   :meth:`~SequenceKernel.back_step`, and the weight-gradient products, each one
   batched product over all ``T*B`` rows after the loop.

A cell declares its pointwise forward (``step``), the local derivatives of its
step equations for a chunk of steps at once (``factors``, bulk tensor math on the
saved activations) and its pointwise backward (``back_step``). The layout and the
memory each cell saves are documented in :mod:`rnnsweep.kernels`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnsweep.kernels import _compiled, _native
from rnnsweep.kernels._ops import Run, act, blocks, dact

if TYPE_CHECKING:
    from rnnsweep.cells.base import Params
    from rnnsweep.kernels.loops import TimeLoop

__all__ = ["LayerFunction", "Run", "SequenceKernel", "act", "blocks", "dact"]  # re-exported

# Bytes of F per chunk of local-derivative passes on the CPU: about an L2 cache.
_CHUNK_BYTES = 1 << 20


# ---- the base kernel ----------------------------------------------------------------------


class SequenceKernel:
    """One cell's layer over a sequence: forward recurrence, hand-derived backward through time.

    Subclasses set ``n_gates`` and implement ``step``, ``factors`` and ``back_step``;
    they may extend the other hooks (``project``, ``state_buffers``, ``prepare_forward``,
    ``saved``, ``output``, ``init_grad``, ``grad_buffers``, ``prepare_backward``,
    ``grads``, ``grad_s0``). For the native loop a cell names its C functions
    (``native``) and any buffers beyond the common ones (``native_tensors``); the
    ``prepare_*`` hooks and ``step``/``factors``/``back_step`` serve the torch-op loop only.
    """

    # The layer tensors the Function receives after ``x``, in this order.
    param_names: ClassVar[tuple[str, ...]] = ("Wx", "Wh", "b", "fg", "s0")
    n_gates: ClassVar[int]
    # The C loops ``{native}_fwd``/``{native}_bwd`` of native/layers.c (see _native).
    native: ClassVar[str]
    # Gradients the native backward forms inside its time loop, from each chunk of
    # steps' rows while they are in cache (the torch loop forms them in ``grads``);
    # the bias gradients (column sums of F) for every cell.
    native_grads: ClassVar[tuple[str, ...]] = ("Wh", "Wx", "x")

    # ---- forward ---------------------------------------------------------------------------

    def project(self, r: Run) -> Tensor:
        """``x_t W^x + b + b^{fg}`` for all steps, one batched product: ``(K, T, B, G*H)``.

        For the native loop, only the buffer: the C code forms each member's ``x W^x``
        a pass of steps at a time inside its time loop (so the steps find it in cache)
        and adds the bias per step (see :meth:`with_bias`). A forward whose buffers no
        backward will read (``r.saves`` false: an evaluation) holds one pass of ``A``
        per member, a ring the loop refills, instead of all T steps.
        """
        if r.native:
            r.bias = r.p["b"] + r.p["fg"]  # (K, 1, G*H)
            r.Xin, r.Wx = r.x, r.p["Wx"]
            steps = r.T if r.saves else min(r.T, _native.grad_pass_steps(r.B))
            return r.x.new_empty(r.K, steps, r.B, r.p["Wx"].shape[-1])
        x2 = r.x.reshape(r.K, r.T * r.B, -1)  # (K, T*B, I)
        return self.with_bias(r, x2, r.p["Wx"], r.p["b"] + r.p["fg"])

    def with_bias(self, r: Run, x2: Tensor, W: Tensor, bias: Tensor) -> Tensor:
        """``x2 W + bias`` as ``(K, T, B, .)``. For the native loop the bias is left out
        and kept in ``r.bias``: the C code adds it to each step's rows while they are in
        cache, where broadcasting it over all ``T*B`` rows first costs a pass through memory.
        """
        if r.native:
            r.bias = bias  # (K, 1, G*H)
            A = r.bmm(x2, W)
        else:
            A = torch.baddbmm(bias, x2, W)  # (K, T*B, G*H)
        return A.view(r.K, r.T, r.B, -1)  # (K, T, B, G*H)

    def state_buffers(self, r: Run) -> None:
        """Allocate the cell's extra forward buffers (both loops fill them, the saved ones)."""

    def prepare_forward(self, r: Run) -> None:
        """The torch-op loop only: make the cell's per-step views and scratch."""

    def step(self, r: Run, t: int) -> None:
        """Step t: read ``h_{t-1} = r.h[t]``, write ``h_t`` into ``r.h[t + 1]``."""
        raise NotImplementedError

    def output(self, r: Run) -> Tensor:
        """The layer's depth output ``(K, T, B, H)``: ``h_0 .. h_{T-1}`` (a view of Hs)."""
        return r.Hs[:, 1:]

    def saved(self, r: Run) -> dict[str, Tensor]:
        """Intermediates the backward needs (besides the inputs)."""
        return {"A": r.A, "Hs": r.Hs}

    def forward(
        self, loop: TimeLoop, s: str | Tensor, x: Tensor, p: Params, *, saves: bool = True
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``(K, T, B, I) -> (K, T, B, H)`` plus the tensors to save for backward.

        ``saves=False``: no backward will follow (inference), so the native loop may keep
        less than the backward would need; the second result is then not for a backward.
        """
        r = Run(loop, s, x, p)
        r.saves = saves
        # 1. input side of every step at once
        r.A = self.project(r)  # (K, T, B, G*H)
        # 2. recurrent state: h_{-1} is the learned s0, broadcast over the batch
        r.Hs = x.new_empty(r.K, r.T + 1, r.B, r.H)  # (K, T+1, B, H)
        r.Hs[:, 0] = p["s0"][..., : r.H]
        self.state_buffers(r)
        # 3. the recurrence: per step one batched product (two for the Collins GRU)
        if r.native:
            self.run_native(r, "fwd")
            return self.output(r), self.saved(r)
        r.a, r.h = r.A.unbind(1), r.Hs.unbind(1)
        # dense scratch for the step's product: torch's CPU baddbmm into a strided
        # destination falls back to one addmm per member; the pointwise ops then
        # write the activations into A with out=, so the detour costs no extra pass
        r.S = x.new_empty(r.K, r.B, r.A.shape[-1])  # (K, B, G*H)
        r.tmp = x.new_empty(r.K, r.B, r.H)
        self.prepare_forward(r)
        step = _compiled.stepper(self, "fwd", self.step, r.T, x.device, compiled=loop.compiled)
        for t in range(r.T):
            step(r, t)
        return self.output(r), self.saved(r)

    # ---- the native CPU loops ----------------------------------------------------------------

    def native_tensors(self, r: Run, direction: str) -> dict[str, Tensor]:
        """The cell's buffers beyond ``Hs, Wh, A`` (and ``F, dH`` backwards), by ``Layer`` field."""
        return {}

    def run_native(self, r: Run, direction: str) -> None:
        """The whole time loop of ``direction`` ("fwd" or "bwd") as one C call."""
        # the vanilla RNN saves no A; the +RNN carries dL/dh in a (K, B, H) buffer, not dH
        # (Xin is set where a loop reads it: project, native_grad_buffers)
        bwd = ("F", "dH", "dWh", "dWx", "dX", "WxT", "gscratch", "db")
        names = ("Hs", "Wh", "A", "Xin") + (bwd if direction == "bwd" else ("bias", "Wx"))
        tensors = {name: vars(r)[name] for name in names if name in vars(r)}
        if direction == "bwd":  # dense, so each step's product reads it untransposed
            tensors["WhT"] = r.Wh.transpose(1, 2).contiguous()
        tensors |= self.native_tensors(r, direction)
        _native.run(
            f"{self.native}_{direction}", r.s, (r.K, r.T, r.B, r.H), tensors, own_gemm=r.own_gemm
        )

    # ---- backward --------------------------------------------------------------------------

    def init_grad(self, r: Run, dout: Tensor) -> None:
        """``r.dH``: the output gradient in rows 1..T, zero in row 0 (``h_{-1}``).

        Time-major, so that ``dh_{t-1} += dp_t W^h^T`` accumulates into a dense
        ``(K, B, H)`` block: torch's CPU ``baddbmm_`` into a strided destination
        falls back to one ``addmm_`` per member (measured 2x slower at K = 32).
        The transposing copy of ``dout`` costs nothing extra: it must be copied anyway.
        """
        r.dH = dout.new_empty(r.T + 1, r.K, r.B, r.H)  # (T+1, K, B, H)
        r.dH[0].zero_()
        r.dH[1:].copy_(dout.transpose(0, 1))
        r.dh = r.dH.unbind(0)

    def grad_buffers(self, r: Run) -> None:
        """Allocate ``r.F`` ``(K, T, B, G*H)``, ``dL/d(pre)`` of every step, and the cell's
        other backward buffers (both loops fill them).

        ``F`` is fresh memory (the saved activations stay intact, so a second
        backward with ``retain_graph=True`` works). The torch-op loop first fills it
        with the local derivatives (``factors``), then multiplies it in place by the
        incoming gradient (``back_step``).
        """
        r.F = r.A.new_empty(r.K, self.f_steps(r), r.B, r.A.shape[-1])  # (K, T, B, G*H)

    def f_steps(self, r: Run) -> int:
        """Steps of ``F`` to hold: T, or one weight-gradient pass where the native loop
        forms every gradient that reads ``F`` (it then reuses the pass's block of ``F``:
        a pass through memory less per layer, and the backward's scratch shrinks from
        ``K T B G H`` to ``K 8 B G H`` elements at B = 32)."""
        if r.native and {"Wh", "Wx", "x"} <= set(self.native_grads):
            return min(r.T, _native.grad_pass_steps(r.B))
        return r.T

    def native_grad_buffers(self, r: Run, needs: dict[str, bool]) -> dict[str, Tensor]:
        """The buffers the native backward forms ``native_grads`` in, by input name.

        Weight gradients start at zero (the loop adds each chunk of rows); ``dx`` is
        written whole. The layer input is read from ``Xin`` as in the forward.
        """
        done: dict[str, Tensor] = {}
        if needs["Wh"] and "Wh" in self.native_grads:
            done["Wh"] = r.dWh = r.Wh.new_zeros(r.Wh.shape)  # (K, H, G*H), dense
        if needs["Wx"] and "Wx" in self.native_grads:
            done["Wx"] = r.dWx = r.Wh.new_zeros(r.p["Wx"].shape)  # (K, I, G*H), dense
        if needs["b"] or needs["fg"]:  # both are the column sums of F
            r.db = r.F.new_zeros(r.K, 1, r.F.shape[-1])  # (K, 1, G*H)
            done |= {name: r.db for name in ("b", "fg") if needs[name]}
        if needs["x"] and "x" in self.native_grads:
            done["x"] = r.dX = torch.empty_like(r.x, memory_format=torch.contiguous_format)
            r.WxT = r.p["Wx"].transpose(1, 2).contiguous()  # (K, G*H, I)
        if done.keys() & {"Wx", "x"}:
            r.Xin = r.x
        return done

    def prepare_backward(self, r: Run) -> None:
        """The torch-op loop only: make the per-step views ``back_step`` uses."""

    def factors(self, r: Run, lo: int, hi: int) -> None:
        """Fill ``r.F[:, lo:hi]``: the local derivatives of steps lo..hi-1, in bulk."""
        raise NotImplementedError

    def chunk_steps(self, r: Run) -> int:
        """Steps per ``factors`` pass: all T off the CPU (fewest kernel launches); on the
        CPU about ``_CHUNK_BYTES`` of ``F``, so the pass's operands and temporaries stay
        in cache and the loop finds ``F`` there. One pass over all T measured 5-10%
        slower per ugrnn/lstm fwd+bwd at K = 32, B = 32, H = 64, T = 50 (each pass went
        to memory; a noisy shared 2-core machine, so take the figure loosely).
        """
        if r.F.device.type != "cpu":
            return r.T
        step_bytes = r.F[:, 0].numel() * r.F.element_size()
        return max(1, min(r.T, _CHUNK_BYTES // max(step_bytes, 1)))

    def back_step(self, r: Run, t: int) -> None:
        """Step t backwards: ``r.dp[t] <- dL/d(pre_t)``; add ``dL/dh_{t-1}`` into ``r.dh[t]``."""
        raise NotImplementedError

    # ---- the compiled forms (the compiled loop, see _compiled) ------------------------------

    def step_t(self, r: Run, t: Tensor) -> None:
        """:meth:`step` as pure tensor math on whole buffers at the tensor index ``t``."""
        raise NotImplementedError

    def back_step_t(self, r: Run, t: Tensor) -> None:
        """:meth:`back_step` as pure tensor math on whole buffers at the tensor index ``t``."""
        raise NotImplementedError

    def backward(
        self,
        loop: TimeLoop,
        s: str | Tensor,
        x: Tensor,
        p: Params,
        saved: dict[str, Tensor],
        dout: Tensor,
        needs: dict[str, bool],
    ) -> dict[str, Tensor | None]:
        """Gradients of every input named in ``needs`` (``x`` and ``param_names``)."""
        r = Run(loop, s, x, p, **saved)
        self.init_grad(r, dout)
        self.grad_buffers(r)
        if r.native:
            done = self.native_grad_buffers(r, needs)
            self.run_native(r, "bwd")
            g = self.grads(r, {**needs, **dict.fromkeys(done, False)})
            return g | done
        r.h, r.dp = r.Hs.unbind(1), r.F.unbind(1)
        r.WhT = r.Wh.transpose(1, 2)  # (K, G*H, H)
        self.prepare_backward(r)
        back_step = _compiled.stepper(
            self, "bwd", self.back_step, r.T, x.device, compiled=loop.compiled
        )
        # backwards in chunks of steps: the chunk's local derivatives in bulk, then
        # per step pointwise math and dh_{t-1} += dpre_t W^h^T (one batched product)
        chunk = self.chunk_steps(r)
        for hi in range(r.T, 0, -chunk):
            lo = max(0, hi - chunk)
            self.factors(r, lo, hi)
            for t in range(hi - 1, lo - 1, -1):
                back_step(r, t)
        return self.grads(r, needs)

    def grads(self, r: Run, needs: dict[str, bool]) -> dict[str, Tensor | None]:
        """Weight, bias, initial-state and input gradients: single products over T*B rows."""
        K, T, B, H = r.K, r.T, r.B, r.H
        g: dict[str, Tensor | None] = dict.fromkeys(needs)
        if needs["s0"]:
            g["s0"] = self.grad_s0(r)
        if not any(needs[name] for name in ("Wh", "Wx", "b", "fg", "x")):
            return g  # e.g. the native loop formed them all (F may hold one pass only)
        dP = r.F.view(K, T * B, -1)  # (K, T*B, G*H)
        if needs["Wh"]:
            hp = r.Hs[:, :-1].reshape(K, T * B, H)  # (K, T*B, H): h_{t-1}, a view
            g["Wh"] = r.bmm(hp.transpose(1, 2), dP)  # (K, H, G*H)
        if needs["Wx"]:
            x2 = r.x.reshape(K, T * B, -1)  # (K, T*B, I)
            g["Wx"] = r.bmm(x2.transpose(1, 2), dP)  # (K, I, G*H)
        if needs["b"] or needs["fg"]:
            db = dP.sum(1, keepdim=True)  # (K, 1, G*H)
            g["b"] = db if needs["b"] else None
            g["fg"] = db if needs["fg"] else None
        if needs["x"]:
            g["x"] = r.bmm(dP, r.p["Wx"].transpose(1, 2)).view(r.x.shape)  # (K, T, B, I)
        return g

    def grad_s0(self, r: Run) -> Tensor:
        """``dL/ds0`` ``(K, 1, S*H)``: the gradient that reached ``h_{-1}``, summed over B."""
        return r.dH[0].sum(1, keepdim=True)


# ---- the autograd Function ----------------------------------------------------------------


class LayerFunction(torch.autograd.Function):
    """``apply(kernel, s, x, *params)``: a fused layer with a hand-derived backward.

    ``params`` are the layer tensors named by ``kernel.param_names``. Forward runs
    without autograd tracking (raw tensor math on preallocated buffers); backward
    calls ``kernel.backward`` and computes only the gradients autograd asks for.
    Double backward (``create_graph=True``) raises instead of returning wrong
    second derivatives.
    """

    @staticmethod
    def forward(
        ctx: Any,
        kernel: SequenceKernel,
        loop: TimeLoop,
        s: str | Tensor,
        x: Tensor,
        *params: Tensor,
    ) -> Tensor:
        p = dict(zip(kernel.param_names, params, strict=True))
        out, saved = kernel.forward(loop, s, x, p)
        ctx.kernel, ctx.loop, ctx.s, ctx.saved_keys = kernel, loop, s, tuple(saved)
        ctx.save_for_backward(x, *params, *saved.values())
        return out

    @staticmethod
    @once_differentiable  # the hand-written backward is not itself differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        kernel: SequenceKernel = ctx.kernel
        names = kernel.param_names
        x, *rest = ctx.saved_tensors
        p = dict(zip(names, rest[: len(names)], strict=True))
        saved = dict(zip(ctx.saved_keys, rest[len(names) :], strict=True))
        needs = dict(zip(("x", *names), ctx.needs_input_grad[3:], strict=True))
        g = kernel.backward(ctx.loop, ctx.s, x, p, saved, dout, needs)
        return (None, None, None, g["x"], *(g[n] for n in names))
