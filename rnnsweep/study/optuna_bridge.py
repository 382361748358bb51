"""The one place rnnsweep talks to Optuna, private API included.

Each (architecture, depth) cell of a study is an Optuna study of its own, named
``STUDY.ARCH.dDEPTH``, so that Optuna's samplers, its dashboard and its own tools see
one search space per cell. rnnsweep's queue, not Optuna's, decides which trial runs
where (:mod:`rnnsweep.store.queue`); Optuna holds each attempt as a trial:

- a slot's attempt is a RUNNING trial created with the slot's own parameters
  (:func:`create_trial`), or asked from the sampler for adaptive samplers
  (:func:`ask_trial`);
- a committed result is told straight to the storage (:func:`tell`), in one
  transaction: COMPLETE, its value, the feasibility constraint that tpe and gp read,
  the learning curve as intermediate values and numeric user attributes;
- an attempt that never finished is failed (:func:`fail_if_running`), kept in the
  history, never counted.

What Optuna's tools (optuna-dashboard above all) are shown, and why
(docs/DASHBOARD.md):

- **the objective** is named ``final held-out loss`` (``set_metric_names``); a diverged
  trial's value is a finite *penalty* (:func:`divergence_penalty`), not ``inf``, which
  plots drop and which made an all-diverged cell's "best trial" ``inf``. The constraint
  (> 0: diverged) still marks it infeasible. rnnsweep's own tables keep the true final
  loss (NULL when diverged);
- **trial user attributes** are numbers, so that the dashboard can sort by them and
  plot them (booleans it can do neither with): :func:`trial_attrs`; the queue's
  bookkeeping (slot, attempt, seed) is kept under the ``rnnsweep_`` prefix;
- **the cell's feasible fraction** with its Wilson interval and the sampler is the
  study's first user attribute, updated after each pack (:meth:`CellStudy.update_summary`).

Optuna's private attributes and its tables (``Study._storage``, ``Trial._trial_id``,
the RDB storage's ``_set_*_without_commit`` helpers, the ``studies``/``trials`` tables
read by :func:`cell_mismatches`) are used here and nowhere else: this module is what
to change when Optuna changes.
"""

from __future__ import annotations

import functools
import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import optuna
import sqlalchemy as sa
from optuna.trial import TrialState

from rnnsweep.errors import StorageError
from rnnsweep.report.stats import wilson_interval  # a pure helper: no data flows back
from rnnsweep.study.space import distributions, make_sampler

if TYPE_CHECKING:
    from rnnsweep.store import Store
    from rnnsweep.study.spec import CellPlan, StudySpec

__all__ = [
    "CONSTRAINTS_KEY",
    "METRIC_NAME",
    "SUMMARY_KEY",
    "CellMismatch",
    "CellStudy",
    "attempt_attrs",
    "cell_mismatches",
    "cell_study_name",
    "check_cells",
    "mismatch_warning",
    "divergence_penalty",
    "open_cell",
    "summary_text",
    "trial_attrs",
    "schema_versions",
]

# Optuna's key for constraint values (optuna/study/_constrained_optimization.py);
# optuna-dashboard reads this list to mark trials infeasible, Optuna 5 reads it
# as constraint "0" (tpe's and gp's feasibility). A value <= 0 is feasible.
CONSTRAINTS_KEY = "constraints"
METRIC_NAME = "final held-out loss"
# The study's first user attribute: "k/n feasible = p (95% Wilson lo-hi), sampler s".
SUMMARY_KEY = "feasible_fraction"
# The queue's bookkeeping on each trial: under a prefix, apart from the plot axes.
SLOT_KEY, ATTEMPT_KEY, SEED_KEY, RERUN_KEY = (
    "rnnsweep_slot",
    "rnnsweep_attempt",
    "rnnsweep_seed",
    "rnnsweep_rerun",
)
# A diverged trial whose initial loss was itself not finite, in a cell with nothing
# finite told yet, gets this threshold (divergence_factor x an initial loss of 1).
_FALLBACK_INITIAL_LOSS = 1.0
# Diagnostics kept twice in a row's extras (init_region is region, final_region is
# region_final): told once.
_DUPLICATE_EXTRAS = ("init_region", "final_region")


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


