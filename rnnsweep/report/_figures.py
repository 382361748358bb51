"""What every figure of the report shares: plain log axes and how a figure is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

__all__ = ["log_scale", "save"]


def log_scale(ax: Any, x: bool, y: bool) -> None:
    """Log scale on the axes asked for, ticked 200, 500, 1000 rather than 2 x 10^2."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    for axis, is_log, scale in ((ax.xaxis, x, ax.set_xscale), (ax.yaxis, y, ax.set_yscale)):
        if is_log:
            scale("log")
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(NullFormatter())


def save(fig: Any, path: Path) -> Path:
    """Lay out, write (120 dpi) and close ``fig``; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
