"""Pointwise fusion for the torch-op time loop: each step as one ``torch.compile`` graph.

Why. Off the CPU's native loops (on CUDA above all), a step of the torch-op loop is
one batched product and then a handful of small pointwise kernels (the ugrnn: four
forwards, two backwards), each a separate launch and a separate trip through memory.
In the ``compiled`` time loop (``--loop compiled``) each cell's step runs instead as
one compiled graph (``SequenceKernel.step_t``/``back_step_t``): the product, then one
fused pointwise
kernel (Triton on CUDA, C++ on the CPU) that also writes the step's rows into the
saved buffers.

The form a compiled step takes, and why. The step reads and writes whole buffers at
a *tensor* index ``t`` (:func:`at`, :func:`put`): ``index_select`` in, ``index_copy_``
out, which inductor turns into in-place stores (measured here: the cost per step does
not grow with T). Two simpler forms fail under torch 2.13, both checked:

- a Python ``int`` step index is a constant to dynamo: one recompilation per step,
  and the recompilation limit (8) is hit at once;
- per-step *views* as inputs (``A[:, t]`` and ``Hs[:, t + 1]``, several views of one
  buffer, some written) compiled without error and then wrote the wrong rows from the
  second step on (the aliasing of the first call was baked in); dynamo also refuses
  ``out=`` into a non-contiguous view, the torch-op loop's idiom.

So every cell states its step a second time, as pure tensor math (``_zoo.py``, next to
the eager ``step``), and the tests hold both to the per-step reference.

Scope. The local-derivative passes (``factors``, a few bulk ops over all steps off the
CPU) and the weight-gradient products after the loop stay eager. The switch is off by
default: nothing here was measured on a GPU (docs/PERFORMANCE.md says what was), and a
first compilation costs seconds per cell and shape. On the CPU the native loops take
precedence (``RNNSWEEP_NATIVE=0 RNNSWEEP_COMPILE=1`` runs the compiled torch-op loop,
which is how the tests exercise it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from rnnsweep.kernels._ops import Run

__all__ = ["step_fn", "step_indices", "stepper"]


@functools.cache
def _indices(n: int, device: torch.device) -> tuple[Tensor, ...]:
    # separate one-element tensors, not views of one arange: a view's storage offset
    # is one more thing a compiled graph could specialise on
    return tuple(torch.tensor([t], device=device) for t in range(n))


def step_indices(n: int, device: torch.device) -> tuple[Tensor, ...]:
    """``n`` one-element long tensors ``[0] .. [n-1]`` on ``device``, made once per device
    (so that a CUDA graph capture finds them already there)."""
    return _indices(n, torch.device(device))


@functools.cache
def step_fn(kernel: Any, direction: str) -> Callable[[Run, Tensor], None]:
    """The compiled ``step_t`` ("fwd") or ``back_step_t`` ("bwd") of ``kernel``, one per
    kernel and direction (each has its own compilation cache; shapes that change, such
    as the batch of an evaluation, are recompiled once and then treated as dynamic).

    Not ``fullgraph=True``: a long-lived worker that meets many shapes could reach
    dynamo's recompilation limit, and there fullgraph turns the fallback to eager
    (same numbers, slower) into an error. The tests check that no step breaks its graph.
    """
    method = kernel.step_t if direction == "fwd" else kernel.back_step_t
    return torch.compile(method)


def stepper(
    kernel: Any,
    direction: str,
    eager: Callable[[Run, int], None],
    T: int,
    device: torch.device,
    *,
    compiled: bool,
) -> Callable[[Run, int], None]:
    """What the torch-op loop calls per step ``t``: ``eager`` (the ``SequenceKernel``'s
    ``step`` or ``back_step``), or, for the ``compiled`` loop, its compiled form at the
    tensor index of ``t``."""
    if not compiled:
        return eager
    fn, ts = step_fn(kernel, direction), step_indices(T, device)
    return lambda r, t: fn(r, ts[t])
