"""rnnsweep's own result tables, beside Optuna's in the same database.

- ``rnnsweep_studies``: one row per study: its full resolved spec and hash.
- ``rnnsweep_trials``: one row per trial attempt: the tidy, queryable result
  (architecture, depth, width, exact parameter count, hyperparameters, fate,
  losses, metric, steps, wall time, seed, full config as JSON). ``state`` is
  ``running`` while the Optuna trial is not yet told, ``complete`` once it is
  counted, ``failed`` for an attempt that never finished (kept for history,
  never counted in fractions).
- ``rnnsweep_curves``: the learning curve of each trial row, one row per
  evaluation (step, training loss, held-out loss and metric).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from rnnsweep.backend import Backend
    from rnnsweep.study.space import TrialSettings
    from rnnsweep.study.spec import CellPlan
    from rnnsweep.train import MemberResult

__all__ = ["ADDED", "curves", "metadata", "slots", "studies", "trials", "trial_row"]

metadata = sa.MetaData()

studies = sa.Table(
    "rnnsweep_studies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("task", sa.String(64), nullable=False),
    sa.Column("sampler", sa.String(32), nullable=False),
    sa.Column("trials_per_cell", sa.Integer, nullable=False),
    sa.Column("spec_hash", sa.String(32), nullable=False),
    sa.Column("spec_json", sa.Text, nullable=False),
    sa.Column("rnnsweep_version", sa.String(32), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

trials = sa.Table(
    "rnnsweep_trials",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("study", sa.String(128), nullable=False, index=True),
    sa.Column("optuna_study", sa.String(256), nullable=False),
    sa.Column("optuna_trial_id", sa.Integer, nullable=False, unique=True),
    sa.Column("trial_number", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("task", sa.String(64), nullable=False),
    sa.Column("arch", sa.String(32), nullable=False),
    sa.Column("depth", sa.Integer, nullable=False),
    sa.Column("hidden", sa.Integer, nullable=False),
    sa.Column("params", sa.Integer, nullable=False),
    sa.Column("sampler", sa.String(32), nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("lr", sa.Float, nullable=False),
    sa.Column("init_scale", sa.Float, nullable=False),
    sa.Column("b_fg", sa.Float, nullable=False),
    sa.Column("clip", sa.Float, nullable=False),
    sa.Column("nonlinearity", sa.String(16), nullable=False),
    sa.Column("optimizer", sa.String(16), nullable=False),
    sa.Column("init", sa.String(16), nullable=False),
    sa.Column("sigma_b", sa.Float, nullable=False, default=0.0),  # bias spread at init
    sa.Column("sigma_v", sa.Float, nullable=True),  # input weight scale (NULL: init_scale)
    sa.Column("diverged", sa.Boolean, nullable=False),
    sa.Column("diverged_at", sa.Integer, nullable=True),
    sa.Column("solved", sa.Boolean, nullable=False),
    sa.Column("initial_loss", sa.Float, nullable=True),
    sa.Column("final_loss", sa.Float, nullable=True),
    sa.Column("best_loss", sa.Float, nullable=True),
    sa.Column("metric", sa.Float, nullable=True),
    sa.Column("metric_name", sa.String(32), nullable=False),
    sa.Column("steps_run", sa.Integer, nullable=False),
    sa.Column("wall_time", sa.Float, nullable=False),
    sa.Column("pack_size", sa.Integer, nullable=False),
    sa.Column("device", sa.String(32), nullable=False),
    # the backend that computed the trial (rnnsweep.backend.Backend); NULL in rows of
    # versions before it was recorded (added to older tables on first write, see ADDED)
    sa.Column("loop", sa.String(32), nullable=True),
    sa.Column("products", sa.String(32), nullable=True),
    sa.Column("compiled", sa.Boolean, nullable=True),
    sa.Column("graphs", sa.Boolean, nullable=True),
    sa.Column("dtype", sa.String(16), nullable=True),
    sa.Column("torch_version", sa.String(64), nullable=True),
    sa.Column("extra_json", sa.Text, nullable=False),
    sa.Column("config_json", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

curves = sa.Table(
    "rnnsweep_curves",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "trial_row",
        sa.Integer,
        sa.ForeignKey("rnnsweep_trials.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("train_loss", sa.Float, nullable=True),
    sa.Column("eval_loss", sa.Float, nullable=True),
    sa.Column("eval_metric", sa.Float, nullable=True),
)

# The unit of work. A study of N trials per cell has N slots per cell; a worker
# *claims* a slot atomically (one UPDATE ... WHERE state = 'pending'), trains it,
# and marks it done, so W workers finish exactly N per cell, none twice. A claim
# carries a heartbeat; a claim whose heartbeat is older than the grace period
# is stale and may be claimed again. The slot remembers its parameters and seed,
# so a re-run (after a crash or an interrupt) trains the same trial again.
slots = sa.Table(
    "rnnsweep_slots",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("study", sa.String(128), nullable=False),
    sa.Column("cell", sa.String(64), nullable=False),  # "ARCH/dDEPTH"
    sa.Column("cell_order", sa.Integer, nullable=False),  # position in the study's cell list
    sa.Column("slot", sa.Integer, nullable=False),  # 0 .. trials-1 within the cell
    sa.Column("state", sa.String(16), nullable=False),  # pending | claimed | done
    sa.Column("worker", sa.String(128), nullable=True),
    sa.Column("claim_token", sa.String(64), nullable=True, index=True),
    sa.Column("heartbeat_at", sa.Float, nullable=True),  # database clock, epoch seconds
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("params_json", sa.Text, nullable=True),  # fixed at the first attempt
    sa.Column("seed", sa.BigInteger, nullable=True),
    sa.Column("optuna_trial_id", sa.Integer, nullable=True),  # the current attempt's trial
    sa.UniqueConstraint("study", "cell", "slot", name="uq_rnnsweep_slot"),
    sa.Index("ix_rnnsweep_slots_state", "study", "state"),
)

# Nullable columns added after the first release: a table that lacks them is still
# this schema (the store adds them on its first write; readers see NULL).
ADDED: dict[str, tuple[str, ...]] = {
    "rnnsweep_trials": ("loop", "products", "compiled", "graphs", "dtype", "torch_version"),
}


def trial_row(
    *,
    study: str,
    task: str,
    sampler: str,
    optuna_study: str,
    optuna_trial_id: int,
    trial_number: int,
    plan: CellPlan,
    settings: TrialSettings,
    res: MemberResult,
    solved: bool,
    metric_name: str,
    pack_size: int,
    backend: Backend,
    extra: dict[str, Any],
    config: dict[str, Any],
) -> dict[str, Any]:
    """One ``rnnsweep_trials`` row: the trial's cell, hyperparameters, fate, numbers and
    backend, with the task's extras and the full config as JSON. ``state`` and
    ``created_at`` are the store's (:meth:`rnnsweep.store.Store.commit_trial`)."""
    return {
        "study": study,
        "optuna_study": optuna_study,
        "optuna_trial_id": optuna_trial_id,
        "trial_number": trial_number,
        "state": "complete",
        "task": task,
        "arch": plan.arch,
        "depth": plan.depth,
        "hidden": plan.hidden,
        "params": plan.params,
        "sampler": sampler,
        "seed": settings.seed,
        "lr": settings.lr,
        "init_scale": settings.init_scale,
        "b_fg": settings.b_fg,
        "clip": settings.clip,
        "nonlinearity": settings.nonlinearity,
        "optimizer": settings.optimizer,
        "init": settings.init,
        "sigma_b": settings.sigma_b,
        "sigma_v": settings.sigma_v,
        "diverged": res.diverged,
        "diverged_at": res.diverged_at,
        "solved": solved,
        "initial_loss": res.initial_loss,
        "final_loss": res.final_loss,
        "best_loss": res.best_loss,
        "metric": res.metric,
        "metric_name": metric_name,
        "steps_run": res.steps_run,
        "wall_time": res.wall_time,
        "pack_size": pack_size,
        **backend.record(),
        "extra_json": json.dumps(extra),
        "config_json": json.dumps(config, sort_keys=True),
    }
