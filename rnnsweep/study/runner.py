"""Studies in motion: create a study, and workers that train it to exact totals.

Data flows one way: spec -> slots (the work queue) -> trials (Optuna) -> packs
(train) -> results -> store. Each (architecture, depth) cell is an Optuna study
of its own, named ``STUDY.ARCH.dDEPTH``, with ``trials`` slots in rnnsweep's
queue. Any number of workers, in one process or on many machines sharing one
storage, claim slots in packs, train them, and commit each result together with
its slot in one transaction: so a study ends with exactly ``trials`` results
per cell, none counted twice, whatever happens to a worker.

A slot's parameters and seed are fixed at its first attempt, so a re-run after
a crash or an interrupt trains the very same trial; the failed attempt stays
in Optuna's history as FAIL and is never counted.
"""

from __future__ import annotations

import functools
import json
import math
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import optuna
import torch
from optuna.trial import TrialState

from rnnsweep import __version__, interrupts
from rnnsweep.cells import InitConfig, ModelConfig
from rnnsweep.errors import SpecError
from rnnsweep.store import Store
from rnnsweep.store.queue import Slot, SlotQueue
from rnnsweep.study.params import slot_params
from rnnsweep.study.space import (
    ADAPTIVE_SAMPLERS,
    TrialSettings,
    derive_seed,
    distributions,
    make_sampler,
    settings_from_params,
    task_for,
)
from rnnsweep.study.spec import CellPlan, StudySpec, spec_from_json
from rnnsweep.train import MemberResult, MemberSpec, train_pack

__all__ = [
    "Progress",
    "RunSummary",
    "WorkerOptions",
    "cell_study_name",
    "create_study",
    "resolve_device",
    "run_study",
    "run_worker",
]

# Optuna's key for constraint values (optuna/study/_constrained_optimization.py);
# optuna-dashboard reads this list to mark trials infeasible, Optuna 5 reads it
# as constraint "0". A value <= 0 is feasible.
CONSTRAINTS_KEY = "constraints"


class Progress(Protocol):
    """What a worker reports while it works (the CLI draws a Rich bar from it)."""

    def start(self, total: int, done: int, feasible: int) -> None: ...

    def advance(self, done: int, feasible: int) -> None: ...


@dataclass
class RunSummary:
    """What one call of :func:`run_study` or :func:`run_worker` did."""

    study: str
    resumed: bool
    device: str
    requested: int
    already_done: int
    trials_run: int = 0
    feasible_run: int = 0
    wall_time: float = 0.0
    storage_time: float = 0.0  # seconds in the store: claims, trials, commits, tells
    cells: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class WorkerOptions:
    """How one worker runs (none of it changes a trial's result)."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    pack_size: int = 1  # slots claimed and trained together
    threads: int | None = 1  # torch CPU threads (None: torch's default)
    heartbeat: float = 10.0  # seconds between heartbeats of claimed slots
    grace: float | None = None  # a claim is stale after this long silent (3 x heartbeat)
    poll: float = 1.0  # seconds between looks while others' trials run
    impl: str = "fused"  # fused (rnnsweep.kernels) | reference (per-step autograd)
    worker_id: str = ""

    @property
    def stale_after(self) -> float:
        return self.grace if self.grace is not None else 3.0 * self.heartbeat


def cell_study_name(study: str, arch: str, depth: int) -> str:
    return f"{study}.{arch}.d{depth}"


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when visible, else cpu; an explicit cuda without one is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SpecError(f"--device {device} requested but no CUDA device is visible")
    return device


def new_worker_id() -> str:
    """``host:pid:random``: unique, and tells a dead local worker from a live one."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


# ---- creating ------------------------------------------------------------------------


def _open_cell(spec: StudySpec, store: Store, plan: CellPlan) -> optuna.Study:
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


