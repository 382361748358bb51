"""Theory: mean-field signal propagation (Chen et al. 2018) and smoothness diagnostics
(Ribeiro et al. 2020). See ../shared/SCIENCE.md sections 4 and 5."""

from __future__ import annotations

from rnnsweep.theory.critical import (
    critical_minimalrnn,
    critical_vanilla,
    end_to_end_jacobian_singular_values,
)
from rnnsweep.theory.diagnostics import (
    StackMap,
    diagnose,
    end_to_end_spectrum,
    lyapunov_exponent,
    ribeiro_region,
    run_states,
    step_jacobian_norms,
)
from rnnsweep.theory.meanfield import MeanField, mean_field, timescale
from rnnsweep.theory.phase import phase_grid, plot_phase

__all__ = [
    "MeanField",
    "StackMap",
    "critical_minimalrnn",
    "critical_vanilla",
    "diagnose",
    "end_to_end_jacobian_singular_values",
    "end_to_end_spectrum",
    "lyapunov_exponent",
    "mean_field",
    "phase_grid",
    "plot_phase",
    "ribeiro_region",
    "run_states",
    "step_jacobian_norms",
    "timescale",
]
