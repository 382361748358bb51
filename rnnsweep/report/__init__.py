"""Reports: the feasible-fraction table and its statistics."""

from __future__ import annotations

from rnnsweep.report.stats import feasible_fraction, wilson_interval
from rnnsweep.report.table import (
    COLLINS_TABLE1,
    GROUP_KEYS,
    REPORT_COLUMNS,
    add_collins,
    feasibility_rows,
    parse_by,
)

__all__ = [
    "COLLINS_TABLE1",
    "add_collins",
    "GROUP_KEYS",
    "REPORT_COLUMNS",
    "feasibility_rows",
    "feasible_fraction",
    "parse_by",
    "wilson_interval",
]
