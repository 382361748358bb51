"""Public entry points: a fused layer and a fused whole model (see :mod:`rnnsweep.kernels`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from rnnsweep.cells.base import for_cell
from rnnsweep.cells.zoo import (
    GRUCell,
    GRUTorchCell,
    LSTMCell,
    MinimalRNNCell,
    PlusRNNCell,
    RNNCell,
    UGRNNCell,
)
from rnnsweep.kernels import _native
from rnnsweep.kernels._base import LayerFunction, SequenceKernel
from rnnsweep.kernels._zoo import (
    GRUPostKernel,
    GRUPreKernel,
    LSTMKernel,
    MinimalRNNKernel,
    PlusRNNKernel,
    RNNKernel,
    UGRNNKernel,
)

if TYPE_CHECKING:
    from rnnsweep.cells.base import Cell, Params
    from rnnsweep.cells.stack import PackedRNN
    from rnnsweep.kernels.loops import TimeLoop

__all__ = ["fused_forward", "fused_layer_forward", "kernel_for"]

# Cell class -> kernel. IRNNCell finds RNNCell's kernel through its MRO; GRUTorchCell
# (a GRUCell subclass) is listed, so it is found before GRUCell.
_KERNELS: dict[type, SequenceKernel] = {
    RNNCell: RNNKernel(),
    UGRNNCell: UGRNNKernel(),
    GRUTorchCell: GRUPostKernel(),
    GRUCell: GRUPreKernel(),
    LSTMCell: LSTMKernel(),
    PlusRNNCell: PlusRNNKernel(),
    MinimalRNNCell: MinimalRNNKernel(),
}


def kernel_for(cell: Cell) -> SequenceKernel:
    """The fused kernel of ``cell`` (nearest registered class in its MRO); ValueError if none."""
    return for_cell(_KERNELS, cell, "fused kernel")


def _default_loop(x: Tensor) -> TimeLoop:
    """The loop for library callers that pass none (the environment's, else ``auto``'s);
    commands resolve a :class:`~rnnsweep.backend.Backend` once and pass its loop."""
    from rnnsweep.backend import default_loop

    return default_loop(x.device, x.dtype)


def fused_layer_forward(
    cell: Cell, p: Params, x: Tensor, s: str | Tensor, *, loop: TimeLoop | None = None
) -> Tensor:
    """Fused drop-in for ``cell.layer_forward(p, x, s)``: ``(K, T, B, I) -> (K, T, B, H)``.

    Same equations, parameters and gradients as the per-step reference; the
    output may be a non-contiguous view (K-major, with a gap for ``h_{-1}``).
    ``loop`` is the time loop (:mod:`rnnsweep.kernels.loops`; default: ``auto``'s choice).
    """
    loop = loop or _default_loop(x)
    kernel = kernel_for(cell)
    assert x.dim() == 4, f"expected x of shape (K, T, B, I), got {tuple(x.shape)}"
    if "P" in p:
        # +RNN layer 0: the linear input projection (one product over all steps),
        # left to autograd exactly as in PlusRNNCell.layer_forward
        K, T, B, n_in = x.shape
        x = torch.baddbmm(p["Pb"], x.reshape(K, T * B, n_in), p["P"])  # (K, T*B, H)
        x = x.view(K, T, B, -1)  # (K, T, B, H)
    params = [p[name] for name in kernel.param_names]
    for name, t in zip(kernel.param_names, params, strict=True):
        assert t.dtype == x.dtype and t.device == x.device, (
            f"parameter {name} is {t.dtype} on {t.device}, input is {x.dtype} on {x.device}"
        )
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in (x, *params))):
        # inference (an evaluation): no graph, and the loop need not keep what a backward reads
        p = dict(zip(kernel.param_names, params, strict=True))
        return kernel.forward(loop, s, x, p, saves=False)[0]
    return LayerFunction.apply(kernel, loop, s, x, *params)


class ReadoutFunction(torch.autograd.Function):
    """The linear readout ``seq W + b`` per member, ``(K, N, H) -> (K, N, O)``, its three
    products through :func:`rnnsweep.kernels._native.bmm`: torch's CPU ``bmm`` is slow
    for a handful of output columns (4.8 ms of a ugrnn pack step of 32, against 1-2)."""

    @staticmethod
    def forward(ctx, seq: Tensor, W: Tensor, b: Tensor, own: bool) -> Tensor:  # noqa: ANN001
        ctx.save_for_backward(seq, W)
        ctx.own = own
        return _native.bmm(seq, W, own=own).add_(b)

    @staticmethod
    def backward(ctx, dout: Tensor) -> tuple[Tensor | None, ...]:  # noqa: ANN001
        seq, W = ctx.saved_tensors
        need_seq, need_W, need_b, _ = ctx.needs_input_grad
        # under create_graph, differentiable torch products (the layers below then
        # refuse a second derivative with their own, clear error)
        own = ctx.own and not torch.is_grad_enabled()
        dseq = _native.bmm(dout, W.transpose(1, 2), own=own) if need_seq else None
        dW = _native.bmm(seq.transpose(1, 2), dout, own=own) if need_W else None
        db = dout.sum(1, keepdim=True) if need_b else None
        return dseq, dW, db, None


def fused_forward(model: PackedRNN, x: Tensor, *, loop: TimeLoop | None = None) -> Tensor:
    """Fused drop-in for ``model.forward(x)``: ``(K, T, B, n_in) -> (K, T, B, n_out)``."""
    loop = loop or _default_loop(x)
    assert x.dim() == 4 and x.shape[0] == model.K, (
        f"expected (K={model.K}, T, B, I), got {tuple(x.shape)}"
    )
    seq = x
    for layer in range(model.cfg.depth):
        seq = loop.layer_forward(model.cell, model.layer_params(layer), seq, model.s)
    K, T, B, H = seq.shape
    own = loop.own_gemm
    out = ReadoutFunction.apply(seq.reshape(K, T * B, H), model.W_out, model.b_out, own)
    return out.view(K, T, B, -1)  # (K, T, B, O)
