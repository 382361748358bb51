"""The adding problem (Hochreiter & Schmidhuber 1997), a classic long-memory probe.

Two marked values somewhere in a long sequence must be added. Where the markers
may fall differs between papers; we use the common "one marker in each half"
placement (our choice; not checked against a specific source), so the first
marked value must be held for about ``seq_len / 2`` steps on average.
"""

from __future__ import annotations

from typing import Any

import torch

from rnnsweep.tasks.base import Batch, RegressionTask, _int_option

__all__ = ["AddingTask"]


class AddingTask(RegressionTask):
    """Sum the two marked values of a sequence of ``U[0, 1]`` numbers.

    Encoding (``T = seq_len``, ``n_in = 2``, ``n_out = 1``): channel 0 holds a
    value ``u_t ~ U[0, 1]`` at every step; channel 1 is a marker, 1 at exactly
    two steps: ``i`` uniform in ``[0, T // 2)`` and ``j`` uniform in
    ``[T // 2, T)`` (``j`` may be the last step). The target ``u_i + u_j`` is
    read at the last step only (mask; unmasked target rows are 0). Loss and
    metric: squared error (:class:`RegressionTask`).

    Solved threshold: 0.01. Predicting the mean, 1, scores the target variance
    ``2 / 12 = 0.167``; 0.01 is 6% of it, well below what a net that ignores
    the first half (best constant-plus-last-value guess, 1/12 = 0.083) reaches.
    """

    name = "adding"
    description = "adding problem: sum of two marked U[0,1] values, MSE at the end (Hochreiter)"

    target_variance = 2.0 / 12.0  # Var(u_i + u_j), u ~ U[0, 1]

    def __init__(self, *, seq_len: int = 50) -> None:
        self.seq_len = _int_option("adding", "seq_len", seq_len, 2)
        self.n_in = 2
        self.n_out = 1
        self.solved_threshold = 0.01

    def sample(self, generator: torch.Generator, batch_size: int) -> Batch:
        T, B = self.seq_len, batch_size
        half = T // 2
        u = torch.rand(T, B, generator=generator)  # (T, B)
        i = torch.randint(0, half, (B,), generator=generator)  # (B,) first half
        j = torch.randint(half, T, (B,), generator=generator)  # (B,) second half
        cols = torch.arange(B)
        marker = torch.zeros(T, B)  # (T, B)
        marker[i, cols] = 1.0
        marker[j, cols] = 1.0
        x = torch.stack([u, marker], dim=-1)  # (T, B, 2)
        return Batch.at_end(x, (u[i, cols] + u[j, cols]).unsqueeze(-1))  # target (B, 1)

    def options(self) -> dict[str, Any]:
        return {"seq_len": self.seq_len}
