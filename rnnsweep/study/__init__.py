"""Studies: the spec and its resolution, the search space and samplers, creation, workers.

- ``spec.py``: the study file and flags, validated (:class:`StudySpec`);
- ``resolved.py``: the spec with every derived fact worked out once (:class:`ResolvedStudy`);
- ``space.py``, ``params.py``: search spaces, samplers, each slot's parameters;
- ``create.py``: registering a study, its cells and slots;
- ``worker.py``: the worker loop (claim, train, commit) with its heartbeat;
- ``optuna_bridge.py``: every use of Optuna (and the only one of its private API).
"""

from __future__ import annotations

from rnnsweep.backend import resolve_device
from rnnsweep.study.create import create_study
from rnnsweep.study.optuna_bridge import cell_study_name
from rnnsweep.study.resolved import ResolvedStudy, resolve, resolve_stored
from rnnsweep.study.space import TrialSettings, derive_seed, distributions, make_sampler
from rnnsweep.study.spec import (
    SAMPLERS,
    CellPlan,
    ModelSpec,
    Range,
    SearchSpace,
    StudySpec,
    load_toml,
    merge,
    parse_count,
    spec_from_dict,
    spec_from_json,
)
from rnnsweep.study.worker import RunSummary, WorkerOptions, run_study, run_worker

__all__ = [
    "SAMPLERS",
    "CellPlan",
    "ModelSpec",
    "Range",
    "ResolvedStudy",
    "RunSummary",
    "WorkerOptions",
    "SearchSpace",
    "StudySpec",
    "TrialSettings",
    "cell_study_name",
    "create_study",
    "derive_seed",
    "distributions",
    "load_toml",
    "make_sampler",
    "merge",
    "parse_count",
    "resolve",
    "resolve_device",
    "resolve_stored",
    "run_study",
    "run_worker",
    "spec_from_dict",
    "spec_from_json",
]
