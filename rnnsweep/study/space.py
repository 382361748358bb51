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
    IntDistribution,
)

from rnnsweep.cells import get_cell
from rnnsweep.study.spec import ADAPTIVE_SAMPLERS, CellPlan, SearchSpace, StudySpec

__all__ = [
    "ADAPTIVE_SAMPLERS",
    "GP_STARTUP_TRIALS",
    "TrialSettings",
    "derive_seed",
    "distributions",
    "make_sampler",
    "settings_from_params",
]

# Random trials before the Gaussian process takes over. Optuna's default is 10; Collins-
# style capacity studies at this machine's scale give a cell 10-20 trials, so half of them
# would be random. 4 points seed a GP over the 4-6 dimensions of our spaces well enough.
GP_STARTUP_TRIALS = 4


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
    if space.b is not None and not space.b.fixed:
        dists["b"] = IntDistribution(int(space.b.low), int(space.b.high), log=space.b.log)
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
            if isinstance(dist, IntDistribution):
                values[name] = sorted({int(round(float(p))) for p in pts})
            else:
                values[name] = [float(p) for p in pts]
    return values


def _stored_constraint(trial: optuna.trial.FrozenTrial) -> tuple[float, ...]:
    """The feasibility constraint the runner stored on a trial (1 diverged, 0 not)."""
    return tuple(trial.system_attrs.get("constraints", (0.0,)))


def make_sampler(spec: StudySpec, plan: CellPlan) -> optuna.samplers.BaseSampler:
    """The Optuna sampler a cell's study asks with.

    The adaptive samplers (:data:`ADAPTIVE_SAMPLERS`) ask Optuna for points: each
    depends on the results so far, so their feasible fractions say where the
    optimiser looked, and every report labels them *adaptive*.

    - ``tpe``: with several trials in flight (a pack, several workers) it runs as a
      *constant liar*: each running trial counts as a bad result, so a batch of asks
      spreads out instead of piling on one point (Optuna's ``constant_liar=True``).
    - ``gp``: Optuna's GPSampler, a Gaussian-process Bayesian optimiser (log expected
      improvement), Collins et al.'s choice of tuner. Diverged trials are infeasible
      through the constraint value the runner stores on every trial (system attribute
      ``constraints``, 1 diverged / 0 not): Optuna 5's GPSampler and TPESampler read it
      from the trials themselves and switch to constrained expected improvement (the
      ``constraints_func`` argument is deprecated there and only computes that value).
      Running trials enter as pending points (qLogEI), the GP analogue of the liar.
      ``GP_STARTUP_TRIALS`` random trials come first.
    - ``cmaes``: Optuna's CmaEsSampler over the *numeric* dimensions only (CMA-ES has
      no categorical moves): categorical ones (nonlinearity, optimizer, init) fall back
      to an independent seeded RandomSampler, and so does everything when fewer than
      two numeric dimensions vary. It ignores the constraint; a diverged trial's
      value is +inf, which Optuna's CMA-ES ranks last.

    All three take a seed derived from (study seed, cell): one worker asking one trial
    at a time gets the same points on a re-run (the GP fit and its acquisition
    optimiser are seeded through it; the tests check gp and cmaes). With several
    workers or packs the points depend on which results had arrived when each ask was
    made, so no adaptive sampler is reproducible across worker counts or pack sizes.

    ``random``, ``qmc`` and ``grid`` points are a pure function of (seed, cell, slot),
    computed in :mod:`rnnsweep.study.params` so that results do not depend on worker
    count or ask order; their studies keep a seeded RandomSampler that is never asked.
    """
    seed = derive_seed(spec.seed, "sampler", plan.arch, plan.depth)
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if spec.sampler == "gp":
        # Optuna 4 reads constraints only through constraints_func (Optuna 5 reads the
        # stored attribute itself and deprecates the argument): hand it the stored value.
        legacy = int(optuna.__version__.split(".")[0]) < 5
        return optuna.samplers.GPSampler(
            seed=seed,
            n_startup_trials=GP_STARTUP_TRIALS,
            independent_sampler=optuna.samplers.RandomSampler(seed=seed),
            **({"constraints_func": _stored_constraint} if legacy else {}),
        )
    if spec.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(
            seed=seed,
            independent_sampler=optuna.samplers.RandomSampler(seed=seed),
            warn_independent_sampling=False,  # categorical dimensions: documented above
        )
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
    b: int | None = None  # the task's sample count when tuned (space.b); None: the task's own

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

    b: int | None = None
    if "b" in params:
        b = int(params["b"])
    elif space.b is not None:  # a fixed value given as space.b
        b = int(space.b.low)

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
        b=b,
    )
