"""The trainability table: feasible fraction per architecture and depth (or any grouping).

Feasible (Collins et al. 2017): the training loss did not diverge. Solved (ours,
stricter): feasible and the final held-out loss is under the task's threshold.
Only counted trials (state ``complete``) enter; failed attempts never do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from rnnsweep.errors import SpecError
from rnnsweep.render import Column
from rnnsweep.report.stats import wilson_interval

__all__ = ["GROUP_KEYS", "REPORT_COLUMNS", "feasibility_rows", "parse_by"]

# Columns a report may group by.
GROUP_KEYS = (
    "arch",
    "depth",
    "optimizer",
    "nonlinearity",
    "init",
    "hidden",
    "task",
    "sampler",
    "region",
    "region_final",
    "xi_bin",
)

REPORT_COLUMNS = [
    Column("trials", "trials"),
    Column("feasible", "feasible"),
    Column("feasible_fraction", "feasible %", lambda v: f"{100 * v:.1f}"),
    Column("ci", "95% CI"),
    Column("solved_fraction", "solved %", lambda v: f"{100 * v:.1f}"),
    Column("median_loss", "median loss", ".3g"),
    Column("best_loss", "best loss", ".3g"),
    Column("hidden", "hidden"),
    Column("params", "params"),
    Column("sampler", "sampler"),
]


def parse_by(by: str | Sequence[str]) -> list[str]:
    keys = [k.strip() for k in (by.split(",") if isinstance(by, str) else by) if k.strip()]
    if not keys:
        raise SpecError("--by needs at least one column, e.g. arch,depth")
    for k in keys:
        if k not in GROUP_KEYS:
            raise SpecError(f"cannot group by {k!r}; choose from {', '.join(GROUP_KEYS)}")
    return list(dict.fromkeys(keys))


def _nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def feasibility_rows(
    df: pd.DataFrame, by: Sequence[str] = ("arch", "depth")
) -> list[dict[str, Any]]:
    """One row per group: counts, feasible fraction with Wilson 95% CI, solved fraction,
    median and best final loss among feasible trials, and the sampler(s)."""
    rows: list[dict[str, Any]] = []
    if df.empty:
        return rows
    missing = [k for k in by if k not in df.columns]
    if missing:
        raise SpecError(
            f"this study recorded no {', '.join(missing)} (region needs diagnostics on; "
            "xi_bin exists for depth-1 tanh rnn and minimalrnn trials only)"
        )
    df = df.dropna(subset=list(by))
    for key, g in df.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        n = len(g)
        feasible = int((~g["diverged"].astype(bool)).sum())
        solved = int(g["solved"].astype(bool).sum())
        lo, hi = wilson_interval(feasible, n)
        ok = g.loc[~g["diverged"].astype(bool), "final_loss"].dropna()
        row: dict[str, Any] = {
            k: (v.item() if hasattr(v, "item") else v) for k, v in zip(by, key, strict=True)
        }
        row.update(
            trials=n,
            feasible=feasible,
            feasible_fraction=feasible / n,
            ci_low=lo,
            ci_high=hi,
            ci=f"{100 * lo:.1f}-{100 * hi:.1f}",
            solved=solved,
            solved_fraction=solved / n,
            median_loss=_nan_to_none(float(ok.median())) if len(ok) else None,
            best_loss=_nan_to_none(float(ok.min())) if len(ok) else None,
            params=int(g["params"].iloc[0])
            if g["params"].nunique() == 1
            else f"{int(g['params'].min())}-{int(g['params'].max())}",
            hidden=int(g["hidden"].iloc[0]) if g["hidden"].nunique() == 1 else None,
            sampler=",".join(sorted(g["sampler"].unique())),
        )
        rows.append(row)
    return rows


# Collins, Sohl-Dickstein & Sussillo (ICLR 2017) Table 1: % of 1000 random HP sets
# whose training diverged (infeasible), parentheses task, ~200k parameters.
# (The +RNN was not run at depth 1.) Quoted in ../shared/SCIENCE.md section 1.
COLLINS_TABLE1: dict[tuple[str, int], float] = {
    ("gru", 1): 15.5,
    ("gru", 8): 3.2,
    ("irnn", 1): 56.7,
    ("irnn", 8): 44.6,
    ("lstm", 1): 12.0,
    ("lstm", 8): 4.0,
    ("rnn", 1): 21.5,
    ("rnn", 8): 18.7,
    ("ugrnn", 1): 20.2,
    ("ugrnn", 8): 11.5,
    ("plusrnn", 8): 8.8,
}


def add_collins(rows: list[dict[str, Any]], task: str) -> bool:
    """Put Collins' Table 1 beside our infeasible % where the rows match it (parens,
    grouped by arch and depth). Returns whether any row matched."""
    if task != "parens":
        return False
    matched = False
    for r in rows:
        key = (r.get("arch"), r.get("depth"))
        if key in COLLINS_TABLE1 and r.get("trials"):
            r["infeasible_pct"] = 100.0 * (1.0 - r["feasible_fraction"])
            r["collins_infeasible_pct"] = COLLINS_TABLE1[key]
            matched = True
    return matched
