"""Each slot's hyperparameters as a pure function of (study seed, cell, slot).

For the unbiased samplers (random, qmc, grid) a trial's settings must not
depend on which worker asked first or how trials were packed: then a study
gives the same per-trial results with 1 worker or 8, any pack size (the
determinism promise). So these points are computed here from the slot index:

- ``random``: independent uniform / log-uniform / categorical draws from a
  NumPy generator seeded by (seed, arch, depth, slot);
- ``qmc``: point ``slot`` of a scrambled Sobol sequence (scipy.stats.qmc, seeded
  per cell), one dimension per sampled hyperparameter, in sorted name order;
- ``grid``: the cross product of ``grid`` values, visited in a seeded random
  order, wrapping around when a cell asks for more trials than points.

``tpe`` is adaptive by design (each point depends on the results so far), so it
goes through Optuna's TPESampler at ask time instead and is not reproducible
across worker counts.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from rnnsweep.study.space import derive_seed, grid

__all__ = ["slot_params"]


def _from_unit(u: float, dist: BaseDistribution) -> Any:
    """Map u in [0, 1) to a value of ``dist`` (inverse CDF of the uniform law)."""
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[min(int(u * len(dist.choices)), len(dist.choices) - 1)]
    if isinstance(dist, IntDistribution):  # a tuned sample count b: the float law, rounded
        as_float = FloatDistribution(dist.low, dist.high, log=dist.log)
        return int(min(max(round(_from_unit(u, as_float)), dist.low), dist.high))
    assert isinstance(dist, FloatDistribution), f"unsupported distribution {dist!r}"
    if dist.log:
        lo, hi = math.log(dist.low), math.log(dist.high)
        return float(min(max(math.exp(lo + u * (hi - lo)), dist.low), dist.high))
    return float(dist.low + u * (dist.high - dist.low))


def slot_params(
    sampler: str,
    dists: dict[str, BaseDistribution],
    space: Any,
    arch: str,
    depth: int,
    slot: int,
    seed: int,
) -> dict[str, Any]:
    """The sampled hyperparameters of slot ``slot`` of cell (arch, depth)."""
    names = sorted(dists)
    if not names:
        return {}
    if sampler == "random":
        rng = np.random.default_rng(derive_seed(seed, "params", arch, depth, slot))
        return {n: _from_unit(float(rng.random()), dists[n]) for n in names}
    if sampler == "qmc":
        from scipy.stats import qmc  # here, not at import: half a second of every `run`

        sobol = qmc.Sobol(d=len(names), scramble=True, seed=derive_seed(seed, "sobol", arch, depth))
        if slot:
            sobol.fast_forward(slot)
        point = sobol.random(1)[0]
        return {n: _from_unit(float(u), dists[n]) for n, u in zip(names, point, strict=True)}
    if sampler == "grid":
        values = grid(space, arch)
        points = list(itertools.product(*(values[n] for n in names)))
        order = np.random.default_rng(derive_seed(seed, "grid", arch, depth)).permutation(
            len(points)
        )
        point = points[int(order[slot % len(points)])]
        return dict(zip(names, point, strict=True))
    raise ValueError(f"sampler {sampler!r} has no per-slot points (tpe samples at ask time)")
