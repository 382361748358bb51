"""The ``rnnsweep`` command line: a thin Typer layer over the library.

Each command parses its flags, calls one library function, and renders the
result with :mod:`rnnsweep.render`. Errors the library raises on purpose
(:class:`~rnnsweep.errors.RnnsweepError`) and bad flags become one line on
stderr and exit code 2; an interrupt exits 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from rnnsweep import __version__
from rnnsweep.errors import RnnsweepError
from rnnsweep.interrupts import Terminated
from rnnsweep.interrupts import install as install_signal_handlers
from rnnsweep.progress import StudyBar

try:  # typer >= 0.2x vendors click instead of depending on it
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older typer with the click package
    from click.exceptions import ClickException, UsageError

app = typer.Typer(
    name="rnnsweep",
    help="Trainability studies of recurrent networks: which fraction of hyperparameter "
    "space trains, per architecture and depth (Collins et al. 2017).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
err = Console(stderr=True)

StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="SQLAlchemy URL or SQLite path [env RNNSWEEP_STORAGE; default sqlite:///rnnsweep.db]",
        show_default=False,
    ),
]


def _check_format(value: str) -> str:
    """The one ``--format`` check: a format :func:`rnnsweep.render.render` knows."""
    from rnnsweep.render import FORMATS

    if value not in FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(FORMATS)}, got {value!r}")
    return value


FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        "-f",
        help="Output format: table, json, csv or markdown.",
        callback=_check_format,
    ),
]

# Where workers run (rnnsweep.launch); the study file's [launcher.slurm] / [launcher.ray]
# table gives the same settings, and these flags win over it.
LauncherOpt = Annotated[
    str,
    typer.Option(
        help="Where the workers run: local (processes here), slurm (a job array via sbatch) "
        "or ray (Ray tasks). slurm and ray need a PostgreSQL --storage."
    ),
]
PartitionOpt = Annotated[str | None, typer.Option(help="Slurm partition.", show_default=False)]
TimeLimitOpt = Annotated[
    str | None,
    typer.Option(
        "--time-limit", help="Slurm time limit per worker, e.g. 4:00:00.", show_default=False
    ),
]
CpusOpt = Annotated[
    int | None,
    typer.Option(
        help="CPUs per worker (slurm --cpus-per-task, ray num_cpus). [default: 1]",
        show_default=False,
    ),
]
GpusOpt = Annotated[
    int | None,
    typer.Option(
        help="GPUs per worker (slurm --gres=gpu:N, ray num_gpus). [default: 0]", show_default=False
    ),
]
MemOpt = Annotated[
    str | None, typer.Option(help="Slurm memory per worker, e.g. 8G.", show_default=False)
]
SbatchOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--sbatch",
        help="An extra sbatch option for the job script, e.g. --qos=long. Repeatable.",
        show_default=False,
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        help="Ray cluster address (host:port). [default: RAY_ADDRESS, else a local Ray]",
        show_default=False,
    ),
]


# Trials per pack: per-trial step time falls from K = 1 to K = 32 and is flat
# beyond (docs/PERFORMANCE.md, "time against K").
DEFAULT_PACK_SIZE = 32

_INTERRUPTED = "Interrupted: finished trials are kept; run the same command again to resume."


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rnnsweep {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """rnnsweep: why some RNNs train and others don't."""
    from rnnsweep.backend import env_loop
    from rnnsweep.switches import check_switches

    check_switches()  # a bad RNNSWEEP_* value: one line, exit 2, before any work
    env_loop()  # likewise RNNSWEEP_LOOP


def _check_device(device: str, *, auto: bool) -> None:
    """A ``--device`` value: cpu, cuda, cuda:N (and auto where ``auto``); a CUDA device
    that is not there is an error too (one line, exit 2). One validator for every
    command: :func:`rnnsweep.backend.check_device`."""
    from rnnsweep.backend import check_device, resolve_device

    resolve_device(check_device(device, auto=auto))


LoopOpt = Annotated[
    str | None,
    typer.Option(
        "--loop",
        help="Time loop: auto, reference, torch, compiled, native, blas (triton where "
        "installed). How, not what: not part of the study's identity. "
        "[env RNNSWEEP_LOOP; default: auto]",
        show_default=False,
    ),
]


# ---- run -------------------------------------------------------------------------


