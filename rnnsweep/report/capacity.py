"""Collins' capacity pictures from the best-trial rows (:func:`rnnsweep.report.best.best_rows`).

- ``bits_vs_params.png`` (Collins et al. 2017 Fig. 1 style): the best trial's
  stored bits against the parameter count, one line per cell, with the
  5 bits/parameter line Collins found every cell near.
- ``error_vs_width.png`` (their per-unit capacity): the best reconstruction error
  of the memory task against hidden width, one line per cell, with the number of
  reals to store (``n_vec``) marked and each curve's knee (:func:`knee_width`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rnnsweep.report._figures import log_scale, save  # noqa: E402

__all__ = ["COLLINS_BITS_PER_PARAM", "knee_width", "plot_bits_vs_params", "plot_error_vs_width"]

COLLINS_BITS_PER_PARAM = 5.0  # Collins et al. 2017, Fig. 1: about 5 bits per parameter


def knee_width(widths: Sequence[float], errors: Sequence[float]) -> float | None:
    """The width where the error curve bends most: on ``log error`` against
    ``log2 width``, the interior point where the slope rises most (steep fall
    before, flatter after). None with fewer than 3 usable points.

    Points with a non-finite or non-positive error are dropped; the rest are
    sorted by width. The change of slope at point i is ``s_i - s_{i-1}``, with
    ``s_i`` the slope from point i to i+1: the discrete second derivative on a
    possibly uneven grid, which puts a piecewise-linear curve's knee exactly on
    its corner.
    """
    pts = sorted(
        (float(w), float(e))
        for w, e in zip(widths, errors, strict=True)
        if np.isfinite(e) and e > 0 and w > 0
    )
    if len(pts) < 3:
        return None
    x = np.log2([w for w, _ in pts])
    y = np.log([e for _, e in pts])
    slopes = np.diff(y) / np.diff(x)  # (n-1,)
    change = np.diff(slopes)  # (n-2,): at interior points 1 .. n-2
    return pts[int(np.argmax(change)) + 1][0]


def _label(row: dict[str, Any]) -> str:
    return f"{row['arch']} d{row['depth']}"


def _by_cell(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    cells: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("best") is not None:
            cells.setdefault(_label(r), []).append(r)
    return cells


def plot_bits_vs_params(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """Best stored bits against parameter count per cell, with the 5 bits/param line."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    cells = _by_cell(rows)
    all_p = [r["params"] for rs in cells.values() for r in rs]
    for label, rs in sorted(cells.items()):
        rs = sorted(rs, key=lambda r: r["params"])
        ax.plot(
            [r["params"] for r in rs],
            [r.get("bits", np.nan) for r in rs],
            marker="o",
            label=label,
        )
    if all_p:
        p = np.geomspace(min(all_p) / 1.3, max(all_p) * 1.3, 20)
        ax.plot(p, COLLINS_BITS_PER_PARAM * p, "k--", lw=1.2, label="5 bits/param (Collins)")
        ax.plot(p, 1.0 * p, "k:", lw=1.0, label="1 bit/param")
    log_scale(ax, True, True)
    ax.set_xlabel("parameters")
    ax.set_ylabel("stored bits of the best trial, $b\\,(1 - H(p))$")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save(fig, path)


def plot_error_vs_width(
    rows: Sequence[dict[str, Any]], path: Path, title: str, n_vec: int | None
) -> tuple[Path, dict[str, float | None]]:
    """Best reconstruction error against width per cell, ``n_vec`` marked, knees found.

    Returns the path and each cell's knee width."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    knees: dict[str, float | None] = {}
    for label, rs in sorted(_by_cell(rows).items()):
        rs = sorted(rs, key=lambda r: r["hidden"])
        w = [r["hidden"] for r in rs]
        e = [r["best"] for r in rs]
        (line,) = ax.plot(w, e, marker="o", label=label)
        k = knee_width(w, e)
        knees[label] = k
        if k is not None:
            ax.plot([k], [e[w.index(k)]], marker="*", ms=15, color=line.get_color(), mec="k")
    if n_vec is not None:
        ax.axvline(n_vec, color="k", ls="--", lw=1.2, label=f"$n_h$ = {n_vec} reals to store")
        # One real per unit, exactly: n_h of the n_vec unit-variance values kept, the rest
        # predicted by their mean, gives MSE 1 - n_h / n_vec (0 from n_h = n_vec on).
        ideal = np.linspace(min(r["hidden"] for r in rows), n_vec * 0.97, 50)
        ax.plot(ideal, 1 - ideal / n_vec, color="0.5", ls=":", lw=1.5, label="$1 - n_h/n_{vec}$")
    ax.plot([], [], "k*", ms=10, label="knee (max change of log-slope)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ws = sorted({r["hidden"] for r in rows})
    if ws:
        ax.set_xticks(ws, [str(v) for v in ws])
    ax.set_xlabel("hidden units $n_h$")
    ax.set_ylabel("best reconstruction error (held-out MSE)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save(fig, path), knees
