"""Sine generator (Ribeiro et al. 2020, public code: the "sine wave generator" task).

A constant frequency ``omega`` is shown at every step and the network must emit
the sine wave it generates, ``sin(sum_{s <= t} omega)``: an oscillator whose
frequency is set by the input. Ribeiro's defaults (SCIENCE.md section 3):
``omega`` uniform in ``[pi/16, pi/8]``, length 400, MSE. The phase convention
(the sum includes the current step) is ours where the code leaves it implicit.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rnnsweep.tasks.base import Batch, RegressionTask, TaskOptionError, _float_option, _int_option

__all__ = ["SineTask"]


class SineTask(RegressionTask):
    """Generate ``sin(omega (t + 1))`` from the constant input ``omega``.

    Encoding (``T = seq_len``, ``n_in = 1``, ``n_out = 1``): per sequence one
    ``omega ~ U[omega_min, omega_max]`` (a single float32 draw), the input at
    every step. The target at step ``t`` (0-based) is

        y_t = sin(sum_{s <= t} omega) = sin(omega (t + 1)),

    i.e. the phase *includes* the current step: ``y_0 = sin(omega)``, not
    ``sin(0)``, so the first target already carries the frequency. It is
    computed in float64 as ``omega * (t + 1)`` (not a float32 running sum,
    whose rounding would drift over 400 steps) and stored as float32. Mask:
    every step. Loss and metric: squared error (:class:`RegressionTask`).

    Solved threshold: MSE 0.01. Predicting 0 scores the mean of
    ``sin^2``, about 1/2 (at the defaults every sequence spans 25 to 50
    half-periods); 0.01 is 2% of that, an amplitude error of about 0.14 at
    the peaks or a phase error of a few hundredths of a radian.
    """

    name = "sine"
    description = "sine generator: constant input omega, emit sin(omega (t+1)), MSE (Ribeiro)"

    def __init__(
        self,
        *,
        seq_len: int = 400,
        omega_min: float = math.pi / 16,
        omega_max: float = math.pi / 8,
    ) -> None:
        self.seq_len = _int_option("sine", "seq_len", seq_len, 1)
        # Up to pi: a frequency above Nyquist (pi per step) aliases onto a lower one.
        self.omega_min = _float_option("sine", "omega_min", omega_min, 0.0, math.pi)
        self.omega_max = _float_option("sine", "omega_max", omega_max, 0.0, math.pi)
        if self.omega_max < self.omega_min:
            raise TaskOptionError(
                f"sine option omega_max must be >= omega_min ({self.omega_min!r}),"
                f" got {self.omega_max!r}"
            )
        self.n_in = 1
        self.n_out = 1
        self.solved_threshold = 0.01

    def sample(self, generator: torch.Generator, batch_size: int) -> Batch:
        T, B = self.seq_len, batch_size
        u = torch.rand(B, generator=generator)  # (B,) in [0, 1)
        omega = self.omega_min + (self.omega_max - self.omega_min) * u  # (B,) float32
        x = omega.expand(T, B).unsqueeze(-1).contiguous()  # (T, B, 1)
        steps = torch.arange(1, T + 1, dtype=torch.float64)  # (T,) t + 1
        phase = steps.unsqueeze(1) * omega.to(torch.float64)  # (T, B)
        y = torch.sin(phase).to(torch.float32).unsqueeze(-1)  # (T, B, 1)
        mask = torch.ones(T, B)  # (T, B) every step counts
        return Batch(x, y, mask)

    def options(self) -> dict[str, Any]:
        return {"seq_len": self.seq_len, "omega_min": self.omega_min, "omega_max": self.omega_max}
