"""From a study's search space to Optuna distributions, samplers and trial settings."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
)

from rnnsweep.cells import get_cell
from rnnsweep.study.spec import CellPlan, SearchSpace, StudySpec

__all__ = ["TrialSettings", "derive_seed", "distributions", "make_sampler", "settings_from_params"]


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any parts (study seed, arch, depth, trial number...)."""
    blob = "|".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "little") & 0x7FFF_FFFF


def _varies(arch: str, name: str) -> bool:
    """Whether a dimension means anything for this cell (fixed-nonlinearity cells skip it)."""
    if name == "nonlinearity":
        return len(get_cell(arch).nonlinearities) > 1
    if name == "b_fg":
        return bool(get_cell(arch).fg_blocks)
    return True


def distributions(space: SearchSpace, arch: str) -> dict[str, BaseDistribution]:
    """The Optuna distributions of one cell's search space (fixed values are left out)."""
    dists: dict[str, BaseDistribution] = {}
    for name, r in space.numeric().items():
        if _varies(arch, name) and not r.fixed:
            dists[name] = FloatDistribution(r.low, r.high, log=r.log)
    for name, options in space.choices().items():
        if _varies(arch, name) and len(options) > 1:
            dists[name] = CategoricalDistribution(list(options))
    return dists


def grid(space: SearchSpace, arch: str) -> dict[str, list[Any]]:
    """The grid sampler's values: ``grid_points`` per numeric dimension (log or linear)."""
    values: dict[str, list[Any]] = {}
    for name, dist in distributions(space, arch).items():
        if isinstance(dist, CategoricalDistribution):
            values[name] = list(dist.choices)
        else:
            n = space.grid_points
            if dist.log:
                pts = np.geomspace(dist.low, dist.high, n)
            else:
                pts = np.linspace(dist.low, dist.high, n)
            values[name] = [float(p) for p in pts]
    return values


def make_sampler(spec: StudySpec, plan: CellPlan) -> optuna.samplers.BaseSampler:
    """The Optuna sampler a cell's study asks with.

    Only ``tpe`` asks Optuna for points: it adapts to the results so far. With
    several trials in flight (a pack, several workers) it runs as a *constant
    liar*: each running trial counts as a bad result, so a batch of asks spreads
    out instead of piling on one point (Optuna's ``constant_liar=True``; the
    price is a little exploitation per batch). ``random``, ``qmc`` and ``grid``
    points are a pure function of (seed, cell, slot), computed in
    :mod:`rnnsweep.study.params` so that results do not depend on worker count or
    ask order; their studies keep a seeded RandomSampler that is never asked.
    """
    seed = derive_seed(spec.seed, "sampler", plan.arch, plan.depth)
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    return optuna.samplers.RandomSampler(seed=seed)


@dataclass(frozen=True)
class TrialSettings:
    """Every hyperparameter of one trial, sampled or fixed."""

    lr: float
    init_scale: float
    b_fg: float
    clip: float
    nonlinearity: str
    optimizer: str
    init: str
    seed: int
    sigma_b: float = 0.0  # bias spread at init
    sigma_v: float | None = None  # input weight scale (None: init_scale)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def settings_from_params(
    space: SearchSpace, plan: CellPlan, params: dict[str, Any], seed: int
) -> TrialSettings:
    """Fill a trial's sampled params with the space's fixed values."""
    cell = get_cell(plan.arch)

    def num(name: str) -> float:
        if name in params:
            return float(params[name])
        if name == "b_fg" and not cell.fg_blocks:
            return 0.0
        return float(space.numeric()[name].low)

    sigma_v = num("sigma_v") if "sigma_v" in space.numeric() else None

    def choice(name: str) -> str:
        if name in params:
            return str(params[name])
        return space.choices()[name][0]

    nl = choice("nonlinearity")
    if len(cell.nonlinearities) == 1:
        nl = cell.nonlinearities[0]
    return TrialSettings(
        lr=num("lr"),
        init_scale=num("init_scale"),
        b_fg=num("b_fg"),
        clip=num("clip"),
        nonlinearity=nl,
        optimizer=choice("optimizer"),
        init=choice("init"),
        seed=seed,
        sigma_b=num("sigma_b"),
        sigma_v=sigma_v,
    )
