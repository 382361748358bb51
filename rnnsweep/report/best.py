"""The best tuned trial per cell: Collins' capacity view (a maximum, not a fraction).

Collins et al. (2017) measure capacity at the *best* hyperparameters an optimiser
found for each architecture and size (their Fig. 1: stored bits against the
parameter count, about 5 bits per parameter for every cell). ``best_rows`` picks
that trial per group (by default architecture, depth, parameter count and width)
and reports its value with what it came from: the sample count b, the accuracy
p (capacity) or eval loss, and the trial's learning rate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from rnnsweep.errors import SpecError
from rnnsweep.render import Column

if TYPE_CHECKING:
    from rnnsweep.store import Store

__all__ = [
    "BEST_COLUMNS",
    "BEST_KEYS",
    "BestReport",
    "best_report",
    "adaptive_note",
    "best_rows",
    "higher_is_better",
    "sampler_label",
]

# Grouping of the best view: one row per architecture, depth and size.
BEST_KEYS = ("arch", "depth", "params", "hidden")

# Columns where a higher value is the better trial; every other column is minimised.
_HIGHER = {"bits", "bits_per_param", "bits_per_char"}

BEST_COLUMNS = [
    Column("trials", "trials"),
    Column("feasible", "feasible"),
    Column("best", "best", ".4g"),
    Column("b", "b"),
    Column("metric", "p / metric", ".4g"),
    Column("bits", "bits", ".1f"),
    Column("bits_per_param", "bits/param", ".3f"),
    Column("final_loss", "eval loss", ".3g"),
    Column("lr", "lr", ".3g"),
    Column("trial_number", "trial"),
    Column("sampler", "sampler"),
    Column("study", "study"),
]


def sampler_label(sampler: str) -> str:
    """``"gp (adaptive)"`` for the samplers that follow the results, else the name."""
    from rnnsweep.study.spec import ADAPTIVE_SAMPLERS

    return f"{sampler} (adaptive)" if sampler in ADAPTIVE_SAMPLERS else sampler


def adaptive_note(sampler: str) -> str | None:
    """The caveat every report prints under an adaptive sampler's fractions, or None."""
    from rnnsweep.study.spec import ADAPTIVE_SAMPLERS

    if sampler not in ADAPTIVE_SAMPLERS:
        return None
    return (
        f"Note: {sampler} is adaptive: it samples where results were good, so these fractions "
        "measure where the optimiser looked, not the volume of the feasible region; use random "
        "or qmc for that."
    )


def higher_is_better(column: str, frame: pd.DataFrame) -> bool:
    """Whether the best trial maximises ``column``: stored bits yes, losses no; the task
    metric as its task says (accuracy up, mse down)."""
    if column == "metric":
        names = set(frame["metric_name"].dropna()) if "metric_name" in frame else set()
        return names <= {"accuracy"} and bool(names)
    return column in _HIGHER


def _b_of(row: pd.Series) -> int | None:
    """The trial's sample count b: stored in its summary, else its task options."""
    b = row.get("b")
    if b is not None and not (isinstance(b, float) and math.isnan(b)):
        return int(b)
    try:
        opts = json.loads(row.get("config_json") or "{}").get("task_options", {})
    except (TypeError, ValueError):
        return None
    return int(opts["b"]) if "b" in opts else None


