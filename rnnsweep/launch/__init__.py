"""Launchers: start N ``rnnsweep worker`` processes for one study, here or on a cluster.

The work queue in the storage (:mod:`rnnsweep.store.queue`) is the source of truth:
every worker claims slots, trains them and commits each result with its slot in one
transaction, so it does not matter where a worker runs, nor whether the engine
restarts it. A launcher only places workers and tells whether any is still alive:

- ``local``: worker processes on this machine, one per visible GPU round-robin;
- ``slurm``: one job array of N tasks through ``sbatch`` (:mod:`rnnsweep.launch.slurm`);
- ``ray``: N Ray tasks with CPUs/GPUs each, retried when lost (:mod:`rnnsweep.launch.ray`).

:func:`launch` registers the study, starts the workers, and follows the combined
progress in the store until they have all ended. The storage URL reaches every worker
through its environment, never through a command line, a script or a task argument.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from rnnsweep import interrupts
from rnnsweep.errors import LaunchError
from rnnsweep.interrupts import Terminated

__all__ = [
    "LAUNCHERS",
    "Launched",
    "Outcome",
    "ResourceSettings",
    "WorkerArgs",
    "Workers",
    "launch",
    "launcher_table",
    "require_server_storage",
]

LAUNCHERS = ("local", "slurm", "ray")


@dataclass(frozen=True)
class WorkerArgs:
    """What every worker is told (none of it changes a trial's result)."""

    study: str
    device: str = "auto"
    pack_size: int = 32
    threads: int = 1
    heartbeat: float = 10.0
    loop: str | None = None  # the time loop; None: each worker's auto (or its environment's)
    grace: float | None = None

    def argv(self, device: str | None = None) -> list[str]:
        """``rnnsweep worker`` arguments after the program name; the storage is not one."""
        out = ["worker", "--study", self.study, "--device", device or self.device]
        out += ["--pack-size", str(self.pack_size), "--threads", str(self.threads)]
        out += ["--heartbeat", str(self.heartbeat)]
        if self.loop is not None:
            out += ["--loop", self.loop]
        if self.grace is not None:
            out += ["--grace", str(self.grace)]
        return [*out, "--quiet"]


@dataclass(frozen=True)
class ResourceSettings:
    """Per-worker resources and scheduler options (how to run, not what: never hashed).

    From the study file's ``[launcher.slurm]`` / ``[launcher.ray]`` table, with flags on top.
    """

    partition: str | None = None  # slurm
    time: str | None = None  # slurm --time, e.g. 2:00:00
    cpus_per_worker: int = 1
    gpus_per_worker: int = 0
    mem: str | None = None  # slurm --mem, e.g. 4G
    sbatch_lines: tuple[str, ...] = ()  # slurm: extra "#SBATCH ..." options
    output: str = "rnnsweep-%A_%a.out"  # slurm: each task's log, relative to the workdir
    address: str | None = None  # ray: cluster address (else RAY_ADDRESS, else local)
    max_retries: int = 3  # ray: re-runs of a worker lost with its process or node

    def __post_init__(self) -> None:
        if self.cpus_per_worker < 1:
            raise LaunchError(f"cpus_per_worker must be >= 1, got {self.cpus_per_worker}")
        if self.gpus_per_worker < 0:
            raise LaunchError(f"gpus_per_worker must be >= 0, got {self.gpus_per_worker}")
        if self.max_retries < 0:
            raise LaunchError(f"max_retries must be >= 0, got {self.max_retries}")
        for line in self.sbatch_lines:
            if "\n" in line or not line.strip():
                raise LaunchError(f"an sbatch line must be one non-empty line, got {line!r}")


_TABLE_KEYS = {
    "slurm": ("partition", "time", "cpus_per_worker", "gpus_per_worker", "mem", "sbatch")
    + ("output",),
    "ray": ("address", "cpus_per_worker", "gpus_per_worker", "max_retries"),
}


def launcher_table(
    file: Mapping[str, Any], launcher: str, overrides: Mapping[str, Any]
) -> ResourceSettings:
    """The settings for ``launcher``: the file's ``[launcher.<name>]`` table, then
    ``overrides`` (flags given, None meaning not given) on top. Unknown keys are errors."""
    table = file.get("launcher", {})
    if not isinstance(table, Mapping):
        raise LaunchError("[launcher] must be a table, e.g. [launcher.slurm]")
    for name in table:
        if name not in _TABLE_KEYS:
            raise LaunchError(
                f"unknown table [launcher.{name}]; valid tables: "
                + ", ".join(f"[launcher.{k}]" for k in _TABLE_KEYS)
            )
    raw = dict(table.get(launcher, {})) if launcher in _TABLE_KEYS else {}
    for name, sub in table.items():
        if not isinstance(sub, Mapping):
            raise LaunchError(f"[launcher.{name}] must be a table")
        for key in sub:
            if key not in _TABLE_KEYS[name]:
                raise LaunchError(
                    f"unknown key {key!r} in [launcher.{name}]; "
                    f"valid keys: {', '.join(_TABLE_KEYS[name])}"
                )
    raw.update({k: v for k, v in overrides.items() if v is not None and v != ()})
    if "sbatch" in raw:
        lines = raw.pop("sbatch")
        raw["sbatch_lines"] = tuple([lines] if isinstance(lines, str) else lines)
    known = {f.name: f for f in fields(ResourceSettings)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        want = known[key].type
        if want == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise LaunchError(f"{key} must be an integer, got {value!r}")
        if want in ("str | None", "str") and not isinstance(value, str):
            raise LaunchError(f"{key} must be a string, got {value!r}")
        if key == "sbatch_lines" and not all(isinstance(x, str) for x in value):
            raise LaunchError(f"sbatch must be a list of strings, got {value!r}")
        values[key] = value
    return ResourceSettings(**values)


def require_server_storage(url: str, launcher: str) -> None:
    """Workers on other machines need a database server: refuse a SQLite file."""
    if url.startswith("sqlite"):
        raise LaunchError(
            f"--launcher {launcher} places workers on other machines, which cannot share a "
            "SQLite file: give a PostgreSQL --storage (postgresql://USER:PASSWORD@HOST/DB)"
        )


class Workers(Protocol):
    """Workers that a launcher started."""

    def running(self) -> bool:
        """Whether any worker may still run (started or waiting to start)."""
        ...

    def complete(self) -> None:
        """The study is complete: drop workers that have not started yet."""
        ...

    def stop(self) -> None:
        """Interrupt: stop every worker (each hands its claimed slots back)."""
        ...

    def failures(self) -> list[str]:
        """After the end: one word per worker that failed (an exit code, an error)."""
        ...

    def close(self) -> None:
        """Release what the launcher holds (a Ray connection)."""
        ...


class Launched(Protocol):
    def start(self, url: str, n: int, args: WorkerArgs) -> Workers: ...


class Progress(Protocol):
    def start(self, total: int, done: int, feasible: int) -> None: ...

    def set(self, done: int, feasible: int) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Outcome:
    """What a launched run did."""

    resumed: bool
    requested: int
    done_before: int
    complete: int = 0
    wall_time: float = 0.0
    failures: list[str] = field(default_factory=list)
    where: str = ""  # e.g. "Slurm job 12"


def launcher_for(name: str, settings: ResourceSettings | None = None) -> Launched:
    if name == "local":
        from rnnsweep.launch.local import LocalLauncher

        return LocalLauncher()
    if name == "slurm":
        from rnnsweep.launch.slurm import SlurmLauncher

        return SlurmLauncher(settings or ResourceSettings())
    if name == "ray":
        from rnnsweep.launch.ray import RayLauncher

        return RayLauncher(settings or ResourceSettings())
    raise LaunchError(f"unknown launcher {name!r}; choose from {', '.join(LAUNCHERS)}")


def launch(
    launcher: Launched,
    study: Any,
    store: Any,
    url: str,
    n: int,
    args: WorkerArgs,
    progress: Progress,
    *,
    poll: float = 0.5,
) -> Outcome:
    """Register the study, start ``n`` workers, follow the store until they have ended.

    On SIGINT/SIGTERM the workers are stopped (their slots handed back) and the
    interrupt re-raised. Success is judged from the store: the study is complete.
    """
    from rnnsweep.study import create_study

    spec = study.spec  # a ResolvedStudy
    resumed, requested, done = create_study(study, store)
    out = Outcome(resumed, requested, done)
    t0 = time.perf_counter()
    workers = launcher.start(url, n, args)
    out.where = getattr(workers, "where", "")
    progress.start(requested, *store.result_counts(spec.name))
    completed = False
    try:
        while workers.running():
            time.sleep(poll)
            interrupts.check()
            counts = store.result_counts(spec.name)
            progress.set(*counts)
            if counts[0] >= requested and not completed:
                completed = True
                workers.complete()
        progress.set(*store.result_counts(spec.name))
        out.failures = workers.failures()
    except (KeyboardInterrupt, Terminated):
        workers.stop()
        raise
    finally:
        progress.stop()
        workers.close()
    out.wall_time = time.perf_counter() - t0
    out.complete = store.result_counts(spec.name)[0]
    return out
