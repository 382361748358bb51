"""The study runner: ask Optuna for trials, train them in packs, store and tell.

Data flows one way: spec -> trials (Optuna ask) -> packs (train) -> results ->
store (rnnsweep tables, then Optuna tell). Each (architecture, depth) cell is an
Optuna study of its own, named ``STUDY.ARCH.dDEPTH``, so each cell has its own
sampler sequence (one Sobol sequence per cell) and its own trial budget.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import optuna
import torch
from optuna.trial import TrialState

from rnnsweep import __version__
from rnnsweep.cells import InitConfig, ModelConfig
from rnnsweep.errors import SpecError
from rnnsweep.store import Store
from rnnsweep.study.space import (
    TrialSettings,
    derive_seed,
    distributions,
    make_sampler,
    settings_from_params,
)
from rnnsweep.study.spec import CellPlan, StudySpec
from rnnsweep.train import MemberResult, MemberSpec, train_pack

__all__ = ["Progress", "RunSummary", "cell_study_name", "resolve_device", "run_study"]

# Optuna's key for constraint values (optuna/study/_constrained_optimization.py);
# optuna-dashboard reads it to mark trials infeasible. Written for every sampler,
# not only those that take a constraints_func.
CONSTRAINTS_KEY = "constraints"


class Progress(Protocol):
    """What the runner reports while it works (the CLI draws a Rich bar from it)."""

    def start(self, total: int, done: int, feasible: int) -> None: ...

    def advance(self, done: int, feasible: int) -> None: ...


@dataclass
class RunSummary:
    """What one call of :func:`run_study` did."""

    study: str
    resumed: bool
    device: str
    requested: int
    already_done: int
    trials_run: int = 0
    feasible_run: int = 0
    wall_time: float = 0.0
    cells: list[dict[str, Any]] = field(default_factory=list)


def cell_study_name(study: str, arch: str, depth: int) -> str:
    return f"{study}.{arch}.d{depth}"


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when visible, else cpu; an explicit cuda without one is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SpecError(f"--device {device} requested but no CUDA device is visible")
    return device


@dataclass
class _Cell:
    plan: CellPlan
    study: optuna.Study
    complete: int
    remaining: int


def _open_cell(spec: StudySpec, store: Store, plan: CellPlan) -> _Cell:
    name = cell_study_name(spec.name, plan.arch, plan.depth)
    study = optuna.create_study(
        study_name=name,
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
    _recover_stale(study, store)
    complete = sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    return _Cell(plan, study, complete, max(0, spec.trials - complete))


def _recover_stale(study: optuna.Study, store: Store) -> None:
    """Trials left RUNNING by an interrupted run: fail them, re-queue their settings.

    The re-queued trial keeps the original parameters and seed; the failed
    attempt stays in the history and is never counted.
    """
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    rows = store.rows_for_optuna_trials(t._trial_id for t in stale)
    for t in stale:
        _fail_and_requeue(study, t._trial_id, t.params, t.user_attrs, t.number)
    store.set_trial_state((rows[t._trial_id][0] for t in stale if t._trial_id in rows), "failed")


def _fail_and_requeue(
    study: optuna.Study, trial_id: int, params: dict, user_attrs: dict, number: int
) -> None:
    storage = study._storage
    storage.set_trial_state_values(trial_id, TrialState.FAIL)
    attrs = {"seed": user_attrs.get("seed"), "rerun_of": number}
    study.enqueue_trial(params, user_attrs={k: v for k, v in attrs.items() if v is not None})


def _member(settings: TrialSettings) -> MemberSpec:
    return MemberSpec(
        lr=settings.lr,
        clip=settings.clip,
        init=InitConfig(
            init_scale=settings.init_scale,
            b_fg=settings.b_fg,
            init=settings.init,
            seed=settings.seed,
        ),
    )


def run_study(
    spec: StudySpec,
    store: Store,
    *,
    pack_size: int = 1,
    threads: int | None = 1,
    progress: Progress | None = None,
    on_pack: Callable[[int], None] | None = None,
) -> RunSummary:
    """Run (or resume) a study until every cell has ``spec.trials`` complete trials.

    ``threads`` sets torch's CPU threads (None leaves torch's default). One thread
    is the default: these matrices are small, and with two threads on a 2-core
    machine shared with any other process, OpenMP's spinning made a 50-step
    ugrnn run 40x slower (1.3 s vs 51 s, measured); see docs/PERFORMANCE.md.
    """
    if pack_size < 1:
        raise SpecError(f"pack size must be >= 1, got {pack_size}")
    t0 = time.perf_counter()
    device = resolve_device(spec.device)
    if threads is not None:
        torch.set_num_threads(threads)
    task = spec.make_task()
    spec_json = spec.to_json()

    # 1. Register the study, or check that a resumed one has the same spec.
    resumed = store.register_study(spec_json, spec.identity(), spec.spec_hash())
    store.touch_study(spec.name)

    # 2. Open each (arch, depth) cell's Optuna study and count what is left.
    cells = [_open_cell(spec, store, plan) for plan in spec.cells()]
    requested = spec.trials * len(cells)
    already = sum(c.complete for c in cells)
    summary = RunSummary(spec.name, resumed, device, requested, already)
    feasible_before = sum(
        1
        for c in cells
        for t in c.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("constraints", (0.0,))[0] <= 0
    )
    if progress is not None:
        progress.start(requested, already, feasible_before)

    # 3. Round-robin over cells, one pack at a time, so an interrupted study has
    #    results in every cell.
    while any(c.remaining > 0 for c in cells):
        for cell in cells:
            if cell.remaining <= 0:
                continue
            n = min(pack_size, cell.remaining)
            done, feasible = _run_pack(spec, store, task, cell, n, device, spec_json)
            cell.remaining -= done
            summary.trials_run += done
            summary.feasible_run += feasible
            if progress is not None:
                progress.advance(done, feasible)
            if on_pack is not None:
                on_pack(done)

    summary.wall_time = time.perf_counter() - t0
    summary.cells = [
        {
            "arch": c.plan.arch,
            "depth": c.plan.depth,
            "hidden": c.plan.hidden,
            "params": c.plan.params,
        }
        for c in cells
    ]
    return summary


def _run_pack(
    spec: StudySpec, store: Store, task, cell: _Cell, n: int, device: str, spec_json: dict
) -> tuple[int, int]:
    """Ask n trials of one cell, train them (grouped by optimizer and nonlinearity), tell."""
    plan = cell.plan
    dists = distributions(spec.space, plan.arch)
    asked: list[tuple[optuna.Trial, TrialSettings]] = []
    try:
        for _ in range(n):
            trial = cell.study.ask(fixed_distributions=dists)
            seed = trial.user_attrs.get("seed")
            if seed is None:
                seed = derive_seed(spec.seed, "trial", plan.arch, plan.depth, trial.number)
                trial.set_user_attr("seed", seed)
            asked.append((trial, settings_from_params(spec.space, plan, trial.params, seed)))

        # Members of one pack share optimizer and nonlinearity (structure); the
        # rest (lr, clip, init scale, gate bias, init, seed) varies per member.
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, (_, s) in enumerate(asked):
            groups[(s.optimizer, s.nonlinearity)].append(i)
        feasible = 0
        for (opt_name, nl), idx in groups.items():
            model_cfg = ModelConfig(
                plan.arch,
                task.n_in,
                task.n_out,
                plan.hidden,
                plan.depth,
                nonlinearity=nl,
                gru_reset=spec.model.gru_reset,
            )
            results = train_pack(
                task,
                model_cfg,
                opt_name,
                [_member(asked[i][1]) for i in idx],
                spec.train,
                device=device,
            )
            for i, res in zip(idx, results, strict=True):
                trial, settings = asked[i]
                feasible += _record(
                    spec,
                    store,
                    task,
                    cell,
                    trial,
                    settings,
                    model_cfg,
                    res,
                    len(idx),
                    device,
                    spec_json,
                )
        asked.clear()
        return n, feasible
    finally:
        # Interrupted or failed mid-pack: hand the untold trials back for a re-run.
        for trial, _ in asked:
            if cell.study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
                _fail_and_requeue(
                    cell.study, trial._trial_id, trial.params, trial.user_attrs, trial.number
                )


def _record(
    spec: StudySpec,
    store: Store,
    task,
    cell: _Cell,
    trial: optuna.Trial,
    settings: TrialSettings,
    model_cfg: ModelConfig,
    res: MemberResult,
    pack_size: int,
    device: str,
    spec_json: dict,
) -> int:
    """Store one trial's result, then tell Optuna; returns 1 when feasible."""
    plan = cell.plan
    solved = (
        (not res.diverged)
        and math.isfinite(res.final_loss)
        and (res.final_loss < task.solved_threshold)
    )
    extra = task.summary(res.final_loss, res.metric, plan.params) if not res.diverged else {}
    config = {
        "study": spec.name,
        "spec_hash": spec.spec_hash(),
        "task": spec.task,
        "task_options": spec_json["task_options"],
        "model": model_cfg.to_dict(),
        "settings": settings.to_dict(),
        "train": spec.train.to_dict(),
        "sampler": spec.sampler,
        "pack_size": pack_size,
        "device": device,
        "rnnsweep_version": __version__,
    }
    row_id = store.save_trial(
        {
            "study": spec.name,
            "optuna_study": cell.study.study_name,
            "optuna_trial_id": trial._trial_id,
            "trial_number": trial.number,
            "task": spec.task,
            "arch": plan.arch,
            "depth": plan.depth,
            "hidden": plan.hidden,
            "params": plan.params,
            "sampler": spec.sampler,
            "seed": settings.seed,
            "lr": settings.lr,
            "init_scale": settings.init_scale,
            "b_fg": settings.b_fg,
            "clip": settings.clip,
            "nonlinearity": settings.nonlinearity,
            "optimizer": settings.optimizer,
            "init": settings.init,
            "diverged": res.diverged,
            "diverged_at": res.diverged_at,
            "solved": solved,
            "initial_loss": res.initial_loss,
            "final_loss": res.final_loss,
            "best_loss": res.best_loss,
            "metric": res.metric,
            "metric_name": task.metric_name,
            "steps_run": res.steps_run,
            "wall_time": res.wall_time,
            "pack_size": pack_size,
            "device": device,
            "extra_json": json.dumps(extra),
            "config_json": json.dumps(config, sort_keys=True),
        },
        res.curve,
    )
    constraint = (1.0,) if res.diverged else (0.0,)
    for k, v in {
        "constraints": list(constraint),
        "diverged": res.diverged,
        "solved": solved,
        "hidden": plan.hidden,
        "params": plan.params,
    }.items():
        trial.set_user_attr(k, v)
    cell.study._storage.set_trial_system_attr(trial._trial_id, CONSTRAINTS_KEY, constraint)
    value = math.inf if res.diverged else res.final_loss
    cell.study.tell(trial, value)
    store.set_trial_state([row_id], "complete")
    return 0 if res.diverged else 1