def best_rows(
    frame: pd.DataFrame, column: str, keys: Sequence[str] = BEST_KEYS
) -> list[dict[str, Any]]:
    """Per group of ``keys``, the feasible trial with the best ``column``.

    ``frame`` is :func:`rnnsweep.store.export.tidy_trials` output (one or several
    studies). Diverged trials and trials without a finite value never win; a
    group with none left reports ``best`` as None. Raises SpecError for a column
    the trials do not have (naming the numeric ones they do).
    """
    if column not in frame.columns:
        numeric = sorted(c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]))
        raise SpecError(
            f"--best {column!r}: the trials have no such column; choose from {', '.join(numeric)}"
        )
    keys = [k for k in keys if k in frame.columns]
    up = higher_is_better(column, frame)
    rows: list[dict[str, Any]] = []
    for key, g in frame.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        ok = g[~g["diverged"].astype(bool)]
        vals = pd.to_numeric(ok[column], errors="coerce")
        vals = vals[vals.map(lambda v: math.isfinite(v))]
        row.update(trials=len(g), feasible=len(ok), best=None)
        row["sampler"] = ",".join(sorted(set(g["sampler"]))) if "sampler" in g else None
        row["study"] = ",".join(sorted(set(g["study"]))) if "study" in g else None
        if not vals.empty:
            win = ok.loc[vals.idxmax() if up else vals.idxmin()]
            row["best"] = float(vals.loc[win.name])
            row["b"] = _b_of(win)
            for c in ("metric", "bits", "bits_per_param", "final_loss", "lr", "trial_number"):
                if c in win and win[c] is not None and not pd.isna(win[c]):
                    row[c] = win[c].item() if hasattr(win[c], "item") else win[c]
        rows.append(row)
    return rows


@dataclass(frozen=True)
class BestReport:
    """What ``report --best`` shows: the rows, their title, notes and written plots."""

    rows: list[dict[str, Any]]
    title: str
    notes: list[str]
    paths: list[Path]
    knees: dict[str, float | None]


def best_report(
    store: Store, studies: Sequence[str], column: str, plot: Path | None = None
) -> BestReport:
    """The best trial per cell over ``studies`` (one per parameter budget or width, of
    one task), and with ``plot`` its capacity picture: stored bits against parameters
    for a bits column, best error against width (with knees) for the memory task."""
    from rnnsweep.store.export import tidy_trials

    specs = {name: store.study_spec(name) for name in dict.fromkeys(studies)}
    tasks = {s["task"] for s in specs.values()}
    if len(tasks) > 1:
        raise SpecError(f"--best compares studies of one task, got {', '.join(sorted(tasks))}")
    frames = [f for f in (tidy_trials(store.trials_frame(name)) for name in specs) if not f.empty]
    frame = pd.concat(frames, ignore_index=True) if frames else None  # None: nothing complete
    samplers = sorted({s["sampler"] for s in specs.values()})
    task = tasks.pop()
    title = (
        f"{', '.join(specs)}: task {task}, sampler {', '.join(map(sampler_label, samplers))}\n"
        f"best trial per cell by {column} "
        f"({'highest' if frame is not None and higher_is_better(column, frame) else 'lowest'})"
    )
    from rnnsweep.study.spec import ADAPTIVE_SAMPLERS

    notes = [
        f"Note: {s} is adaptive: each row is the best of the points it chose to try; "
        "a larger trial budget can only raise it."
        for s in samplers
        if s in ADAPTIVE_SAMPLERS
    ]
    if frame is None or frame.empty:
        return BestReport([], title, [*notes, "No complete trials yet."], [], {})
    rows = best_rows(frame, column)
    paths: list[Path] = []
    knees: dict[str, float | None] = {}
    if plot is not None:
        from rnnsweep.report.capacity import plot_bits_vs_params, plot_error_vs_width

        plot.mkdir(parents=True, exist_ok=True)
        label = "+".join(specs) if len(specs) < 3 else f"{next(iter(specs))} (+{len(specs) - 1})"
        if column in ("bits", "bits_per_param"):
            paths.append(
                plot_bits_vs_params(
                    rows, plot / "bits_vs_params.png", f"{label}: best trial per cell"
                )
            )
        elif task == "memory":
            n_vec = next(iter(specs.values())).get("task_options", {}).get("n_vec")
            path, knees = plot_error_vs_width(
                rows, plot / "error_vs_width.png", f"{label}: best error per width", n_vec
            )
            paths.append(path)
            for cell, k in knees.items():
                where = f"{k:g}" if k is not None else "none (needs 3 widths)"
                notes.append(f"knee of {cell}: n_h = {where} (n_vec = {n_vec})")
        notes += [f"wrote {p}" for p in paths]
    return BestReport(rows, title, notes, paths, knees)
