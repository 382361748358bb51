"""Mean-field theory for one trial: its critical initialisation and its timescale xi.

Chen, Pennington & Schoenholz 2018 (SCIENCE.md 4). A trial's initialisation is
``sigma_w = init_scale`` (W^h), ``sigma_v`` (W^x; tied to init_scale unless given),
``mu_b = b_fg`` and ``sigma_b``; the inputs' moment ``R`` is the study's one value
(:attr:`rnnsweep.tasks.base.Task.R`). For the minimalRNN the theory's input is the
embedding ``z = tanh(W^z x)``, whose moment ``R_z = E[tanh(e)^2]``, ``e ~ N(0,
sigma_v^2 R)``, is formed here from R.

:func:`trial_xi` is the one function that gives xi: each trial's stored ``xi`` and
``xi_bin`` and the report's xi contours (:mod:`rnnsweep.report.theory`) both call it.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rnnsweep.cells import ModelConfig
    from rnnsweep.study.space import TrialSettings

__all__ = [
    "THEORY_ARCHS",
    "XI_BINS",
    "critical_sigma_w",
    "embedded_moment",
    "trial_xi",
    "xi_bin",
    "xi_of",
]

THEORY_ARCHS = ("rnn", "minimalrnn")  # the cells the mean-field theory covers

XI_BINS = (
    (0.25, "xi/T<0.25"),
    (0.5, "xi/T 0.25-0.5"),
    (1.0, "xi/T 0.5-1"),
    (2.0, "xi/T 1-2"),
    (math.inf, "xi/T>2"),
)


@functools.lru_cache(maxsize=4096)
def embedded_moment(sigma_v: float, R: float) -> float:
    """``R_z = E[tanh(e)^2]`` with ``e ~ N(0, sigma_v^2 R)``: the minimalRNN's z moment."""
    from rnnsweep.theory.meanfield import gaussian_expectation

    return float(gaussian_expectation(lambda e: np.tanh(e) ** 2, sigma_v**2 * R))


@functools.lru_cache(maxsize=4096)
def critical_sigma_w(arch: str, sigma_v: float, b_fg: float, sigma_b: float, R: float) -> float:
    """The recurrent scale on the chi = 1 line for this initialisation and input moment R.

    Exact for depth 1; deeper stacks reuse it per layer (an approximation: upper layers'
    inputs are not the task's). Cached: a trial needs it twice (its init, then its xi),
    and solving chi = 1 is a root search over quadratures.
    """
    from rnnsweep.theory.critical import critical_minimalrnn, critical_vanilla

    if arch == "rnn":
        return critical_vanilla(sigma_v=sigma_v, R=R, sigma_b=sigma_b)
    return critical_minimalrnn(
        sigma_v=sigma_v, R=embedded_moment(sigma_v, R), mu_b=b_fg, sigma_b=sigma_b
    )


def trial_xi(
    arch: str, sigma_w: float, sigma_v: float, R: float, b_fg: float = 0.0, sigma_b: float = 0.0
) -> float:
    """Chen's timescale ``xi = 1/|ln chi|`` of a tanh rnn or a minimalRNN at this init.

    ``R`` is the task's input moment (the minimalRNN's ``R_z`` is formed from it);
    ``b_fg`` is ``mu_b`` (minimalRNN only). ValueError/ArithmeticError where the
    theory has no answer.
    """
    from rnnsweep.theory.meanfield import mean_field

    if arch == "rnn":
        return float(mean_field("rnn", sigma_w=sigma_w, sigma_v=sigma_v, R=R, sigma_b=sigma_b).xi)
    if arch == "minimalrnn":
        R_z = embedded_moment(sigma_v, R)
        mf = mean_field(
            "minimalrnn", sigma_w=sigma_w, sigma_v=sigma_v, R=R_z, mu_b=b_fg, sigma_b=sigma_b
        )
        return float(mf.xi)
    raise ValueError(f"the mean-field theory covers {' and '.join(THEORY_ARCHS)}, not {arch}")


def xi_of(model_cfg: ModelConfig, settings: TrialSettings, R: float) -> float | None:
    """A trial's xi at its initialisation, or None where the theory does not cover it
    (depth > 1, a ReLU rnn, another cell, or no answer).

    sigma_w = init_scale (or the critical scale), sigma_v = the input scale (init_scale
    unless given), mu_b = b_fg, sigma_b = the bias spread.
    """
    if model_cfg.depth != 1 or not (
        (model_cfg.arch == "rnn" and model_cfg.nonlinearity == "tanh")
        or model_cfg.arch == "minimalrnn"
    ):
        return None
    v = settings.sigma_v if settings.sigma_v is not None else settings.init_scale
    b = settings.sigma_b
    try:
        w = settings.init_scale
        if settings.init == "critical":
            w = critical_sigma_w(model_cfg.arch, v, settings.b_fg, b, R)
        return trial_xi(model_cfg.arch, w, v, R, settings.b_fg, b)
    except (ValueError, ArithmeticError):
        return None


def xi_bin(xi: float, T: int) -> str:
    """The bin of ``xi / T`` a trial falls in (:data:`XI_BINS`)."""
    ratio = xi / T
    return next(name for edge, name in XI_BINS if ratio < edge or math.isinf(edge))
