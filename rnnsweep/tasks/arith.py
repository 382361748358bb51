"""Addition written as characters (Collins et al. 2017, "quite hard"; details ours).

Collins give two integers as a character string and have the network emit the
sum as characters after the operands. Their exact layout is not available to
us; the one below is ours.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from rnnsweep.tasks.base import Batch, ClassificationTask, _int_option

__all__ = ["ArithTask"]

PLUS, EQUALS, BLANK = 10, 11, 12  # input symbols after the digits 0-9
END = 10  # output class after the digits 0-9


class ArithTask(ClassificationTask):
    """Read ``"a+b="`` one character per step, then emit the digits of ``a + b`` and an end.

    Operands. Each of ``a`` and ``b`` independently gets a digit count ``L``
    uniform in ``1 .. max_digits``, then a value uniform among the ``L``-digit
    numbers (``0 .. 9`` for ``L = 1``, ``10^(L-1) .. 10^L - 1`` otherwise), so
    short operands are as common as long ones.

    Input (``n_in = 13``: digits 0-9, ``'+'`` = 10, ``'='`` = 11, blank = 12, one-hot):
    the string ``"a+b="`` is left-padded with blanks to ``2 * max_digits + 2``
    characters, so ``'='`` is always at step ``2 * max_digits + 1`` and the
    answer always starts at the same step. Then ``max_digits + 2`` blank steps.
    ``T = seq_len = 3 * max_digits + 4`` (13 at the default).

    Output (``n_out = 11``: digits 0-9 and end = 10, one softmax): during the
    blank steps after ``'='`` the targets are the decimal digits of ``a + b``,
    most significant first (no leading zeros; ``0`` is the single digit 0),
    then the end class. The mask is 1 on those answer digits and the end step
    only; remaining steps (after end, and all operand steps) are masked and hold
    the end class as a placeholder. Loss cross-entropy, metric per-character
    accuracy, both over masked steps. There is no teacher forcing: the input is
    blank while the answer is written, so the net must know where it is.

    Solved threshold: 0.1 nats mean cross-entropy over answer characters
    (chance ``log 11 = 2.40``); at 0.1 nearly every character is right with
    high confidence, i.e. carries are being computed.
    """

    name = "arith"
    description = "addition of two integers as characters, answer emitted digit by digit (Collins)"

    n_streams = 1
    n_classes = 11
    n_symbols = 13

    def __init__(self, *, max_digits: int = 3) -> None:
        # 15 digits: a sum below 2e15 < 2**53 is exact in float64 and int64.
        self.max_digits = _int_option("arith", "max_digits", max_digits, 1, 15)
        D = self.max_digits
        self.prompt_len = 2 * D + 2  # "a+b=" padded
        self.answer_len = D + 2  # up to D + 1 digits, then end
        self.seq_len = self.prompt_len + self.answer_len
        self.n_in = self.n_symbols
        self.n_out = self.n_streams * self.n_classes
        self.solved_threshold = 0.1

    def _operand(self, generator: torch.Generator, batch_size: int) -> torch.Tensor:
        """``batch_size`` operands ``(B,)`` int64: length uniform, then value uniform."""
        length = torch.randint(1, self.max_digits + 1, (batch_size,), generator=generator)
        low = torch.where(length > 1, 10 ** (length - 1), 0)  # (B,)
        high = 10**length  # (B,) exclusive
        u = torch.rand(batch_size, generator=generator, dtype=torch.float64)  # (B,)
        value = low + (u * (high - low).to(torch.float64)).to(torch.int64)  # (B,) floor
        return torch.minimum(value, high - 1)  # guard the float rounding at u -> 1

    @staticmethod
    def _n_digits(v: torch.Tensor, max_len: int) -> torch.Tensor:
        """Decimal digit count ``(B,)`` of non-negative ``v`` with at most ``max_len`` digits."""
        powers = 10 ** torch.arange(1, max_len)  # (max_len - 1,)
        return 1 + (v.unsqueeze(1) >= powers).sum(dim=1)  # (B,)

    def sample(self, generator: torch.Generator, batch_size: int) -> Batch:
        D, B, P = self.max_digits, batch_size, self.prompt_len
        a = self._operand(generator, B)  # (B,)
        b = self._operand(generator, B)  # (B,)
        la, lb = self._n_digits(a, D), self._n_digits(b, D)  # (B,)

        # 1. The prompt, built right to left: r = distance from '=' (r = 0).
        r = torch.arange(P - 1, -1, -1).unsqueeze(1)  # (P, 1), step t has r = P - 1 - t
        lb_, la_ = lb.unsqueeze(0), la.unsqueeze(0)  # (1, B)
        b_digit = (b.unsqueeze(0) // 10 ** (r - 1).clamp_min(0)) % 10  # (P, B) b's digit r-1
        a_pow = (r - lb_ - 2).clamp_min(0)  # (P, B) a's digit index at this step
        a_digit = (a.unsqueeze(0) // 10**a_pow) % 10  # (P, B)
        prompt = torch.full((P, B), BLANK, dtype=torch.long)  # (P, B)
        prompt = torch.where(r == 0, EQUALS, prompt)
        prompt = torch.where((r >= 1) & (r <= lb_), b_digit, prompt)
        prompt = torch.where(r == lb_ + 1, PLUS, prompt)
        prompt = torch.where((r >= lb_ + 2) & (r <= lb_ + la_ + 1), a_digit, prompt)
        chars = torch.cat([prompt, torch.full((self.answer_len, B), BLANK)])  # (T, B)
        x = F.one_hot(chars, self.n_symbols).to(torch.float32)  # (T, B, n_in)

        # 2. The answer, most significant digit first: position k < ls is digit ls-1-k.
        s = a + b  # (B,)
        ls = self._n_digits(s, D + 1).unsqueeze(0)  # (1, B)
        k = torch.arange(self.answer_len).unsqueeze(1)  # (A, 1)
        s_pow = (ls - 1 - k).clamp_min(0)  # (A, B)
        s_digit = (s.unsqueeze(0) // 10**s_pow) % 10  # (A, B)
        answer = torch.where(k < ls, s_digit, END)  # (A, B)
        answer_mask = (k <= ls).to(torch.float32)  # (A, B) digits and the end step

        y = torch.full((self.seq_len, B, 1), END, dtype=torch.long)  # (T, B, S=1)
        y[P:, :, 0] = answer
        mask = torch.zeros(self.seq_len, B)  # (T, B)
        mask[P:] = answer_mask
        return Batch(x, y, mask)

    def options(self) -> dict[str, Any]:
        return {"max_digits": self.max_digits}
