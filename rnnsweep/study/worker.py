"""Workers: train a study's slots, a pack at a time, until every cell is complete.

Data flows one way: resolved study -> slots (the work queue) -> trials (Optuna, through
:mod:`rnnsweep.study.optuna_bridge`) -> packs (:func:`rnnsweep.train.train_pack`) ->
result rows (:func:`rnnsweep.store.tables.trial_row`) -> store. Any number of workers,
in one process or on many machines sharing one storage, claim slots in packs, train
them, and commit each result together with its slot in one transaction: so a study
ends with exactly ``trials`` results per cell, none counted twice, whatever happens
to a worker. A heartbeat thread keeps a worker's claims alive while it trains.

A slot's parameters and seed are fixed at its first attempt, so a re-run after
a crash or an interrupt trains the very same trial; the failed attempt stays
in Optuna's history as FAIL and is never counted.
"""

from __future__ import annotations

import gc
import math
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from rnnsweep import __version__, interrupts
from rnnsweep.backend import Backend, resolve_backend
from rnnsweep.cells import InitConfig, ModelConfig
from rnnsweep.errors import SpecError
from rnnsweep.store.queue import Slot, SlotQueue
from rnnsweep.store.tables import trial_row
from rnnsweep.study.create import create_study
from rnnsweep.study.optuna_bridge import (
    CellStudy,
    attempt_attrs,
    check_cells,
    finish_told_late,
    trial_id,
)
from rnnsweep.study.params import slot_params
from rnnsweep.study.resolved import ResolvedStudy, resolve_stored
from rnnsweep.study.space import (
    ADAPTIVE_SAMPLERS,
    TrialSettings,
    derive_seed,
    settings_from_params,
)
from rnnsweep.theory.trial import critical_sigma_w, xi_bin, xi_of
from rnnsweep.train import MemberResult, MemberSpec, train_pack

if TYPE_CHECKING:
    import optuna

    from rnnsweep.store import Store
    from rnnsweep.tasks.base import Task

__all__ = [
    "Progress",
    "RunSummary",
    "WorkerOptions",
    "idle_threads",
    "new_worker_id",
    "run_study",
    "run_worker",
]


class Progress(Protocol):
    """What a worker reports while it works (the CLI draws a Rich bar from it).

    A progress object may also have ``partial(trials: float)``: the trials of the pack in
    training, as a fraction of them done (``len(pack) * step / steps``), after every step,
    so that a bar's ETA holds from the first pack on and not only at its end.
    """

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
    backend: Backend | None = None


@dataclass(frozen=True)
class WorkerOptions:
    """How one worker runs (none of it changes a trial's result beyond float tolerance)."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    pack_size: int = 1  # slots claimed and trained together
    threads: int | None = 1  # torch CPU threads (None: torch's default)
    heartbeat: float = 10.0  # seconds between heartbeats of claimed slots
    grace: float | None = None  # a claim is stale after this long silent (3 x heartbeat)
    poll: float = 1.0  # seconds between looks while others' trials run
    loop: str | None = None  # the time loop (rnnsweep.kernels.loops); None: env, else auto
    worker_id: str = ""

    @property
    def stale_after(self) -> float:
        return self.grace if self.grace is not None else 3.0 * self.heartbeat


def new_worker_id() -> str:
    """``host:pid:random``: unique, and tells a dead local worker from a live one."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


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


def _member(settings: TrialSettings, study: ResolvedStudy, arch: str) -> MemberSpec:
    """A trial's training hyperparameters and initialisation (critical: on chi = 1 for
    the study's input moment R)."""
    critical = None
    if settings.init == "critical":
        sigma_v = settings.sigma_v if settings.sigma_v is not None else settings.init_scale
        critical = critical_sigma_w(arch, sigma_v, settings.b_fg, settings.sigma_b, study.R)
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


@dataclass
class _Attempt:
    slot: Slot
    trial: optuna.Trial
    settings: TrialSettings


def _start_attempt(study: ResolvedStudy, cell: CellStudy, slot: Slot, queue: SlotQueue) -> _Attempt:
    """Create the Optuna trial of one slot's attempt: the slot's own parameters and seed."""
    spec, plan = study.spec, cell.plan
    # A previous attempt that never finished (crash, interrupt) is failed, not counted:
    # the one the slot recorded, and any other still RUNNING for this slot (a worker
    # killed between creating a trial and recording it on the slot leaves one).
    cell.fail_if_running(slot.optuna_trial_id)
    if slot.attempts > 1:
        for tid in cell.running_trial_ids(slot.slot):
            cell.fail_if_running(tid)
    if slot.params is not None:  # a re-run: the same trial again
        params, seed = slot.params, int(slot.seed)
        trial = cell.create_trial(params, attempt_attrs(slot.slot, slot.attempts, seed))
    elif spec.sampler in ADAPTIVE_SAMPLERS:
        seed = derive_seed(spec.seed, "trial", plan.arch, plan.depth, slot.slot)
        trial = cell.ask_trial(attempt_attrs(slot.slot, slot.attempts, seed))
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
        trial = cell.create_trial(params, attempt_attrs(slot.slot, slot.attempts, seed))
    queue.record_attempt(slot.id, params, seed, trial_id(trial))
    return _Attempt(
        slot, trial, settings_from_params(spec.space_for(plan.arch), plan, params, seed)
    )


