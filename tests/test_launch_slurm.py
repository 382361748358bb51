"""``--launcher slurm`` against a real Slurm (munged, slurmctld, slurmd started here) and
the real PostgreSQL of the other tests: exact totals, a cancelled array task, secrets."""

from __future__ import annotations

import os
import subprocess
import time

import pgserver
import pytest
import slurmcluster
from test_workers import _check_exact, _launcher_run, _reruns_kept_params, _toml


@pytest.fixture(scope="module")
def slurm():
    try:
        cluster = slurmcluster.start()
    except FileNotFoundError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc}: CI must test against Slurm (.ci/run installs it)")
        pytest.skip(str(exc))
    yield cluster
    cluster.stop()


def _study_file(tmp_path, steps: int):
    """The tiny study, plus a [launcher.slurm] table: task logs go to tmp_path."""
    toml = _toml(tmp_path, steps=steps)
    toml.write_text(
        toml.read_text() + f'\n[launcher.slurm]\noutput = "{tmp_path}/task-%A_%a.out"\n'
    )
    return toml


def _env(slurm, url: str) -> dict[str, str]:
    env = slurm.env()
    env["RNNSWEEP_STORAGE"] = url
    return env


def _array_id(slurm, study: str) -> str | None:
    r = slurm.run("squeue", "-h", "-r", "-n", f"rnnsweep-{study}", "-o", "%F")
    ids = {x.strip() for x in r.stdout.splitlines() if x.strip()}
    return ids.pop() if ids else None


@pytest.mark.slow
def test_slurm_two_workers_exact_totals_and_no_secret(slurm, pg_url, tmp_path):
    toml = _study_file(tmp_path, steps=3)
    r = subprocess.run(
        _launcher_run("slurm", toml, "sl", 6),
        env=_env(slurm, pg_url),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert "on Slurm job" in r.stderr and "6/6 complete" in r.stderr
    _check_exact(pg_url, "sl", 6, 1)
    # Both array tasks ran a worker (each wrote its "Worker done" line).
    logs = sorted(tmp_path.glob("task-*.out"))
    assert len(logs) == 2, logs
    job = logs[0].name.split("-")[1].split("_")[0]
    # The password: not in the job script Slurm stored, its job record, the queue,
    # the daemons' logs, the tasks' logs, nor anything run printed.
    seen = [
        r.stdout + r.stderr,
        slurm.run("scontrol", "write", "batch_script", f"{job}_0", "-").stdout,
        slurm.run("scontrol", "-dd", "show", "job", job).stdout,
        slurm.run("squeue", "-a", "-o", "%all").stdout,
        slurm.logs(),
        *(p.read_text() for p in logs),
    ]
    assert "rnnsweep worker" in seen[1] and "sl" in seen[2]  # they are what we think
    for text in seen:
        assert pgserver.PASSWORD not in text
    # ...yet it did reach the tasks (through the environment).
    assert all("Worker done" in p.read_text() for p in logs)


@pytest.mark.slow
def test_slurm_cancelled_task_still_exact_totals(slurm, pg_url, tmp_path):
    """scancel of one array task mid-study: it hands its slots back (SIGTERM) and the
    other task finishes the study; run exits 0 and names the cancelled task."""
    toml = _study_file(tmp_path, steps=40)
    p = subprocess.Popen(
        _launcher_run("slurm", toml, "cx", 16),
        env=_env(slurm, pg_url),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    from test_workers import _slot_claims

    deadline = time.time() + 300
    job = None
    while time.time() < deadline:  # both tasks running and a trial in flight
        job = job or _array_id(slurm, "cx")
        running = slurm.run("squeue", "-h", "-r", "-j", job or "0", "-t", "R", "-o", "%i")
        # the array is submitted after the study's tables and slots exist
        claims = (
            [c for c in _slot_claims(pg_url, "cx") if c[3] == "claimed" and c[4]] if job else []
        )
        if job and len(running.stdout.split()) == 2 and claims:
            break
        time.sleep(0.3)
    assert job and claims, "the array never ran two workers"
    assert slurm.run("scancel", f"{job}_0").returncode == 0
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert "16/16 complete" in err and "task 0" in err
    _check_exact(pg_url, "cx", 16, 1)
    _reruns_kept_params(pg_url, "cx")  # a slot handed back re-ran with its params and seed


def test_slurm_refuses_sqlite_and_dry_run_shows_no_url(tmp_path, cli):
    r = cli("run", "--arch", "rnn", "--depth", "1", "--launcher", "slurm")
    assert r.code == 2 and "SQLite" in r.err and len(r.err.strip().splitlines()) == 1
    toml = _study_file(tmp_path, steps=3)
    toml.write_text(toml.read_text() + 'partition = "gpu"\ngpus_per_worker = 1\n')
    r = cli("launch", "slurm", str(toml), "--workers", "3", "--mem", "4G", "--dry-run")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0] == "#!/bin/bash"
    for want in ("--array=0-2", "--partition=gpu", "--gres=gpu:1", "--mem=4G"):
        assert f"#SBATCH {want}" in lines
    assert lines[-1].endswith(
        "worker --study parens-ugrnn-d1 --device auto --pack-size 32 "
        "--threads 1 --heartbeat 10.0 --quiet"
    )
    assert pgserver.PASSWORD not in r.out + r.err and "postgresql" not in r.out
