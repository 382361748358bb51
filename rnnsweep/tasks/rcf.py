"""Random continuous functions (Collins et al. 2017, "rcf"; details and measure ours).

As the capacity task, but each of the ``b`` fixed random binary patterns is mapped
to a *real* target: the network memorises samples of a random function from
``{0, 1}^n_bits`` to ``R^n_out``. Collins name the task beside the capacity task;
their appendix (the exact encoding, and how they turned its loss into bits) is not
available to us, so the encoding and the information measure below are our own.

Information measure. The targets are i.i.d. ``N(0, sigma^2)`` with ``sigma^2 = 1``.
By rate-distortion theory (Cover & Thomas, Thm. 10.3.2), reproducing an i.i.d.
Gaussian source at mean squared error ``D`` needs at least

    R(D) = max(0, 1/2 log2(sigma^2 / D))   bits per target value,

whatever the decoder, so a network whose predictions of the ``b * n_out`` target
values have mean squared error ``D`` holds at least ``b n_out R(D)`` bits about
them in its parameters. rnnsweep reports that lower bound as ``bits`` (and
``bits / n_params`` as ``bits_per_param``). What it assumes, and where it is loose:

- it uses the generating variance ``sigma^2 = 1``, not the sample variance of the
  ``b`` drawn targets (they differ by O(1/sqrt(b)));
- it is a lower bound: it equals the stored information only for an optimal
  Gaussian "test channel" (error independent of the prediction, Gaussian); a
  network whose errors are uneven across samples can hold more than it shows;
- ``R`` is convex in ``D``, so applying it to the *mean* error over samples (what
  is done) never exceeds the sum of per-sample bounds: still a valid lower bound;
- it is not comparable bit-for-bit with the capacity task's ``b (1 - H(p))``
  (there the labels are 1 bit each and the bound is tight for a symmetric
  channel): compare rcf numbers with rcf numbers.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rnnsweep.tasks.base import Batch, RegressionTask, _int_option
from rnnsweep.tasks.capacity import MemorisedPatterns, distinct_patterns

__all__ = ["RcfTask", "gaussian_bits"]


def gaussian_bits(n_values: int, mse: float, variance: float = 1.0) -> float:
    """``n_values * max(0, 1/2 log2(variance / mse))``: the rate-distortion lower bound
    on the information about ``n_values`` i.i.d. ``N(0, variance)`` values held by
    predictions with mean squared error ``mse`` (0 when ``mse >= variance``; a NaN
    ``mse`` gives NaN; ``mse = 0`` gives infinity: a perfect real-valued copy)."""
    if math.isnan(mse):
        return math.nan
    if mse <= 0.0:
        return math.inf
    return n_values * max(0.0, 0.5 * math.log2(variance / mse))


class RcfTask(MemorisedPatterns, RegressionTask):
    """Memorise real targets of ``b`` fixed random binary patterns.

    Data. In ``__init__`` a generator seeded with ``data_seed`` draws the ``b``
    distinct patterns exactly as the capacity task does (same seed, same
    patterns), then one target vector ``y ~ N(0, I_{n_out})`` per pattern. Fixed
    for the task instance; ``sample`` draws ``batch_size`` indices uniformly with
    replacement from the member's generator.

    Encoding (``T = unroll``, ``n_in = n_bits``): the pattern is the input at step
    0, later inputs are zero; the target is read at step ``unroll - 1`` only.
    Loss and metric: mean squared error over the ``n_out`` outputs
    (:class:`RegressionTask`); predicting zero scores the target variance, 1.

    Evaluation. As for capacity, ``eval_batch`` returns all ``b`` patterns once,
    in order (the memorisation set is the evaluation set); ``summary`` turns the
    MSE into the rate-distortion bound :func:`gaussian_bits` (see the module).

    ``b`` is fixed per study (Collins: "fixed number of samples"); a study may
    still tune it through ``space.b`` like the capacity task's.

    Solved threshold: MSE 0.1 (90% of the target variance reproduced, as memory).
    """

    name = "rcf"
    description = "memorise real targets of b random binary patterns (Collins random functions)"

    target_variance = 1.0  # Var(y_i) for y_i ~ N(0, 1)

    def __init__(
        self,
        *,
        b: int = 64,
        n_bits: int = 16,
        n_out: int = 1,
        unroll: int = 5,
        data_seed: int = 0,
    ) -> None:
        self.n_bits = _int_option("rcf", "n_bits", n_bits, 1, 62)  # codes fit in int64
        self.b = _int_option("rcf", "b", b, 1, 2**self.n_bits)
        self.n_out = _int_option("rcf", "n_out", n_out, 1)
        self.unroll = _int_option("rcf", "unroll", unroll, 1)
        self.data_seed = _int_option("rcf", "data_seed", data_seed, 0, 2**63 - 1)
        self.seq_len = self.unroll
        self.n_in = self.n_bits
        self.solved_threshold = 0.1 * self.target_variance
        g = torch.Generator().manual_seed(self.data_seed)
        self.patterns = distinct_patterns(self.b, self.n_bits, g)  # (b, n_bits)
        self.targets = torch.randn(self.b, self.n_out, generator=g)  # (b, n_out)

    def _batch(self, idx: torch.Tensor) -> Batch:
        T, B = self.seq_len, idx.shape[0]
        x = torch.zeros(T, B, self.n_bits)  # (T, B, n_in)
        x[0] = self.patterns[idx]
        return Batch.at_end(x, self.targets[idx])  # target (B, n_out)

    def summary(self, eval_loss: float, metric: float, n_params: int) -> dict[str, float]:
        """The rate-distortion lower bound on stored bits, and per parameter."""
        if n_params <= 0:
            raise ValueError(f"rcf summary needs n_params > 0, got {n_params!r}")
        bits = gaussian_bits(self.b * self.n_out, metric, self.target_variance)
        return {"bits": bits, "bits_per_param": bits / n_params, "b": self.b}

    def objective(self, eval_loss: float, metric: float) -> float:
        """Minus the stored bits, as the capacity task's: with b tuned (``space.b``), the
        lowest MSE alone would pick the smallest b."""
        if not math.isfinite(metric):
            return math.inf
        return -gaussian_bits(self.b * self.n_out, metric, self.target_variance)

    def options(self) -> dict[str, Any]:
        return {
            "b": self.b,
            "n_bits": self.n_bits,
            "n_out": self.n_out,
            "unroll": self.unroll,
            "data_seed": self.data_seed,
        }
