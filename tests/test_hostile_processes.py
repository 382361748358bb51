"""Hostile conditions that need other processes (issue 13): concurrent first use of a new
database, a full disk mid-run, and another user's read-only opens."""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import FAST

from rnnsweep.errors import EXIT_ENVIRONMENT

ROOT = Path(__file__).resolve().parents[1]
# Each process imports first, then starts the command at the same instant.
_SYNC = (
    "import sys, time; from rnnsweep.cli import main; import rnnsweep.study, optuna; "
    "t0 = float(sys.argv[1]); time.sleep(max(0.0, t0 - time.time())); main(sys.argv[2:])"
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RNNSWEEP_STORAGE"}
    return {**env, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **extra}


def _together(commands: list[list[str]], cwd: Path, start_in: float = 12.0) -> list:
    t0 = time.time() + start_in
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SYNC, str(t0), *c],
            cwd=cwd,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in commands
    ]
    return [(p.wait(timeout=600), *p.communicate()) for p in procs]


def _counts(db_url: str, study: str) -> tuple[int, int, int]:
    """(counted trials, slots done, Optuna COMPLETE trials) read straight from the tables."""
    import sqlalchemy as sa

    eng = sa.create_engine(db_url)
    with eng.connect() as con:
        rows = con.execute(
            sa.text("SELECT COUNT(*) FROM rnnsweep_trials WHERE study = :s AND state = 'complete'"),
            {"s": study},
        ).scalar()
        dup = con.execute(
            sa.text(
                "SELECT COUNT(*) FROM (SELECT optuna_trial_id FROM rnnsweep_trials "
                "GROUP BY optuna_trial_id HAVING COUNT(*) > 1) d"
            )
        ).scalar()
        assert dup == 0
        done = con.execute(
            sa.text("SELECT COUNT(*) FROM rnnsweep_slots WHERE study = :s AND state = 'done'"),
            {"s": study},
        ).scalar()
        told = con.execute(
            sa.text(
                "SELECT COUNT(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
                "WHERE s.study_name LIKE :p AND t.state = 'COMPLETE'"
            ),
            {"p": f"{study}.%"},
        ).scalar()
    eng.dispose()
    return rows, done, told


def _first_use(url: str, tmp_path: Path) -> None:
    common = ["--study", "race", "--arch", "rnn", "--trials", "3", "--storage", url]
    results = _together(
        [
            ["run", *common, *FAST],
            ["run", *common, *FAST],
            ["create", *common, *FAST[:-1]],  # the same spec, without run's --quiet
            ["run", *common, *FAST],
        ],
        tmp_path,
    )
    for code, _, err in results:
        assert code == 0, err
        assert "Error" not in err
    assert _counts(url if "://" in url else f"sqlite:///{url}", "race") == (3, 3, 3)


@pytest.mark.slow
def test_concurrent_first_use_of_a_new_sqlite_file(tmp_path):
    _first_use(str(tmp_path / "new.db"), tmp_path)


@pytest.mark.slow
def test_concurrent_first_use_of_a_new_postgresql_database(tmp_path, pg_url):
    _first_use(pg_url, tmp_path)


# ---- a full disk mid-run ---------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs (as root); without mount rights, RLIMIT_FSIZE on the run instead."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    ok = (
        os.geteuid() == 0
        and shutil.which("mount") is not None
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True
        ).returncode
        == 0
    )
    yield mnt, ok
    if ok:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fsize_limit(n: int):
    def limit() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))

    return limit


