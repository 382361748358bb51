"""Theory on the report's pictures: mean-field xi contours where the axes allow it.

The contours come from :func:`rnnsweep.theory.trial.trial_xi` with the study's one input
moment R (:attr:`rnnsweep.study.resolved.ResolvedStudy.R`): the very function, and the
very R, that gave each trial its stored ``xi`` and ``xi_bin``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from rnnsweep.study.resolved import ResolvedStudy

__all__ = ["PLOT_AXES", "backend_summary", "xi_contours_for"]

PLOT_AXES = ("lr", "init_scale", "b_fg", "clip", "sigma_b", "sigma_v")


def _fixed(study: ResolvedStudy, arch: str, name: str) -> float | None:
    """A search dimension's value where the cell's space fixes it (else None)."""
    r = study.spec.space_for(arch).numeric().get(name)
    return float(r.low) if r is not None and r.fixed else None


def xi_contours_for(study: ResolvedStudy) -> Callable[[str, str, str], Callable | None]:
    """For (arch, x, y): a function of grid axes returning (chi, xi) arrays, or None.

    Only where the plot's axes are the theory's parameters: init_scale is sigma_w;
    b_fg is mu_b (minimalrnn); sigma_b is the bias spread (vanilla rnn). The other
    parameters are the cell's fixed values (sigma_v: its fixed input scale, else tied to
    sigma_w as the trials initialise it), and R is the study's input moment.
    """
    from rnnsweep.theory.meanfield import mean_field
    from rnnsweep.theory.trial import embedded_moment, trial_xi

    R = study.R

    def for_axes(arch: str, x: str, y: str) -> Callable | None:
        if not (
            (arch == "rnn" and {x, y} == {"init_scale", "sigma_b"})
            or (arch == "minimalrnn" and {x, y} == {"init_scale", "b_fg"})
        ):
            return None
        sigma_v = _fixed(study, arch, "sigma_v")

        def grid(gx: np.ndarray, gy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            gx, gy = np.asarray(gx, dtype=float), np.asarray(gy, dtype=float)
            chi = np.full((gx.size, gy.size), np.nan)  # (x, y)
            xi = np.full((gx.size, gy.size), np.nan)
            for i, vx in enumerate(gx):
                for j, vy in enumerate(gy):
                    p = {x: float(vx), y: float(vy)}
                    w = p["init_scale"]
                    v = sigma_v if sigma_v is not None else w
                    b_fg, sigma_b = p.get("b_fg", 0.0), p.get("sigma_b", 0.0)
                    try:
                        xi[i, j] = trial_xi(arch, w, v, R, b_fg, sigma_b)
                        r_in = R if arch == "rnn" else embedded_moment(v, R)
                        kw = {"sigma_b": sigma_b} if arch == "rnn" else {"mu_b": b_fg}
                        chi[i, j] = mean_field(arch, w, v, r_in, **kw).chi
                    except (ValueError, ArithmeticError):
                        pass
            return chi, xi

        return grid

    return for_axes


def backend_summary(frame: Any) -> str:
    """One line naming the backends that computed a study's trials, with counts (rows of
    versions before backends were recorded are "not recorded")."""
    cols = ("loop", "products", "dtype", "device", "torch_version")
    if frame is None or len(frame) == 0 or not set(cols) <= set(frame.columns):
        return ""
    parts = []
    keyed = frame[list(cols)].astype(object).where(frame[list(cols)].notna(), None)
    for key, n in keyed.value_counts(dropna=False).items():
        loop, products, dtype, device, tv = key
        if loop is None:
            parts.append(f"not recorded ({n})")
        else:
            parts.append(f"{loop} loop, {products} products, {dtype} on {device}, torch {tv} ({n})")
    return "Computed with: " + "; ".join(parts)