def run_worker(
    store: Store,
    study: str | ResolvedStudy,
    opts: WorkerOptions = WorkerOptions(),
    *,
    progress: Progress | None = None,
    backend: Backend | None = None,
) -> RunSummary:
    """Train the study's slots, a pack at a time, until every cell is complete.

    ``study`` is a name (the stored spec is resolved here) or the resolved study itself;
    ``backend`` defaults to one resolved from ``opts`` and the study's dtype. Waits
    (polling) while other workers hold live claims, and re-runs claims that went stale.
    On an interrupt, hands its claimed slots back and re-raises.
    """
    t0 = time.perf_counter()
    resolved = (
        study if isinstance(study, ResolvedStudy) else resolve_stored(store.study_spec(study))
    )
    spec = resolved.spec
    if backend is None:  # the flag's loop, else the study file's, else the environment's
        named = opts.loop or (spec.loop if spec.loop != "auto" else None)
        backend = resolve_backend(opts.device, spec.train.dtype, named)
    if opts.threads is not None:
        torch.set_num_threads(opts.threads)
    worker = opts.worker_id or new_worker_id()
    # What every trial's stored config shares, built once per worker.
    config_base = {
        "study": spec.name,
        "spec_hash": resolved.spec_hash,
        "task": spec.task,
        "task_options": resolved.stored["task_options"],
        "train": spec.train.to_dict(),
        "sampler": spec.sampler,
        "rnnsweep_version": __version__,
    }
    check_cells(store, spec.name)  # refuse a study whose Optuna cells were changed outside
    cells = {plan.key: CellStudy(spec, store, plan) for plan in resolved.plans}
    queue = SlotQueue(store.engine, spec.name)
    _reap_dead_local_claims(queue, store)
    finish_told_late(store, cells.values())

    counts = queue.counts(opts.stale_after)
    already, feasible = store.result_counts(spec.name)
    summary = RunSummary(spec.name, True, backend.device, counts.total, already, backend=backend)
    if progress is not None:
        progress.start(counts.total, already, feasible)

    # The objects alive now (the imported modules, the store, the study) live as long as
    # the worker: the collector's full passes need not walk them again. A 100-step gru
    # study paid 0.9 s in 7 full passes, about 130 ms each (docs/PERFORMANCE.md).
    gc.freeze()
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
                attempts = [_start_attempt(resolved, cell, s, queue) for s in claimed]
                summary.storage_time += time.perf_counter() - t_store
                done, feasible, t_commit = _train_and_commit(
                    resolved, store, cell, attempts, backend, config_base, worker,
                    getattr(progress, "partial", None),
                )  # fmt: skip
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
                cells[a.slot.cell].fail_if_running(trial_id(a.trial))
        raise
    finally:
        beat.stop.set()

    summary.wall_time = time.perf_counter() - t0
    summary.cells = [
        {"arch": p.arch, "depth": p.depth, "hidden": p.hidden, "params": p.params}
        for p in resolved.plans
    ]
    return summary