def create_study(spec: StudySpec, store: Store) -> tuple[bool, int, int]:
    """Register a study (or check a resumed one) and its slots; train nothing.

    Returns (resumed, requested trials, trials already complete). Raising
    ``trials`` on a resumed study adds the missing slots.
    """
    resumed = store.register_study(spec.to_json(), spec.identity(), spec.spec_hash())
    store.touch_study(spec.name)
    plans = spec.cells()
    for plan in plans:
        _open_cell(spec, store, plan)
    queue = SlotQueue(store.engine, spec.name)
    queue.ensure([p.key for p in plans], spec.trials)
    done, _ = store.result_counts(spec.name)
    return resumed, spec.trials * len(plans), done


# ---- working -----------------------------------------------------------------------


class _Heartbeat(threading.Thread):
    """Keeps this worker's claimed slots alive while it trains."""

    def __init__(self, queue: SlotQueue, worker: str, interval: float) -> None:
        super().__init__(daemon=True, name="rnnsweep-heartbeat")
        self.queue, self.worker, self.interval = queue, worker, interval
        self.held: set[int] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def hold(self, ids: list[int]) -> None:
        with self.lock:
            self.held.update(ids)

    def drop(self, ids: list[int]) -> None:
        with self.lock:
            self.held.difference_update(ids)

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            with self.lock:
                ids = list(self.held)
            try:
                self.queue.heartbeat(ids, self.worker)
            except Exception:  # noqa: BLE001 - a missed beat is retried; staleness has a grace
                pass


def _reap_dead_local_claims(queue: SlotQueue, store: Store) -> None:
    """Release claims held by processes of this host that no longer exist.

    A killed ``rnnsweep run`` on this machine need not wait out the grace period.
    """
    host = socket.gethostname()
    for slot_id, worker in store.claimed_slots(queue.study):
        parts = (worker or "").split(":")
        if len(parts) < 3 or parts[0] != host or not parts[1].isdigit():
            continue
        try:
            os.kill(int(parts[1]), 0)
        except ProcessLookupError:
            queue.release([slot_id], worker)
        except PermissionError:  # alive, someone else's
            pass


def _member(settings: TrialSettings, task=None, arch: str = "") -> MemberSpec:
    critical = None
    if settings.init == "critical":
        sigma_v = settings.sigma_v if settings.sigma_v is not None else settings.init_scale
        critical = critical_sigma_w(arch, sigma_v, settings.b_fg, task, settings.sigma_b)
    return MemberSpec(
        lr=settings.lr,
        clip=settings.clip,
        init=InitConfig(
            init_scale=settings.init_scale,
            b_fg=settings.b_fg,
            init=settings.init,
            seed=settings.seed,
            critical_sigma_w=critical,
            input_scale=settings.sigma_v,
            bias_scale=settings.sigma_b,
        ),
    )


def _input_moment(task) -> float:
    """E[x^2] per input unit of the task's inputs (cached on the task object)."""
    R = getattr(task, "_input_R", None)
    if R is None:
        R = float((task.eval_batch(0, 64).x.double() ** 2).mean())
        task._input_R = R
    return R


def critical_sigma_w(arch: str, sigma_v: float, b_fg: float, task, sigma_b: float = 0.0) -> float:
    """The recurrent scale on the chi = 1 line for this trial (Chen et al. 2018).

    sigma_v the input weights' scale, sigma_b the bias spread, mu_b = b_fg,
    and R from the task's inputs: E[x^2] (vanilla) or E[z^2] with z = tanh(W^z x)
    for the minimalRNN. Exact for depth 1; deeper stacks reuse it per layer (an
    approximation: upper layers' inputs are not the task's).
    """
    return _critical_sigma_w(arch, sigma_v, b_fg, sigma_b, _input_moment(task))


@functools.lru_cache(maxsize=4096)
def _critical_sigma_w(arch: str, sigma_v: float, b_fg: float, sigma_b: float, R: float) -> float:
    """Cached: a trial needs it twice (its init, then its xi), and solving chi = 1 is a
    root search over quadratures."""
    from rnnsweep.theory.critical import critical_minimalrnn, critical_vanilla
    from rnnsweep.theory.meanfield import gaussian_expectation

    if arch == "rnn":
        return critical_vanilla(sigma_v=sigma_v, R=R, sigma_b=sigma_b)
    R_z = float(gaussian_expectation(lambda e: np.tanh(e) ** 2, sigma_v**2 * R))
    return critical_minimalrnn(sigma_v=sigma_v, R=R_z, mu_b=b_fg, sigma_b=sigma_b)


