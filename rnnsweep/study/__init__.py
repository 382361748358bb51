"""Studies: the spec, the search space and samplers, and the runner."""

from __future__ import annotations

from rnnsweep.study.runner import (
    RunSummary,
    WorkerOptions,
    cell_study_name,
    create_study,
    resolve_device,
    run_study,
    run_worker,
)
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

__all__ = [
    "SAMPLERS",
    "CellPlan",
    "ModelSpec",
    "Range",
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
    "resolve_device",
    "run_study",
    "run_worker",
    "spec_from_dict",
    "spec_from_json",
]
