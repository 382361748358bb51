"""The whole path as a user meets it: run -> Optuna storage -> report -> export."""

from __future__ import annotations

import json
import math
import sqlite3

import optuna
import pandas as pd
import pytest
from conftest import FAST

ARGS = ["--arch", "rnn,ugrnn", "--depth", "1", "--depth", "2", "--trials", "6", "--seed", "3"]


@pytest.fixture(scope="module")
def study_db(tmp_path_factory):
    """One 2 archs x 2 depths x 6 trials study on a temporary SQLite file (shared)."""
    from conftest import FAST_TOML

    from rnnsweep.cli import main

    d = tmp_path_factory.mktemp("study")
    toml = d / "fast.toml"
    toml.write_text(FAST_TOML)
    db = d / "s.db"
    with pytest.raises(SystemExit) as exc:
        main(["run", str(toml), *ARGS, *FAST, "--study", "e2e", "--storage", f"sqlite:///{db}"])
    assert exc.value.code == 0
    return db


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_optuna_sees_24_complete_trials(study_db):
    url = f"sqlite:///{study_db}"
    summaries = optuna.get_all_study_summaries(storage=url)
    names = sorted(s.study_name for s in summaries)
    assert names == ["e2e.rnn.d1", "e2e.rnn.d2", "e2e.ugrnn.d1", "e2e.ugrnn.d2"]
    total = 0
    for name in names:
        study = optuna.load_study(study_name=name, storage=url)
        complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        assert len(complete) == 6
        for t in complete:
            # Feasibility the Optuna way: a constraint <= 0 means feasible.
            cons = t.system_attrs["constraints"]
            assert (cons[0] > 0) == t.user_attrs["diverged"]
        total += len(complete)
    assert total == 24


def test_report_json_equals_recomputation(study_db, cli):
    r = cli("report", "--storage", f"sqlite:///{study_db}", "--format", "json")
    assert r.code == 0, r.err
    rows = json.loads(r.out)
    assert "most recent" in r.err and "e2e" in r.err
    # Recompute independently: Optuna trials for fate, raw SQL for losses.
    url = f"sqlite:///{study_db}"
    con = sqlite3.connect(study_db)
    losses = dict(
        con.execute(
            "SELECT optuna_trial_id, final_loss FROM rnnsweep_trials WHERE state = 'complete'"
        ).fetchall()
    )
    solved = dict(con.execute("SELECT optuna_trial_id, solved FROM rnnsweep_trials").fetchall())
    con.close()
    assert len(rows) == 4
    for row in rows:
        study = optuna.load_study(study_name=f"e2e.{row['arch']}.d{row['depth']}", storage=url)
        ts = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        feas = [t for t in ts if t.system_attrs["constraints"][0] <= 0]
        assert row["trials"] == len(ts) == 6
        assert row["feasible"] == len(feas)
        assert row["feasible_fraction"] == pytest.approx(len(feas) / 6)
        lo, hi = _wilson(len(feas), 6)
        assert row["ci_low"] == pytest.approx(lo, abs=1e-12)
        assert row["ci_high"] == pytest.approx(hi, abs=1e-12)
        assert row["solved_fraction"] == pytest.approx(
            sum(bool(solved[t._trial_id]) for t in ts) / 6
        )
        fl = sorted(losses[t._trial_id] for t in feas)
        if fl:
            assert row["best_loss"] == pytest.approx(fl[0])
            assert row["median_loss"] == pytest.approx(float(pd.Series(fl).median()))
            # Optuna's objective value of a feasible trial is its final loss.
            assert min(t.value for t in feas) == pytest.approx(fl[0])
        else:
            assert row["best_loss"] is None and row["median_loss"] is None
        assert row["sampler"] == "random"


def test_report_formats(study_db, cli):
    url = f"sqlite:///{study_db}"
    table = cli("report", "--storage", url, "--study", "e2e")
    assert table.code == 0 and "feasible" in table.out and "ugrnn" in table.out
    assert "random" in table.out
    csv = cli("report", "--storage", url, "--study", "e2e", "-f", "csv")
    assert csv.out.splitlines()[0].startswith("arch,depth,trials,feasible")
    assert len(csv.out.strip().splitlines()) == 5
    md = cli("report", "--storage", url, "--study", "e2e", "-f", "markdown")
    assert "| arch |" in md.out.replace("  ", " ") or "|arch|" in md.out.replace(" ", "")
    by = cli("report", "--storage", url, "--study", "e2e", "--by", "optimizer", "-f", "json")
    rows = json.loads(by.out)
    assert sum(r["trials"] for r in rows) == 24
    assert {r["optimizer"] for r in rows} <= {"adam", "rmsprop", "sgd"}