def summary_text(feasible: int, n: int, sampler: str) -> str:
    """The cell's summary attribute, e.g. ``3/6 feasible = 0.50 (95% Wilson 0.19-0.81),
    sampler random``; before any trial: ``0/0 feasible (no trials yet), sampler random``."""
    if n == 0:
        return f"0/0 feasible (no trials yet), sampler {sampler}"
    lo, hi = wilson_interval(feasible, n)
    return (
        f"{feasible}/{n} feasible = {feasible / n:.2f} (95% Wilson {lo:.2f}-{hi:.2f}), "
        f"sampler {sampler}"
    )


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
        # the summary first: the dashboard lists a study's attributes in this order
        for k, v in {
            SUMMARY_KEY: summary_text(0, 0, spec.sampler),
            "rnnsweep_study": spec.name,
            "arch": plan.arch,
            "depth": plan.depth,
            "hidden": plan.hidden,
            "params": plan.params,
            "task": spec.task,
            "sampler": spec.sampler,
            "feasibility": "constraint <= 0: training did not diverge",
            "diverged_value": "divergence_factor x initial training loss "
            "(raised to the worst feasible loss of the cell so far)",
        }.items():
            study.set_user_attr(k, v)
    if study.metric_names is None:
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2, still in 5.0
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([METRIC_NAME])
    return study


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The storage's id of a trial (unique across studies, unlike its number)."""
    return trial._trial_id


def attempt_attrs(slot: int, attempt: int, seed: int) -> dict[str, Any]:
    """The queue's bookkeeping on an attempt's trial (a re-run is flagged)."""
    attrs: dict[str, Any] = {SLOT_KEY: slot, ATTEMPT_KEY: attempt, SEED_KEY: seed}
    if attempt > 1:
        attrs[RERUN_KEY] = 1
    return attrs


def _finite(x: Any) -> float | None:
    if x is None or isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def divergence_penalty(
    initial_loss: float | None, divergence_factor: float, floor: float | None
) -> float:
    """The finite objective value Optuna is told for a diverged trial.

    The trial's divergence threshold, ``divergence_factor x`` its initial training loss:
    the loss it was stopped for exceeding. A feasible trial's held-out loss never
    exceeds *its own* threshold (rnnsweep.train.loop checks every evaluation), but may
    exceed another trial's, so the penalty is raised to ``floor``, the worst feasible
    loss of the cell so far. Hence a diverged trial never ranks above a feasible trial
    told before it (and the cell's "best trial" is feasible once one is); a feasible
    trial told later ranks below it only if its final loss is above this penalty.
    """
    initial = _finite(initial_loss)
    threshold = divergence_factor * initial if initial is not None else None
    candidates = [v for v in (threshold, _finite(floor)) if v is not None and math.isfinite(v)]
    if not candidates:
        return divergence_factor * _FALLBACK_INITIAL_LOSS
    return max(candidates)


def trial_attrs(row: Mapping[str, Any]) -> dict[str, float | int]:
    """The numeric user attributes of a committed trial, from its stored row.

    feasible, solved, diverged as 0/1; diverged_at; initial, final and best loss; the
    task metric under its name; steps run; the task's extras; the diagnostics of the
    initial and trained maps (step-Jacobian norms, Lyapunov exponent, e2e spectrum,
    region) and xi where the theory covers the cell. Non-finite values are left out
    (a diverged trial has no final loss), so every attribute stays a sortable number.
    """
    diverged = bool(row["diverged"])
    out: dict[str, float | int] = {
        "feasible": int(not diverged),
        "solved": int(bool(row["solved"])),
        "diverged": int(diverged),
    }
    if row.get("diverged_at") is not None:
        out["diverged_at"] = int(row["diverged_at"])
    for key, name in (
        ("initial_loss", "initial_loss"),
        ("final_loss", "final_loss"),
        ("best_loss", "best_loss"),
        ("metric", str(row.get("metric_name") or "metric")),
    ):
        v = _finite(row.get(key))
        if v is not None:
            out[name] = v
    out["steps_run"] = int(row["steps_run"])
    extra = row.get("extra_json") or "{}"
    for k, v in (json.loads(extra) if isinstance(extra, str) else extra).items():
        f = _finite(v)
        if f is not None and k not in _DUPLICATE_EXTRAS and k not in out:
            out[k] = int(v) if isinstance(v, int) else f
    return out


def curve_values(curve: Iterable[Mapping[str, Any]]) -> dict[int, float]:
    """The learning curve as intermediate values: step -> held-out loss, finite only.

    A diverged trial's last point (NaN, or the loss that crossed the threshold) is
    skipped when not finite: Optuna would store it, but the dashboard's plots drop it
    and its JSON carries it as a string.
    """
    out: dict[int, float] = {}
    for p in curve:
        v = _finite(p.get("eval_loss"))
        if v is not None:
            out[int(p["step"])] = v
    return out