@dataclass
class _Attempt:
    slot: Slot
    trial: optuna.Trial
    settings: TrialSettings


class _Cell:
    """One (arch, depth) cell as a worker sees it."""

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


def _fail_if_running(cell: _Cell, trial_id: int | None) -> None:
    if trial_id is None:
        return
    try:
        if cell.storage.get_trial(trial_id).state == TrialState.RUNNING:
            cell.storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except (KeyError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
        pass


def _start_attempt(spec: StudySpec, cell: _Cell, slot: Slot, queue: SlotQueue) -> _Attempt:
    """Create the Optuna trial of one slot's attempt: the slot's own parameters and seed."""
    plan = cell.plan
    # A previous attempt that never finished (crash, interrupt) is failed, not counted:
    # the one the slot recorded, and any other still RUNNING for this slot (a worker
    # killed between creating a trial and recording it on the slot leaves one).
    _fail_if_running(cell, slot.optuna_trial_id)
    attrs = {
        "slot": slot.slot,
        "attempt": slot.attempts,
        "hidden": plan.hidden,
        "params": plan.params,
    }
    if slot.attempts > 1:
        attrs["rerun"] = True
        for t in cell.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("slot") == slot.slot:
                _fail_if_running(cell, t._trial_id)
    if slot.params is not None:  # a re-run: the same trial again
        params, seed = slot.params, int(slot.seed)
        trial = _create_trial(cell, params, {**attrs, "seed": seed})
    elif spec.sampler in ADAPTIVE_SAMPLERS:
        seed = derive_seed(spec.seed, "trial", plan.arch, plan.depth, slot.slot)
        trial = cell.study.ask(fixed_distributions=cell.dists)
        for k, v in {**attrs, "seed": seed}.items():
            trial.set_user_attr(k, v)
        params = dict(trial.params)
    else:
        seed = derive_seed(spec.seed, "trial", plan.arch, plan.depth, slot.slot)
        params = slot_params(
            spec.sampler,
            cell.dists,
            spec.space_for(plan.arch),
            plan.arch,
            plan.depth,
            slot.slot,
            spec.seed,
        )
        trial = _create_trial(cell, params, {**attrs, "seed": seed})
    queue.record_attempt(slot.id, params, seed, trial._trial_id)
    return _Attempt(
        slot, trial, settings_from_params(spec.space_for(plan.arch), plan, params, seed)
    )


def _create_trial(cell: _Cell, params: dict[str, Any], user_attrs: dict[str, Any]) -> optuna.Trial:
    """A RUNNING Optuna trial with given parameters (no queue: no other worker can take it)."""
    dists = {k: cell.dists[k] for k in params if k in cell.dists}
    template = optuna.trial.create_trial(
        state=TrialState.RUNNING,
        params={k: params[k] for k in dists},
        distributions=dists,
        user_attrs=user_attrs,
    )
    trial_id = cell.storage.create_new_trial(cell.study_id, template_trial=template)
    return optuna.trial.Trial(cell.study, trial_id)


def run_worker(
    store: Store,
    study: str,
    opts: WorkerOptions = WorkerOptions(),
    *,
    progress: Progress | None = None,
) -> RunSummary:
    """Train the study's slots, a pack at a time, until every cell is complete.

    Waits (polling) while other workers hold live claims, and re-runs claims
    that went stale. On an interrupt, hands its claimed slots back and re-raises.
    """
    t0 = time.perf_counter()
    spec = spec_from_json(store.study_spec(study))
    device = resolve_device(opts.device)
    if opts.threads is not None:
        torch.set_num_threads(opts.threads)
    worker = opts.worker_id or new_worker_id()
    task = spec.make_task()
    # What every trial's stored config shares, built once per worker.
    config_base = {
        "study": spec.name,
        "spec_hash": spec.spec_hash(),
        "task": spec.task,
        "task_options": spec.to_json()["task_options"],
        "train": spec.train.to_dict(),
        "sampler": spec.sampler,
        "rnnsweep_version": __version__,
    }
    cells = {plan.key: _Cell(spec, store, plan) for plan in spec.cells()}
    queue = SlotQueue(store.engine, study)
    _reap_dead_local_claims(queue, store)
    _finish_told_late(store, cells)

    counts = queue.counts(opts.stale_after)
    already, feasible = store.result_counts(study)
    summary = RunSummary(study, True, device, counts.total, already)
    if progress is not None:
        progress.start(counts.total, already, feasible)

    beat = _Heartbeat(queue, worker, opts.heartbeat)
    beat.start()
    attempts: list[_Attempt] = []
    try:
        with interrupts.deferred():  # stop at a step boundary, see interrupts
            while True:
                t_store = time.perf_counter()
                interrupts.check()  # a stop requested between packs
                claimed = queue.claim(worker, opts.pack_size, opts.stale_after)
                summary.storage_time += time.perf_counter() - t_store
                if not claimed:
                    c = queue.counts(opts.stale_after)
                    if c.pending == 0 and c.claimed == 0 and c.stale == 0:
                        break  # every slot is done
                    time.sleep(opts.poll)  # others' trials are running: wait for them
                    continue
                beat.hold([s.id for s in claimed])
                cell = cells[claimed[0].cell]
                t_store = time.perf_counter()
                attempts = [_start_attempt(spec, cell, s, queue) for s in claimed]
                summary.storage_time += time.perf_counter() - t_store
                done, feasible, t_commit = _train_and_commit(
                    spec, store, task, cell, attempts, device, config_base, worker, opts.impl
                )
                summary.storage_time += t_commit
                beat.drop([a.slot.id for a in attempts])
                attempts = []
                summary.trials_run += done
                summary.feasible_run += feasible
                if progress is not None:
                    progress.advance(done, feasible)
    except BaseException:
        # Interrupted (or broken) mid-pack: hand the slots back for a re-run with
        # the same parameters; their Optuna trials become FAIL (history only).
        if attempts:
            queue.release([a.slot.id for a in attempts], worker)
            for a in attempts:
                _fail_if_running(cells[a.slot.cell], a.trial._trial_id)
        raise
    finally:
        beat.stop.set()

    summary.wall_time = time.perf_counter() - t0
    summary.cells = [
        {
            "arch": c.plan.arch,
            "depth": c.plan.depth,
            "hidden": c.plan.hidden,
            "params": c.plan.params,
        }
        for c in cells.values()
    ]
    return summary


def run_study(
    spec: StudySpec,
    store: Store,
    *,
    pack_size: int = 1,
    threads: int | None = 1,
    progress: Progress | None = None,
    impl: str = "fused",
    heartbeat: float = 10.0,
) -> RunSummary:
    """Create (or resume) a study and train it in this process until complete.

    ``threads`` sets torch's CPU threads (None leaves torch's default). One thread
    is the default: beside another busy process, two threads on a 2-core machine are
    slower (OpenMP threads spin for a core that is taken: 10.8 s against 8.6 s for a
    small study, and once 40x), while a machine of one's own gains from them for
    packs; see docs/PERFORMANCE.md.
    """
    if pack_size < 1:
        raise SpecError(f"pack size must be >= 1, got {pack_size}")
    device = resolve_device(spec.device)
    resumed, _, _ = create_study(spec, store)
    opts = WorkerOptions(
        device=device, pack_size=pack_size, threads=threads, heartbeat=heartbeat, impl=impl
    )
    summary = run_worker(store, spec.name, opts, progress=progress)
    summary.resumed = resumed
    return summary


# ---- training and committing ---------------------------------------------------------


def _train_and_commit(
    spec: StudySpec,
    store: Store,
    task,
    cell: _Cell,
    attempts: list[_Attempt],
    device: str,
    config_base: dict,
    worker: str,
    impl: str,
) -> tuple[int, int]:
    """Train one claimed pack (grouped by structure), commit each result with its slot.

    Returns (trials committed, feasible among them, seconds spent committing).
    """
    plan = cell.plan
    # Members of one pack share the nonlinearity (it is compiled into the kernels'
    # pointwise math) and the task (a tuned b is a different data set); everything
    # else, optimizer included, varies per member.
    groups: dict[tuple[str, int | None], list[int]] = defaultdict(list)
    for i, a in enumerate(attempts):
        groups[(a.settings.nonlinearity, a.settings.b)].append(i)
    done = feasible = 0
    t_store = 0.0
    study_task = task
    for (nl, _b), idx in groups.items():
        task = task_for(spec, attempts[idx[0]].settings, cell.tasks) or study_task
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
            [attempts[i].settings.optimizer for i in idx],
            [_member(attempts[i].settings, task, plan.arch) for i in idx],
            spec.train,
            device=device,
            impl=impl,
            on_step=_check_interrupt,
        )
        t0 = time.perf_counter()
        for i, res in zip(idx, results, strict=True):
            ok = _commit(
                spec,
                store,
                task,
                cell,
                attempts[i],
                model_cfg,
                res,
                len(idx),
                device,
                config_base,
                worker,
            )
            done += ok is not None
            feasible += bool(ok)
        t_store += time.perf_counter() - t0
    return done, feasible, t_store


