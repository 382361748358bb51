"""Per-parameter capacity (Collins et al. 2017, sec. on per-parameter capacity; details ours).

Collins train a network to memorise ``b`` random binary inputs mapped to random
binary labels, the input shown at one step and the label read ``unroll - 1``
steps later (they unroll 5 steps). With ``p`` the fraction classified right, the
information stored about the labels is

    I = b + b (p log2 p + (1 - p) log2 (1 - p))   bits,

i.e. ``b (1 - H(p))`` with ``H`` the binary entropy: each of the b labels is a
fair coin (1 bit), and a classifier right with probability ``p`` leaves ``H(p)``
bits of uncertainty per label. Dividing by the parameter count gives the
bits-per-parameter figure (about 5 for every cell in their Fig. 1).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rnnsweep.tasks.base import Batch, ClassificationTask, _int_option

__all__ = ["CapacityTask", "distinct_patterns", "stored_bits"]


def stored_bits(b: int, p: float) -> float:
    """``I = b + b (p log2 p + (1 - p) log2 (1 - p))`` bits, with ``0 log2 0 = 0``.

    ``p`` is clipped to ``[0, 1]``. The formula is symmetric about ``p = 1/2``:
    a classifier that is consistently *wrong* (``p < 1/2``) also carries
    information about the labels (flipping its answers gives ``1 - p``), so it
    is applied as written; ``p = 1/2`` gives 0 bits, ``p`` in {0, 1} gives b.
    """
    p = min(max(p, 0.0), 1.0)
    neg_entropy = sum(q * math.log2(q) for q in (p, 1.0 - p) if q > 0.0)  # -H(p)
    return b + b * neg_entropy


def distinct_patterns(b: int, n_bits: int, g: torch.Generator) -> torch.Tensor:
    """``b`` distinct random ``n_bits``-bit codes as 0/1 rows ``(b, n_bits)`` float32, drawn
    from ``g`` (distinct so that every target can be memorised: a repeated pattern with
    two targets could not be)."""
    n_codes = 2**n_bits
    if n_codes <= 4 * b:  # dense: a permutation is cheap and needs no retries
        codes = torch.randperm(n_codes, generator=g)[:b]  # (b,)
    else:  # sparse: reject repeats (rarely any: b << 2**n_bits)
        kept: list[int] = []
        seen: set[int] = set()
        while len(kept) < b:
            for c in torch.randint(0, n_codes, (b,), generator=g).tolist():
                if c not in seen and len(kept) < b:
                    seen.add(c)
                    kept.append(c)
        codes = torch.tensor(kept)  # (b,)
    bit = torch.arange(n_bits)  # (n_bits,)
    patterns = (codes.unsqueeze(1) >> bit) & 1  # (b, n_bits)
    return patterns.to(torch.float32)


class MemorisedPatterns:
    """What the capacity and rcf tasks share: ``b`` fixed patterns, trained on with
    replacement and evaluated all at once. A subclass sets ``b`` and ``_batch(idx)``."""

    b: int

    def _batch(self, idx: torch.Tensor) -> Batch:
        raise NotImplementedError

    def sample(self, generator: torch.Generator, batch_size: int) -> Batch:
        idx = torch.randint(0, self.b, (batch_size,), generator=generator)  # (B,)
        return self._batch(idx)

    def eval_batch(self, seed: int, size: int) -> Batch:
        """All ``b`` patterns once, in order; ``seed`` and ``size`` are ignored."""
        return self._batch(torch.arange(self.b))


class CapacityTask(MemorisedPatterns, ClassificationTask):
    """Memorise ``b`` fixed random binary patterns' random binary labels.

    Data. In ``__init__`` a generator seeded with ``data_seed`` draws ``b``
    *distinct* patterns of ``n_bits`` bits (values 0/1; distinct so that 100%
    is achievable: a repeated pattern with two labels could not be memorised)
    and one fair random label per pattern. These are fixed for the task
    instance: every member and every trial with the same options memorises the
    same set. ``sample`` draws ``batch_size`` indices into the set uniformly
    with replacement from the member's generator.

    Encoding (``T = seq_len = unroll``, ``n_in = n_bits``, ``n_out = 2``): the
    pattern is the input at step 0, all later inputs are zero; the label is the
    target at step ``unroll - 1`` only (mask there; masked targets are 0). One
    softmax over 2 classes; loss cross-entropy, metric accuracy.

    Evaluation. ``eval_batch`` ignores its seed and size and returns all ``b``
    patterns once, in order: the quantity measured is how much of *this* set
    the network stores, so the memorisation set is the evaluation set (there is
    nothing to generalise to, labels being random). ``summary`` turns that
    accuracy into bits and bits per parameter (:func:`stored_bits`).

    Solved threshold: eval loss 0.1 nats (chance is ``log 2 = 0.693``). Mean
    cross-entropy 0.1 needs nearly every pattern right with confidence
    (a pattern classified at probability 0.9 alone costs 0.105).
    """

    name = "capacity"
    description = (
        "memorise b random binary patterns' random labels (Collins per-parameter capacity)"
    )

    n_streams = 1
    n_classes = 2

    def __init__(
        self, *, b: int = 64, n_bits: int = 16, unroll: int = 5, data_seed: int = 0
    ) -> None:
        self.n_bits = _int_option("capacity", "n_bits", n_bits, 1, 62)  # codes fit in int64
        self.b = _int_option("capacity", "b", b, 1, 2**self.n_bits)
        self.unroll = _int_option("capacity", "unroll", unroll, 1)
        self.data_seed = _int_option("capacity", "data_seed", data_seed, 0, 2**63 - 1)
        self.seq_len = self.unroll
        self.n_in = self.n_bits
        self.n_out = self.n_streams * self.n_classes
        self.solved_threshold = 0.1
        self.patterns, self.labels = self._make_data()  # (b, n_bits) float32, (b,) long

    def _make_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed set: ``b`` distinct random ``n_bits``-bit codes and fair labels."""
        g = torch.Generator().manual_seed(self.data_seed)
        patterns = distinct_patterns(self.b, self.n_bits, g)  # (b, n_bits)
        labels = torch.randint(0, 2, (self.b,), generator=g)  # (b,)
        return patterns, labels

    def _batch(self, idx: torch.Tensor) -> Batch:
        T, B = self.seq_len, idx.shape[0]
        x = torch.zeros(T, B, self.n_bits)  # (T, B, n_in)
        x[0] = self.patterns[idx]
        return Batch.at_end(x, self.labels[idx].unsqueeze(-1))  # target (B, S=1)

    def summary(self, eval_loss: float, metric: float, n_params: int) -> dict[str, float]:
        """Stored information ``I`` (bits) and ``I / n_params`` (Collins' bits per parameter)."""
        if n_params <= 0:
            raise ValueError(f"capacity summary needs n_params > 0, got {n_params!r}")
        bits = stored_bits(self.b, metric)
        return {"bits": bits, "bits_per_param": bits / n_params, "b": self.b}

    def objective(self, eval_loss: float, metric: float) -> float:
        """Minus the stored bits ``I(b, p)``: Collins' tuner maximised the information
        stored, not the loss (with b tuned, the lowest loss would pick the smallest b)."""
        if not math.isfinite(metric):
            return math.inf
        return -stored_bits(self.b, metric)

    def options(self) -> dict[str, Any]:
        return {
            "b": self.b,
            "n_bits": self.n_bits,
            "unroll": self.unroll,
            "data_seed": self.data_seed,
        }
