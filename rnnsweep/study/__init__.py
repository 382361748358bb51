"""Studies: the spec, the search space and samplers, and the runner."""

from __future__ import annotations

from rnnsweep.study.runner import RunSummary, cell_study_name, resolve_device, run_study
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
)

__all__ = [
    "SAMPLERS",
    "CellPlan",
    "ModelSpec",
    "Range",
    "RunSummary",
    "SearchSpace",
    "StudySpec",
    "TrialSettings",
    "cell_study_name",
    "derive_seed",
    "distributions",
    "load_toml",
    "make_sampler",
    "merge",
    "parse_count",
    "resolve_device",
    "run_study",
    "spec_from_dict",
]