XI_BINS = (
    (0.25, "xi/T<0.25"),
    (0.5, "xi/T 0.25-0.5"),
    (1.0, "xi/T 0.5-1"),
    (2.0, "xi/T 1-2"),
    (math.inf, "xi/T>2"),
)


def _diagnostics_extra(
    res: MemberResult, model_cfg: ModelConfig, settings: TrialSettings, spec: StudySpec, task
) -> dict[str, Any]:
    """Diagnostics (init_*, final_*, region) and, where the theory covers the cell, the
    mean-field timescale xi of the trial's initialisation and its bin relative to T."""
    out: dict[str, Any] = {}
    for when, diag in (("init", res.diag_init), ("final", res.diag_final)):
        for k, v in diag.items():
            out[f"{when}_{k}"] = v
    if res.diag_init:
        out["region"] = int(res.diag_init["region"])
    if res.diag_final:
        out["region_final"] = int(res.diag_final["region"])
    xi = _xi_of(model_cfg, settings, task)
    if xi is not None:
        out["xi"] = xi
        ratio = xi / task.seq_len
        out["xi_bin"] = next(name for edge, name in XI_BINS if ratio < edge or math.isinf(edge))
    return out


def _xi_of(model_cfg: ModelConfig, settings: TrialSettings, task) -> float | None:
    """Chen et al.'s timescale for a tanh rnn or a minimalrnn at this initialisation.

    sigma_w = sigma_v = init_scale (one scale for W^h and W^x, as initialised),
    mu_b = b_fg, sigma_b = 0, and R from the task's inputs: E[x^2] per unit
    (vanilla), or E[z^2] with z = tanh(W^z x) for the minimalRNN's embedding.
    """
    if model_cfg.depth != 1 or not (
        (model_cfg.arch == "rnn" and model_cfg.nonlinearity == "tanh")
        or model_cfg.arch == "minimalrnn"
    ):
        return None
    from rnnsweep.theory.meanfield import gaussian_expectation, mean_field

    R = _input_moment(task)
    v = settings.sigma_v if settings.sigma_v is not None else settings.init_scale
    b = settings.sigma_b
    try:
        w = settings.init_scale
        if settings.init == "critical":
            w = critical_sigma_w(model_cfg.arch, v, settings.b_fg, task, b)
        if model_cfg.arch == "rnn":
            return float(mean_field("rnn", sigma_w=w, sigma_v=v, R=R, sigma_b=b).xi)
        R_z = float(gaussian_expectation(lambda e: np.tanh(e) ** 2, v * v * R))
        return float(
            mean_field("minimalrnn", sigma_w=w, sigma_v=v, R=R_z, mu_b=settings.b_fg, sigma_b=b).xi
        )
    except (ValueError, ArithmeticError):
        return None


