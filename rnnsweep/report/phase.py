"""Chen et al.'s phase plots as they drew them: the trained metric as a heatmap over
two mean-field parameters, with the timescale xi as contours over it.

Chen, Pennington & Schoenholz (ICML 2018), Figs. 3-4: the test accuracy after
training, over (sigma_w, sigma_b) for the vanilla RNN and (sigma_w, mu_b) for the
minimalRNN, with contours of multiples of xi: training succeeds where the sequence
length T is within a few xi. :func:`phase_heatmap` draws that from a study's
trials: on a grid study each grid point is one cell of the heatmap (several trials
at one point: their median); on scattered points, the median per bin. Diverged
trials have no trained metric: they are drawn as red crosses, and a cell whose
every trial diverged stays blank.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rnnsweep.report._figures import log_scale, save  # noqa: E402
from rnnsweep.report.best import higher_is_better  # noqa: E402

__all__ = ["cell_edges", "metric_grid", "phase_heatmap"]


def theory_on_grid(
    xi_contours: Callable, bx: np.ndarray, by: np.ndarray, xlog: bool, ylog: bool, n: int
) -> tuple[np.ndarray, np.ndarray, Any, Any]:
    """``n`` points along each plotted axis (log-spaced on a log axis, from the first to the
    last edge) and the theory's ``(chi, xi)`` on them, for the report's contours."""
    gx = np.geomspace(bx[0], bx[-1], n) if xlog else np.linspace(bx[0], bx[-1], n)
    gy = np.geomspace(by[0], by[-1], n) if ylog else np.linspace(by[0], by[-1], n)
    chi, xi = xi_contours(gx, gy)
    return gx, gy, chi, xi


def cell_edges(values: np.ndarray, log: bool) -> np.ndarray:
    """Edges of heatmap cells centred on the sorted distinct ``values`` (midpoints between
    neighbours, in log space on a log axis; the outer cells as wide as their neighbour)."""
    v = np.unique(values.astype(float))
    t = np.log(v) if log else v
    if len(t) == 1:
        mids = np.array([t[0] - 0.5, t[0] + 0.5])
    else:
        inner = (t[1:] + t[:-1]) / 2
        mids = np.concatenate([[t[0] - (inner[0] - t[0])], inner, [t[-1] + (t[-1] - inner[-1])]])
    return np.exp(mids) if log else mids


def metric_grid(
    df: pd.DataFrame, x: str, y: str, xlog: bool, ylog: bool, value: str = "metric"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x edges, y edges, median ``value`` of the feasible trials per cell ``(ny, nx)``).

    Few distinct values per axis (a grid study): one cell per value. Otherwise at most
    10 bins per axis, as the outcome map bins."""
    xs, ys = df[x].to_numpy(float), df[y].to_numpy(float)
    ok = ~df["diverged"].astype(bool).to_numpy()
    vals = df[value].to_numpy(float)
    n = len(df)
    grid_like = len(np.unique(xs)) * len(np.unique(ys)) <= max(4, n)
    if grid_like and len(np.unique(xs)) <= 30 and len(np.unique(ys)) <= 30:
        bx, by = cell_edges(xs, xlog), cell_edges(ys, ylog)
    else:
        nb = max(3, min(10, int(math.sqrt(n / 2))))
        bx = np.geomspace(xs.min(), xs.max(), nb + 1) if xlog else np.linspace(*_span(xs), nb + 1)
        by = np.geomspace(ys.min(), ys.max(), nb + 1) if ylog else np.linspace(*_span(ys), nb + 1)
    ix = np.clip(np.searchsorted(bx, xs, side="right") - 1, 0, len(bx) - 2)
    iy = np.clip(np.searchsorted(by, ys, side="right") - 1, 0, len(by) - 2)
    out = np.full((len(by) - 1, len(bx) - 1), np.nan)
    for j in range(len(by) - 1):
        for i in range(len(bx) - 1):
            here = ok & (ix == i) & (iy == j) & np.isfinite(vals)
            if here.any():
                out[j, i] = float(np.median(vals[here]))
    return bx, by, out


def _span(v: np.ndarray) -> tuple[float, float]:
    lo, hi = float(v.min()), float(v.max())
    return (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)


def phase_heatmap(
    df: pd.DataFrame,
    x: str,
    y: str,
    path: Path,
    title: str,
    xi_contours: Callable[[np.ndarray, np.ndarray], tuple] | None,
    T: int | None,
    *,
    labels: Callable[[str], str] = str,
    log_axes: frozenset[str] | set[str] = frozenset(),
) -> Path:
    """Heatmap of the trained metric over (x, y), diverged crosses, chi = 1 and xi contours.

    The metric is the task's (accuracy for classification: brighter is better; a
    loss otherwise: the colour scale is reversed so brighter is still better)."""
    xlog, ylog = x in log_axes, y in log_axes
    names = set(df["metric_name"].dropna()) if "metric_name" in df else set()
    higher = higher_is_better("metric", df)
    metric_label = (
        "accuracy after training (median per cell)"
        if higher
        else f"held-out {'/'.join(sorted(names)) or 'metric'} after training (median per cell)"
    )
    bx, by, grid = metric_grid(df, x, y, xlog, ylog)
    fig, ax = plt.subplots(figsize=(6.6, 5.4))
    cmap = "viridis" if higher else "viridis_r"
    mesh = ax.pcolormesh(bx, by, grid, cmap=cmap, shading="flat")
    fig.colorbar(mesh, ax=ax, label=metric_label)
    ok = ~df["diverged"].astype(bool).to_numpy()
    xs, ys = df[x].to_numpy(float), df[y].to_numpy(float)
    ax.scatter(xs[ok], ys[ok], s=6, c="white", alpha=0.6, label="trial (feasible)", zorder=3)
    if (~ok).any():
        ax.scatter(xs[~ok], ys[~ok], marker="x", c="red", s=28, label="diverged", zorder=3)
    if xi_contours is not None:
        gx, gy, chi, xi = theory_on_grid(xi_contours, bx, by, xlog, ylog, 80)
        if chi is not None:
            from matplotlib import patheffects

            halo = [patheffects.withStroke(linewidth=3.6, foreground="k")]
            if np.nanmin(chi) < 1.0 < np.nanmax(chi):  # the critical line crosses the plane
                cs1 = ax.contour(gx, gy, chi.T, levels=[1.0], colors="w", linewidths=2.2)
                cs1.set(path_effects=halo)
                ax.plot([], [], "w-", lw=2, path_effects=halo, label="$\\chi = 1$ (mean field)")
            if T:
                levels = sorted({T / 4, T / 2, float(T), 2.0 * T})
                cs = ax.contour(
                    gx, gy, xi.T, levels=levels, colors="magenta", linestyles="--", linewidths=1.1
                )
                ax.clabel(cs, fmt=lambda v: f"{v:.0f}", fontsize=7)
                ax.plot([], [], "--", color="magenta", label=f"$\\xi$ = T/4 .. 2T (T = {T})")
    log_scale(ax, xlog, ylog)
    ax.set_xlim(bx[0], bx[-1])
    ax.set_ylim(by[0], by[-1])
    ax.set_xlabel(labels(x))
    ax.set_ylabel(labels(y))
    ax.set_title(title, fontsize=10)
    leg = ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=4)
    leg.get_frame().set_facecolor("0.85")
    return save(fig, path)
