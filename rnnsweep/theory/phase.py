"""Mean-field phase diagrams: ``chi`` and ``xi`` over a 2-D grid of initialisations.

Chen, Pennington & Schoenholz 2018 (SCIENCE.md 4) plot trained accuracy over
``(sigma_w, sigma_b)`` for the vanilla RNN and ``(sigma_w, mu_b)`` for the
minimalRNN, with the critical line ``chi = 1`` and contours of multiples of
the timescale ``xi``: training succeeds where the sequence length ``T`` is within
a few ``xi``. :func:`phase_grid` computes the theory on such a grid and
:func:`plot_phase` draws it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from rnnsweep.theory.meanfield import mean_field

__all__ = ["default_axes", "phase_grid", "phase_label", "plot_phase"]

Other = Literal["sigma_b", "mu_b"]

_SYMBOL = {"sigma_w": "σ_w", "sigma_b": "σ_b", "mu_b": "μ_b"}


def default_axes(arch: Literal["rnn", "minimalrnn"]) -> tuple[np.ndarray, np.ndarray, Other]:
    """``rnnsweep theory --grid``'s axes: 60 values of sigma_w and 60 of the other axis
    (sigma_b in [0, 1.5] for the vanilla RNN, mu_b in [-4, 6] for the minimalRNN, whose
    broad trainable band needs the wider sigma_w range), and the other axis' name."""
    if arch == "minimalrnn":
        return np.linspace(0.05, 6.0, 60), np.linspace(-4.0, 6.0, 60), "mu_b"
    return np.linspace(0.05, 3.0, 60), np.linspace(0.0, 1.5, 60), "sigma_b"


def phase_label(chi: float) -> str:
    """The phase of an initialisation: ordered (chi < 1), critical, or chaotic (chi > 1)."""
    if chi < 1:
        return "ordered (chi < 1)"
    return "critical" if chi == 1 else "chaotic (chi > 1)"


def phase_grid(
    arch: Literal["rnn", "minimalrnn"],
    sigma_w_values: Sequence[float] | np.ndarray,
    other_values: Sequence[float] | np.ndarray,
    sigma_v: float,
    R: float,
    other: Other = "sigma_b",
) -> dict[str, object]:
    """:func:`~rnnsweep.theory.meanfield.mean_field` at every ``(other, sigma_w)``.

    Returns a dict with float64 arrays of shape ``(len(other_values),
    len(sigma_w_values))``, row ``i`` at ``other_values[i]``, column ``j`` at
    ``sigma_w_values[j]`` (image layout: ``sigma_w`` on x, ``other`` on y):

    - ``"chi"``, ``"xi"``, ``"q_star"``; ``"Q_star"`` (NaN for the vanilla RNN);

    and the axes and fixed parameters: ``"sigma_w"``, ``"other_values"`` (1-D),
    ``"other"`` (its name), ``"arch"``, ``"sigma_v"``, ``"R"``.

    ``other`` is ``"sigma_b"`` (bias spread) or ``"mu_b"`` (gate bias mean;
    minimalRNN only, SCIENCE.md 4 keeps ``mu_b = 0`` for the vanilla cell).
    """
    if other not in ("sigma_b", "mu_b"):
        raise ValueError(f"other must be 'sigma_b' or 'mu_b', got {other!r}")
    if arch == "rnn" and other == "mu_b":
        raise ValueError("the vanilla RNN theory has mu_b = 0; sweep other='sigma_b'")
    sw = np.asarray(sigma_w_values, dtype=np.float64)  # (n_w,)
    ov = np.asarray(other_values, dtype=np.float64)  # (n_o,)
    shape = (ov.size, sw.size)
    out = {k: np.full(shape, np.nan) for k in ("chi", "xi", "q_star", "Q_star")}
    for i, o in enumerate(ov):
        for j, s in enumerate(sw):
            mf = mean_field(arch, float(s), sigma_v, R, **{other: float(o)})
            out["chi"][i, j] = mf.chi
            out["xi"][i, j] = mf.xi
            out["q_star"][i, j] = mf.q_star
            if mf.Q_star is not None:
                out["Q_star"][i, j] = mf.Q_star
    return {
        **out,
        "sigma_w": sw,
        "other_values": ov,
        "other": other,
        "arch": arch,
        "sigma_v": sigma_v,
        "R": R,
    }


def plot_phase(grid: dict[str, object], path: str | Path, T: int | None = None) -> Path:
    """Draw ``log10(xi)`` over the grid with the ``chi = 1`` line; save a PNG at ``path``.

    With ``T`` (a sequence length), dashed contours mark ``xi = T, T/2, T/4``:
    Chen et al.'s "T within a few xi" band. ``xi`` is infinite exactly on the
    critical line; the colour scale is clipped at the grid's largest finite
    value. Where the minimalRNN's fixed-point map is bistable (large ``mu_b``)
    ``chi`` jumps over 1 instead of crossing it, and the ``chi = 1`` contour
    traces that jump (a staircase at the grid's resolution), not a smooth
    critical line. Uses matplotlib's object API with the Agg canvas (no pyplot state,
    no display); matplotlib is imported here so the rest of the package does not
    need it.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    sw = np.asarray(grid["sigma_w"])  # (n_w,)
    ov = np.asarray(grid["other_values"])  # (n_o,)
    chi = np.asarray(grid["chi"])  # (n_o, n_w)
    xi = np.asarray(grid["xi"])  # (n_o, n_w)
    finite = np.isfinite(xi)
    cap = float(xi[finite].max()) if finite.any() else 1.0
    log_xi = np.log10(np.where(finite, xi, cap))  # (n_o, n_w)

    fig = Figure(figsize=(6.4, 4.8), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    mesh = ax.pcolormesh(sw, ov, log_xi, shading="nearest", cmap="viridis")
    fig.colorbar(mesh, ax=ax, label="log10 ξ  (steps)")
    handles = []
    if chi.min() < 1.0 < chi.max():
        ax.contour(sw, ov, chi, levels=[1.0], colors="black", linewidths=3.0)
        handles.append(Line2D([], [], color="black", linewidth=3.0, label="χ = 1"))
    if T is not None and finite.any():
        # One line style per multiple; a legend reads better than inline labels,
        # which pile up where the band around chi = 1 is narrow.
        styles = {
            float(T): ("solid", "ξ = T"),
            T / 2: ("dashed", "ξ = T/2"),
            T / 4: ("dotted", "ξ = T/4"),
        }
        for level, (style, label) in sorted(styles.items()):
            if float(xi[finite].min()) < level < cap:
                ax.contour(
                    sw, ov, np.where(finite, xi, cap), levels=[level], colors="white",
                    linewidths=1.3, linestyles=style,
                )  # fmt: skip
                handles.append(
                    Line2D([], [], color="white", linewidth=1.3, linestyle=style, label=label)
                )
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=8, facecolor="0.5", framealpha=0.8)
    ax.set_xlabel(_SYMBOL["sigma_w"])
    ax.set_ylabel(_SYMBOL[str(grid["other"])])
    arch = "vanilla RNN (tanh)" if grid["arch"] == "rnn" else "minimalRNN"
    t_note = f", T = {T}" if T is not None else ""
    ax.set_title(
        f"{arch}: mean-field timescale ξ = 1/|ln χ|\n"
        f"σ_v = {grid['sigma_v']:g}, R = {grid['R']:g}{t_note}",
        fontsize=10,
    )
    path = Path(path)
    fig.savefig(path, format="png")
    return path