def _check_interrupt(_step: int) -> None:
    """Called by the trainer after every step: stop now if SIGINT/SIGTERM arrived."""
    interrupts.check()


def _commit(
    spec: StudySpec,
    store: Store,
    task,
    cell: _Cell,
    attempt: _Attempt,
    model_cfg: ModelConfig,
    res: MemberResult,
    pack_size: int,
    device: str,
    config_base: dict,
    worker: str,
) -> bool | None:
    """Store one result and close its slot (one transaction), then tell Optuna.

    Returns True (feasible) / False (diverged), or None when the slot was taken
    from this worker meanwhile (its heartbeat went stale): then nothing is kept.
    """
    plan, trial, settings = cell.plan, attempt.trial, attempt.settings
    solved = (
        (not res.diverged)
        and math.isfinite(res.final_loss)
        and (res.final_loss < task.solved_threshold)
    )
    extra = task.summary(res.final_loss, res.metric, plan.params) if not res.diverged else {}
    extra.update(_diagnostics_extra(res, model_cfg, settings, spec, task))
    config = {
        **config_base,
        "model": model_cfg.to_dict(),
        "settings": settings.to_dict(),
        "slot": attempt.slot.slot,
    }
    row = {
        "study": spec.name,
        "optuna_study": cell.study.study_name,
        "optuna_trial_id": trial._trial_id,
        "trial_number": trial.number,
        "state": "complete",
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
        "sigma_b": settings.sigma_b,
        "sigma_v": settings.sigma_v,
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
    }
    if store.commit_trial(row, res.curve, attempt.slot.id, worker) is None:
        _fail_if_running(cell, trial._trial_id)
        return None
    # The value the sampler minimises: the eval loss, or the task's own objective
    # (capacity: minus the stored bits, which Collins' tuner maximised).
    _tell(
        cell,
        trial._trial_id,
        res.diverged,
        task.objective(res.final_loss, res.metric),
        solved,
        plan,
    )
    return not res.diverged


