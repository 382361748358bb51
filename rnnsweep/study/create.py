"""Creating a study: its registration row, one Optuna study per cell, and its slots.

Nothing is trained here. Creating the same study again resumes it (the spec's hash
must match); raising ``trials`` adds the missing slots.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rnnsweep.store.queue import SlotQueue
from rnnsweep.study.optuna_bridge import check_cells, open_cell

if TYPE_CHECKING:
    from rnnsweep.store import Store
    from rnnsweep.study.resolved import ResolvedStudy

__all__ = ["create_study"]


def create_study(study: ResolvedStudy, store: Store) -> tuple[bool, int, int]:
    """Register a study (or check a resumed one) and its slots; train nothing.

    Returns (resumed, requested trials, trials already complete).
    """
    spec = study.spec
    resumed = store.register_study(study.stored, spec.identity(), study.spec_hash)
    if resumed:  # a cell deleted in Optuna is not re-created empty
        check_cells(store, spec.name)
    store.touch_study(spec.name)
    for plan in study.plans:
        open_cell(spec, store, plan)
    queue = SlotQueue(store.engine, spec.name)
    queue.ensure([p.key for p in study.plans], spec.trials)
    done, _ = store.result_counts(spec.name)
    return resumed, study.requested, done
