"""Recurrent cells (SCIENCE.md section 2) and the packed reference model."""

from __future__ import annotations

from rnnsweep.cells.base import Cell, InitConfig, activation
from rnnsweep.cells.stack import (
    ALIASES,
    ARCHS,
    GRU_RESETS,
    ModelConfig,
    PackedRNN,
    canonical_arch,
    count_params,
    get_cell,
    hidden_for_budget,
)

__all__ = [
    "ALIASES",
    "ARCHS",
    "GRU_RESETS",
    "Cell",
    "InitConfig",
    "ModelConfig",
    "PackedRNN",
    "activation",
    "canonical_arch",
    "count_params",
    "get_cell",
    "hidden_for_budget",
]
