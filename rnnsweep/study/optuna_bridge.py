"""The one place rnnsweep talks to Optuna, private API included.

Each (architecture, depth) cell of a study is an Optuna study of its own, named
``STUDY.ARCH.dDEPTH``, so that Optuna's samplers, its dashboard and its own tools see
one search space per cell. rnnsweep's queue, not Optuna's, decides which trial runs
where (:mod:`rnnsweep.store.queue`); Optuna holds each attempt as a trial:

- a slot's attempt is a RUNNING trial created with the slot's own parameters
  (:func:`create_trial`), or asked from the sampler for adaptive samplers
  (:func:`ask_trial`);
- a committed result is told straight to the storage (:func:`tell`): COMPLETE, its
  value and the feasibility constraint that tpe (and any constrained sampler) reads;
- an attempt that never finished is failed (:func:`fail_if_running`), kept in the
  history, never counted.

Optuna's private attributes (``Study._storage``, ``Trial._trial_id``) are read here and
nowhere else: this module is what to change when Optuna changes.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from rnnsweep.study.space import distributions, make_sampler

if TYPE_CHECKING:
    from rnnsweep.store import Store
    from rnnsweep.study.spec import CellPlan, StudySpec

__all__ = [
    "CONSTRAINTS_KEY",
    "CellStudy",
    "cell_study_name",
    "open_cell",
    "schema_versions",
]

# Optuna's key for constraint values (optuna/study/_constrained_optimization.py);
# optuna-dashboard reads this list to mark trials infeasible, Optuna 5 reads it
# as constraint "0". A value <= 0 is feasible.
CONSTRAINTS_KEY = "constraints"


@functools.cache
def schema_versions() -> tuple[list[str], str]:
    """The installed Optuna's storage schema revisions, oldest first (the last is the head
    its RDB storage writes), and its release: what :meth:`rnnsweep.store.Store.check_before_write`
    compares a database's ``alembic_version`` with. Read from Optuna's private alembic
    scripts (``optuna.storages._rdb``)."""
    import optuna.storages._rdb.storage as rdb
    from alembic.script import ScriptDirectory

    here = os.path.join(os.path.dirname(rdb.__file__), "alembic")
    revisions = [r.revision for r in reversed(list(ScriptDirectory(here).walk_revisions()))]
    return revisions, optuna.__version__


def cell_study_name(study: str, arch: str, depth: int) -> str:
    return f"{study}.{arch}.d{depth}"


def open_cell(spec: StudySpec, store: Store, plan: CellPlan) -> optuna.Study:
    """Create (or load) the Optuna study of one cell, labelled as rnnsweep's."""
    study = optuna.create_study(
        study_name=cell_study_name(spec.name, plan.arch, plan.depth),
        storage=store.optuna_storage,
        sampler=make_sampler(spec, plan),
        direction="minimize",
        load_if_exists=True,
    )
    if "rnnsweep_study" not in study.user_attrs:
        for k, v in {
            "rnnsweep_study": spec.name,
            "arch": plan.arch,
            "depth": plan.depth,
            "hidden": plan.hidden,
            "params": plan.params,
            "task": spec.task,
            "sampler": spec.sampler,
            "feasibility": "constraint <= 0: training did not diverge",
        }.items():
            study.set_user_attr(k, v)
    return study


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The storage's id of a trial (unique across studies, unlike its number)."""
    return trial._trial_id


class CellStudy:
    """One cell's Optuna study as a worker uses it: load, create, ask, tell, fail."""

    def __init__(self, spec: StudySpec, store: Store, plan: CellPlan) -> None:
        self.plan = plan
        self.study = optuna.load_study(
            study_name=cell_study_name(spec.name, plan.arch, plan.depth),
            storage=store.optuna_storage,
            sampler=make_sampler(spec, plan),
        )
        self.dists = distributions(spec.space_for(plan.arch), plan.arch)
        self.storage = self.study._storage  # the RDB storage the study already holds
        self.study_id = self.storage.get_study_id_from_name(self.study.study_name)
        self.tasks: dict[int, Any] = {}  # b -> task, when the study tunes b (space.b)

    @property
    def name(self) -> str:
        return self.study.study_name

    def fail_if_running(self, trial_id: int | None) -> None:
        """Mark an attempt's trial FAIL if it is still RUNNING (history only, never counted)."""
        if trial_id is None:
            return
        try:
            if self.storage.get_trial(trial_id).state == TrialState.RUNNING:
                self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except (KeyError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            pass

    def running_trial_ids(self, slot: int | None = None) -> list[int]:
        """The RUNNING trials of this cell (of one slot, if given)."""
        return [
            t._trial_id
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if slot is None or t.user_attrs.get("slot") == slot
        ]

    def create_trial(self, params: dict[str, Any], user_attrs: dict[str, Any]) -> optuna.Trial:
        """A RUNNING trial with given parameters (no queue: no other worker can take it)."""
        dists = {k: self.dists[k] for k in params if k in self.dists}
        template = optuna.trial.create_trial(
            state=TrialState.RUNNING,
            params={k: params[k] for k in dists},
            distributions=dists,
            user_attrs=user_attrs,
        )
        tid = self.storage.create_new_trial(self.study_id, template_trial=template)
        return optuna.trial.Trial(self.study, tid)

    def ask_trial(self, user_attrs: dict[str, Any]) -> optuna.Trial:
        """A RUNNING trial whose parameters the cell's (adaptive) sampler chooses."""
        trial = self.study.ask(fixed_distributions=self.dists)
        for k, v in user_attrs.items():
            trial.set_user_attr(k, v)
        return trial

    def tell(self, trial_id: int, diverged: bool, final_loss: float, solved: bool) -> None:
        """Tell Optuna a committed result: COMPLETE, value, and the feasibility constraint.

        Idempotent: a trial already finished (told by a late-tell from another worker
        that started while this one was between its commit and its tell) is left alone.
        """
        constraint = (1.0,) if diverged else (0.0,)
        value = math.inf if diverged else final_loss
        # Straight to the storage, not Study.tell: four writes instead of a dozen
        # round trips (storage overhead is measured in docs/PERFORMANCE.md), and no
        # sampler callback is needed (TPE reads the constraint from the trial itself).
        try:
            self.storage.set_trial_user_attr(trial_id, "diverged", diverged)
            self.storage.set_trial_user_attr(trial_id, "solved", solved)
            self.storage.set_trial_system_attr(trial_id, CONSTRAINTS_KEY, constraint)
            self.storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [value])
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # told already (late-tell race)


def finish_told_late(store: Store, cells: Iterable[CellStudy]) -> None:
    """A worker that died between its commit and Optuna's tell left a RUNNING trial
    whose result is stored: tell it now, from the stored row."""
    for cell in cells:
        for row in store.trial_rows(cell.running_trial_ids()):
            # Debt: this tells the eval loss, not task.objective (capacity's minus bits), so
            # a late-told capacity trial enters a gp/tpe model on the wrong scale. Rare: a
            # worker must die between its commit and its tell.
            final = row["final_loss"] if row["final_loss"] is not None else math.nan
            cell.tell(row["optuna_trial_id"], bool(row["diverged"]), final, bool(row["solved"]))
