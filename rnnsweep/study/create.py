"""Creating a study: its registration row, one Optuna study per cell, and its slots.

Nothing is trained here. Creating the same study again resumes it (the spec's hash
must match); raising ``trials`` adds the missing slots.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rnnsweep.store.queue import SlotQueue
from rnnsweep.study.optuna_bridge import cell_study_name, check_cells, open_cell, schema_versions

if TYPE_CHECKING:
    from rnnsweep.store import Store
    from rnnsweep.study.resolved import ResolvedStudy

__all__ = ["create_study"]


def create_study(study: ResolvedStudy, store: Store) -> tuple[bool, int, int]:
    """Register a study (or check a resumed one) and its slots; train nothing.

    Returns (resumed, requested trials, trials already complete).
    """
    spec = study.spec
    # Read-only checks first: nothing is written into a foreign Optuna study or schema.
    store.check_before_write(
        spec.name,
        {cell_study_name(spec.name, p.arch, p.depth): (p.arch, p.depth) for p in study.plans},
        schema_versions(),
    )
    check_cells(store, spec.name)  # a cell deleted in Optuna is not re-created empty
    resumed = store.register_study(study.stored, spec.identity(), study.spec_hash)
    store.touch_study(spec.name)
    for plan in study.plans:
        open_cell(spec, store, plan)
    assert store.engine is not None, "a store opened for writing has an engine"
    queue = SlotQueue(store.engine, spec.name)
    queue.ensure([p.key for p in study.plans], spec.trials)
    done, _ = store.result_counts(spec.name)
    return resumed, study.requested, done