def idle_threads() -> int:
    """Threads for one worker: the cores this process may run on, less the one-minute load
    average (the cores others keep busy), rounded to the nearest, at least 1.

    Why not all cores: beside a busy process, OpenMP threads spin for a core that is taken
    (two threads on a 2-core machine beside another busy process measured 10.8 s against
    8.6 s for a small study, once 40x slower); on idle cores a pack of 32 gains from them
    (docs/PERFORMANCE.md, "Whole runs against a user's own script").
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        return 1
    return max(1, min(cores, int(cores - load + 0.5)))


def run_study(
    study: ResolvedStudy,
    store: Store,
    *,
    pack_size: int = 1,
    threads: int | None = 1,
    progress: Progress | None = None,
    loop: str | None = None,
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
    spec = study.spec
    # the loop: the flag, else the study file's, else the environment's (RNNSWEEP_LOOP), else auto
    named = loop or (spec.loop if spec.loop != "auto" else None)
    backend = resolve_backend(spec.device, spec.train.dtype, named)
    resumed, _, _ = create_study(study, store)
    opts = WorkerOptions(
        device=backend.device,
        pack_size=pack_size,
        threads=threads,
        heartbeat=heartbeat,
        loop=backend.loop,
    )
    summary = run_worker(store, study, opts, progress=progress, backend=backend)
    summary.resumed = resumed
    return summary


# ---- training and committing ---------------------------------------------------------


def _train_and_commit(
    study: ResolvedStudy,
    store: Store,
    cell: CellStudy,
    attempts: list[_Attempt],
    backend: Backend,
    config_base: dict[str, Any],
    worker: str,
    partial: Callable[[float], None] | None = None,
) -> tuple[int, int, float]:
    """Train one claimed pack (grouped by structure), commit each result with its slot.

    Returns (trials committed, feasible among them, seconds spent committing).
    ``partial`` hears the pack's trials in training as a fraction done after every step.
    """
    spec, plan = study.spec, cell.plan
    # Members of one pack share the task (a tuned b is a different data set), and the
    # nonlinearity where the time loop compiles it into the pack's pointwise math (the
    # fused loops read it per member: there the pack stays whole); everything else,
    # optimizer included, varies per member. No member's numbers depend on its pack.
    mixes = backend.time_loop.mixes_nonlinearity
    groups: dict[tuple[str, int | None], list[int]] = defaultdict(list)
    for i, a in enumerate(attempts):
        groups[("" if mixes else a.settings.nonlinearity, a.settings.b)].append(i)
    done = feasible = 0
    t_store = 0.0
    trained = 0  # members of earlier groups of this claim
    for idx in groups.values():

        def on_step(step: int, before: int = trained, n: int = len(idx)) -> None:
            _check_interrupt(step)
            if partial is not None:
                partial(before + n * step / spec.train.steps)

        task = study.task_for(attempts[idx[0]].settings.b)
        cfgs = [
            ModelConfig(
                plan.arch,
                task.n_in,
                task.n_out,
                plan.hidden,
                plan.depth,
                nonlinearity=attempts[i].settings.nonlinearity,
                gru_reset=spec.model.gru_reset,
            )
            for i in idx
        ]
        results = train_pack(
            task,
            cfgs[0],
            [attempts[i].settings.optimizer for i in idx],
            [_member(attempts[i].settings, study, plan.arch) for i in idx],
            spec.train,
            backend=backend,
            on_step=on_step,
            nonlinearities=[c.nonlinearity for c in cfgs],
        )
        trained += len(idx)
        t0 = time.perf_counter()
        for i, model_cfg, res in zip(idx, cfgs, results, strict=True):
            ok = _commit(
                study, task, store, cell, attempts[i], model_cfg, res, len(idx), backend,
                config_base, worker,
            )  # fmt: skip
            done += ok is not None
            feasible += bool(ok)
        cell.update_summary()  # the cell's feasible fraction, for the dashboard
        t_store += time.perf_counter() - t0
    return done, feasible, t_store


def _diagnostics_extra(
    res: MemberResult, model_cfg: ModelConfig, settings: TrialSettings, study: ResolvedStudy
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
    xi = xi_of(model_cfg, settings, study.R)
    if xi is not None:
        out["xi"] = xi
        out["xi_bin"] = xi_bin(xi, study.T)
    return out


def _check_interrupt(_step: int) -> None:
    """Called by the trainer after every step: stop now if SIGINT/SIGTERM arrived."""
    interrupts.check()


def _commit(
    study: ResolvedStudy,
    task: Task,
    store: Store,
    cell: CellStudy,
    attempt: _Attempt,
    model_cfg: ModelConfig,
    res: MemberResult,
    pack_size: int,
    backend: Backend,
    config_base: dict[str, Any],
    worker: str,
) -> bool | None:
    """Store one result and close its slot (one transaction), then tell Optuna.

    Returns True (feasible) / False (diverged), or None when the slot was taken
    from this worker meanwhile (its heartbeat went stale): then nothing is kept.
    """
    spec = study.spec
    plan, trial, settings = cell.plan, attempt.trial, attempt.settings
    solved = (
        (not res.diverged)
        and math.isfinite(res.final_loss)
        and (res.final_loss < task.solved_threshold)
    )
    extra = task.summary(res.final_loss, res.metric, plan.params) if not res.diverged else {}
    extra.update(_diagnostics_extra(res, model_cfg, settings, study))
    config = {
        **config_base,
        "model": model_cfg.to_dict(),
        "settings": settings.to_dict(),
        "slot": attempt.slot.slot,
    }
    tid = trial_id(trial)
    row = trial_row(
        study=spec.name,
        task=spec.task,
        sampler=spec.sampler,
        optuna_study=cell.name,
        optuna_trial_id=tid,
        trial_number=trial.number,
        plan=plan,
        settings=settings,
        res=res,
        solved=solved,
        metric_name=task.metric_name,
        pack_size=pack_size,
        backend=backend,
        extra=extra,
        config=config,
    )
    if store.commit_trial(row, res.curve, attempt.slot.id, worker) is None:
        cell.fail_if_running(tid)
        return None
    # The value the sampler minimises: the eval loss, or the task's own objective
    # (capacity: minus the stored bits, which Collins' tuner maximised).
    objective = None if res.diverged else task.objective(res.final_loss, res.metric)
    cell.tell(tid, row, res.curve, objective=objective)
    return not res.diverged
