"""Per-unit memory capacity (Collins et al. 2017, sec. on per-unit capacity; details ours).

Collins show a network a random real vector once and ask for it back after a
delay; the reconstruction error against hidden width has a knee at
``n_h = n_in``: about one real number stored per hidden unit.
"""

from __future__ import annotations

from typing import Any

import torch

from rnnsweep.tasks.base import Batch, RegressionTask, _int_option

__all__ = ["MemoryTask"]


class MemoryTask(RegressionTask):
    """Recall an ``n_vec``-dimensional Gaussian vector after ``delay`` blank steps.

    Encoding (``T = seq_len = delay + 2``, ``n_in = n_vec + 1``, ``n_out = n_vec``):

    - step 0: channels ``0 .. n_vec-1`` hold ``v ~ N(0, I_{n_vec})``, the flag is 0;
    - steps ``1 .. delay``: all zeros;
    - step ``T-1``: the recall flag (channel ``n_vec``) is 1, the rest 0.

    The target is ``v`` at the last step only (the mask is 1 there and 0
    elsewhere; unmasked target rows are 0). Loss and metric: squared error
    averaged over the ``n_vec`` outputs (:class:`RegressionTask`).

    Solved threshold: ``0.1 * Var(v_i) = 0.1``. Predicting the mean (zero)
    scores the target variance, 1; under a tenth of it means at least 90% of the
    vector's variance is reconstructed.
    """

    name = "memory"
    description = "recall a random real vector after a delay, L2 loss (Collins per-unit capacity)"

    target_variance = 1.0  # Var(v_i) for v_i ~ N(0, 1)

    def __init__(self, *, n_vec: int = 8, delay: int = 10) -> None:
        self.n_vec = _int_option("memory", "n_vec", n_vec, 1)
        self.delay = _int_option("memory", "delay", delay, 0)
        self.seq_len = self.delay + 2
        self.n_in = self.n_vec + 1
        self.n_out = self.n_vec
        self.solved_threshold = 0.1 * self.target_variance

    def sample(self, generator: torch.Generator, batch_size: int) -> Batch:
        T, B, N = self.seq_len, batch_size, self.n_vec
        v = torch.randn(B, N, generator=generator)  # (B, n_vec)
        x = torch.zeros(T, B, N + 1)  # (T, B, n_in)
        x[0, :, :N] = v
        x[-1, :, N] = 1.0  # recall flag
        return Batch.at_end(x, v)  # target (B, n_out)

    def options(self) -> dict[str, Any]:
        return {"n_vec": self.n_vec, "delay": self.delay}
