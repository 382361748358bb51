"""Kernel launches of one training step, counted on the CPU: the structural figure of a loop.

A GPU running a small recurrent step mostly waits on launches, so how many a
training step issues, and whether that grows with the sequence length T, says
more about a time loop than CPU timings do. :func:`launches_per_step` runs one
step (forward through every layer, the linear readout, a mean-squared loss,
backward) of a pack under ``torch.profiler`` and counts

- ``aten_ops``: every ``aten::`` op the profiler records (the measure of issue 12:
  about 100 per time step for the torch-op loop), except those Triton's
  interpreter runs inside a launch (it copies the arguments through torch);
- ``triton``: the Triton launches themselves, from the launch wrapper's counter
  (under the interpreter they do not reach the profiler).

With ``rnnsweep.kernels._triton.triton_layer_forward`` the count does not depend
on T; with ``fused_layer_forward`` under ``RNNSWEEP_NATIVE=0`` (the torch-op loop)
it grows linearly in T.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

from rnnsweep.cells import InitConfig, ModelConfig, PackedRNN
from rnnsweep.kernels import _triton

if TYPE_CHECKING:
    from torch.autograd.profiler_util import FunctionEvent

    from rnnsweep.cells.base import Cell, Params

__all__ = ["Launches", "launches_per_step"]

LayerForward = Callable[["Cell", "Params", torch.Tensor, "str | torch.Tensor"], torch.Tensor]


@dataclass(frozen=True)
class Launches:
    """Ops and launches of one training step."""

    aten_ops: int  # aten ops recorded by torch.profiler (outside Triton launches)
    triton: int  # Triton kernel launches (both directions, all layers)

    @property
    def total(self) -> int:
        return self.aten_ops + self.triton


def _inside_launch(event: FunctionEvent) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name == _triton.LAUNCH_RANGE:
            return True
        parent = parent.cpu_parent
    return False


def launches_per_step(
    layer_forward: LayerForward,
    *,
    arch: str = "gru",
    gru_reset: Literal["pre", "post"] = "pre",
    depth: int = 2,
    hidden: int = 64,
    T: int = 50,
    B: int = 32,
    K: int = 1,
    n_in: int = 4,
    n_out: int = 4,
    nonlinearity: str = "tanh",
    dtype: torch.dtype = torch.float32,
) -> Launches:
    """Count the ops and launches of one training step of a pack built with ``layer_forward``
    (a drop-in for ``cell.layer_forward``) on the CPU; one untimed step runs first."""
    cfg = ModelConfig(arch, n_in, n_out, hidden, depth, nonlinearity, gru_reset=gru_reset)
    model = PackedRNN(cfg, [InitConfig(seed=k) for k in range(K)], dtype=dtype)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(K, T, B, n_in, generator=gen, dtype=dtype)
    target = torch.randn(K, T, B, n_out, generator=gen, dtype=dtype)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        seq = x
        for layer in range(depth):
            seq = layer_forward(model.cell, model.layer_params(layer), seq, model.s)
        out = torch.baddbmm(model.b_out, seq.reshape(K, T * B, -1), model.W_out)
        torch.nn.functional.mse_loss(out.view(K, T, B, n_out), target).backward()

    step()  # compiles (native loops, Triton kernels) outside the count
    before = _triton.launch_count()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    triton = _triton.launch_count() - before
    events = prof.events() or []
    aten = sum(1 for e in events if e.name.startswith("aten::") and not _inside_launch(e))
    return Launches(aten_ops=aten, triton=triton)