def _tell(
    cell: _Cell, trial_id: int, diverged: bool, final_loss: float, solved: bool, plan: CellPlan
) -> None:
    """Tell Optuna a committed result: COMPLETE, value, and the feasibility constraint.

    Idempotent: a trial already finished (told by a late-tell from another worker
    that started while this one was between its commit and its tell) is left alone.
    """
    constraint = (1.0,) if diverged else (0.0,)
    storage = cell.storage
    value = math.inf if diverged else final_loss
    # Straight to the storage, not Study.tell: four writes instead of a dozen
    # round trips (storage overhead is measured in docs/PERFORMANCE.md), and no
    # sampler callback is needed (TPE reads the constraint from the trial itself).
    try:
        storage.set_trial_user_attr(trial_id, "diverged", diverged)
        storage.set_trial_user_attr(trial_id, "solved", solved)
        storage.set_trial_system_attr(trial_id, CONSTRAINTS_KEY, constraint)
        storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [value])
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # told already (late-tell race)


def _finish_told_late(store: Store, cells: dict[str, _Cell]) -> None:
    """A worker that died between its commit and Optuna's tell left a RUNNING trial
    whose result is stored: tell it now, from the stored row."""
    for cell in cells.values():
        running = [
            t._trial_id for t in cell.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        ]
        for row in store.trial_rows(running):
            # Debt: this tells the eval loss, not task.objective (capacity's minus bits), so
            # a late-told capacity trial enters a gp/tpe model on the wrong scale. Rare: a
            # worker must die between its commit and its tell.
            final = row["final_loss"] if row["final_loss"] is not None else math.nan
            _tell(
                cell,
                row["optuna_trial_id"],
                bool(row["diverged"]),
                final,
                bool(row["solved"]),
                cell.plan,
            )
