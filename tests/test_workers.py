"""Many workers, one study: exact totals on SQLite and PostgreSQL, crashes, interrupts,
spec safety, secrets and determinism. Real processes, real databases."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

from rnnsweep.store.tables import slots as slots_t

TINY = """
[task_options]
seq_len = 8
[train]
steps = {steps}
batch_size = 4
eval_every = {steps}
eval_size = 8
[model]
params = "1k"
"""


def _toml(tmp: Path, steps: int = 3) -> Path:
    p = tmp / f"tiny{steps}.toml"
    p.write_text(TINY.format(steps=steps))
    return p


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "rnnsweep", *args]


def _launcher_run(launcher: str, toml, study: str, trials: int) -> list[str]:
    """``rnnsweep run TOML`` of a one-cell rnn study through ``launcher``, two workers of
    packs of 2 (the Slurm and Ray tests' command)."""
    return _cmd(
        "run", str(toml), "--arch", "rnn", "--depth", "1", "--trials", str(trials),
        "--study", study, "--pack-size", "2", "--launcher", launcher, "--workers", "2",
        "--quiet",
    )  # fmt: skip


def _env(url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RNNSWEEP_STORAGE"}
    if url is not None:
        env["RNNSWEEP_STORAGE"] = url
    return env


def _run(*args: str, url: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        _cmd(*args), env=_env(url), capture_output=True, text=True, timeout=timeout
    )


def _complete_trials(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    out = []
    for s in optuna.get_all_study_summaries(storage=url):
        if s.study_name.startswith(study + "."):
            st = optuna.load_study(study_name=s.study_name, storage=url)
            out += st.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    return out


def _check_exact(url: str, study: str, per_cell: int, cells: int) -> None:
    """Exactly per_cell complete trials per cell, each slot done once, none run twice."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as con:
            rows = con.execute(
                sa.text(
                    "SELECT arch, depth, config_json, optuna_trial_id FROM rnnsweep_trials "
                    "WHERE study = :s AND state = 'complete'"
                ),
                {"s": study},
            ).all()
            states = dict(
                con.execute(
                    sa.select(slots_t.c.state, sa.func.count())
                    .where(slots_t.c.study == study)
                    .group_by(slots_t.c.state)
                ).all()
            )
    finally:
        engine.dispose()
    assert len(rows) == per_cell * cells
    keys = [(r[0], r[1], json.loads(r[2])["slot"]) for r in rows]
    assert len(set(keys)) == len(keys), "a slot was completed twice"
    assert states == {"done": per_cell * cells}
    complete = _complete_trials(url, study)
    assert len(complete) == per_cell * cells
    assert {t._trial_id for t in complete} == {r[3] for r in rows}


def _many_workers(url: str, tmp: Path, n_workers: int = 4, per_cell: int = 100) -> None:
    r = _run(
        "create",
        str(_toml(tmp)),
        "--arch",
        "rnn,gru",
        "--depth",
        "1",
        "--trials",
        str(per_cell),
        "--study",
        "many",
        url=url,
    )
    assert r.returncode == 0, r.stderr
    procs = [
        subprocess.Popen(
            _cmd("worker", "--study", "many", "--pack-size", "4", "--quiet", "--heartbeat", "1"),
            env=_env(url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n_workers)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert "locked" not in err.lower() and "Traceback" not in err
    _check_exact(url, "many", per_cell, 2)


@pytest.mark.slow
def test_four_workers_sqlite_exact_total(tmp_path):
    _many_workers(f"sqlite:///{tmp_path / 'many.db'}", tmp_path)


@pytest.mark.slow
def test_four_workers_postgres_exact_total(tmp_path, pg_url):
    _many_workers(pg_url, tmp_path)


def _claims_once_created(url: str, study: str) -> list[tuple]:
    """``_slot_claims``, or none while the worker is still creating the file's tables
    (the file appears before its schema: polling then met "no such table")."""
    try:
        return _slot_claims(url, study)
    except sa.exc.OperationalError:
        return []


def _slot_claims(url: str, study: str) -> list[tuple[str, int, str | None, str, int | None]]:
    """(cell, slot, worker, state, current Optuna trial id) of every slot."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as con:
            return [
                tuple(r)
                for r in con.execute(
                    sa.select(
                        slots_t.c.cell,
                        slots_t.c.slot,
                        slots_t.c.worker,
                        slots_t.c.state,
                        slots_t.c.optuna_trial_id,
                    ).where(slots_t.c.study == study)
                )
            ]
    finally:
        engine.dispose()


def _reruns_kept_params(url: str, study: str) -> int:
    """Every failed attempt's slot was re-run, to completion, with the same params and seed."""
    reran = 0
    for s in optuna.get_all_study_summaries(storage=url):
        st = optuna.load_study(study_name=s.study_name, storage=url)
        done = {
            t.user_attrs["rnnsweep_slot"]: t
            for t in st.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        }
        for t in st.get_trials(states=(optuna.trial.TrialState.FAIL,)):
            again = done[t.user_attrs["rnnsweep_slot"]]
            assert again.params == t.params
            assert again.user_attrs["rnnsweep_seed"] == t.user_attrs["rnnsweep_seed"]
            assert again.user_attrs.get("rnnsweep_rerun") == 1
            reran += 1
        assert not st.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    return reran


@pytest.mark.slow
def test_sigkill_one_of_three_workers(tmp_path):
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    assert (
        _run(
            "create",
            str(_toml(tmp_path, steps=40)),
            "--arch",
            "rnn",
            "--depth",
            "1",
            "--trials",
            "24",
            "--study",
            "kill",
            url=url,
        ).returncode
        == 0
    )
    procs = [
        subprocess.Popen(
            _cmd(
                "worker",
                "--study",
                "kill",
                "--pack-size",
                "2",
                "--quiet",
                "--heartbeat",
                "0.5",
                "--grace",
                "2",
            ),
            env=_env(url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    victim = procs[0]
    # Wait until the victim is training a claimed pack (its trials exist), then kill it.
    deadline = time.time() + 120
    while time.time() < deadline:
        held = [
            c
            for c in _slot_claims(url, "kill")
            if c[3] == "claimed"
            and c[2]
            and c[2].split(":")[1] == str(victim.pid)
            and c[4] is not None
        ]
        if held:
            break
        time.sleep(0.1)
    assert held, "the victim never claimed a slot"
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    for p in procs[1:]:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    _check_exact(url, "kill", 24, 1)
    assert _reruns_kept_params(url, "kill") >= len(held)


@pytest.mark.slow
def test_sigint_exits_130_quickly_and_resumes(tmp_path):
    url = f"sqlite:///{tmp_path / 'int.db'}"
    toml = _toml(tmp_path, steps=2000)  # long enough that a trial is surely in flight
    args = (
        "run",
        str(toml),
        "--arch",
        "gru",
        "--depth",
        "1",
        "--trials",
        "2",
        "--study",
        "int",
        "--pack-size",
        "1",
        "--quiet",
    )
    p = subprocess.Popen(
        _cmd(*args), env=_env(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until a trial is in flight
        if (tmp_path / "int.db").exists() and any(
            c[3] == "claimed" and c[4] is not None for c in _claims_once_created(url, "int")
        ):
            break
        time.sleep(0.1)
    t0 = time.time()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    elapsed = time.time() - t0
    assert p.returncode == 130, err
    assert elapsed < 5, f"took {elapsed:.1f} s to stop"
    assert "Interrupted" in err and "Traceback" not in err
    assert all(c[3] in ("pending", "done") for c in _slot_claims(url, "int"))
    r = _run(*args, url=url)
    assert r.returncode == 0, r.stderr
    _check_exact(url, "int", 2, 1)
    assert _reruns_kept_params(url, "int") >= 1


def test_joining_with_a_different_spec_is_refused(tmp_path, cli, fast_toml):
    from conftest import FAST

    url = f"sqlite:///{tmp_path / 'spec.db'}"
    assert (
        cli(
            "create",
            str(fast_toml),
            "--arch",
            "rnn",
            "--depth",
            "1",
            "--trials",
            "2",
            *FAST[:-1],
            "--study",
            "s",
            "--storage",
            url,
        ).code
        == 0
    )
    r = cli(
        "run",
        str(fast_toml),
        "--arch",
        "rnn",
        "--depth",
        "1,2",
        "--trials",
        "2",
        *FAST,
        "--study",
        "s",
        "--storage",
        url,
        "--lr",
        "0.01",
    )
    assert r.code == 2
    assert "depths" in r.err and "space.lr" in r.err
    # A worker needs no spec: it reads the stored one.
    r = cli("worker", "--study", "s", "--storage", url, "-q")
    assert r.code == 0, r.err
    r = cli("worker", "--study", "nope", "--storage", url)
    assert r.code == 2 and "no study named 'nope'" in r.err


def test_determinism_across_workers_and_pack_sizes(tmp_path):
    """Same spec and seed: identical per-trial results with 1 worker / pack 1 and with
    2 workers / pack 3."""
    toml = _toml(tmp_path, steps=15)
    common = (
        "--arch",
        "ugrnn",
        "--depth",
        "1,2",
        "--trials",
        "6",
        "--study",
        "det",
        "--seed",
        "11",
        "--quiet",
    )
    a = f"sqlite:///{tmp_path / 'a.db'}"
    b = f"sqlite:///{tmp_path / 'b.db'}"
    assert _run("run", str(toml), *common, "--pack-size", "1", url=a).returncode == 0
    r = _run("run", str(toml), *common, "--pack-size", "3", "--workers", "2", url=b)
    assert r.returncode == 0, r.stderr

    def results(url: str) -> dict:
        con = sqlite3.connect(url.removeprefix("sqlite:///"))
        rows = con.execute(
            "SELECT arch, depth, config_json, lr, seed, diverged, final_loss, "
            "best_loss, steps_run FROM rnnsweep_trials"
        ).fetchall()
        con.close()
        return {(r[0], r[1], json.loads(r[2])["slot"]): r[3:] for r in rows}

    ra, rb = results(a), results(b)
    assert ra.keys() == rb.keys() and len(ra) == 12
    for k in ra:
        lr_a, seed_a, div_a, fin_a, best_a, steps_a = ra[k]
        lr_b, seed_b, div_b, fin_b, best_b, steps_b = rb[k]
        assert (lr_a, seed_a, div_a, steps_a) == (lr_b, seed_b, div_b, steps_b), k
        if fin_a is not None:
            assert fin_b == pytest.approx(fin_a, rel=1e-5), k
            assert best_b == pytest.approx(best_a, rel=1e-5), k


def test_secret_never_leaks(tmp_path, pg_url, pg_server):
    """Password: not in output, errors, stored spec, exports or the trials table."""
    import pgserver

    toml = _toml(tmp_path)
    r = _run(
        "run",
        str(toml),
        "--arch",
        "rnn",
        "--depth",
        "1",
        "--trials",
        "2",
        "--study",
        "sec",
        "--storage",
        pg_url,
    )
    assert r.returncode == 0, r.stderr
    out = tmp_path / "exp"
    r2 = _run("export", "--study", "sec", "--storage", pg_url, "--out", str(out), "--format", "csv")
    r3 = _run("report", "--storage", pg_url)
    wrong = pg_url.replace(pgserver.PASSWORD, "not-the-password")
    r4 = _run("report", "--storage", wrong)
    assert r4.returncode == 2 and "***" in r4.stderr
    assert len(r4.stderr.strip().splitlines()) == 1
    for res in (r, r2, r3, r4):
        assert pgserver.PASSWORD not in res.stdout + res.stderr
        assert "not-the-password" not in res.stdout + res.stderr
    for f in out.iterdir():
        assert pgserver.PASSWORD not in f.read_text()
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as con:
            spec = con.execute(sa.text("SELECT spec_json FROM rnnsweep_studies")).scalar()
            cfgs = [x[0] for x in con.execute(sa.text("SELECT config_json FROM rnnsweep_trials"))]
    finally:
        engine.dispose()
    assert pgserver.PASSWORD not in spec and all(pgserver.PASSWORD not in c for c in cfgs)


def test_bad_postgres_urls(pg_server, tmp_path):
    import pgserver

    cases = {
        "wrong password": pg_server.url("postgres", password="wrong-pw-123"),
        "unreachable host": f"postgresql://{pgserver.USER}:wrong-pw-123@127.0.0.1:"
        f"{pgserver.free_port()}/db",
        "missing database": pg_server.url("no_such_db_here", password="wrong-pw-123"),
    }
    for case, url in cases.items():
        r = _run("run", "--arch", "rnn", "--depth", "1", "--trials", "1", "--storage", url)
        assert r.returncode == 2, (case, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: cannot connect"), (case, lines)
        assert "wrong-pw-123" not in r.stderr and "***" in r.stderr, case
