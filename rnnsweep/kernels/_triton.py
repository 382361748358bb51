"""The Triton time loop: one persistent kernel per layer and direction, every cell.

:func:`triton_layer_forward` has the contract of
:func:`rnnsweep.kernels.fused.fused_layer_forward` (``(K, T, B, I) -> (K, T, B, H)``,
gradients to ``x`` and every tensor of ``p``), for every cell of the zoo: rnn/irnn,
ugrnn, gru in both reset conventions, lstm, plusrnn (with its layer-0 input
projection ``P``/``Pb``) and minimalrnn. Per layer::

    forward   A = x W^x + b + b^fg         1 torch product over all T*B rows
                                           (minimalRNN: z = tanh(x W^z + b^z), V^u z + b)
              fwd_kernel                   1 launch, grid (K, batch tiles): each program
                                           loads its member's W^h once and runs all T steps,
                                           per step tl.dot(h, W^h_j) + fused gate math,
                                           saving the gates (the table in _triton_kernels)
    backward  bwd_kernel                   1 launch: the reverse loop, dh_{t-1} through
                                           W^h^T, dW^h summed on chip over all T steps per
                                           program, written per batch tile; dL/dA into F
              dW^h = sum over tiles        1 torch sum (none with one tile); dW^x, dx, db
                                           are autograd's products of the projection above

The recurrence is one ``torch.autograd.Function`` (:class:`_Recurrence`) with a
hand-written backward (the two kernels); the input projection before it is left
to autograd, exactly like the +RNN's ``P`` in the fused kernels, so ``dW^x``,
``dx`` and ``db`` are its batched products after the loop. The dW^h reduction
over batch tiles is a per-tile buffer and one sum, not atomics: deterministic,
so a member's bits do not depend on scheduling. Saved tensors are never modified
(a second backward with ``retain_graph=True`` works); double backward
(``create_graph=True``) raises.

Nonlinearity: ``s`` is ``"tanh"``/``"relu"`` for the whole pack, or a ``(K,)``
integer tensor of per-member codes (0 = tanh, 1 = relu), read by each program
for its own member (packs that mix nonlinearities). Codes on the CPU are checked;
codes already on the device are trusted (checking them would synchronise).

Sizes: H is padded to ``HP``, the next power of two of at least 16, and masked;
the batch is cut into tiles of ``BB`` = 16 or 32 rows (the last one masked); any
H and B run. Each program keeps its member's ``W^h`` on chip (``HP x G*HP``), and
backwards also its ``dW^h`` accumulators; :func:`fits` refuses a ``W^h`` over
:data:`WH_BUDGET_BYTES` (64 KiB) per member: in float32 H <= 64 for every cell,
H <= 128 for the rnn, irnn and minimalRNN (G = 1); in float64 H <= 64 for G <= 2,
H <= 32 otherwise. Those sizes fall back to
:func:`~rnnsweep.kernels.fused.fused_layer_forward` (the torch-op loop on CUDA),
per nonlinearity group when ``s`` holds codes.

Precision: float32 products are IEEE (no TF32) by default, so results stay
comparable with the CPU; ``RNNSWEEP_TF32=1`` in the environment (read per call)
allows TF32. float64 runs through the same kernels (Triton's ``tl.dot`` accepts
float64; checked under the interpreter only, not on a GPU). tanh is
``2 sigma(2a) - 1``, which saturates without NaN.

Compiling for CUDA: launches pass ``maxnreg=255`` (ptxas otherwise gave the forward 32
registers and kilobytes of spills), 2 pipeline stages (3 took the LSTM backward with
TF32 over an H100's shared memory), 8 warps at HP >= 64; the kernels module turns LLVM's
SLP vectorizer off, which crashed on the LSTM kernels. :func:`compile_report` compiles
every kernel for a GPU generation without a GPU and reports registers, spills and shared
memory (docs/PERFORMANCE.md has the figures).

Where it runs (:func:`unavailable`): CUDA when triton imports; the CPU only
under Triton's interpreter, ``TRITON_INTERPRET=1``, which must be set before the
kernels module is first imported (``@triton.jit`` reads it at decoration time);
the interpreter runs the same kernel code through NumPy: slow, but it makes the
kernels testable without a GPU.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from rnnsweep.cells.base import for_cell
from rnnsweep.cells.stack import NONLINEARITY_CODES
from rnnsweep.cells.zoo import (
    GRUCell,
    GRUTorchCell,
    LSTMCell,
    MinimalRNNCell,
    PlusRNNCell,
    RNNCell,
    UGRNNCell,
)
from rnnsweep.kernels._native import check_codes

if TYPE_CHECKING:
    from types import ModuleType

    from rnnsweep.cells.base import Cell, Params

__all__ = [
    "CODES",
    "WH_BUDGET_BYTES",
    "compile_report",
    "fits",
    "launch_count",
    "member_codes",
    "padded",
    "triton_layer_forward",
    "unavailable",
]

# per-member nonlinearity codes, as the kernels read them
CODES: dict[str, int] = NONLINEARITY_CODES
# on-chip bytes of one member's padded W^h a program may hold (see the module docstring)
WH_BUDGET_BYTES = 64 * 1024
# name of the profiler range around each launch (the interpreter's own torch ops run in it)
LAUNCH_RANGE = "rnnsweep::triton_launch"
_KERNELS_MODULE = "rnnsweep.kernels._triton_kernels"
# registers per thread a CUDA launch may use (ptxas's own maximum)
MAXNREG = 255


@dataclass(frozen=True)
class _Plan:
    """What the kernels need to know of a cell: its CELL code and block counts."""

    cell: int  # the CELL constexpr (_triton_kernels.RNN, ...)
    g: int  # blocks of W^h
    wa: int  # blocks of the input part A (the minimalRNN's A is [V^u z + b, z])
    nz: int  # gate blocks saved for backward
    states: int = 1  # S: the LSTM carries (h, c)


# Cell class -> plan; the MRO walk finds IRNNCell through RNNCell, GRUTorchCell first.
_PLANS: dict[type, _Plan] = {
    RNNCell: _Plan(0, 1, 1, 0),
    UGRNNCell: _Plan(1, 2, 2, 2),
    GRUTorchCell: _Plan(3, 3, 3, 4),
    GRUCell: _Plan(2, 3, 3, 3),
    LSTMCell: _Plan(4, 4, 4, 4, states=2),
    PlusRNNCell: _Plan(5, 4, 4, 4),
    MinimalRNNCell: _Plan(6, 1, 2, 2),
}

_launches = 0


def _plan(cell: Cell) -> _Plan:
    return for_cell(_PLANS, cell, "Triton kernel")


def padded(n: int) -> int:
    """``n`` padded to the next power of two, at least 16 (``tl.dot``'s smallest side)."""
    return max(16, 1 << max(0, n - 1).bit_length())


def fits(hidden: int, n_gates: int, dtype: torch.dtype) -> str | None:
    """None when one member's padded ``W^h`` fits :data:`WH_BUDGET_BYTES`, else the reason."""
    hp = padded(hidden)
    size = torch.empty((), dtype=dtype).element_size()
    need = hp * n_gates * hp * size
    if need <= WH_BUDGET_BYTES:
        return None
    return (
        f"W^h of one member, padded to {hp} x {n_gates * hp} {str(dtype).removeprefix('torch.')},"
        f" is {need // 1024} KiB, over the {WH_BUDGET_BYTES // 1024} KiB a persistent program"
        " keeps on chip; the torch-op loop runs this layer"
    )


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def unavailable(device: torch.device | str, dtype: torch.dtype = torch.float32) -> str | None:
    """None when the Triton loop can run on ``device`` in ``dtype``, else a one-line reason.

    CUDA needs triton importable; the CPU also needs ``TRITON_INTERPRET=1``, set
    before this package's Triton kernels are first imported.
    """
    dev = torch.device(device)
    if dtype not in (torch.float32, torch.float64):
        return f"the Triton loop runs float32 and float64, not {dtype}"
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return "CUDA is not available"
        return None
    if dev.type != "cpu":
        return f"the Triton loop runs on CUDA (or the CPU's interpreter), not {dev.type}"
    if not _interpreting():
        return (
            "on the CPU the Triton loop runs only in Triton's interpreter: set TRITON_INTERPRET=1"
            " before the process imports triton"
        )
    loaded = sys.modules.get(_KERNELS_MODULE)
    if loaded is not None and not _is_interpreted(loaded):
        return "the Triton kernels were compiled before TRITON_INTERPRET=1 was set"
    return None


def _is_interpreted(module: ModuleType) -> bool:
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(module.fwd_kernel, InterpretedFunction)


def _kernels() -> ModuleType:
    import importlib

    return importlib.import_module(_KERNELS_MODULE)


def launch_count() -> int:
    """Triton kernel launches made by this process so far (both directions)."""
    return _launches


def _launch(kernel: object, grid: tuple[int, int], *args: object, **meta: object) -> None:
    global _launches
    _launches += 1
    if not _interpreting() and _takes_maxnreg():
        # without it ptxas gave the forward kernels 32 registers and a 2-6 KB stack of
        # spills (sm_90, triton 3.9, compiled ahead of time); one program per SM may
        # take them all
        meta["maxnreg"] = MAXNREG
    with torch.profiler.record_function(LAUNCH_RANGE):
        kernel[grid](*args, **meta)  # type: ignore[index]


def _takes_maxnreg() -> bool:
    """Whether this Triton's CUDA backend has the ``maxnreg`` launch option."""
    try:
        from triton.backends.nvidia.compiler import CUDAOptions
    except ImportError:  # pragma: no cover - a Triton without the NVIDIA backend
        return False
    return "maxnreg" in getattr(CUDAOptions, "__dataclass_fields__", {})


def _precision(dtype: torch.dtype) -> str:
    """``tl.dot``'s input precision: IEEE unless ``RNNSWEEP_TF32=1`` (float32 only)."""
    if dtype == torch.float32 and os.environ.get("RNNSWEEP_TF32", "0") == "1":
        return "tf32"
    return "ieee"


def _meta(plan: _Plan, B: int, H: int, dtype: torch.dtype) -> dict[str, object]:
    bb = min(32, padded(B))
    return {
        "CELL": plan.cell,
        "G": plan.g,
        "WA": plan.wa,
        "NZ": max(plan.nz, 1),
        "BB": bb,
        "HP": padded(H),
        "PREC": _precision(dtype),
        # a guess, not measured: at HP = 64 a program's W^h (and backwards dW^h) tiles
        # would take 96-192 registers per thread with 4 warps; 8 warps halve that
        "num_warps": 8 if padded(H) >= 64 else 4,
        # Triton pipelines the loop's loads through shared memory, a buffer per stage:
        # with its default 3 stages the LSTM backward at H = 64 with TF32 asked for 264 KiB
        # (ahead-of-time compile for sm_90), over an H100's 227 KiB; 2 stages, 200 KiB
        "num_stages": 2,
    }


def member_codes(cell: Cell, s: str | Tensor, K: int, device: torch.device) -> Tensor:
    """``s`` as ``(K,)`` int32 codes on ``device`` (0 = tanh, 1 = relu).

    Cells with a fixed nonlinearity (irnn, plusrnn, minimalRNN) ignore the codes.
    """
    if isinstance(s, str):
        if s in CODES:
            return torch.full((K,), CODES[s], dtype=torch.int32, device=device)
        if len(cell.nonlinearities) == 1:
            return torch.zeros(K, dtype=torch.int32, device=device)
        raise ValueError(f"unknown nonlinearity {s!r}; choose tanh or relu")
    check_codes(s, K)
    return s.to(device=device, dtype=torch.int32).contiguous()


class _Recurrence(torch.autograd.Function):
    """``apply(plan, codes, A, Wh, s0, X, b_hn)``: the layer's time loop, both directions
    one Triton launch. ``A`` (K, T, B, WA*H) is the input part of the pre-activations,
    ``X`` (K, T, B, H) the +RNN's (projected) layer input, ``b_hn`` the torch-GRU's
    recurrent candidate bias (None where the cell has none)."""

    @staticmethod
    def forward(
        ctx,  # noqa: ANN001
        plan: _Plan,
        codes: Tensor,
        A: Tensor,
        Wh: Tensor,
        s0: Tensor,
        X: Tensor | None,
        bhn: Tensor | None,
    ) -> Tensor:
        K, T, B, _ = A.shape
        H = Wh.shape[1]
        meta = _meta(plan, B, H, A.dtype)
        Wh, s0 = Wh.contiguous(), s0.contiguous()
        dummy = A.new_empty(1)
        Hs = A.new_empty(K, T + 1, B, H)  # h_{-1} = s0, h_0 .. h_{T-1}
        Z = A.new_empty(K, T, B, plan.nz * H) if plan.nz else dummy
        Cs = A.new_empty(K, T + 1, B, H) if plan.states == 2 else dummy
        Y = A.new_empty(K, T, B, H) if X is not None else dummy
        grid = (K, -(-B // int(meta["BB"])))  # type: ignore[call-overload]
        _launch(
            _kernels().fwd_kernel,
            grid,
            *(A, Wh, s0, X if X is not None else dummy, bhn if bhn is not None else dummy),
            *(codes, Hs, Y, Z, Cs, T, B, H, s0.shape[-1]),
            **meta,
        )
        ctx.plan, ctx.grid, ctx.meta = plan, grid, meta
        ctx.save_for_backward(Wh, codes, Hs, Z, Cs, X)
        return Y if X is not None else Hs[:, 1:]

    @staticmethod
    def backward(ctx, dout: Tensor) -> tuple[Tensor | None, ...]:  # noqa: ANN001
        if torch.is_grad_enabled():  # create_graph=True: raise now, whatever dout is
            raise RuntimeError("the Triton loop has no double backward (create_graph=True)")
        plan: _Plan = ctx.plan
        Wh, codes, Hs, Z, Cs, X = ctx.saved_tensors
        K, T1, B, H = Hs.shape
        T = T1 - 1
        dout = dout.contiguous()
        F = Hs.new_empty(K, T, B, plan.wa * H)  # dL/dA
        dWh = Hs.new_empty(K, ctx.grid[1], H, plan.g * H)  # per batch tile
        dH0 = Hs.new_empty(K, B, H)
        dummy = Hs.new_empty(1)
        dC0 = Hs.new_empty(K, B, H) if plan.states == 2 else dummy
        dXd = Hs.new_empty(K, T, B, H) if X is not None else dummy
        _launch(
            _kernels().bwd_kernel,
            ctx.grid,
            *(dout, Hs, Z, Cs, X if X is not None else dummy, Wh, codes),
            *(F, dWh, dH0, dC0, dXd, T, B, H),
            **ctx.meta,
        )
        dWh = dWh[:, 0] if dWh.shape[1] == 1 else dWh.sum(1)
        ds0 = dH0.sum(1, keepdim=True)  # (K, 1, H)
        if plan.states == 2:
            ds0 = torch.cat([ds0, dC0.sum(1, keepdim=True)], dim=-1)  # (K, 1, 2H)
        dbhn = None
        if ctx.needs_input_grad[6]:  # torch GRU: dL/db_hn = sum of r dp_c
            dbhn = (F[..., 2 * H :] * Z[..., :H]).sum((1, 2)).unsqueeze(1)  # (K, 1, H)
        return None, None, F, dWh, ds0, dXd if X is not None else None, dbhn


def _project(cell: Cell, p: Params, x: Tensor) -> Tensor:
    """The input part of every step's pre-activations, ``(K, T, B, WA*H)``, under autograd."""
    K, T, B, width = x.shape
    if isinstance(cell, MinimalRNNCell):
        return cell.input_projection(p, x).contiguous()
    x2 = x.reshape(K, T * B, width)
    return torch.baddbmm(p["b"] + p["fg"], x2, p["Wx"]).view(K, T, B, -1)


def triton_layer_forward(cell: Cell, p: Params, x: Tensor, s: str | Tensor) -> Tensor:
    """Triton drop-in for ``cell.layer_forward(p, x, s)``: ``(K, T, B, I) -> (K, T, B, H)``.

    ``s``: a nonlinearity name for the pack or ``(K,)`` per-member codes (0 tanh,
    1 relu). RuntimeError when the loop cannot run here (:func:`unavailable`);
    sizes over :func:`fits` run the fused torch loop instead.
    """
    assert x.dim() == 4, f"expected x of shape (K, T, B, I), got {tuple(x.shape)}"
    plan = _plan(cell)
    for name, t in p.items():
        assert t.dtype == x.dtype and t.device == x.device, (
            f"parameter {name} is {t.dtype} on {t.device}, input is {x.dtype} on {x.device}"
        )
    reason = unavailable(x.device, x.dtype)
    if reason is not None:
        raise RuntimeError(reason)
    K, T, B, _ = x.shape
    H = p["Wh"].shape[1]
    codes = member_codes(cell, s, K, x.device)
    if fits(H, plan.g, x.dtype) is not None:
        return _fallback(cell, p, x, s)
    if "P" in p:  # +RNN layer 0: the linear input projection, left to autograd
        x = torch.baddbmm(p["Pb"], x.reshape(K, T * B, -1), p["P"]).view(K, T, B, -1)
    A = _project(cell, p, x)
    X = x.contiguous() if isinstance(cell, PlusRNNCell) else None
    return _Recurrence.apply(plan, codes, A, p["Wh"], p["s0"], X, p.get("b_hn"))


def _fallback(cell: Cell, p: Params, x: Tensor, s: str | Tensor) -> Tensor:
    """The fused loop for sizes the Triton loop refuses; per-member codes run as groups.

    Groups, not the torch-op loop's own per-member codes: its weight-gradient products
    batch the whole pack, and MKL's differ in the last bit with the batch (a member would
    then depend on its pack; ``tests/test_triton.py`` checks the groups)."""
    from rnnsweep.kernels.fused import fused_layer_forward
    from rnnsweep.kernels.loops import get_loop

    torch_loop = get_loop("torch")
    if isinstance(s, str):
        return fused_layer_forward(cell, p, x, s, loop=torch_loop)
    fixed = len(cell.nonlinearities) == 1
    codes = [0] * x.shape[0] if fixed else s.tolist()
    names = {v: k for k, v in CODES.items()}
    outs, order = [], []
    for code in sorted(set(codes)):
        idx = [k for k, c in enumerate(codes) if c == code]
        sel = torch.tensor(idx, device=x.device)
        sub = {n: t.index_select(0, sel) for n, t in p.items()}
        name = cell.nonlinearities[0] if fixed else names[code]
        outs.append(fused_layer_forward(cell, sub, x.index_select(0, sel), name, loop=torch_loop))
        order += idx
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[order] = torch.arange(len(order))
    return torch.cat(outs).index_select(0, inverse.to(x.device))


def compile_report(
    capability: int = 90,
    hidden: int = 64,
    dtype: torch.dtype = torch.float32,
    precision: str = "ieee",
) -> dict[str, str]:
    """Compile both kernels of every cell for an NVIDIA GPU of ``capability`` (90: H100/H200)
    ahead of time, with no GPU: Triton's frontend, LLVM and its bundled ptxas. Returns each
    kernel's resource use as ptxas reports it (registers, stack of spills), by
    ``"{cell code}-{fwd|bwd}"``. Run it in a process without ``TRITON_INTERPRET``; a
    compiler crash aborts the process (tests/test_triton.py runs it in a child).
    """
    import subprocess
    import tempfile
    from pathlib import Path

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    kernels = _kernels()
    if _is_interpreted(kernels):
        raise RuntimeError("compile_report needs a process without TRITON_INTERPRET=1")
    ptr = "*fp64" if dtype == torch.float64 else "*fp32"
    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    report: dict[str, str] = {}
    for plan in _PLANS.values():
        meta = _meta(plan, 32, hidden, dtype)
        options = {"num_warps": meta.pop("num_warps"), "num_stages": meta.pop("num_stages")}
        options["maxnreg"] = MAXNREG
        meta["PREC"] = precision
        for name, kernel in (("fwd", kernels.fwd_kernel), ("bwd", kernels.bwd_kernel)):
            sig = {
                arg: "constexpr" if arg in meta
                else "*i32" if arg == "CODES"
                else "i32" if arg in ("T", "B", "H", "SW")
                else ptr
                for arg in kernel.arg_names
            }  # fmt: skip
            compiled = triton.compile(
                ASTSource(kernel, sig, meta), target=GPUTarget("cuda", capability, 32),
                options=options,
            )  # fmt: skip
            with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
                cubin.write(compiled.asm["cubin"])
                cubin.flush()
                dump = subprocess.run(
                    [str(cuobjdump), "--dump-resource-usage", cubin.name],
                    capture_output=True, text=True, check=False,
                ).stdout  # fmt: skip
            usage = " ".join(ln.strip() for ln in dump.splitlines() if "REG:" in ln)
            report[f"{plan.cell}-{name}"] = f"shared={compiled.metadata.shared} {usage}"
    return report