def _list(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [p.strip() for v in values for p in v.split(",") if p.strip()] or [""]


@app.command()
def run(
    study_file: Annotated[
        Path | None,
        typer.Argument(help="A study TOML file (flags override its values).", show_default=False),
    ] = None,
    arch: Annotated[
        list[str] | None,
        typer.Option(
            "--arch",
            "-a",
            help="Architectures: rnn, irnn, ugrnn, gru, lstm, plusrnn (+rnn), "
            "minimalrnn. Comma list or repeated.",
            show_default=False,
        ),
    ] = None,
    depth: Annotated[
        list[str] | None,
        typer.Option(
            "--depth", "-d", help="Stacking depths, comma list or repeated.", show_default=False
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            help="Cells to leave out, e.g. plusrnn/d1. Comma list or repeated.", show_default=False
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            help="Task: parens, memory, capacity, adding, arith. [default: parens]",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Text file for the charlm task (sets task_options.data).", show_default=False
        ),
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option(help="Trials per (arch, depth) cell. [default: 20]", show_default=False),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(help="Training steps per trial. [default: 300]", show_default=False),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Sequences per step. [default: 32]", show_default=False)
    ] = None,
    params: Annotated[
        str | None,
        typer.Option(
            help="Parameter budget per trial, e.g. 20k: the widest network that fits "
            "(Collins' equal-parameter rule). [default: 20k]",
            show_default=False,
        ),
    ] = None,
    hidden: Annotated[
        int | None,
        typer.Option(help="Fixed units per layer; overrides --params.", show_default=False),
    ] = None,
    sampler: Annotated[
        str | None,
        typer.Option(
            help="random | qmc (Sobol) | tpe | grid. random and qmc give unbiased feasible "
            "fractions. [default: random]",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Study seed. [default: 0]", show_default=False)
    ] = None,
    study: Annotated[
        str | None,
        typer.Option(
            "--study",
            "-s",
            help="Study name. [default: from task, archs and depths]",
            show_default=False,
        ),
    ] = None,
    storage: StorageOpt = None,
    device: Annotated[
        str | None, typer.Option(help="auto | cpu | cuda. [default: auto]", show_default=False)
    ] = None,
    pack_size: Annotated[
        int,
        typer.Option(
            help="Trials trained together as one pack (fused, batched over "
            "trials; 32 measured best per trial on a 2-core CPU, "
            "docs/PERFORMANCE.md)."
        ),
    ] = DEFAULT_PACK_SIZE,
    lr: Annotated[
        str | None,
        typer.Option(
            help="Learning rate: LOW:HIGH (log) or a fixed value. [default: 1e-4:1]",
            show_default=False,
        ),
    ] = None,
    init_scale: Annotated[
        str | None,
        typer.Option(
            help="Init scale sigma: LOW:HIGH (log) or fixed. [default: 0.3:3]", show_default=False
        ),
    ] = None,
    b_fg: Annotated[
        str | None,
        typer.Option(
            help="Forget/update gate bias: LOW:HIGH or fixed. [default: -2:4]", show_default=False
        ),
    ] = None,
    clip: Annotated[
        str | None,
        typer.Option(
            help="Gradient-norm clip: LOW:HIGH (log) or fixed. [default: 0.1:100]",
            show_default=False,
        ),
    ] = None,
    nonlinearity: Annotated[
        str | None, typer.Option(help="tanh,relu choices. [default: tanh,relu]", show_default=False)
    ] = None,
    optimizer: Annotated[
        str | None,
        typer.Option(help="adam,rmsprop,sgd choices. [default: all three]", show_default=False),
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(
            help="Recurrent init choices: gaussian, orthogonal, critical (chi = 1, "
            "rnn/minimalrnn). [default: gaussian,orthogonal]",
            show_default=False,
        ),
    ] = None,
    gru_reset: Annotated[
        str | None,
        typer.Option(
            help="GRU reset convention: pre (Collins) or post (torch.nn.GRU). [default: pre]",
            show_default=False,
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            help="CPU threads for torch. [default: one worker takes the machine's idle cores "
            "(its cores less the load average), at least 1; several workers take 1 each]",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            help="Worker processes (local: one per visible GPU, round-robin; slurm: array "
            "tasks; ray: tasks)."
        ),
    ] = 1,
    heartbeat: Annotated[
        float, typer.Option(help="Seconds between a worker's heartbeats on its trials.")
    ] = 10.0,
    loop: LoopOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    launcher: LauncherOpt = "local",
    partition: PartitionOpt = None,
    time_limit: TimeLimitOpt = None,
    cpus_per_worker: CpusOpt = None,
    gpus_per_worker: GpusOpt = None,
    mem: MemOpt = None,
    sbatch: SbatchOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Run (or resume) a study: train trials until every cell has --trials of them."""
    from rnnsweep.backend import check_loop, resolve_backend
    from rnnsweep.store import Store, resolve_url
    from rnnsweep.study import resolve, run_study

    spec = _build_spec(**{k: v for k, v in locals().items() if k in _SPEC_ARGS})
    loop = check_loop(loop) if loop is not None else None
    resolved = resolve(spec)
    resources = _resources(**{k: v for k, v in locals().items() if k in _RES_ARGS})
    if launcher == "local":  # elsewhere the device and loop are the worker's machine's
        backend = resolve_backend(spec.device, spec.train.dtype, loop or _file_loop(spec))
        loop = backend.loop
    for name, value in (("--pack-size", pack_size), ("--threads", threads), ("--workers", workers)):
        if value is not None and value < 1:
            raise typer.BadParameter(f"must be >= 1, got {value}", param_hint=name)
    if threads is None:  # one local worker: the idle cores; several share them, one each
        from rnnsweep.study.worker import idle_threads

        threads = idle_threads() if workers == 1 and launcher == "local" else 1
    if not heartbeat > 0 or heartbeat == float("inf"):  # NaN fails the first test
        raise typer.BadParameter(
            f"must be a finite number > 0, got {heartbeat}", param_hint="--heartbeat"
        )

    # The store (checked, then created), and the run with a progress bar.
    url = resolve_url(storage)
    if launcher != "local":
        from rnnsweep.launch import require_server_storage

        require_server_storage(url, launcher)
    store = Store(url, create=True)
    if workers > 1 or launcher != "local":
        from rnnsweep.launch import WorkerArgs

        args = WorkerArgs(spec.name, spec.device, pack_size, threads, heartbeat, loop)
        try:
            _launch(resolved, store, url, launcher, resources, workers, args, quiet)
        finally:
            store.dispose()
        return
    bar = StudyBar(spec.name, enabled=not quiet, console=err)
    try:
        summary = run_study(
            resolved,
            store,
            pack_size=pack_size,
            threads=threads,
            progress=bar,
            heartbeat=heartbeat,
            loop=backend.loop,
        )
        complete, _ = store.result_counts(spec.name)  # re-read: other runs may have helped
    except KeyboardInterrupt:
        bar.stop()
        err.print(_INTERRUPTED, markup=False)
        raise typer.Exit(130) from None
    finally:
        bar.stop()
        store.dispose()
    verb = "resumed" if summary.resumed else "created"
    err.print(
        f"Study {spec.name!r} ({verb}) in {store.masked_url}: {summary.trials_run} trials run, "
        f"{summary.feasible_run} feasible, {summary.wall_time:.1f} s ({_storage_ms(summary)}); "
        f"{complete}/{summary.requested} complete."
    )
    err.print(
        f"Next: rnnsweep report --study {spec.name}" + ("" if storage is None else " --storage ...")
    )


def _file_loop(spec) -> str | None:
    """The study file's ``[train] loop`` (None for auto: the environment may name one)."""
    return spec.loop if spec.loop != "auto" else None


def _build_spec(
    study_file,
    arch,
    depth,
    exclude,
    task,
    data,
    trials,
    steps,
    batch_size,
    params,
    hidden,
    sampler,
    seed,
    study,
    device,
    lr,
    init_scale,
    b_fg,
    clip,
    nonlinearity,
    optimizer,
    init,
    gru_reset,
):
    """The spec: file, then flags on top; validated before anything touches disk."""
    from rnnsweep.study import load_toml, merge, spec_from_dict

    base: dict[str, Any] = load_toml(study_file) if study_file is not None else {}
    base.pop("launcher", None)  # how to run, not what: rnnsweep.launch reads it, never hashed
    flags: dict[str, Any] = {}
    for key, value in (
        ("arch", _list(arch)),
        ("depth", _list(depth)),
        ("exclude", _list(exclude)),
        ("task", task),
        ("trials", trials),
        ("sampler", sampler),
        ("seed", seed),
        ("name", study),
        ("device", device),
    ):
        if value is not None:
            flags[key] = value
    if data is not None:
        flags["task_options"] = {"data": str(data)}
    train = {k: v for k, v in (("steps", steps), ("batch_size", batch_size)) if v is not None}
    if train:
        flags["train"] = train
    model: dict[str, Any] = {}
    if params is not None:
        model["params"] = params
        model["hidden"] = None
    if hidden is not None:
        model["hidden"] = hidden
    if gru_reset is not None:
        model["gru_reset"] = gru_reset
    if model:
        flags["model"] = model
    space = {
        k: v
        for k, v in (
            ("lr", lr),
            ("init_scale", init_scale),
            ("b_fg", b_fg),
            ("clip", clip),
            ("nonlinearity", nonlinearity),
            ("optimizer", optimizer),
            ("init", init),
        )
        if v is not None
    }
    if space:
        flags["space"] = space
    return spec_from_dict(merge(base, flags))


_SPEC_ARGS = tuple(inspect.signature(_build_spec).parameters)


def _resources(
    study_file,
    launcher,
    partition,
    time_limit,
    cpus_per_worker,
    gpus_per_worker,
    mem,
    sbatch,
    ray_address,
):
    """The launcher's settings: the file's [launcher.<name>] table, flags on top."""
    from rnnsweep.launch import LAUNCHERS, launcher_table
    from rnnsweep.study import load_toml

    if launcher not in LAUNCHERS:
        raise typer.BadParameter(
            f"choose one of {', '.join(LAUNCHERS)}, got {launcher!r}", param_hint="--launcher"
        )
    flags = {
        "partition": partition,
        "time": time_limit,
        "cpus_per_worker": cpus_per_worker,
        "gpus_per_worker": gpus_per_worker,
        "mem": mem,
        "sbatch": tuple(sbatch or ()),
        "address": ray_address,
    }
    file = load_toml(study_file) if study_file is not None else {}
    return launcher_table(file, launcher, flags)


_RES_ARGS = tuple(inspect.signature(_resources).parameters)


def _launch(study, store, url: str, launcher: str, resources, n: int, args, quiet: bool) -> None:
    """Register the study, start n workers through the launcher, one combined progress bar
    read from the store (rnnsweep.launch)."""
    from rnnsweep.launch import launch, launcher_for

    spec = study.spec
    bar = StudyBar(spec.name, enabled=not quiet, console=err)
    try:
        out = launch(launcher_for(launcher, resources), study, store, url, n, args, bar)
    except (KeyboardInterrupt, Terminated) as exc:
        bar.stop()
        err.print(_INTERRUPTED, markup=False)
        raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None
    where = "" if launcher == "local" else f" on {out.where}"
    err.print(
        f"Study {spec.name!r} ({'resumed' if out.resumed else 'created'}) in "
        f"{store.masked_url}: {n} workers{where}, {out.complete - out.done_before} trials run, "
        f"{out.wall_time:.1f} s; {out.complete}/{out.requested} complete."
    )
    # a worker that died is only a failure if the study is left incomplete (the counts are
    # re-read from the store by launch())
    if launcher == "local" and out.failures and out.complete < out.requested:
        err.print(
            f"{len(out.failures)} worker(s) failed (exit codes [{', '.join(out.failures)}]); "
            "run the same command again to finish."
        )
        raise typer.Exit(1)
    if out.failures:  # a cluster worker lost: fine as long as the others finished the study
        err.print(f"Workers that ended early: {'; '.join(out.failures)}.")
    if out.complete < out.requested:
        err.print("The workers ended with the study incomplete; run the same command again.")
        raise typer.Exit(1)


def create(**kwargs: Any) -> None:
    """Register a study (spec, cells, trial slots) without training; workers then join it."""
    from rnnsweep.store import Store, resolve_url
    from rnnsweep.study import create_study, resolve, resolve_device

    spec = _build_spec(**{k: v for k, v in kwargs.items() if k in _SPEC_ARGS})
    resolve_device(spec.device)
    study = resolve(spec)
    store = Store(resolve_url(kwargs["storage"]), create=True)
    try:
        resumed, requested, done = create_study(study, store)
    finally:
        store.dispose()
    err.print(
        f"Study {spec.name!r} {'exists' if resumed else 'created'} in {store.masked_url}: "
        f"{len(study.plans)} cells, {done}/{requested} trials complete."
    )
    err.print(f"Next: rnnsweep worker --study {spec.name} --storage ...")


# `create` takes exactly run's study options: same names, types, help and defaults.
_run_sig = inspect.signature(run, eval_str=True)
create.__signature__ = _run_sig.replace(
    parameters=[p for name, p in _run_sig.parameters.items() if name in (*_SPEC_ARGS, "storage")]
)
app.command("create")(create)


@app.command()
def worker(
    study: Annotated[str, typer.Option("--study", "-s", help="The study to join.")],
    storage: StorageOpt = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "auto",
    pack_size: Annotated[
        int,
        typer.Option(
            help="Trials trained together as one pack (fused, batched over "
            "trials; 32 measured best per trial on a 2-core CPU, "
            "docs/PERFORMANCE.md)."
        ),
    ] = DEFAULT_PACK_SIZE,
    heartbeat: Annotated[
        float, typer.Option(help="Seconds between heartbeats on this worker's trials.")
    ] = 10.0,
    grace: Annotated[
        float | None,
        typer.Option(
            help="Another worker's trial is stale after this many silent seconds. "
            "[default: 3 x heartbeat]",
            show_default=False,
        ),
    ] = None,
    threads: Annotated[int, typer.Option(help="CPU threads for torch.")] = 1,
    loop: LoopOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Join an existing study and train until its totals are reached (then exit 0)."""
    from rnnsweep.store import Store, resolve_url
    from rnnsweep.study import WorkerOptions, run_worker

    _check_device(device, auto=True)
    for name, value in (("--pack-size", pack_size), ("--threads", threads)):
        if value < 1:
            raise typer.BadParameter(f"must be >= 1, got {value}", param_hint=name)
    if not 0 < heartbeat < float("inf"):  # NaN fails too
        raise typer.BadParameter(
            f"must be a finite number > 0, got {heartbeat}", param_hint="--heartbeat"
        )
    if grace is not None and not heartbeat < grace < float("inf"):
        raise typer.BadParameter(
            f"must be a finite number of seconds above --heartbeat ({heartbeat}), got {grace}: "
            "a shorter grace makes every live trial look stale",
            param_hint="--grace",
        )
    store = Store(resolve_url(storage), create=False)
    bar = StudyBar(study, enabled=not quiet, console=err)
    from rnnsweep.backend import check_loop

    opts = WorkerOptions(
        device=device,
        pack_size=pack_size,
        threads=threads,
        heartbeat=heartbeat,
        grace=grace,
        loop=check_loop(loop) if loop is not None else None,
    )
    try:
        store.study_spec(study)
        summary = run_worker(store, study, opts, progress=bar)
    except KeyboardInterrupt:
        bar.stop()
        err.print(_INTERRUPTED, markup=False)
        raise typer.Exit(130) from None
    finally:
        bar.stop()
        store.dispose()
    err.print(
        f"Worker done: {summary.trials_run} trials run, {summary.feasible_run} feasible, "
        f"{summary.wall_time:.1f} s ({_storage_ms(summary)}); study {study!r} complete."
    )


launch_app = typer.Typer(
    help="Start workers for an existing study on a cluster, without waiting for them.",
    no_args_is_help=True,
)
app.add_typer(launch_app, name="launch")


@launch_app.command("slurm")
def launch_slurm(
    study_file: Annotated[
        Path | None,
        typer.Argument(
            help="The study TOML file (its name and [launcher.slurm] table).", show_default=False
        ),
    ] = None,
    study: Annotated[
        str | None,
        typer.Option(
            "--study", "-s", help="The study to join. [default: the file's]", show_default=False
        ),
    ] = None,
    workers: Annotated[int, typer.Option(help="Array tasks, one worker each.")] = 1,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda on the nodes.")] = "auto",
    pack_size: Annotated[int, typer.Option(help="Trials per pack.")] = DEFAULT_PACK_SIZE,
    threads: Annotated[int, typer.Option(help="CPU threads for torch.")] = 1,
    heartbeat: Annotated[float, typer.Option(help="Seconds between heartbeats.")] = 10.0,
    partition: PartitionOpt = None,
    time_limit: TimeLimitOpt = None,
    cpus_per_worker: CpusOpt = None,
    gpus_per_worker: GpusOpt = None,
    mem: MemOpt = None,
    sbatch: SbatchOpt = None,
    storage: StorageOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the job script; submit nothing.")
    ] = False,
) -> None:
    """Submit a Slurm job array of workers for a study made by `rnnsweep create`."""
    from rnnsweep.launch import WorkerArgs, require_server_storage
    from rnnsweep.launch.slurm import job_script, submit
    from rnnsweep.store import Store, resolve_url

    if study is None:
        if study_file is None:
            raise typer.BadParameter("give a study file or --study NAME", param_hint="--study")
        study = _build_spec(study_file, *[None] * (len(_SPEC_ARGS) - 1)).name
    for name, value in (("--pack-size", pack_size), ("--threads", threads), ("--workers", workers)):
        if value < 1:
            raise typer.BadParameter(f"must be >= 1, got {value}", param_hint=name)
    if heartbeat <= 0:
        raise typer.BadParameter(f"must be > 0, got {heartbeat}", param_hint="--heartbeat")
    resources = _resources(
        study_file,
        "slurm",
        partition,
        time_limit,
        cpus_per_worker,
        gpus_per_worker,
        mem,
        sbatch,
        None,
    )
    script = job_script(
        workers, WorkerArgs(study, device, pack_size, threads, heartbeat), resources
    )
    if dry_run:
        typer.echo(script, nl=False)
        return
    url = resolve_url(storage)
    require_server_storage(url, "slurm")
    store = Store(url, create=False)
    try:
        store.study_spec(study)
    finally:
        store.dispose()
    job = submit(script, url, workers)
    typer.echo(job.job_id)
    err.print(
        f"Submitted {job.where}: {workers} workers for study {study!r} in {store.masked_url}. "
        f"Watch: squeue -j {job.job_id}; rnnsweep studies --storage ..."
    )


def _storage_ms(summary) -> str:
    per = 1000 * summary.storage_time / max(1, summary.trials_run)
    return f"storage {per:.1f} ms/trial, {100 * summary.storage_time / summary.wall_time:.1f}%"


# ---- report / studies / export ---------------------------------------------------------


@contextlib.contextmanager
def _open_store(storage: str | None) -> Iterator[Any]:
    """A read-only store, closed on exit (so SQLite removes its -wal/-shm files)."""
    from rnnsweep.store import Store, resolve_url

    store = Store(resolve_url(storage), create=False, readonly=True)
    try:
        yield store
    finally:
        store.dispose()


def _pick_study(store, study: str | None, fmt: str, *, say: bool = True) -> str:
    if study is not None:
        store.study_spec(study)
        return study
    name = store.latest_study()
    if say:
        _say_latest(name)
    return name


def _warn_optuna_mismatch(store, study: str) -> None:
    """One line on stderr when a study's Optuna cells were changed outside rnnsweep."""
    from rnnsweep.study.optuna_bridge import cell_mismatches, mismatch_warning

    bad = cell_mismatches(store, study)
    if bad:
        sys.stderr.write(mismatch_warning(study, bad) + "\n")


def _say_latest(name: str) -> None:
    err.print(f"Study: {name} (the most recent; pass --study to choose another)")


@app.command()
def report(
    study: Annotated[
        str | None,
        typer.Option(
            "--study", "-s", help="Study name. [default: the most recent]", show_default=False
        ),
    ] = None,
    by: Annotated[
        str,
        typer.Option(
            help="Group by these columns (arch, depth, optimizer, nonlinearity, init, hidden)."
        ),
    ] = "arch,depth",
    fmt: FormatOpt = "table",
    storage: StorageOpt = None,
    plot: Annotated[
        Path | None,
        typer.Option(help="Also write PNG plots into this directory.", show_default=False),
    ] = None,
    x: Annotated[str, typer.Option("--x", help="Plot axis: a hyperparameter.")] = "lr",
    y: Annotated[str, typer.Option("--y", help="Plot axis: a hyperparameter.")] = "init_scale",
    curves_by: Annotated[
        str, typer.Option(help="Group learning curves by these columns.")
    ] = "arch",
    best: Annotated[
        str | None,
        typer.Option(
            help="Instead: the best trial per (arch, depth, params, hidden) by this column, "
            "e.g. bits_per_param (Collins' capacity view); --study may list several studies, "
            "comma-separated (one per budget or width).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Feasible fraction (Wilson 95% CI), solved fraction and losses per arch and depth."""
    if plot is not None and plot.exists() and not plot.is_dir():
        raise typer.BadParameter(
            f"{str(plot)!r} exists and is not a directory", param_hint="--plot"
        )
    if best is not None:
        _report_best(study, best, fmt, storage, plot)
        return
    from rnnsweep.render import Column, render
    from rnnsweep.report import REPORT_COLUMNS, add_collins, feasibility_rows, parse_by
    from rnnsweep.report.theory import PLOT_AXES, backend_summary, xi_contours_for
    from rnnsweep.store.export import tidy_trials

    keys = parse_by(by)
    plot_keys = parse_by(curves_by) if plot is not None else []
    for axis in (x, y):
        if axis not in PLOT_AXES:
            raise typer.BadParameter(
                f"choose one of {', '.join(PLOT_AXES)}, got {axis!r}", param_hint="--x/--y"
            )
    if plot is not None:
        _check_writable_dir(plot if plot.exists() else plot.parent, "--plot")
    with _open_store(storage) as store:
        name = _pick_study(store, study, fmt)
        spec = store.study_spec(name)
        _warn_optuna_mismatch(store, name)
        frame = tidy_trials(store.trials_frame(name))
        rows = feasibility_rows(frame, keys)
        curves = store.curves_frame(name) if plot is not None else None
    for r in rows:
        r["study"] = name
    columns = [Column(k, k) for k in keys] + REPORT_COLUMNS
    if add_collins(rows, spec["task"]):  # our infeasible % beside Collins' Table 1
        columns += [
            Column("infeasible_pct", "infeasible %", ".1f"),
            Column("collins_infeasible_pct", "Collins T1 %", ".1f"),
        ]
    from rnnsweep.report.best import adaptive_note, sampler_label

    title = (
        f"{name}: task {spec['task']}, sampler {sampler_label(spec['sampler'])}\n"
        "feasible = training did not diverge (Collins et al.); "
        "solved = final eval loss under the task threshold"
    )
    render(rows, fmt, columns=columns, title=title)
    note = adaptive_note(spec["sampler"])
    if note and rows:
        err.print(note)
    if not rows:
        err.print(f"Study {name!r} has no complete trials yet.")
    else:
        err.print(backend_summary(frame), markup=False)
    if rows and plot is not None:
        from rnnsweep.errors import SpecError
        from rnnsweep.report.plots import plot_study
        from rnnsweep.study import resolve_stored

        try:  # the task again (T and R); a data file that is gone leaves out the theory
            resolved = resolve_stored(spec)
        except SpecError as exc:
            resolved = None
            err.print(f"Note: no xi contours ({exc})", markup=False)
        paths = plot_study(
            frame,
            curves,
            plot,
            name,
            x=x,
            y=y,
            curves_by=plot_keys,
            xi_for=xi_contours_for(resolved) if resolved is not None else None,
            T=resolved.T if resolved is not None else None,
        )
        for p in paths:
            err.print(f"wrote {p}")


def _report_best(study: str | None, column: str, fmt: str, storage, plot: Path | None) -> None:
    """``report --best COLUMN``: the best trial per cell over one or several studies."""
    from rnnsweep.render import Column, render
    from rnnsweep.report.best import BEST_COLUMNS, BEST_KEYS, best_report

    with _open_store(storage) as store:
        names = [s.strip() for s in study.split(",") if s.strip()] if study else []
        names = names or [_pick_study(store, None, fmt)]
        result = best_report(store, names, column, plot)
    columns = [Column(k, k) for k in BEST_KEYS] + BEST_COLUMNS
    render(result.rows, fmt, columns=columns, title=result.title)
    for line in result.notes:
        err.print(line, markup=False)


@app.command()
def studies(
    fmt: FormatOpt = "table",
    storage: StorageOpt = None,
) -> None:
    """List the studies in a storage with their trial counts."""
    from rnnsweep.render import Column, render

    with _open_store(storage) as store:
        rows = store.list_studies()
        where = store.masked_url
        for r in rows:
            _warn_optuna_mismatch(store, r["study"])
    cols = [
        Column(k, k)
        for k in (
            "study",
            "task",
            "sampler",
            "archs",
            "depths",
            "cells",
            "complete",
            "requested",
            "feasible",
            "updated",
        )
    ]
    render(rows, fmt, columns=cols, title=f"Studies in {where}")


@app.command()
def export(
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Directory to write trials.<fmt> and curves.<fmt> into."),
    ],
    study: Annotated[
        str | None,
        typer.Option(
            "--study", "-s", help="Study name. [default: the most recent]", show_default=False
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="parquet or csv.")] = "parquet",
    storage: StorageOpt = None,
) -> None:
    """Export a study's trials and learning curves as tidy Parquet (or CSV) tables."""
    from rnnsweep.store.export import EXPORT_FORMATS, export_study

    if fmt not in EXPORT_FORMATS:
        raise typer.BadParameter(
            f"choose one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}", param_hint="--format"
        )
    with _open_store(storage) as store:
        name = _pick_study(store, study, fmt, say=False)
        paths = export_study(store, name, out, fmt)
    if study is None:  # after the work: an error stays the only line
        _say_latest(name)
    for p in paths:
        typer.echo(str(p))


@app.command()
def archs() -> None:
    """List the cell architectures with their equations' source."""
    from rnnsweep.cells import ARCHS, get_cell
    from rnnsweep.render import Column, render

    rows = []
    for a in ARCHS:
        c = get_cell(a)
        rows.append(
            {
                "arch": a,
                "cell": c.title,
                "gates": c.n_gates,
                "nonlinearity": "/".join(c.nonlinearities),
                "min_depth": c.min_depth,
            }
        )
    render(rows, "table", columns=[Column(k, k) for k in rows[0]], title="Cells")


@app.command()
def tasks() -> None:
    """List the tasks with their input/output sizes and solved thresholds."""
    from rnnsweep.render import Column, render
    from rnnsweep.tasks import TASKS, TaskOptionError, make_task

    rows = []
    for name, cls in TASKS.items():
        try:
            t = make_task(name)
            sizes = {
                "n_in": t.n_in,
                "n_out": t.n_out,
                "seq_len": t.seq_len,
                "solved_below": t.solved_threshold,
            }
        except TaskOptionError:  # needs user data (charlm: --data PATH); sizes depend on it
            sizes = {"n_in": None, "n_out": None, "seq_len": None, "solved_below": None}
        rows.append(
            {
                "task": name,
                "kind": cls.kind,
                **sizes,
                "metric": cls.metric_name,
                "description": cls.description,
            }
        )
    render(rows, "table", columns=[Column(k, k) for k in rows[0]], title="Tasks")


@app.command()
def theory(
    arch: Annotated[str, typer.Option(help="rnn (tanh) or minimalrnn.")] = "rnn",
    sigma_w: Annotated[float, typer.Option(help="Recurrent weight scale sigma_w.")] = 1.0,
    sigma_v: Annotated[float, typer.Option(help="Input weight scale sigma_v.")] = 1.0,
    sigma_b: Annotated[float, typer.Option(help="Bias spread sigma_b.")] = 0.0,
    mu_b: Annotated[float, typer.Option(help="Gate bias mean mu_b (minimalrnn).")] = 0.0,
    R: Annotated[float, typer.Option("--R", help="Per-unit input second moment R.")] = 1.0,
    grid: Annotated[
        bool, typer.Option("--grid", help="A phase diagram over sigma_w and sigma_b / mu_b.")
    ] = False,
    plot: Annotated[
        Path | None,
        typer.Option(help="With --grid: write the diagram as a PNG here.", show_default=False),
    ] = None,
    T: Annotated[
        int | None,
        typer.Option(
            "--T", help="With --plot: draw xi = T, T/2, T/4 contours.", show_default=False
        ),
    ] = None,
    fmt: FormatOpt = "table",
) -> None:
    """Mean-field fixed point, chi and timescale xi (Chen et al. 2018), or a phase diagram."""
    import math

    import numpy as np

    from rnnsweep.render import Column, render
    from rnnsweep.theory import mean_field, phase_grid, plot_phase
    from rnnsweep.theory.phase import default_axes, phase_label

    if arch not in ("rnn", "minimalrnn"):
        raise typer.BadParameter(f"rnn or minimalrnn, got {arch!r}", param_hint="--arch")
    for name, v in (
        ("--sigma-w", sigma_w),
        ("--sigma-v", sigma_v),
        ("--sigma-b", sigma_b),
        ("--R", R),
    ):
        if not math.isfinite(v) or v < 0:
            raise typer.BadParameter(f"must be a finite number >= 0, got {v}", param_hint=name)
    for name, v in (
        ("--sigma-w", sigma_w),
        ("--sigma-v", sigma_v),
        ("--sigma-b", sigma_b),
        ("--mu-b", mu_b),
        ("--R", R),
    ):
        if not abs(v) <= THEORY_LIMIT:  # NaN fails too
            raise typer.BadParameter(
                f"must be a finite number within +-{THEORY_LIMIT:g}, got {v}", param_hint=name
            )
    if T is not None and T < 1:
        raise typer.BadParameter(f"must be a sequence length >= 1, got {T}", param_hint="--T")
    if plot is not None and not grid:
        raise typer.BadParameter("needs --grid", param_hint="--plot")
    if plot is not None:  # before the grid is computed
        if plot.is_dir():
            raise typer.BadParameter(
                f"{str(plot)!r} is a directory; give a file such as phase.png",
                param_hint="--plot",
            )
        if plot.parent and plot.parent.is_dir():
            _check_writable_dir(plot.parent, "--plot")
    if grid:
        ws, os_, other = default_axes(arch)  # type: ignore[arg-type]
        g = phase_grid(arch, ws, os_, sigma_v=sigma_v, R=R, other=other)
        if plot is not None:
            if plot.parent and not plot.parent.is_dir():
                raise typer.BadParameter(
                    f"directory {str(plot.parent)!r} does not exist", param_hint="--plot"
                )
            path = plot_phase(g, plot, T=T)
            err.print(f"wrote {path}")
        chi = np.asarray(g["chi"])
        xi = np.asarray(g["xi"])
        rows = [
            {"sigma_w": float(w), other: float(o), "chi": float(chi[j, i]), "xi": float(xi[j, i])}
            for i, w in enumerate(ws)
            for j, o in enumerate(os_)
        ]
        if fmt != "table" or plot is None:
            render(
                rows if fmt != "table" else rows[:: max(1, len(rows) // 40)],
                fmt,
                title=f"{arch} phase grid (sigma_v={sigma_v}, R={R})",
            )
        return
    mf = mean_field(arch, sigma_w=sigma_w, sigma_v=sigma_v, R=R, sigma_b=sigma_b, mu_b=mu_b)
    row = {
        "arch": arch,
        "sigma_w": sigma_w,
        "sigma_v": sigma_v,
        "sigma_b": sigma_b,
        "mu_b": mu_b,
        "R": R,
        "q_star": mf.q_star,
    }
    if arch == "minimalrnn":
        row["Q_star"] = mf.Q_star
    row.update(
        chi=mf.chi,
        xi=mf.xi,
        phase=phase_label(mf.chi),
    )
    cols = [Column(k, k, ".6g" if isinstance(v, float) else None) for k, v in row.items()]
    if fmt == "json":
        import json

        typer.echo(
            json.dumps(
                {
                    k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                    for k, v in row.items()
                },
                indent=2,
            )
        )
        return
    render([row], fmt, columns=cols, title="mean-field theory (Chen et al. 2018)")


@app.command()
def bench(
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="Only the reference workload, fewer timed steps (under 60 s)."
        ),
    ] = False,
    pack_size: Annotated[int, typer.Option(help="Trials per pack for the packed run.")] = 32,
    threads: Annotated[int, typer.Option(help="CPU threads for torch.")] = 1,
    device: Annotated[
        str,
        typer.Option(
            help="cpu | cuda | cuda:N. On CUDA, --loop compiled and RNNSWEEP_GRAPHS=1 "
            "switch on the fused steps and the graph replay."
        ),
    ] = "cpu",
    scaling: Annotated[
        bool,
        typer.Option(help="Also time a pack step against K, depth, width and sequence length."),
    ] = False,
    memory: Annotated[
        bool,
        typer.Option(
            help="Also measure peak memory of a pack of 64 at depth 8, width 128, sequence 100."
        ),
    ] = False,
    e2e: Annotated[
        bool,
        typer.Option(
            help="Also time whole runs: `rnnsweep run` against a user's own Optuna + torch.nn "
            "script (benchmarks/peer_optuna_gru.py), 32 trials of 300 steps, at 1 and 2 "
            "threads: trials per hour and the ratio (many minutes)."
        ),
    ] = False,
    e2e_arch: Annotated[
        list[str] | None,
        typer.Option("--e2e-arch", help="Cells of the --e2e comparison (depth 2). [default: gru]"),
    ] = None,
    e2e_steps: Annotated[int, typer.Option(help="Steps per trial in --e2e.")] = 300,
    e2e_trials: Annotated[int, typer.Option(help="Trials per study in --e2e.")] = 32,
    eta: Annotated[
        bool,
        typer.Option(
            help="Also check the progress bar's ETA: a gru study of 96 trials in packs of 32 "
            "(100 steps), the ETA shown at the end of each pack against the time the rest "
            "took (a few minutes)."
        ),
    ] = False,
    launches: Annotated[
        bool,
        typer.Option(
            "--launches",
            help="Only count launches per training step (aten ops and Triton kernels) of the "
            "torch-op and Triton loops at T = 50 and 200, on the CPU (Triton's interpreter).",
        ),
    ] = False,
    loop: LoopOpt = None,
    fmt: FormatOpt = "table",
) -> None:
    """Trials per hour: one at a time (reference, torch.nn) versus packed and fused."""
    if launches:
        _bench_launches(fmt)
        return
    import torch

    from rnnsweep.backend import check_loop, resolve_backend
    from rnnsweep.bench import (
        PEER_ARCHS,
        BenchCase,
        PeerCase,
        bench_suite,
        peak_memory,
        rows_as_dicts,
        run_bench,
        versus_peer,
    )
    from rnnsweep.bench import scaling as bench_scaling
    from rnnsweep.render import Column, render

    if pack_size < 1 or threads < 1:
        raise typer.BadParameter("must be >= 1", param_hint="--pack-size/--threads")
    if device != "cpu" and (memory or e2e or eta):
        raise typer.BadParameter(
            "--memory, --e2e and --eta measure the CPU; run them without --device",
            param_hint="--device",
        )
    _check_device(device, auto=False)
    named = check_loop(loop) if loop is not None else None
    if device.startswith("cuda") and named is None:  # the GPU comparison, in one run
        from rnnsweep.bench import cuda_backends

        backends = cuda_backends(device)
    else:
        backends = [resolve_backend(device, "float32", named)]
    torch.set_num_threads(threads)
    cases = bench_suite(quick)
    rows = []
    with err.status("benchmarking...") as status:
        for backend in backends:
            rows += run_bench(
                cases,
                pack_size=pack_size,
                timed_steps=3 if quick else 7,
                peak_seconds=0.5 if quick else 1.0,
                on_case=lambda r: status.update(f"benchmarked {r.arch} depth {r.depth}"),
                backend=backend,
            )
    pct = lambda v: f"{100 * v:.0f}%"  # noqa: E731
    cols = [
        Column("arch"),
        Column("depth"),
        Column("hidden"),
        Column("pack_size", "K"),
        Column("naive_trials_per_hour", "naive trials/h", ".0f"),
        Column("torch_trials_per_hour", "torch.nn trials/h", ".0f"),
        Column("packed_trials_per_hour", "packed trials/h", ".0f"),
        Column("speedup_vs_naive", "x naive", ".1f"),
        Column("speedup_vs_torch", "x torch", ".1f"),
        Column("gflops", "GFLOP/s", ".1f"),
        Column("peak_gflops", "sgemm peak", ".1f"),
        Column("fraction_of_peak", "of peak", pct),
        Column("native_gemm_gflops", "AVX-512 GEMM", ".1f"),
        Column("fraction_of_native_gemm", "of it", pct),
    ]
    if len(backends) > 1:  # one row per case and loop: name the loop, launches and memory
        cols.insert(0, Column("cpu_loop", "packed loop"))
        cols += [
            Column("launches_per_step", "launches/step"),
            Column("peak_gpu_mb", "peak MiB", ".0f"),
        ]
    title = (
        f"parens, seq 50, batch 32, 300 steps/trial; {device}, {threads} thread(s); "
        f"packed time loop: {rows[0].cpu_loop if len(backends) == 1 else 'per row'}"
    )
    extras: dict[str, list[dict]] = {}
    if scaling:
        with err.status("timing a pack step against K, depth, width, sequence..."):
            extras["scaling"] = bench_scaling(BenchCase("ugrnn", 2, 64), device=device)
    if memory:
        with err.status("measuring peak memory (pack of 64, depth 8, width 128, seq 100)..."):
            extras["memory"] = [
                peak_memory(BenchCase(a, 8, 128, 100, 32), 64) for a in ("ugrnn", "gru", "lstm")
            ]
    if e2e:
        peer_cases = [
            PeerCase(a, 2, trials=e2e_trials, steps=e2e_steps) for a in _list(e2e_arch) or ["gru"]
        ]
        bad = [c.arch for c in peer_cases if c.arch not in PEER_ARCHS]
        if bad or e2e_steps < 1 or e2e_trials < 1:
            raise typer.BadParameter(
                f"cells {', '.join(PEER_ARCHS)}, steps and trials >= 1; got {bad or 'a count < 1'}",
                param_hint="--e2e-arch/--e2e-steps/--e2e-trials",
            )
        with err.status("timing whole runs against the peer script...") as status:
            extras["versus_peer"] = versus_peer(
                peer_cases,
                loop=loop,
                on_row=lambda r: status.update(
                    f"{r['arch']} at {r['threads']} thread(s): {r['speedup']:.2f}x the peer"
                ),
            )
    if eta:
        from rnnsweep.bench import eta_rows

        with err.status("checking the progress bar's ETA (a study of 3 packs)..."):
            extras["eta"] = eta_rows(threads=threads)
    if fmt == "json" and extras:  # one JSON document: the rows plus each extra table
        import json

        typer.echo(json.dumps({"rows": rows_as_dicts(rows), **extras}, indent=2))
        return
    render(rows_as_dicts(rows), fmt, columns=cols, title=title)
    for name, table in extras.items():
        render(table, fmt, title=name.replace("_", " "))


# ---- entry point ------------------------------------------------------------------


def _bench_launches(fmt: str) -> None:
    """``bench --launches``: launches per training step per loop and T, as a table."""
    from rnnsweep.render import Column, render

    # the interpreter must be on before triton is first imported (triton.jit reads it)
    os.environ.setdefault("TRITON_INTERPRET", "1")
    from rnnsweep.bench import launch_rows

    with err.status("counting launches (Triton's interpreter: about a minute)..."):
        rows = launch_rows()
    cols = [
        Column("loop"),
        Column("seq_len", "T"),
        Column("aten_ops", "aten ops"),
        Column("triton", "Triton launches"),
        Column("launches", "launches per step"),
    ]
    render(rows, fmt, columns=cols, title="gru d2 h64 B32, one training step (CPU count)")


# |parameter| above which the mean-field quadratures overflow (variances ~ sigma^2 R).
THEORY_LIMIT = 1e6


def _check_writable_dir(directory: Path, hint: str) -> None:
    """One line, before any work, when files cannot be written into ``directory``."""
    from rnnsweep.store.url import unwritable

    directory = directory if str(directory) else Path(".")
    if not directory.is_dir():
        raise typer.BadParameter(f"directory {str(directory)!r} does not exist", param_hint=hint)
    if (why := unwritable(directory)) is not None:
        raise typer.BadParameter(f"cannot write into {str(directory)!r}: {why}", param_hint=hint)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one-line errors with exit 2, interrupts 130/143."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        args = ["--help"]
    restore = install_signal_handlers()
    command = typer.main.get_command(app)
    code = 0
    try:
        rv = command.main(args=args, prog_name="rnnsweep", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        err.print("Interrupted.", markup=False)
        code = 130
    except ClickException as exc:
        _one_line(exc.format_message() + _hint(exc))
        code = 2
    except RnnsweepError as exc:
        _one_line(str(exc))
        code = exc.exit_code  # 2; EXIT_ENVIRONMENT for a failure mid-run (errors.py)
    except KeyboardInterrupt:
        err.print(_INTERRUPTED, markup=False)
        code = 130
    except Terminated:
        err.print(_INTERRUPTED.replace("Interrupted", "Terminated"), markup=False)
        code = 143
    except Exception as exc:  # a bug, not bad input: say so, traceback on request
        from rnnsweep.store.failures import environment_failure

        failure = environment_failure(exc, "the storage")  # disk full, I/O error...
        if os.environ.get("RNNSWEEP_DEBUG"):
            raise
        if failure is not None:
            _one_line(str(failure))
            code = failure.exit_code
        else:
            _one_line(
                f"internal error: {type(exc).__name__}: {exc} "
                "(set RNNSWEEP_DEBUG=1 for a traceback, and please report it)"
            )
            code = 1
    finally:
        restore()
    sys.exit(code)


def _hint(exc: ClickException) -> str:
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and isinstance(exc, UsageError):
        return f" (see: {ctx.command_path} --help)"
    return ""


def _one_line(message: str) -> None:
    text = " ".join(message.split())
    sys.stderr.write(f"Error: {text}\n")
    sys.stderr.flush()