def test_export_parquet_reads_back(study_db, cli, tmp_path):
    url = f"sqlite:///{study_db}"
    out = tmp_path / "exp"
    r = cli("export", "--storage", url, "--study", "e2e", "--format", "parquet", "--out", str(out))
    assert r.code == 0, r.err
    trials = pd.read_parquet(out / "trials.parquet")
    curves = pd.read_parquet(out / "curves.parquet")
    con = sqlite3.connect(study_db)
    db = pd.read_sql("SELECT * FROM rnnsweep_trials WHERE state='complete' ORDER BY id", con)
    n_curve = con.execute("SELECT COUNT(*) FROM rnnsweep_curves").fetchone()[0]
    con.close()
    assert len(trials) == len(db) == 24
    assert list(trials["optuna_trial_id"]) == list(db["optuna_trial_id"])
    for col in ("arch", "depth", "hidden", "params", "seed", "lr", "diverged", "steps_run"):
        assert list(trials[col]) == list(db[col]), col
    pd.testing.assert_series_equal(trials["final_loss"], db["final_loss"], check_names=False)
    assert len(curves) == n_curve > 0
    assert set(curves["optuna_trial_id"]) <= set(trials["optuna_trial_id"])
    cfg = json.loads(trials["config_json"].iloc[0])
    assert cfg["model"]["hidden"] == trials["hidden"].iloc[0]
    assert cfg["settings"]["seed"] == trials["seed"].iloc[0]


def test_every_trial_records_width_and_exact_params(study_db):
    from rnnsweep.cells import ModelConfig, count_params
    from rnnsweep.tasks import make_task

    task = make_task("parens", {"seq_len": 8})
    con = sqlite3.connect(study_db)
    rows = con.execute("SELECT arch, depth, hidden, params FROM rnnsweep_trials").fetchall()
    con.close()
    for arch, depth, hidden, params in rows:
        assert params == count_params(ModelConfig(arch, task.n_in, task.n_out, hidden, depth))
        assert params <= 1000
        assert count_params(ModelConfig(arch, task.n_in, task.n_out, hidden + 1, depth)) > 1000


def test_studies_lists_counts(study_db, cli):
    r = cli("studies", "--storage", f"sqlite:///{study_db}", "-f", "json")
    (row,) = json.loads(r.out)
    assert row["study"] == "e2e" and row["complete"] == 24 and row["requested"] == 24
    assert row["cells"] == 4


def test_resume_runs_up_to_new_total(cli, fast_toml, tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    base = ["run", str(fast_toml), "--arch", "gru", "--depth", "1", *FAST, "--storage", url]
    assert cli(*base, "--trials", "2").code == 0
    r = cli(*base, "--trials", "2")
    assert r.code == 0 and "0 trials run" in r.err
    r = cli(*base, "--trials", "3")
    assert r.code == 0 and "1 trials run" in r.err and "3/3 complete" in r.err
    study = optuna.load_study(study_name="parens-gru-d1.gru.d1", storage=url)
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 3
    # A changed spec is refused, naming the differing key.
    r = cli(*base, "--trials", "3", "--steps", "13")
    assert r.code == 2 and "train.steps" in r.err


def test_sgd_lr_10_diverges_and_study_continues(cli, fast_toml, tmp_path):
    url = f"sqlite:///{tmp_path / 'd.db'}"
    r = cli(
        "run",
        str(fast_toml),
        "--arch",
        "rnn",
        "--depth",
        "1",
        "--trials",
        "3",
        *FAST,
        "--optimizer",
        "sgd",
        "--lr",
        "10",
        "--clip",
        "100",
        "--storage",
        url,
        "--study",
        "div",
    )
    assert r.code == 0, r.err
    study = optuna.load_study(study_name="div.rnn.d1", storage=url)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 3
    assert all(t.user_attrs["diverged"] for t in trials)
    assert all(t.system_attrs["constraints"][0] > 0 for t in trials)
    rows = json.loads(cli("report", "--storage", url, "-f", "json").out)
    assert rows[0]["feasible"] == 0 and rows[0]["trials"] == 3
    assert rows[0]["median_loss"] is None


def test_version_and_help(cli):
    r = cli("--version")
    assert r.code == 0 and r.out.startswith("rnnsweep ")
    r = cli("run", "--help")
    assert r.code == 0 and "--arch" in r.out and "--pack-size" in r.out


def test_optuna_dashboard_opens_the_storage(study_db):
    """optuna-dashboard's own WSGI app serves the study and marks diverged trials."""
    import io

    from optuna_dashboard import wsgi

    app = wsgi(f"sqlite:///{study_db}")

    def get(path: str) -> dict:
        status: list[str] = []
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "QUERY_STRING": "",
            "wsgi.errors": io.StringIO(),
        }
        body = b"".join(app(environ, lambda s, h, *a: status.append(s)))
        assert status[0].startswith("200"), status
        return json.loads(body)

    studies = get("/api/studies")["study_summaries"]
    by_name = {s["study_name"]: s["study_id"] for s in studies}
    assert "e2e.rnn.d1" in by_name
    detail = get(f"/api/studies/{by_name['e2e.rnn.d1']}")
    trials = detail["trials"]
    assert len(trials) == 6
    assert all(len(t["constraints"]) == 1 for t in trials)
    url = f"sqlite:///{study_db}"
    study = optuna.load_study(study_name="e2e.rnn.d1", storage=url)
    diverged = {t.number for t in study.trials if t.user_attrs["diverged"]}
    assert {t["number"] for t in trials if t["constraints"][0] > 0} == diverged
