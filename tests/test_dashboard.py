"""optuna-dashboard shows a trainability study (issue 15), checked through its JSON API.

A real optuna-dashboard process serves a real rnnsweep study on a loopback port; what
it serves is compared with rnnsweep's own tables read by plain SQL (the independent
reference). A second storage loses a cell's Optuna study behind rnnsweep's back.
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from conftest import FAST, FAST_TOML

from rnnsweep.cli import main

# sgd with a learning rate up to 1e3: some trials of every cell diverge, some train.
ARGS = [
    "--arch", "irnn,gru", "--depth", "1", "--trials", "8", "--seed", "0",
    "--lr", "1e-3:1e3", "--optimizer", "sgd",
]  # fmt: skip
CELLS = ["dash.irnn.d1", "dash.gru.d1"]
Z = 1.959963984540054


def _run(toml: Path, db: Path, *extra: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", str(toml), *ARGS, *FAST, *extra, "--storage", f"sqlite:///{db}"])
    assert exc.value.code == 0


@pytest.fixture(scope="module")
def study_db(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("dash")
    toml = d / "fast.toml"
    toml.write_text(FAST_TOML)
    db = d / "s.db"
    _run(toml, db, "--study", "dash")
    return db


def _rows(db: Path) -> dict[int, dict]:
    """rnnsweep's counted rows by Optuna trial id, with their curves (plain SQL)."""
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    rows = {
        r["optuna_trial_id"]: dict(r)
        for r in con.execute("SELECT * FROM rnnsweep_trials WHERE state = 'complete'")
    }
    for r in rows.values():
        r["curve"] = [
            dict(c)
            for c in con.execute(
                "SELECT step, eval_loss FROM rnnsweep_curves WHERE trial_row = ? ORDER BY step",
                (r["id"],),
            )
        ]
    con.close()
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dashboard(study_db):
    """``optuna-dashboard`` (its own CLI, a separate process) on a free loopback port."""
    exe = Path(sys.executable).with_name("optuna-dashboard")
    port = _free_port()
    proc = subprocess.Popen(
        [str(exe), "--host", "127.0.0.1", "--port", str(port), f"sqlite:///{study_db}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> dict:
        with urllib.request.urlopen(base + path, timeout=30) as r:
            assert r.status == 200
            return json.loads(r.read())

    try:
        for _ in range(300):  # until it listens (a readiness wait, not a timing assertion)
            if proc.poll() is not None:
                pytest.fail(f"optuna-dashboard exited: {proc.stderr.read().decode()[-500:]}")
            try:
                get("/api/meta")
                break
            except OSError:
                time.sleep(0.1)
        yield get
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_dashboard_serves_every_trial_diverged_ones_finite_and_infeasible(study_db, dashboard):
    rows = _rows(study_db)
    summaries = {s["study_name"]: s for s in dashboard("/api/studies")["study_summaries"]}
    assert sorted(summaries) == sorted(CELLS)
    diverged_seen = feasible_seen = 0
    for name in CELLS:
        detail = dashboard(f"/api/studies/{summaries[name]['study_id']}")
        mine = {tid: r for tid, r in rows.items() if r["optuna_study"] == name}
        trials = detail["trials"]
        assert sorted(t["trial_id"] for t in trials) == sorted(mine)  # every trial served
        for t in trials:
            row = mine[t["trial_id"]]
            assert t["state"] == "Complete"
            (value,) = t["values"]
            assert isinstance(value, float) and math.isfinite(value), t["values"]
            if row["diverged"]:
                diverged_seen += 1
                assert t["constraints"] == [1.0]  # infeasible
                # rnnsweep's table keeps the true final loss: none
                assert row["final_loss"] is None
                # the penalty: the divergence threshold, 10 x the initial training loss,
                # never below a feasible trial told before it
                assert value >= 10.0 * row["initial_loss"] - 1e-9
                earlier = [
                    r["final_loss"]
                    for r in mine.values()
                    if not r["diverged"] and r["optuna_trial_id"] < row["optuna_trial_id"]
                ]
                assert value >= max(earlier, default=-math.inf)
            else:
                feasible_seen += 1
                assert t["constraints"] == [0.0]
                assert value == pytest.approx(row["final_loss"], rel=1e-6)
        # the dashboard's "best trial" (the storage's, blind to constraints) is feasible
        if any(not r["diverged"] for r in mine.values()):
            (best,) = detail["best_trials"]
            assert best["constraints"] == [0.0]
    assert diverged_seen >= 2 and feasible_seen >= 2  # the study tests what it should


def test_dashboard_metric_name_summary_and_intermediate_values(study_db, dashboard):
    rows = _rows(study_db)
    summaries = {s["study_name"]: s for s in dashboard("/api/studies")["study_summaries"]}
    for name in CELLS:
        detail = dashboard(f"/api/studies/{summaries[name]['study_id']}")
        assert detail["objective_names"] == ["final held-out loss"]
        mine = [r for r in rows.values() if r["optuna_study"] == name]
        # the cell's summary, first among the study's attributes, recomputed here
        n, k = len(mine), sum(not r["diverged"] for r in mine)
        p = k / n
        centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
        half = Z / (1 + Z * Z / n) * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
        first = detail["user_attrs"][0]
        assert first["key"] == "feasible_fraction"
        assert first["value"] == (
            f"{k}/{n} feasible = {p:.2f} (95% Wilson {centre - half:.2f}-"
            f"{centre + half:.2f}), sampler random"
        )
        # learning curves: the held-out loss at every evaluation step with a finite value
        assert detail["has_intermediate_values"]
        by_id = {r["optuna_trial_id"]: r for r in mine}
        for t in detail["trials"]:
            curve = by_id[t["trial_id"]]["curve"]
            want = {
                c["step"]: c["eval_loss"]
                for c in curve
                if c["eval_loss"] is not None and math.isfinite(c["eval_loss"])
            }
            got = {v["step"]: v["value"] for v in t["intermediate_values"]}
            assert got.keys() == want.keys() and want  # step 0 at least, even if diverged
            for s in want:
                assert got[s] == pytest.approx(want[s], rel=1e-6)
            if not by_id[t["trial_id"]]["diverged"]:
                assert sorted(got) == [0, 6, 12]  # eval_every 6, 12 steps


NUMERIC = [
    "feasible", "solved", "diverged", "initial_loss", "final_loss", "best_loss", "accuracy",
    "steps_run", "init_jac_max", "init_lyapunov", "final_jac_max", "final_lyapunov",
    "region", "region_final", "diverged_at",
]  # fmt: skip


def test_dashboard_numeric_attributes_are_plot_axes(study_db, dashboard):
    rows = _rows(study_db)
    summaries = {s["study_name"]: s for s in dashboard("/api/studies")["study_summaries"]}
    for name in CELLS:
        detail = dashboard(f"/api/studies/{summaries[name]['study_id']}")
        sortable = {a["key"]: a["sortable"] for a in detail["union_user_attrs"]}
        for key in NUMERIC:  # numbers in every trial: sortable, offered as plot axes
            assert sortable.get(key) is True, (name, key, sortable)
        # the queue's bookkeeping only under the rnnsweep_ prefix; no constant "hidden"
        assert not {"slot", "seed", "attempt", "hidden", "params"} & set(sortable)
        assert {"rnnsweep_slot", "rnnsweep_seed"} <= set(sortable)
        for t in detail["trials"]:
            row = rows[t["trial_id"]]
            attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
            assert attrs["feasible"] == str(int(not row["diverged"]))
            assert attrs["solved"] == str(int(row["solved"]))
            assert float(attrs["initial_loss"]) == pytest.approx(row["initial_loss"])
            assert int(attrs["steps_run"]) == row["steps_run"]
            extra = json.loads(row["extra_json"])
            assert float(attrs["init_jac_max"]) == pytest.approx(extra["init_jac_max"])
            assert int(attrs["region"]) == extra["region"]
            if row["diverged"]:
                assert int(attrs["diverged_at"]) == row["diverged_at"]
                assert "final_loss" not in attrs  # no number, no attribute
            else:
                assert float(attrs["final_loss"]) == pytest.approx(row["final_loss"])
                assert float(attrs["accuracy"]) == pytest.approx(row["metric"])


@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_samplers_read_diverged_trials_as_infeasible(study_db, sampler):
    """tpe's and gp's own feasibility reading, on the cells' real trials: a finite
    penalty does not make a diverged trial feasible. (rnnsweep's make_sampler has no gp
    on this branch: Optuna's GPSampler is run on a copy of the cell.)"""
    from optuna.samplers._gp.sampler import _get_constraint_vals_and_feasibility
    from optuna.samplers._tpe.sampler import _get_infeasible_trial_score
    from optuna.study._constrained_optimization import _get_feasible_trials

    url = f"sqlite:///{study_db}"
    for name in CELLS:
        study = optuna.load_study(study_name=name, storage=url)
        trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        diverged = {t.number for t in trials if t.user_attrs["diverged"]}
        assert diverged and diverged != {t.number for t in trials}
        assert {t.number for t in _get_feasible_trials(trials)} == {
            t.number for t in trials
        } - diverged
        assert study.best_trial.number not in diverged  # Optuna's feasible best
        if sampler == "tpe":
            assert {t.number for t in trials if _get_infeasible_trial_score(t) > 0} == diverged
        else:
            _, feasible = _get_constraint_vals_and_feasibility(study, trials)
            assert {t.number for t, ok in zip(trials, feasible, strict=True) if not ok} == (
                diverged
            )
            copy = optuna.create_study(sampler=optuna.samplers.GPSampler(seed=0))
            copy.add_trials(trials)
            asked = copy.ask(trials[0].distributions)  # gp fits and asks on these trials
            assert set(asked.params) == set(trials[0].params)


def test_deleted_cell_is_reported_and_not_resumed(study_db, tmp_path, cli):
    db = tmp_path / "copy.db"
    shutil.copy(study_db, db)
    url = f"sqlite:///{db}"
    optuna.delete_study(study_name="dash.gru.d1", storage=url)  # behind rnnsweep's back

    r = cli("report", "--storage", url, "--study", "dash", "-f", "json")
    assert r.code == 0
    warn = [line for line in r.err.splitlines() if line.startswith("Warning:")]
    assert len(warn) == 1, r.err
    assert "dash.gru.d1: Optuna study deleted (8 counted trials)" in warn[0]
    assert "refuse" in warn[0] and "new --study name" in warn[0]
    assert "dash.irnn.d1" not in warn[0]
    assert sum(row["trials"] for row in json.loads(r.out)) == 16  # rnnsweep's rows kept

    r = cli("studies", "--storage", url)
    assert r.code == 0
    assert [line for line in r.err.splitlines() if line.startswith("Warning:")] == warn

    toml = tmp_path / "fast.toml"
    toml.write_text(FAST_TOML)
    r = cli("run", str(toml), *ARGS, *FAST, "--study", "dash", "--storage", url)
    assert r.code == 2
    assert "complete" not in r.out + r.err
    assert r.err.count("\n") == 1 and r.err.startswith("Error: study 'dash' ")
    assert "dash.gru.d1" in r.err and "new --study name" in r.err
    names = {s.study_name for s in optuna.get_all_study_summaries(storage=url)}
    assert names == {"dash.irnn.d1"}  # not re-created empty


def test_a_trial_gone_from_its_cell_is_reported(study_db, tmp_path, cli):
    """Edited outside rnnsweep: one COMPLETE trial of a cell turned FAIL (as a hand-made
    SQL edit would), the cell itself still there."""
    db = tmp_path / "edit.db"
    shutil.copy(study_db, db)
    con = sqlite3.connect(db)
    q = "SELECT study_id FROM studies WHERE study_name = 'dash.irnn.d1'"
    (sid,) = con.execute(q).fetchone()
    con.execute("UPDATE trials SET state = 'FAIL' WHERE study_id = ? AND number = 0", (sid,))
    con.commit()
    con.close()
    r = cli("report", "--storage", f"sqlite:///{db}", "--study", "dash")
    assert r.code == 0
    assert "dash.irnn.d1: 1 no longer COMPLETE in Optuna" in r.err
    assert "dash.gru.d1" not in r.err


def test_tell_on_postgresql(pg_url, tmp_path, cli):
    """The one-transaction tell (multi-row attributes and curve) on PostgreSQL too."""
    toml = tmp_path / "fast.toml"
    toml.write_text(FAST_TOML)
    args = [a if a != "irnn,gru" else "irnn" for a in ARGS]
    r = cli("run", str(toml), *args, *FAST, "--trials", "4", "--study", "pg", "--storage", pg_url)
    assert r.code == 0, r.err
    study = optuna.load_study(study_name="pg.irnn.d1", storage=pg_url)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 4
    for t in trials:
        assert math.isfinite(t.value) and 0 in t.intermediate_values
        assert t.user_attrs["feasible"] == 1 - t.user_attrs["diverged"]
        assert (t.system_attrs["constraints"][0] > 0) == bool(t.user_attrs["diverged"])
    assert study.user_attrs["feasible_fraction"].startswith(
        f"{sum(t.user_attrs['feasible'] for t in trials)}/4 feasible"
    )