class CellStudy:
    """One cell's Optuna study as a worker uses it: load, create, ask, tell, fail."""

    def __init__(self, spec: StudySpec, store: Store, plan: CellPlan) -> None:
        self.plan = plan
        self.store = store
        self.sampler = spec.sampler
        self.divergence_factor = spec.train.divergence_factor
        self.study = optuna.load_study(
            study_name=cell_study_name(spec.name, plan.arch, plan.depth),
            storage=store.optuna_storage,
            sampler=make_sampler(spec, plan),
        )
        self.dists = distributions(spec.space_for(plan.arch), plan.arch)
        self.storage = self.study._storage  # the RDB storage the study already holds
        self.study_id = self.storage.get_study_id_from_name(self.study.study_name)

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
            # "slot": trials of studies created before the rnnsweep_ prefix
            if slot is None or t.user_attrs.get(SLOT_KEY, t.user_attrs.get("slot")) == slot
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

    def tell(
        self,
        trial_id: int,
        row: Mapping[str, Any],
        curve: Iterable[Mapping[str, Any]],
        *,
        objective: float | None = None,
    ) -> None:
        """Tell Optuna a committed result (``row``: its ``rnnsweep_trials`` row), in one
        transaction: numeric user attributes, the constraint, the learning curve as
        intermediate values, then COMPLETE with the final held-out loss (or the task's
        ``objective``, e.g. capacity's minus the stored bits), or the
        :func:`divergence_penalty` when diverged.

        Idempotent: a trial already finished (told by a late-tell from another worker
        that started while this one was between its commit and its tell) is left alone.
        """
        diverged = bool(row["diverged"])
        if diverged:
            floor = self.store.cell_counts(self.name)[2]
            value = divergence_penalty(row.get("initial_loss"), self.divergence_factor, floor)
        elif objective is not None:
            value = float(objective)
        else:
            value = float(row["final_loss"])  # a feasible trial's is finite (loop.py)
        attrs = trial_attrs(row)
        steps = curve_values(curve)
        # Straight to the storage, not Study.tell, and in one session: a single commit
        # instead of one per attribute and step (storage cost in docs/PERFORMANCE.md);
        # no sampler callback is needed (tpe and gp read the constraint from the trial).
        # The same steps as RDBStorage.set_trial_state_values, private helpers included.
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        # Study._storage is a _CachedStorage over this RDB storage; it forwards every write
        # and re-reads unfinished trials, so writing to its backend is what it would do.
        storage = self.store.optuna_storage
        try:
            with _create_scoped_session(storage.scoped_session) as session:
                trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
                storage.check_trial_is_updatable(trial_id, cast(TrialState, trial.state))
                # the attributes and the curve as multi-row statements (any left by a
                # hand-made edit of the RUNNING trial are replaced)
                user = models.TrialUserAttributeModel.__table__
                inter = models.TrialIntermediateValueModel.__table__
                session.execute(
                    user.delete().where(user.c.trial_id == trial_id, user.c.key.in_(list(attrs)))
                )
                session.execute(inter.delete().where(inter.c.trial_id == trial_id))
                session.execute(
                    user.insert(),
                    [
                        {"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                        for k, v in attrs.items()
                    ],
                )
                storage._set_trial_attr_without_commit(
                    session,
                    models.TrialSystemAttributeModel,
                    trial_id,
                    CONSTRAINTS_KEY,
                    (1.0,) if diverged else (0.0,),
                )
                if steps:
                    to_stored = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr
                    session.execute(
                        inter.insert(),
                        [
                            dict(
                                zip(
                                    ("intermediate_value", "intermediate_value_type"),
                                    to_stored(v),
                                    strict=True,
                                ),
                                trial_id=trial_id,
                                step=step,
                            )
                            for step, v in steps.items()
                        ],
                    )
                storage._set_trial_value_without_commit(session, trial, 0, value)
                trial.state = TrialState.COMPLETE
                trial.datetime_complete = datetime.now()
        except (optuna.exceptions.UpdateFinishedTrialError, sa.exc.IntegrityError):
            pass  # told already (late-tell race: the other tell committed first)

    def update_summary(self) -> None:
        """Rewrite the cell's :data:`SUMMARY_KEY` from rnnsweep's counted rows (one
        query and one write; called once per committed pack)."""
        n, feasible, _ = self.store.cell_counts(self.name)
        self.storage.set_study_user_attr(
            self.study_id, SUMMARY_KEY, summary_text(feasible, n, self.sampler)
        )


def finish_told_late(store: Store, cells: Iterable[CellStudy]) -> None:
    """A worker that died between its commit and Optuna's tell left a RUNNING trial
    whose result is stored: tell it now, from the stored row and curve."""
    for cell in cells:
        # Debt: this tells the eval loss, not task.objective (capacity's minus bits), so a
        # late-told capacity trial enters a gp/tpe model on the wrong scale. Rare: a worker
        # must die between its commit and its tell.
        rows = store.trial_rows(cell.running_trial_ids())
        for row in rows:
            cell.tell(row["optuna_trial_id"], row, store.trial_curve(row["id"]))
        if rows:
            cell.update_summary()


@dataclass(frozen=True)
class CellMismatch:
    """A cell whose Optuna trials no longer match rnnsweep's counted rows."""

    cell: str  # the Optuna study's name, STUDY.ARCH.dDEPTH
    counted: int  # rnnsweep's counted rows of the cell
    missing: int  # ... whose Optuna trial is gone (or now belongs to another study)
    changed: int  # ... whose Optuna trial is no longer COMPLETE (nor RUNNING: not yet told)
    study_gone: bool  # the cell's Optuna study itself is gone

    def describe(self) -> str:
        if self.study_gone:
            return f"{self.cell}: Optuna study deleted ({self.counted} counted trials)"
        parts = []
        if self.missing:
            parts.append(f"{self.missing} of {self.counted} trials gone from Optuna")
        if self.changed:
            parts.append(f"{self.changed} no longer COMPLETE in Optuna")
        return f"{self.cell}: {', '.join(parts)}"


def cell_mismatches(store: Store, study: str) -> list[CellMismatch]:
    """Cells of ``study`` whose Optuna trials were deleted or edited outside rnnsweep.

    One query over rnnsweep's counted rows joined to Optuna's ``trials`` and ``studies``
    tables: a row's Optuna trial must exist, in the row's cell study, COMPLETE (or
    still RUNNING: a worker between its commit and its tell). Empty when none, or when
    the storage holds no Optuna tables.
    """
    engine = store.reader  # read only (None: a SQLite file not created yet)
    if engine is None:
        return []
    names = set(sa.inspect(engine).get_table_names())
    if not {"trials", "studies", "rnnsweep_trials"} <= names:
        return []
    q = sa.text(
        """
        SELECT r.optuna_study AS cell,
               COUNT(*) AS counted,
               SUM(CASE WHEN s.study_name IS NULL OR s.study_name <> r.optuna_study
                        THEN 1 ELSE 0 END) AS missing,
               SUM(CASE WHEN s.study_name = r.optuna_study
                         AND t.state NOT IN ('COMPLETE', 'RUNNING')
                        THEN 1 ELSE 0 END) AS changed,
               MAX(CASE WHEN c.study_id IS NULL THEN 1 ELSE 0 END) AS gone
        FROM rnnsweep_trials r
        LEFT JOIN trials t ON t.trial_id = r.optuna_trial_id
        LEFT JOIN studies s ON s.study_id = t.study_id
        LEFT JOIN studies c ON c.study_name = r.optuna_study
        WHERE r.study = :study AND r.state = 'complete'
        GROUP BY r.optuna_study
        ORDER BY r.optuna_study
        """
    )
    with engine.connect() as con:
        rows = con.execute(q, {"study": study}).mappings().all()
    return [
        CellMismatch(
            r["cell"], int(r["counted"]), int(r["missing"]), int(r["changed"]), bool(r["gone"])
        )
        for r in rows
        if r["missing"] or r["changed"]
    ]


def mismatch_warning(study: str, mismatches: list[CellMismatch]) -> str:
    """The one line ``report`` and ``studies`` print for a study with mismatched cells."""
    cells = "; ".join(m.describe() for m in mismatches)
    return (
        f"Warning: study {study!r} was changed in Optuna's tables outside rnnsweep ({cells}); "
        "rnnsweep's own tables are intact and counted here; `rnnsweep run` will refuse to "
        "resume it (run it under a new --study name)."
    )


def check_cells(store: Store, study: str) -> None:
    """Refuse to resume a study whose cells were changed in Optuna outside rnnsweep.

    Re-creating a deleted cell study would leave it empty while rnnsweep's slots say the
    cell is done, and ``run`` would print "complete" over a study the dashboard shows
    empty. Raises StorageError naming the cells and the way on.
    """
    bad = cell_mismatches(store, study)
    if bad:
        cells = "; ".join(m.describe() for m in bad)
        raise StorageError(
            f"study {study!r} was changed in Optuna's tables outside rnnsweep ({cells}); "
            "its results stay in rnnsweep's tables (report, export), but it cannot be "
            "resumed: run it under a new --study name"
        )
