"""``--launcher ray`` against a real two-node Ray cluster (tests/raycluster.py) and the
real PostgreSQL of the other tests: exact totals, a SIGKILLed worker, secrets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pgserver
import pytest
import raycluster
from test_workers import _check_exact, _launcher_run, _reruns_kept_params, _slot_claims, _toml


@pytest.fixture(scope="module")
def ray_cluster():
    try:
        cluster = raycluster.start()
    except FileNotFoundError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc}: CI must test against Ray (rnnsweep[dev] installs it)")
        pytest.skip(str(exc))
    yield cluster
    cluster.stop()


def _ray_list(cluster, what: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "ray.scripts.scripts", "list", what, "--detail"]
        + ["--address", cluster.dashboard],
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return r.stdout + r.stderr


@pytest.mark.slow
def test_ray_two_workers_exact_totals_and_no_secret(ray_cluster, pg_url, tmp_path):
    r = subprocess.run(
        _launcher_run("ray", _toml(tmp_path, steps=3), "ry", 6),
        env=ray_cluster.env(RNNSWEEP_STORAGE=pg_url),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert f"on Ray cluster {ray_cluster.address}" in r.stderr and "6/6 complete" in r.stderr
    _check_exact(pg_url, "ry", 6, 1)
    tasks = _ray_list(ray_cluster, "tasks")
    assert "rnnsweep-worker:ry" in tasks  # the listing shows our tasks, with their details
    for text in (r.stdout + r.stderr, tasks, _ray_list(ray_cluster, "jobs"), ray_cluster.logs()):
        assert pgserver.PASSWORD not in text


@pytest.mark.slow
def test_ray_sigkilled_worker_still_exact_totals(ray_cluster, pg_url, tmp_path):
    """SIGKILL one Ray worker process mid-pack: Ray re-runs its task, the new worker
    releases the dead one's claims, and every slot completes once, same params and seed."""
    p = subprocess.Popen(
        _launcher_run("ray", _toml(tmp_path, steps=40), "rk", 16),
        env=ray_cluster.env(RNNSWEEP_STORAGE=pg_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    held: list = []
    while time.time() < deadline and not held and p.poll() is None:
        try:
            held = [c for c in _slot_claims(pg_url, "rk") if c[3] == "claimed" and c[4]]
        except Exception:  # noqa: BLE001 - the study's tables are not there yet
            held = []
        time.sleep(0.2)
    assert held, "no Ray worker ever trained a slot"
    victim = int(held[0][2].split(":")[1])  # host:pid:random, the Ray worker process
    os.kill(victim, signal.SIGKILL)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert "16/16 complete" in err
    assert "ended early" not in err  # Ray re-ran the killed worker's task (max_retries)
    _check_exact(pg_url, "rk", 16, 1)
    assert _reruns_kept_params(pg_url, "rk") >= 1


def test_ray_refuses_sqlite(cli):
    r = cli("run", "--arch", "rnn", "--depth", "1", "--launcher", "ray")
    assert r.code == 2 and "SQLite" in r.err and len(r.err.strip().splitlines()) == 1