@pytest.mark.slow
def test_full_disk_mid_run_exits_75_and_a_rerun_finishes_exactly(small_disk):
    mnt, tmpfs = small_disk
    db = mnt / "s.db"
    run = [
        sys.executable,
        "-m",
        "rnnsweep",
        "run",
        "--study",
        "full",
        "--arch",
        "rnn",
        "--depth",
        "1,2",
        "--trials",
        "40",
        "--pack-size",
        "4",
        "--storage",
        str(db),
        *FAST,
    ]
    first = subprocess.run(
        [*run[:11], "2", *run[12:]], cwd=mnt, env=_env(), capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    size = db.stat().st_size
    if tmpfs:  # leave room for a few trials only
        filler = mnt / "filler"
        free = shutil.disk_usage(mnt).free
        filler.write_bytes(b"\0" * max(0, free - 96 * 1024))
        full = subprocess.run(run, cwd=mnt, env=_env(), capture_output=True, text=True)
        filler.unlink()
    else:
        full = subprocess.run(
            run,
            cwd=mnt,
            env=_env(),
            capture_output=True,
            text=True,
            preexec_fn=_fsize_limit(size + 96 * 1024),
        )
    assert full.returncode == EXIT_ENVIRONMENT, full.stderr
    lines = [ln for ln in full.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("Error: ") and "Traceback" not in full.stderr
    assert "disk full" in lines[-1] or "I/O error" in lines[-1], lines[-1]
    assert sum(ln.startswith("Error") for ln in lines) == 1
    partial = _counts(f"sqlite:///{db}", "full")
    assert 4 <= partial[0] < 80  # it failed mid-run, after some trials
    again = subprocess.run(run, cwd=mnt, env=_env(), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "80/80 complete" in again.stderr
    assert _counts(f"sqlite:///{db}", "full") == (80, 80, 80)


# ---- another user's read-only opens -------------------------------------------------------


# Root ignores file permissions, so "another user" is either nobody (where nobody can run
# this Python), or root without the capabilities that override permissions (setpriv drops
# CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER): a 0444 file is then read-only to
# it, as to any other user. CI's Python lives under /root, which nobody cannot enter.
_DROP = "-dac_override,-dac_read_search,-fowner"


@functools.cache
def _other_user_mode() -> str | None:
    """How to run as "another user" here: "nobody", "setpriv", or None (cannot)."""
    if os.geteuid() != 0:
        return None
    try:
        subprocess.run([sys.executable, "-c", "pass"], user=65534, group=65534, check=True)
        return "nobody"
    except (OSError, subprocess.CalledProcessError):
        pass
    if shutil.which("setpriv") is None:
        return None
    probe = subprocess.run(
        ["setpriv", f"--bounding-set={_DROP}", f"--inh-caps={_DROP}", sys.executable, "-c",
         "import os, sys, tempfile\n"
         "fd, p = tempfile.mkstemp(); os.close(fd); os.chmod(p, 0o444)\n"
         "try:\n    open(p, 'a')\nexcept PermissionError:\n    sys.exit(0)\n"
         "finally:\n    os.unlink(p)\nsys.exit(1)"],
    )  # fmt: skip
    return "setpriv" if probe.returncode == 0 else None


def _as_other_user(args: list[str], cwd: Path):
    """``rnnsweep ARGS`` as another user (see _other_user_mode), so permissions bite."""
    cmd = [sys.executable, "-m", "rnnsweep", *args]
    kw: dict = {}
    if _other_user_mode() == "nobody":
        kw = {"user": 65534, "group": 65534}
    elif _other_user_mode() == "setpriv":
        cmd = ["setpriv", f"--bounding-set={_DROP}", f"--inh-caps={_DROP}", *cmd]
    return subprocess.run(
        cmd, cwd=cwd, env=_env(HOME=str(cwd)), capture_output=True, text=True, **kw
    )


@pytest.fixture
def shared_dir():
    if _other_user_mode() is None:
        pytest.skip("needs root, and nobody or setpriv, to act as another user")
    d = Path(tempfile.mkdtemp(prefix="rnnsweep-shared-"))
    d.chmod(0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.slow
def test_report_on_a_read_only_file_then_a_writable_run(cli, shared_dir, monkeypatch):
    monkeypatch.chdir(shared_dir)
    assert cli("run", "--arch", "rnn", "--trials", "2", *FAST).code == 0
    db = shared_dir / "rnnsweep.db"
    db.chmod(0o444)
    for args in (["report"], ["studies"]):
        r = _as_other_user(args, shared_dir)
        assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(shared_dir)) == ["rnnsweep.db"]  # no -wal, no -shm
    # ... and a run as that user is told, in one line, that it cannot write there.
    r = _as_other_user(["run", "--arch", "rnn", "--trials", "3", *FAST], shared_dir)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "read-only" in r.stderr and "untouched" in r.stderr
    db.chmod(0o666)
    r = _as_other_user(["run", "--arch", "rnn", "--trials", "3", *FAST], shared_dir)
    assert r.returncode == 0, r.stderr
    assert "3/3 complete" in r.stderr


@pytest.mark.slow
def test_side_file_left_by_someone_else_gives_one_line(cli, shared_dir, monkeypatch):
    monkeypatch.chdir(shared_dir)
    assert cli("run", "--arch", "rnn", "--trials", "1", *FAST).code == 0
    db = shared_dir / "rnnsweep.db"
    db.chmod(0o666)
    con = sqlite3.connect(db)  # another tool's reader left its WAL index behind, read-only
    con.execute("SELECT 1").fetchall()
    shm = Path(f"{db}-shm")
    shm.write_bytes(b"\0" * 32768)
    shm.chmod(0o444)
    con.close()
    r = _as_other_user(["run", "--arch", "rnn", "--trials", "2", *FAST], shared_dir)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "-shm" in r.stderr, r.stderr
    # Read-only commands still work beside it.
    assert _as_other_user(["report"], shared_dir).returncode == 0


@pytest.mark.slow
def test_read_only_directory_is_cannot_write_here_not_bad_data(cli, shared_dir, monkeypatch):
    monkeypatch.chdir(shared_dir)
    assert cli("run", "--arch", "rnn", "--trials", "1", *FAST).code == 0
    (shared_dir / "rnnsweep.db").chmod(0o666)
    shared_dir.chmod(0o555)
    try:
        r = _as_other_user(["run", "--arch", "rnn", "--trials", "2", *FAST], shared_dir)
        assert r.returncode == 2, r.stderr
        assert "not writable" in r.stderr and "untouched" in r.stderr
        assert "not a" not in r.stderr.replace("not writable", "")
        r = _as_other_user(["report"], shared_dir)
        assert r.returncode == 0, r.stderr
    finally:
        shared_dir.chmod(0o777)


@pytest.mark.slow
def test_read_only_mount_is_cannot_write_here_and_still_readable(cli, tmp_path, monkeypatch):
    """A healthy database on a read-only file system (as root: a read-only bind mount)."""
    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    monkeypatch.chdir(src)
    assert cli("run", "--arch", "rnn", "--trials", "1", *FAST).code == 0
    if os.geteuid() != 0 or subprocess.run(["mount", "--bind", str(src), str(ro)]).returncode:
        pytest.skip("needs root and bind mounts")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=True)
        monkeypatch.chdir(ro)
        r = cli("run", "--arch", "rnn", "--trials", "2", *FAST)
        assert r.code == 2 and r.err.count("\n") == 1, r.err
        assert "cannot write" in r.err and "untouched" in r.err, r.err
        assert "not a SQLite" not in r.err and "not a usable" not in r.err
        for args in (["report"], ["studies"]):
            assert cli(*args).code == 0
    finally:
        monkeypatch.chdir(tmp_path)
        subprocess.run(["umount", "-l", str(ro)], check=False)
