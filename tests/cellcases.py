"""Shared by the cell, kernel and diagnostics tests: every cell variant, random parameters."""

from __future__ import annotations

import math

import torch

from rnnsweep.cells import PackedRNN

# (arch, gru_reset, nonlinearity): every cell and every nonlinearity it allows.
ALL_VARIANTS = [
    ("rnn", "pre", "tanh"),
    ("rnn", "pre", "relu"),
    ("irnn", "pre", "relu"),
    ("ugrnn", "pre", "tanh"),
    ("ugrnn", "pre", "relu"),
    ("gru", "pre", "tanh"),
    ("gru", "pre", "relu"),
    ("gru", "post", "tanh"),
    ("gru", "post", "relu"),
    ("lstm", "pre", "tanh"),
    ("lstm", "pre", "relu"),
    ("plusrnn", "pre", "tanh"),  # fixed relu/tanh pair: the request is ignored
    ("minimalrnn", "pre", "tanh"),
]


def randomise(model: PackedRNN, seed: int) -> None:
    """Every parameter (biases and learned initial states included) to random values.

    Weights ``(K, fan_in, out)`` get std ``1/sqrt(fan_in)`` so the gates stay unsaturated.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            z = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if leaf.startswith(("W", "V", "P")) and leaf != "Pb":
                z = z / math.sqrt(p.shape[1])
            else:
                z = 0.5 * z
            p.copy_(z)
