"""A real two-node Ray cluster on this machine for the tests: ``ray start --head`` and a
second ``ray start --address=...``, in a temporary directory, each node with its own
free ports, one CPU, and token authentication with a token of its own.

Each ``ray start --block`` runs in its own process group, which its daemons (GCS,
raylet, agents, workers) join; stopping the cluster signals those groups only, never
Ray processes by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

TOKEN_FILE = "auth_token"  # token authentication, as Ray's default, with a token of our own


def host_ip() -> str:
    """This machine's own address, as Ray picks it (the route out; nothing is sent).

    Not loopback: a driver turns 127.0.0.1 into this address, and the one switch that
    stops it (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0) refuses a second node.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))
        return s.getsockname()[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _auth(base: Path) -> dict[str, str]:
    """What every node and driver needs in its environment."""
    token = str(base / TOKEN_FILE)
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": token}


def _ray() -> str:
    exe = Path(sys.executable).with_name("ray")
    if not exe.exists():
        raise FileNotFoundError("the ray command is not installed (pip install 'rnnsweep[ray]')")
    return str(exe)


def _node_ports() -> list[str]:
    return [
        f"--node-manager-port={_free_port()}",
        f"--object-manager-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
    ]


@dataclass
class RayCluster:
    base: Path
    address: str
    dashboard: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **_auth(self.base), "RAY_ADDRESS": self.address, **extra}

    def logs(self) -> str:
        """Every file Ray wrote under its temporary directory, as text."""
        out = []
        for p in self.base.rglob("*"):
            if p.is_file() and not p.is_symlink() and p.stat().st_size < 50_000_000:
                out.append(p.read_bytes().decode("utf-8", errors="replace"))
        return "".join(out)

    def stop(self) -> None:
        """SIGTERM the ``ray start`` groups, then SIGKILL what is left of them and of every
        process they started (Ray's worker processes run in sessions of their own)."""
        pids = _descendants({p.pid for p in self.procs})
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in pids | _descendants(pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.base, ignore_errors=True)


def _descendants(roots: set[int]) -> set[int]:
    """Every live process below ``roots`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out: set[int] = set()
    todo = list(roots)
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def start() -> RayCluster:
    ray = _ray()
    base = Path(tempfile.mkdtemp(prefix="rnnsweep-ray-"))
    port, dash = _free_port(), _free_port()
    ip = host_ip()
    address = f"{ip}:{port}"
    common = ["--num-cpus=1", "--num-gpus=0", "--disable-usage-stats", "--block"]
    token = base / TOKEN_FILE
    token.write_text(os.urandom(32).hex())
    token.chmod(0o600)
    env = {**os.environ, **_auth(base), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    cluster = RayCluster(base, address, f"http://127.0.0.1:{dash}")
    head = [
        ray,
        "start",
        "--head",
        f"--node-ip-address={ip}",
        f"--port={port}",
        f"--ray-client-server-port={_free_port()}",
        f"--temp-dir={base}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",  # the state API, on loopback
        f"--dashboard-port={dash}",
        *_node_ports(),
        *common,
    ]
    other = [ray, "start", f"--address={address}", f"--node-ip-address={ip}"]
    other += [*_node_ports(), *common]
    try:
        for cmd in (head, other):
            log = open(base / f"start-{len(cluster.procs)}.txt", "w")  # noqa: SIM115
            cluster.procs.append(
                subprocess.Popen(
                    cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
            _wait_nodes(cluster, len(cluster.procs))
        return cluster
    except BaseException as exc:
        logs = "".join(p.read_text()[-1500:] for p in sorted(base.glob("start-*.txt")))
        cluster.stop()
        raise RuntimeError(f"{exc}\n{logs}") from exc


def _wait_nodes(cluster: RayCluster, n: int, timeout: float = 120) -> None:
    """Until the cluster has ``n`` live nodes (asked through a short-lived driver)."""
    probe = (
        "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
        "print(sum(1 for x in ray.nodes() if x['Alive']))"
    )
    deadline = time.time() + timeout
    while True:
        for p in cluster.procs:
            if p.poll() is not None:
                raise RuntimeError(f"ray start exited with {p.returncode}: see {cluster.base}")
        r = subprocess.run(
            [sys.executable, "-c", probe, cluster.address],
            capture_output=True,
            text=True,
            timeout=60,
            env={**cluster.env(), "RAY_ADDRESS": ""},
        )
        if r.returncode == 0 and r.stdout.strip().splitlines()[-1:] == [str(n)]:
            return
        if time.time() > deadline:
            raise RuntimeError(f"the Ray cluster never had {n} nodes: {r.stderr[-500:]}")
        time.sleep(1)
