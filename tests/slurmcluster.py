"""A real single-node Slurm cluster for the tests: munged, slurmctld and slurmd on this
host, with a temporary state directory, a minimal slurm.conf and loopback ports.

Needs Debian's ``slurmctld slurmd slurm-client munge`` (``.ci/run`` installs them) and
root (slurmd starts jobs as their user). Clients find the cluster through
``SLURM_CONF`` in :meth:`SlurmCluster.env`. Every daemon is stopped by its PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")


def missing() -> str | None:
    """Why this host cannot run the cluster, or None."""
    for exe in ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd"):
        if not Path(exe).exists():
            return f"{exe} not found (apt-get install slurmctld slurmd slurm-client munge)"
    for exe in ("sbatch", "squeue", "scancel", "scontrol"):
        if shutil.which(exe) is None:
            return f"{exe} not found (apt-get install slurm-client)"
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONF = """\
ClusterName=rnnsweeptest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
AuthInfo=socket={base}/munge/munge.sock
CredType=cred/munge
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool
SlurmctldPidFile={base}/slurmctld.pid
SlurmdPidFile={base}/slurmd.pid
SlurmctldLogFile={base}/slurmctld.log
SlurmdLogFile={base}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=10
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class SlurmCluster:
    base: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.base / "slurm.conf"), **extra}

    def run(self, *cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=60)

    def logs(self) -> str:
        return "".join(
            p.read_text(errors="replace") for p in self.base.glob("*.log") if p.is_file()
        ) + (self.base / "munge" / "munged.log").read_text(errors="replace")

    def stop(self) -> None:
        for pidfile in (
            self.base / "slurmd.pid",
            self.base / "slurmctld.pid",
            self.base / "munge" / "munged.pid",
        ):
            try:
                pid = int(pidfile.read_text().strip())
            except (OSError, ValueError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):  # up to 10 s, then SIGKILL
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)


def start(cpus: int = 2) -> SlurmCluster:
    """Start munged, slurmctld and slurmd; return once the node takes jobs."""
    reason = missing()
    if reason:
        raise FileNotFoundError(reason)
    base = Path(tempfile.mkdtemp(prefix="rnnsweep-slurm-"))
    for d in ("state", "spool", "munge"):
        (base / d).mkdir(mode=0o700)
    key = base / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = CONF.format(
        host=socket.gethostname(),
        base=base,
        ctld_port=_free_port(),
        d_port=_free_port(),
        cpus=cpus,
    )
    (base / "slurm.conf").write_text(conf)
    cluster = SlurmCluster(base)
    m = base / "munge"
    try:
        for cmd in (
            [
                "/usr/sbin/munged",
                "--force",
                f"--key-file={key}",
                f"--socket={m / 'munge.sock'}",
                f"--pid-file={m / 'munged.pid'}",
                f"--log-file={m / 'munged.log'}",
                f"--seed-file={m / 'seed'}",
            ],
            ["/usr/sbin/slurmctld", "-i"],
            ["/usr/sbin/slurmd"],
        ):
            subprocess.run(cmd, env=cluster.env(), check=True, capture_output=True, timeout=60)
        deadline = time.time() + 60
        while True:
            r = cluster.run("sinfo", "-h", "-o", "%T")
            if r.returncode == 0 and r.stdout.strip() in ("idle", "mixed", "allocated"):
                return cluster
            if time.time() > deadline:
                raise RuntimeError(f"the Slurm node never came up: {r.stdout}{r.stderr}")
            time.sleep(0.3)
    except BaseException:
        cluster.stop()
        raise
