"""Pictures of a study: what people would rather look at than read.

- ``feasible_vs_depth.png``: feasible fraction against depth per architecture,
  with Wilson 95% intervals (the trainability measure, Collins et al. 2017).
- ``outcome_<arch>.png``: every trial over two hyperparameters (by default
  learning rate x init scale), diverged ones as red crosses, feasible ones coloured
  by final loss, over a binned feasible-fraction background; when the axes are
  mean-field parameters (init_scale = sigma_w against b_fg = mu_b or sigma_b) of
  a cell the theory covers, contours of the timescale xi are drawn on top.
- ``phase_<arch>.png``: on those mean-field planes only, Chen et al.'s picture: the
  trained metric (accuracy, or held-out loss) as a heatmap over the grid, with the
  chi = 1 line and xi contours over it (:mod:`rnnsweep.report.phase`).
- ``final_loss_box.png``: final loss of feasible trials per architecture and
  depth, in the style of Collins et al. Fig. 5.
- ``curves.png``: median held-out loss against step per group (e.g. init), with
  the interquartile band.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rnnsweep.report._figures import log_scale, save  # noqa: E402
from rnnsweep.report.phase import theory_on_grid  # noqa: E402
from rnnsweep.report.stats import wilson_interval  # noqa: E402

__all__ = ["LOG_AXES", "plot_study"]

# Hyperparameters plotted on a log axis.
LOG_AXES = {"lr", "init_scale", "clip", "sigma_v"}
_LABELS = {
    "lr": "learning rate",
    "init_scale": "init scale $\\sigma_w$",
    "b_fg": "gate bias $b_{fg}$ ($\\mu_b$)",
    "clip": "gradient clip",
    "sigma_b": "bias std $\\sigma_b$",
    "sigma_v": "input scale $\\sigma_v$",
}


def _label(name: str) -> str:
    return _LABELS.get(name, name)


def feasible_vs_depth(df: pd.DataFrame, path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for arch, g in df.groupby("arch", sort=True):
        depths, frac, lo, hi = [], [], [], []
        for depth, gd in g.groupby("depth", sort=True):
            n, k = len(gd), int((~gd["diverged"].astype(bool)).sum())
            a, b = wilson_interval(k, n)
            depths.append(depth)
            frac.append(k / n)
            lo.append(k / n - a)
            hi.append(b - k / n)
        ax.errorbar(depths, frac, yerr=[lo, hi], marker="o", capsize=4, label=arch)
    ax.set_xlabel("depth (stacked layers)")
    ax.set_ylabel("feasible fraction (95% Wilson CI)")
    ax.set_ylim(-0.02, 1.02)
    depths_all = sorted(df["depth"].unique())
    ax.set_xticks(depths_all)
    if len(depths_all) > 1 and max(depths_all) / max(1, min(depths_all)) >= 4:
        ax.set_xscale("log", base=2)
        ax.set_xticks(depths_all, [str(d) for d in depths_all])
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncols=2)
    return save(fig, path)


def _bins(values: np.ndarray, log: bool, n: int) -> np.ndarray:
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    if lo == hi:
        lo, hi = (lo / 1.5, hi * 1.5) if log and lo > 0 else (lo - 0.5, hi + 0.5)
    if log and lo > 0:  # a margin, so points on the edge are not cut in half
        lo, hi = lo / (hi / lo) ** 0.04, hi * (hi / lo) ** 0.04
    else:
        lo, hi = lo - 0.04 * (hi - lo), hi + 0.04 * (hi - lo)
    return np.geomspace(lo, hi, n + 1) if log and lo > 0 else np.linspace(lo, hi, n + 1)


def outcome_map(
    df: pd.DataFrame,
    x: str,
    y: str,
    path: Path,
    title: str,
    xi_contours: Callable[[np.ndarray, np.ndarray], np.ndarray | None] | None = None,
    T: int | None = None,
) -> Path:
    """Trials over (x, y): binned feasible fraction, diverged crosses, loss-coloured dots."""
    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    xs, ys = df[x].to_numpy(float), df[y].to_numpy(float)
    xlog, ylog = x in LOG_AXES, y in LOG_AXES
    n_bins = max(3, min(10, int(math.sqrt(len(df) / 2))))
    bx, by = _bins(xs, xlog, n_bins), _bins(ys, ylog, n_bins)
    ok = ~df["diverged"].astype(bool).to_numpy()
    tot, _, _ = np.histogram2d(xs, ys, bins=[bx, by])
    feas, _, _ = np.histogram2d(xs[ok], ys[ok], bins=[bx, by])
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(tot > 0, feas / tot, np.nan)
    mesh = ax.pcolormesh(bx, by, frac.T, cmap="Greens", vmin=0, vmax=1, alpha=0.45, shading="flat")
    fig.colorbar(mesh, ax=ax, label="feasible fraction (bin)")
    loss = df["final_loss"].to_numpy(float)
    sc = ax.scatter(
        xs[ok],
        ys[ok],
        c=loss[ok],
        cmap="viridis_r",
        s=22,
        edgecolors="k",
        linewidths=0.3,
        label="feasible (colour: final loss)",
        zorder=3,
    )
    if ok.any():
        fig.colorbar(sc, ax=ax, label="final loss (feasible)")
    ax.scatter(xs[~ok], ys[~ok], marker="x", c="red", s=26, label="diverged", zorder=3)
    if xi_contours is not None:
        gx, gy, chi, xi = theory_on_grid(xi_contours, bx, by, xlog, ylog, 60)
        if chi is not None:
            ax.contour(gx, gy, chi.T, levels=[1.0], colors="k", linewidths=2.0)
            ax.plot([], [], "k-", lw=2, label="$\\chi = 1$ (mean field)")
            if T:
                levels = sorted({T / 4, T / 2, float(T)})
                cs = ax.contour(
                    gx, gy, xi.T, levels=levels, colors="purple", linestyles="--", linewidths=1.0
                )
                ax.clabel(cs, fmt=lambda v: f"$\\xi$={v:.0f}", fontsize=7)
    log_scale(ax, xlog, ylog)
    ax.set_xlabel(_label(x))
    ax.set_ylabel(_label(y))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="best")
    return save(fig, path)


def final_loss_box(df: pd.DataFrame, path: Path, title: str) -> Path:
    ok = df[~df["diverged"].astype(bool)]
    groups = [
        (f"{a}\nd{d}", g["final_loss"].dropna().to_numpy())
        for (a, d), g in ok.groupby(["arch", "depth"], sort=True)
    ]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(groups) + 2), 4.2))
    if groups:
        ax.boxplot([g for _, g in groups], tick_labels=[n for n, _ in groups], showfliers=True)
        for i, (_, g) in enumerate(groups, start=1):
            jitter = np.random.default_rng(i).uniform(-0.12, 0.12, len(g))
            ax.scatter(np.full(len(g), i) + jitter, g, s=8, alpha=0.5, color="tab:blue")
    ax.set_ylabel("final held-out loss (feasible trials)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return save(fig, path)


def curves_plot(
    curves: pd.DataFrame, trials: pd.DataFrame, by: Sequence[str], path: Path, title: str
) -> Path:
    """Median held-out loss against step per group, with the interquartile band."""
    meta = trials.set_index("optuna_trial_id")[list(by)]
    cur = curves.merge(
        meta.reset_index(), on="optuna_trial_id", how="left", suffixes=("_curve", "")
    )
    cur["eval_loss"] = cur["eval_loss"].astype(float).replace([np.inf, -np.inf], np.nan)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, g in cur.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        stats = g.groupby("step")["eval_loss"].quantile([0.25, 0.5, 0.75]).unstack().dropna()
        if stats.empty:
            continue
        label = ", ".join(f"{k}={v}" for k, v in zip(by, key, strict=True))
        (line,) = ax.plot(stats.index, stats[0.5], label=label)
        ax.fill_between(stats.index, stats[0.25], stats[0.75], color=line.get_color(), alpha=0.2)
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out loss (median, IQR)")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)


def plot_study(
    trials: pd.DataFrame,
    curves: pd.DataFrame,
    out_dir: Path,
    name: str,
    *,
    x: str = "lr",
    y: str = "init_scale",
    curves_by: Sequence[str] = ("arch",),
    xi_for: Callable[[str, str, str], Callable | None] | None = None,
    T: int | None = None,
) -> list[Path]:
    """Write every plot of a study into ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        feasible_vs_depth(
            trials, out_dir / "feasible_vs_depth.png", f"{name}: trainability per architecture"
        )
    ]
    for arch, g in trials.groupby("arch", sort=True):
        contours = xi_for(arch, x, y) if xi_for is not None else None
        paths.append(
            outcome_map(
                g,
                x,
                y,
                out_dir / f"outcome_{arch}.png",
                f"{name}: {arch} ({len(g)} trials)",
                contours,
                T,
            )
        )
        if contours is not None:  # a mean-field plane: Chen's heatmap of the trained metric
            from rnnsweep.report.phase import phase_heatmap

            paths.append(
                phase_heatmap(
                    g,
                    x,
                    y,
                    out_dir / f"phase_{arch}.png",
                    f"{name}: {arch}, trained metric over the phase plane",
                    contours,
                    T,
                    labels=_label,
                    log_axes=LOG_AXES,
                )
            )
    paths.append(
        final_loss_box(
            trials, out_dir / "final_loss_box.png", f"{name}: final loss of feasible trials"
        )
    )
    if not curves.empty:
        paths.append(
            curves_plot(
                curves, trials, curves_by, out_dir / "curves.png", f"{name}: learning curves"
            )
        )
    return paths
