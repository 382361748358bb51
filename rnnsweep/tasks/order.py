"""Temporal order (Hochreiter & Schmidhuber 1997, exp. 6a; Ribeiro et al. 2020 defaults).

Two relevant symbols, each A or B, hide at random positions among distractors;
the class is their ordered pair. Ribeiro's public code uses length 200, windows
``[9, 19)`` and ``[39, 49)``, 4 distractors and 4 classes, read at the last step
(SCIENCE.md section 3). Unlike Hochreiter's original there are no start and end
marker symbols (not in the setup we follow); the net must hold the two symbols
from step < 49 to step 199.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from rnnsweep.tasks.base import Batch, ClassificationTask, TaskOptionError, _int_option

__all__ = ["OrderTask"]

A, B_SYM = 0, 1  # relevant symbols; distractors are 2 .. 1 + N_DISTRACTORS
N_DISTRACTORS = 4
N_SYMBOLS = 2 + N_DISTRACTORS


def _window_option(value: Any, option: str, seq_len: int) -> tuple[int, int]:
    """``value`` checked to be ``[start, end)`` with ``0 <= start < end <= seq_len``."""
    if (
        isinstance(value, str | bytes)
        or not isinstance(value, Sequence)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise TaskOptionError(
            f"order option {option} must be a pair [start, end) of integers, got {value!r}"
        )
    start, end = value
    if not 0 <= start < end <= seq_len:
        raise TaskOptionError(
            f"order option {option} must satisfy 0 <= start < end <= seq_len ({seq_len}),"
            f" got {value!r}"
        )
    return int(start), int(end)


class OrderTask(ClassificationTask):
    """Classify the ordered pair of the two relevant symbols (AA, AB, BA, BB).

    Encoding (``T = seq_len``, ``n_in = 6``, one-hot over A = 0, B = 1 and
    distractors 2-5): every step holds a distractor drawn uniformly, except
    two: position ``p1`` uniform in ``window1 = [start, end)`` and ``p2``
    uniform in ``window2``, which hold A or B, each a fair coin. The windows
    do not overlap (``window1`` ends at or before ``window2`` starts), so
    ``p1 < p2`` and "first" and "second" are well defined.

    Output (``n_out = 4``, one softmax): class ``2 * s1 + s2`` with ``s1, s2``
    in {A = 0, B = 1} the symbols at ``p1`` and ``p2`` (AA = 0, AB = 1, BA = 2,
    BB = 3), read at the last step only (mask; unmasked targets are 0).
    Loss cross-entropy, metric accuracy.

    Windows are given in absolute steps and are *not* rescaled with
    ``seq_len``; changing the length changes only the delay before the read.

    Solved threshold: ``0.1 * log 4 = 0.139`` nats, a tenth of chance. Knowing
    only one of the two symbols leaves ``log 2 = 0.693``, so under 0.139 both
    must be remembered, confidently.
    """

    name = "order"
    description = "temporal order: class of two A/B symbols among distractors, read at the end"

    n_streams = 1
    n_classes = 4

    def __init__(
        self,
        *,
        seq_len: int = 200,
        window1: Sequence[int] = (9, 19),
        window2: Sequence[int] = (39, 49),
    ) -> None:
        self.seq_len = _int_option("order", "seq_len", seq_len, 2)
        self.window1 = _window_option(window1, "window1", self.seq_len)
        self.window2 = _window_option(window2, "window2", self.seq_len)
        if self.window2[0] < self.window1[1]:
            raise TaskOptionError(
                f"order option window2 must start at or after window1 ends"
                f" ({self.window1[1]}), got {list(self.window2)!r}"
            )
        self.n_in = N_SYMBOLS
        self.n_out = self.n_streams * self.n_classes
        self.solved_threshold = 0.1 * math.log(self.n_classes)

    def sample(self, generator: torch.Generator, batch_size: int) -> Batch:
        T, B = self.seq_len, batch_size
        sym = torch.randint(2, N_SYMBOLS, (T, B), generator=generator)  # (T, B) distractors
        p1 = torch.randint(*self.window1, (B,), generator=generator)  # (B,)
        p2 = torch.randint(*self.window2, (B,), generator=generator)  # (B,)
        s = torch.randint(0, 2, (2, B), generator=generator)  # (2, B) A = 0, B = 1
        cols = torch.arange(B)
        sym[p1, cols] = s[0]
        sym[p2, cols] = s[1]
        x = F.one_hot(sym, N_SYMBOLS).to(torch.float32)  # (T, B, 6)
        return Batch.at_end(x, (2 * s[0] + s[1]).unsqueeze(-1))  # target (B, S=1)

    def options(self) -> dict[str, Any]:
        # Lists, not tuples: the options are stored as JSON and read back as lists.
        return {
            "seq_len": self.seq_len,
            "window1": list(self.window1),
            "window2": list(self.window2),
        }
