"""The gp and cmaes samplers, a tuned b, and the views Collins' capacity studies need,
from the CLI and from a study file, through a real SQLite store."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import optuna
import pytest
from conftest import FAST

from rnnsweep.tasks import stored_bits

CAP_TOML = """
task = "capacity"
arch = ["gru"]
depth = [1]
trials = 6
seed = 4
device = "cpu"
task_options = { n_bits = 8, unroll = 3 }
[model]
params = 200
[train]
steps = 12
batch_size = 16
eval_every = 6
diagnostics = false
[space]
b = { low = 16, high = 128, log = true }
lr = [1e-3, 1e-1]
init_scale = [0.5, 2.0]
b_fg = [0.0, 2.0]
clip = 10.0
nonlinearity = "tanh"
optimizer = "adam"
init = "gaussian"
"""


def _run_file(cli, tmp_path: Path, sampler: str, db: Path, name: str = "cap"):
    toml = tmp_path / f"{name}.toml"
    toml.write_text(f'name = "{name}"\nsampler = "{sampler}"\n' + CAP_TOML)
    return cli("run", str(toml), "--pack-size", "1", "-q", "--storage", f"sqlite:///{db}")


def _trials(db: Path, name: str = "cap") -> list[tuple]:
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT trial_number, diverged, metric, params, extra_json, config_json, sampler "
        "FROM rnnsweep_trials WHERE study = ? AND state = 'complete' ORDER BY trial_number",
        (name,),
    ).fetchall()
    con.close()
    return rows


@pytest.mark.parametrize("sampler", ["gp", "cmaes"])
def test_adaptive_sampler_from_a_study_file_tunes_b(cli, tmp_path, sampler) -> None:
    db = tmp_path / "s.db"
    r = _run_file(cli, tmp_path, sampler, db)
    assert r.code == 0, r.err
    rows = _trials(db)
    assert len(rows) == 6 and {row[6] for row in rows} == {sampler}
    bs = set()
    for _, diverged, p, n_params, extra, config, _ in rows:
        settings = json.loads(config)["settings"]
        assert 16 <= settings["b"] <= 128
        bs.add(settings["b"])
        if not diverged:
            got = json.loads(extra)
            # the trial trained on its own b: its bits use that b, not the study default
            assert got["b"] == settings["b"]
            assert got["bits"] == pytest.approx(stored_bits(settings["b"], p), abs=1e-9)
            assert got["bits_per_param"] == pytest.approx(got["bits"] / n_params, abs=1e-12)
    assert len(bs) > 1, "b should vary across trials"
    # Optuna saw minus the stored bits (the capacity objective) and the feasibility
    # constraint on every trial (GPSampler and TPESampler read it from the trial).
    study = optuna.load_study(study_name="cap.gru.d1", storage=f"sqlite:///{db}")
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == 6
    for t, row in zip(sorted(done, key=lambda t: t.number), rows, strict=True):
        assert t.params["b"] == json.loads(row[5])["settings"]["b"]
        assert t.system_attrs["constraints"] == [1.0 if row[1] else 0.0]
        if not row[1]:
            assert t.value == pytest.approx(-json.loads(row[4])["bits"], abs=1e-9)

    rep = cli("report", "--study", "cap", "--storage", f"sqlite:///{db}")
    assert rep.code == 0, rep.err
    assert f"sampler {sampler} (adaptive)" in " ".join(rep.out.split())
    assert f"Note: {sampler} is adaptive" in rep.err

    best = cli(
        "report", "--best", "bits_per_param", "--study", "cap", "--storage", f"sqlite:///{db}",
        "--format", "json",
    )  # fmt: skip
    assert best.code == 0, best.err
    (row,) = json.loads(best.out)
    feasible = [x for x in rows if not x[1]]
    top = max(json.loads(x[4])["bits_per_param"] for x in feasible)
    assert row["best"] == pytest.approx(top) and row["trials"] == 6
    assert row["b"] in bs and 0 <= row["metric"] <= 1
    assert f"Note: {sampler} is adaptive: each row is the best" in best.err


@pytest.mark.parametrize("sampler", ["gp", "cmaes"])
def test_adaptive_sampler_from_the_cli(cli, tmp_path, sampler) -> None:
    db = tmp_path / "c.db"
    r = cli(
        "run", "--task", "memory", "--arch", "gru", "--trials", "5", "--sampler", sampler,
        "--pack-size", "1", "--lr", "1e-3:1e-1", "--optimizer", "adam", *FAST,
        "--study", "m", "--storage", f"sqlite:///{db}",
    )  # fmt: skip
    assert r.code == 0, r.err
    con = sqlite3.connect(db)
    n, samplers = con.execute(
        "SELECT count(*), group_concat(DISTINCT sampler) FROM rnnsweep_trials "
        "WHERE state = 'complete'"
    ).fetchone()
    con.close()
    assert n == 5 and samplers == sampler
    rep = cli("report", "--storage", f"sqlite:///{db}", "--format", "json")
    assert rep.code == 0 and f"Note: {sampler} is adaptive" in rep.err


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["gp", "cmaes"])
def test_adaptive_points_repeat_for_a_seed(cli, tmp_path, sampler) -> None:
    """One worker asking one trial at a time: the same seed gives the same points, past
    the random start-up trials (6 trials: GP from the 5th, CMA-ES from the 2nd)."""
    points = []
    for i in range(2):
        db = tmp_path / f"d{i}.db"
        assert _run_file(cli, tmp_path, sampler, db).code == 0
        points.append([json.loads(r[5])["settings"] for r in _trials(db)])
    assert points[0] == points[1]


def test_unknown_sampler_and_b_on_a_task_without_b_are_one_line_errors(cli, tmp_path) -> None:
    r = cli("run", "--sampler", "gpp", "--storage", f"sqlite:///{tmp_path / 'x.db'}")
    assert r.code == 2 and "unknown sampler 'gpp'" in r.err and "gp" in r.err
    assert len(r.err.strip().splitlines()) == 1
    toml = tmp_path / "bad.toml"
    toml.write_text('task = "memory"\n[space]\nb = [16, 64]\n')
    r = cli("run", str(toml), "--storage", f"sqlite:///{tmp_path / 'y.db'}")
    assert r.code == 2 and "task 'memory' has none" in r.err
    assert not (tmp_path / "y.db").exists()
    toml.write_text('task = "capacity"\ntask_options = {n_bits = 4, b = 8}\n[space]\nb = [8, 64]\n')
    r = cli("run", str(toml), "--storage", f"sqlite:///{tmp_path / 'z.db'}")
    assert r.code == 2 and "space.b: capacity option b must be <= 16" in r.err
    r = cli("report", "--best", "bits_per_parm", "--storage", f"sqlite:///{tmp_path / 'z.db'}")
    assert r.code == 2


def test_best_report_over_several_studies_draws_collins_fig1(cli, tmp_path) -> None:
    db = tmp_path / "f.db"
    for p in (150, 300):
        toml = tmp_path / f"p{p}.toml"
        toml.write_text(f'name = "cap-p{p}"\nsampler = "random"\n' + CAP_TOML)
        r = cli(
            "run", str(toml), "--params", str(p), "--trials", "2", "--storage", f"sqlite:///{db}",
            "-q",
        )  # fmt: skip
        assert r.code == 0, r.err
    out = tmp_path / "img"
    r = cli(
        "report", "--best", "bits", "--study", "cap-p150,cap-p300", "--storage",
        f"sqlite:///{db}", "--plot", str(out), "--format", "json",
    )  # fmt: skip
    assert r.code == 0, r.err
    rows = json.loads(r.out)
    assert sorted(x["params"] for x in rows) == sorted({x["params"] for x in rows})
    assert len(rows) == 2 and (out / "bits_vs_params.png").stat().st_size > 10_000
    r = cli("report", "--best", "bits", "--study", "cap-p150,nope", "--storage", f"sqlite:///{db}")
    assert r.code == 2 and "nope" in r.err


def test_memory_best_report_finds_knees(cli, tmp_path) -> None:
    db = tmp_path / "m.db"
    for h in (2, 4, 8):
        r = cli(
            "run", "--task", "memory", "--arch", "rnn", "--hidden", str(h), "--trials", "2",
            "--study", f"m-h{h}", *FAST, "--storage", f"sqlite:///{db}",
        )  # fmt: skip
        assert r.code == 0, r.err
    out = tmp_path / "img"
    r = cli(
        "report", "--best", "final_loss", "--study", "m-h2,m-h4,m-h8", "--storage",
        f"sqlite:///{db}", "--plot", str(out),
    )  # fmt: skip
    assert r.code == 0, r.err
    assert (out / "error_vs_width.png").exists()
    assert "knee of rnn d1: n_h = " in r.err and "(n_vec = 8)" in r.err


def test_chen_heatmap_is_drawn_on_a_theory_plane(tmp_path) -> None:
    import numpy as np
    import pandas as pd

    from rnnsweep.report.phase import cell_edges, metric_grid
    from rnnsweep.report.plots import plot_study
    from rnnsweep.report.theory import xi_contours_for
    from rnnsweep.study import resolve, spec_from_dict

    ws, bs = [0.5, 1.0, 2.0], [0.0, 0.5, 1.0]
    rows = []
    for i, w in enumerate(ws):
        for j, b in enumerate(bs):
            for rep in range(2):  # two trials per grid point: the cell shows their median
                rows.append(
                    {
                        "arch": "rnn",
                        "depth": 1,
                        "init_scale": w,
                        "sigma_b": b,
                        "lr": 0.01,
                        "diverged": (i, j) == (2, 2),
                        "metric": math.nan if (i, j) == (2, 2) else 0.1 * i + 0.01 * j + rep,
                        "metric_name": "accuracy",
                        "final_loss": 1.0,
                    }
                )
    df = pd.DataFrame(rows)
    bx, by, grid = metric_grid(df, "init_scale", "sigma_b", True, False)
    assert np.allclose(cell_edges(np.array(bs), False), [-0.25, 0.25, 0.75, 1.25])
    assert grid.shape == (3, 3)
    for i in range(3):
        for j in range(3):
            if (i, j) == (2, 2):
                assert math.isnan(grid[j, i])  # every trial there diverged: blank
            else:
                assert grid[j, i] == pytest.approx(0.1 * i + 0.01 * j + 0.5)
    study = resolve(
        spec_from_dict(
            {"name": "t", "arch": ["rnn"], "task_options": {"seq_len": 20},
             "model": {"params": "1k"}, "space": {"sigma_v": 1.0}}
        )
    )  # fmt: skip
    paths = plot_study(
        df, pd.DataFrame(), tmp_path, "t", x="init_scale", y="sigma_b",
        xi_for=xi_contours_for(study), T=study.T,
    )  # fmt: skip
    assert tmp_path / "phase_rnn.png" in paths
