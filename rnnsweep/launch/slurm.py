"""The Slurm launcher: one job array of N ``rnnsweep worker`` tasks, through ``sbatch``.

The job script goes to ``sbatch`` on its standard input (no file is written) and holds
no storage URL: ``sbatch --export=ALL`` hands the submitting environment, with
``RNNSWEEP_STORAGE`` in it, to every task. Slurm keeps that environment in its state
directory, readable by the Slurm user only; ``squeue``, ``scontrol show job`` and the
stored script show none of it. Each task runs this same Python, so the cluster's
nodes must see this install (a shared filesystem, as on any Slurm cluster).

``run`` polls ``squeue`` until no task of the array is left. A task that is cancelled
or dies hands its slots back (SIGTERM), or they go stale and another task re-runs them;
the surviving tasks finish the study. Should every task end early, ``run`` says so and
running it again submits a new array for the rest.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass

from rnnsweep.errors import LaunchError
from rnnsweep.launch import ResourceSettings, WorkerArgs
from rnnsweep.launch.local import worker_command

__all__ = ["SlurmJob", "SlurmLauncher", "job_script"]

_TIMEOUT = 60  # seconds for one Slurm command


def _sbatch_line(line: str) -> str:
    text = line.strip()
    if text.startswith("#SBATCH"):
        text = text[len("#SBATCH") :].strip()
    if not text.startswith("-"):
        raise LaunchError(f"an sbatch line must be an option such as --qos=normal, got {line!r}")
    return f"#SBATCH {text}"


def job_script(n: int, args: WorkerArgs, settings: ResourceSettings) -> str:
    """The batch script of an array of ``n`` workers (what ``launch slurm --dry-run`` shows)."""
    if n < 1:
        raise LaunchError(f"--workers must be >= 1, got {n}")
    name = re.sub(r"[^A-Za-z0-9_.+-]", "_", args.study)[:100]
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=rnnsweep-{name}",
        f"#SBATCH --array=0-{n - 1}",
        "#SBATCH --ntasks=1",
        f"#SBATCH --cpus-per-task={settings.cpus_per_worker}",
    ]
    if settings.gpus_per_worker:
        lines.append(f"#SBATCH --gres=gpu:{settings.gpus_per_worker}")
    for flag, value in (
        ("partition", settings.partition),
        ("time", settings.time),
        ("mem", settings.mem),
    ):
        if value:
            lines.append(f"#SBATCH --{flag}={value}")
    lines.append(f"#SBATCH --output={settings.output}")
    lines += [_sbatch_line(x) for x in settings.sbatch_lines]
    lines += [
        "",
        f"# rnnsweep worker $SLURM_ARRAY_TASK_ID of {n} for the study {args.study!r}.",
        "# The storage URL is not in this file: sbatch --export=ALL passes the submitting",
        "# environment, RNNSWEEP_STORAGE included, to each task.",
        'if [ -z "${RNNSWEEP_STORAGE:-}" ]; then',
        '    echo "RNNSWEEP_STORAGE is not set: export it, then sbatch --export=ALL" >&2',
        "    exit 2",
        "fi",
        "exec " + shlex.join(worker_command(args)),
        "",
    ]
    return "\n".join(lines)


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT, **kw)
    except subprocess.TimeoutExpired:
        raise LaunchError(f"{cmd[0]} did not answer within {_TIMEOUT} s") from None


def _first_line(text: str) -> str:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return lines[-1] if lines else "no message"


@dataclass
class SlurmJob:
    """A submitted array, followed through ``squeue``."""

    job_id: str
    n: int
    _errors: int = 0

    @property
    def where(self) -> str:
        return f"Slurm job {self.job_id}"

    def states(self) -> list[str]:
        """The states of the array's tasks still known to squeue (none once all ended)."""
        r = _run(["squeue", "-h", "-r", "-j", self.job_id, "-o", "%T"])
        if r.returncode != 0:
            if "invalid job id" in r.stderr.lower():
                return []
            self._errors += 1
            if self._errors >= 60:
                raise LaunchError(f"squeue keeps failing: {_first_line(r.stderr)}")
            return ["UNKNOWN"]
        self._errors = 0
        return [s.strip() for s in r.stdout.splitlines() if s.strip()]

    def running(self) -> bool:
        return any(s not in ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT") for s in self.states())

    def complete(self) -> None:
        """Tasks still waiting in the queue would find nothing left to do: drop them."""
        _run(["scancel", "--state=PENDING", self.job_id])

    def stop(self) -> None:
        """scancel: each running worker gets SIGTERM and hands its slots back."""
        _run(["scancel", self.job_id])
        deadline = time.monotonic() + 60
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.5)

    def failures(self) -> list[str]:
        """Tasks that did not complete, from ``scontrol`` (kept a few minutes after the end)."""
        r = _run(["scontrol", "-o", "show", "job", self.job_id])
        out = []
        for line in r.stdout.splitlines():
            f = dict(p.split("=", 1) for p in line.split() if "=" in p)
            if f.get("JobState") not in (None, "COMPLETED"):
                out.append(f"task {f.get('ArrayTaskId', '?')}: {f['JobState']}")
        return sorted(out)

    def close(self) -> None:
        pass


class SlurmLauncher:
    def __init__(self, settings: ResourceSettings) -> None:
        self.settings = settings

    def start(self, url: str, n: int, args: WorkerArgs) -> SlurmJob:
        return submit(job_script(n, args, self.settings), url, n)


def submit(script: str, url: str, n: int) -> SlurmJob:
    """``sbatch`` the script (on stdin), the URL in the environment only."""
    if shutil.which("sbatch") is None:
        raise LaunchError("sbatch not found: --launcher slurm needs a Slurm client on PATH")
    env = {**os.environ, "RNNSWEEP_STORAGE": url}
    r = _run(["sbatch", "--parsable", "--export=ALL"], input=script, env=env)
    if r.returncode != 0:
        raise LaunchError(f"sbatch refused the job: {_first_line(r.stderr)}")
    job_id = r.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise LaunchError(f"sbatch answered no job id: {r.stdout.strip()!r}")
    return SlurmJob(job_id, n)
