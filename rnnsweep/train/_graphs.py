"""Replaying a pack's training step as a CUDA graph (``RNNSWEEP_GRAPHS=1``).

Why. On a GPU, a step of a small pack is thousands of tiny kernels (per time step a
product and a few pointwise ops, forwards and backwards, per layer), each launched
from Python: the launches, not the arithmetic, set the pace. A CUDA graph records the
step's kernels once and replays them with one launch from the host.

What it takes. The step must be device work only, with fixed shapes and fixed
buffers: ``train.loop._train_step`` is written that way (divergence masks computed on
the device, ``active`` updated in place, no ``.item()``), and the batch is copied
into fixed buffers before each step. Frozen members therefore stay in the pack
(masked, as the isolation rules require: their losses are selected out of the
backpropagated sum, their gradients zeroed, their updates skipped) instead of leaving
it as they do on the eager path; a survivor's numbers are the same either way
(``tests/test_packing.py``).

Capture follows PyTorch's whole-network recipe: three warm-up steps on a side stream
(they are real training steps), then one capture, then a replay per step; the
host reads the step's outputs once per step (one synchronisation, which the
divergence bookkeeping needs anyway).

On the CPU the switch runs the same fixed-buffer step eagerly: no graph, but the
same code, which is how the tests exercise everything here but the capture itself.
Not measured on a GPU (none was available; docs/PERFORMANCE.md), hence off by default.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rnnsweep.tasks.base import Batch

__all__ = ["GraphedStep"]

WARMUP_STEPS = 3  # eager steps on a side stream before the capture (PyTorch's recipe)


class GraphedStep:
    """``step(batch) -> outputs`` for a step function of fixed shapes and buffers.

    ``fn(batch)`` must do device work only and return tensors. Each call copies
    ``batch`` into fixed buffers (shaped like ``like``) and runs ``fn`` on them: on CUDA
    the first :data:`WARMUP_STEPS` calls eagerly on a side stream, the next one captures
    ``fn`` into a graph, and that call and every later one replay it; elsewhere
    eagerly. The returned tensors are the graph's own outputs, overwritten by the
    next call: read them before calling again.
    """

    def __init__(self, fn: Callable[[Batch], tuple[Tensor, ...]], like: Batch) -> None:
        self.fn = fn
        self.batch = Batch(like.x.clone(), like.y.clone(), like.mask.clone())
        self.cuda = like.x.device.type == "cuda"
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: tuple[Tensor, ...] = ()

    def __call__(self, batch: Batch) -> tuple[Tensor, ...]:
        for mine, theirs in ((self.batch.x, batch.x), (self.batch.y, batch.y)):
            assert mine.shape == theirs.shape, f"batch {tuple(theirs.shape)} != {tuple(mine.shape)}"
            mine.copy_(theirs)
        self.batch.mask.copy_(batch.mask)
        self.calls += 1
        if not self.cuda:
            return self.fn(self.batch)
        if self.calls <= WARMUP_STEPS:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self.fn(self.batch)
            torch.cuda.current_stream().wait_stream(side)
            return out
        if self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.out = self.fn(self.batch)
        self.graph.replay()
        return self.out
