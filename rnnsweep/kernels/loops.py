"""Time loops: the interchangeable ways a pack's layers run their sequences.

Every loop computes the same function with the same parameters and gradients (the
tests hold each to the per-step autograd reference); they differ in *how*:

=========  =======================================================================
reference  per-step autograd through the cells' own ``layer_forward`` (the definition)
torch      the fused kernels (:mod:`rnnsweep.kernels`), their time loop as torch ops
compiled   the torch-op loop with each step one ``torch.compile`` graph (:mod:`._compiled`)
native     the fused kernels' time loop in C (:mod:`._native`), float32 products through
           the package's own AVX-512 GEMM where built, else torch's BLAS
blas       the C loops with every product through torch's BLAS
triton     one persistent Triton kernel per layer and direction (:mod:`._triton`): CUDA,
           or the CPU under Triton's interpreter (``TRITON_INTERPRET=1``, for tests)
=========  =======================================================================

A loop is a small object in :data:`LOOPS`, chosen once per command or worker (see
:mod:`rnnsweep.backend`) and passed down to :func:`~rnnsweep.kernels.fused.fused_forward`.
Adding one means writing a :class:`TimeLoop` subclass and calling :func:`register`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from rnnsweep.kernels import _native

if TYPE_CHECKING:
    from rnnsweep.cells.base import Cell, Params
    from rnnsweep.cells.stack import PackedRNN

__all__ = ["LOOPS", "TimeLoop", "get_loop", "register"]


class TimeLoop:
    """One way of running a layer over a whole sequence.

    ``native``, ``compiled`` and ``own_gemm`` tell the fused kernels which of their two
    time loops to run (C or torch ops), whether each torch-op step is one compiled graph,
    and whether float32 products on the CPU go through the package's own GEMM.
    """

    name: ClassVar[str]
    fused: ClassVar[bool] = True  # False: the per-step autograd reference
    native: ClassVar[bool] = False
    compiled: ClassVar[bool] = False
    own_gemm: bool = False
    # runs a pack whose members differ in nonlinearity (``s`` as (K,) codes, 0 tanh 1 relu)
    mixes_nonlinearity: ClassVar[bool] = True

    def unavailable(self, device: torch.device, dtype: torch.dtype) -> str | None:
        """None where this loop can run on ``device`` in ``dtype``, else the reason (a clause)."""
        return None

    def products(self, device: torch.device) -> str:
        """Where the loop's matrix products run, in one word."""
        return "cublas" if device.type == "cuda" else "blas"

    def layer_forward(self, cell: Cell, p: Params, x: Tensor, s: str | Tensor) -> Tensor:
        """``(K, T, B, I) -> (K, T, B, H)``, the contract of ``cell.layer_forward``."""
        from rnnsweep.kernels.fused import fused_layer_forward

        return fused_layer_forward(cell, p, x, s, loop=self)

    def model_forward(self, model: PackedRNN, x: Tensor) -> Tensor:
        """``(K, T, B, n_in) -> (K, T, B, n_out)``, the contract of ``model.forward``."""
        from rnnsweep.kernels.fused import fused_forward

        return fused_forward(model, x, loop=self)

    def __repr__(self) -> str:
        return f"<time loop {self.name}>"


class ReferenceLoop(TimeLoop):
    """The cells' per-step autograd equations: slow, and the definition of the others."""

    name = "reference"
    fused = False
    mixes_nonlinearity = False

    def layer_forward(self, cell: Cell, p: Params, x: Tensor, s: str | Tensor) -> Tensor:
        if not isinstance(s, str):
            raise ValueError("the reference loop runs one nonlinearity per layer call")
        return cell.layer_forward(p, x, s)

    def model_forward(self, model: PackedRNN, x: Tensor) -> Tensor:
        return model.forward(x)


class TorchLoop(TimeLoop):
    """The fused kernels' time loop as torch ops, one batched product per step."""

    name = "torch"


class CompiledLoop(TimeLoop):
    """The torch-op loop with each step one ``torch.compile`` graph (meant for CUDA)."""

    name = "compiled"
    compiled = True
    mixes_nonlinearity = False


class NativeLoop(TimeLoop):
    """The fused kernels' time loops in C on the CPU, products through the own GEMM."""

    name = "native"
    native = True

    @property
    def own_gemm(self) -> bool:  # type: ignore[override]
        return _native.built_with_own_gemm()

    def unavailable(self, device: torch.device, dtype: torch.dtype) -> str | None:
        if device.type != "cpu":
            return f"the {self.name} loop runs on the CPU only, not {device}"
        if dtype not in (torch.float32, torch.float64):
            return f"the {self.name} loop runs float32 and float64 only, not {dtype}"
        if not _native.available():
            return f"the native loops are unavailable: {_native.build_error()}"
        return None

    def products(self, device: torch.device) -> str:
        return "own-avx512" if self.own_gemm else "blas"


class BlasLoop(NativeLoop):
    """The C time loops with every product through torch's BLAS."""

    name = "blas"
    own_gemm = False  # type: ignore[assignment]

    def products(self, device: torch.device) -> str:
        return "blas"


class TritonLoop(TimeLoop):
    """Persistent Triton kernels: one launch per layer and direction runs all T steps."""

    name = "triton"

    def unavailable(self, device: torch.device, dtype: torch.dtype) -> str | None:
        if device.type == "cuda" or os.environ.get("TRITON_INTERPRET"):
            from rnnsweep.kernels import _triton

            return _triton.unavailable(device, dtype)
        # without importing triton: on the CPU it runs only under the interpreter
        return "on the CPU the Triton loop runs only under TRITON_INTERPRET=1 (for tests)"

    def products(self, device: torch.device) -> str:
        return "triton" if device.type == "cuda" else "triton-interpreter"

    def layer_forward(self, cell: Cell, p: Params, x: Tensor, s: str | Tensor) -> Tensor:
        from rnnsweep.kernels._triton import triton_layer_forward

        return triton_layer_forward(cell, p, x, s)


LOOPS: dict[str, TimeLoop] = {}


def register(loop: TimeLoop) -> TimeLoop:
    """Add a time loop to :data:`LOOPS` under its name (the last registration wins)."""
    LOOPS[loop.name] = loop
    return loop


for _loop in (
    ReferenceLoop(),
    TorchLoop(),
    CompiledLoop(),
    NativeLoop(),
    BlasLoop(),
    TritonLoop(),
):
    register(_loop)


def get_loop(name: str) -> TimeLoop:
    """The registered loop ``name``; KeyError (with the choices) for an unknown one."""
    try:
        return LOOPS[name]
    except KeyError:
        raise KeyError(f"unknown time loop {name!r}; choose from {', '.join(LOOPS)}") from None
