"""Theory on the report's pictures: mean-field xi contours where the axes allow it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["PLOT_AXES", "seq_len_of", "xi_contours_for"]

PLOT_AXES = ("lr", "init_scale", "b_fg", "clip", "sigma_b", "sigma_v")


def seq_len_of(spec: dict[str, Any]) -> int | None:
    """The task's sequence length T from a stored spec (for xi = T contours)."""
    opts = spec.get("task_options", {})
    T = opts.get("seq_len")
    if T is None and "pad" in opts:  # digits: 64 pixels plus padding
        T = 64 + int(opts["pad"])
    return int(T) if T else None


def xi_contours_for(spec: dict[str, Any]) -> Callable[[str, str, str], Callable | None]:
    """For (arch, x, y): a function of grid axes returning (chi, xi) arrays, or None.

    Only where the plot's axes are the theory's parameters: init_scale is sigma_w;
    b_fg is mu_b (minimalrnn); sigma_b is the bias spread (vanilla rnn). The
    other parameters are the study's fixed values (sigma_v = the input scale,
    R = 1: unit-variance inputs; an approximation stated on the plot's legend).
    """
    space = spec.get("space", {})

    def fixed(name: str, default: float) -> float:
        r = space.get(name)
        if isinstance(r, dict) and r.get("low") == r.get("high"):
            return float(r["low"])
        return default

    def for_axes(arch: str, x: str, y: str) -> Callable | None:
        from rnnsweep.theory.phase import phase_grid

        if arch == "rnn" and {x, y} == {"init_scale", "sigma_b"}:
            other = "sigma_b"
        elif arch == "minimalrnn" and {x, y} == {"init_scale", "b_fg"}:
            other = "mu_b"
        else:
            return None
        sigma_v = fixed("sigma_v", 1.0)

        def grid(gx: np.ndarray, gy: np.ndarray):
            # phase_grid's arrays are (other, sigma_w); the plot wants (x, y).
            sw, ov = (gx, gy) if x == "init_scale" else (gy, gx)
            g = phase_grid(arch, sw, ov, sigma_v=sigma_v, R=1.0, other=other)
            chi, xi = np.asarray(g["chi"]), np.asarray(g["xi"])
            return (chi.T, xi.T) if x == "init_scale" else (chi, xi)

        return grid

    return for_axes
