"""Issue 5 end to end: the theory command, critical init in a study, per-trial
diagnostics in the store, grouping by region and xi, plots, and every study file."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest
import torch
from conftest import FAST

from rnnsweep.cells import InitConfig, ModelConfig, PackedRNN
from rnnsweep.theory.meanfield import mean_field

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def test_theory_json_matches_the_library(cli):
    r = cli(
        "theory", "--arch", "rnn", "--sigma-w", "1.5", "--sigma-v", "1", "--R", "1", "-f", "json"
    )
    assert r.code == 0, r.err
    d = json.loads(r.out)
    mf = mean_field("rnn", sigma_w=1.5, sigma_v=1.0, R=1.0)
    assert d["q_star"] == pytest.approx(mf.q_star) and d["chi"] == pytest.approx(mf.chi)
    assert d["xi"] == pytest.approx(-1 / math.log(mf.chi))
    r = cli(
        "theory",
        "--arch",
        "minimalrnn",
        "--sigma-w",
        "1",
        "--sigma-v",
        "1",
        "--mu-b",
        "2",
        "--R",
        "1",
        "-f",
        "json",
    )
    d = json.loads(r.out)
    assert {"q_star", "Q_star", "chi", "xi"} <= d.keys()
    assert d["Q_star"] == pytest.approx(mean_field("minimalrnn", 1.0, 1.0, 1.0, mu_b=2.0).Q_star)


def test_theory_grid_plot_and_bad_input(cli, tmp_path):
    out = tmp_path / "phase.png"
    r = cli("theory", "--arch", "rnn", "--grid", "--plot", str(out), "--T", "50")
    assert r.code == 0, r.err
    assert out.read_bytes()[:8] == PNG
    r = cli("theory", "--arch", "gru")
    assert r.code == 2 and "rnn or minimalrnn" in r.err
    r = cli("theory", "--plot", str(tmp_path / "x.png"))
    assert r.code == 2 and "--grid" in r.err


def test_critical_init_is_isometric_where_gaussian_is_not():
    """dh_T/dh_0 (T = 50) of a critical tanh RNN (sigma_v tiny, so q* ~ 0) against a
    Gaussian W with the same sigma_w: measured mean ~1.00 vs ~0.05 and max/min
    ~1.3 vs ~1e20 (theory tests in test_theory.py state the numbers)."""
    from rnnsweep.theory.critical import critical_vanilla
    from rnnsweep.theory.diagnostics import end_to_end_spectrum
    from rnnsweep.theory.meanfield import vanilla_fixed_point

    H, T = 96, 50
    sigma_w = critical_vanilla(sigma_v=1e-4, R=1.0)
    cfg = ModelConfig("rnn", 4, 2, H, 1, "tanh")
    crit = InitConfig(
        init_scale=sigma_w, init="critical", critical_sigma_w=sigma_w, input_scale=1e-4, seed=1
    )
    gauss = InitConfig(init_scale=sigma_w, init="gaussian", input_scale=1e-4, seed=1)
    model = PackedRNN(cfg, [crit, gauss], dtype=torch.float64)
    # Start on the fixed point (as the theory does): h_0 = tanh(sqrt(q*) z).
    q_star = vanilla_fixed_point(sigma_w, 1e-4, 0.0, 1.0)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        s0 = model.layers[0]["s0"]
        s0.copy_(
            torch.tanh(math.sqrt(q_star) * torch.randn(s0.shape, generator=g, dtype=torch.float64))
        )
    x = torch.randn(2, T, 2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    spec = end_to_end_spectrum(model, x, n_batch=1)
    mean, std = spec["mean"].tolist(), spec["std"].tolist()
    assert abs(mean[0] - 1) < 0.1, f"critical mean singular value {mean[0]:.3f}"
    assert std[0] < std[1] / 3 or mean[1] < 0.5, f"spread {std[0]:.3f} vs gaussian {std[1]:.3f}"


def test_study_with_critical_init_diagnostics_and_xi(cli, fast_toml, tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    r = cli(
        "run",
        str(fast_toml),
        "--arch",
        "rnn,minimalrnn",
        "--depth",
        "1",
        "--trials",
        "4",
        *FAST,
        "--nonlinearity",
        "tanh",
        "--init",
        "critical,gaussian",
        "--storage",
        url,
        "--study",
        "sci",
    )
    assert r.code == 0, r.err
    con = sqlite3.connect(tmp_path / "s.db")
    rows = con.execute("SELECT arch, init, extra_json, config_json FROM rnnsweep_trials").fetchall()
    con.close()
    assert {r[1] for r in rows} == {"critical", "gaussian"}
    for _arch, init, extra, _ in rows:
        e = json.loads(extra)
        for k in ("init_jac_max", "init_lyapunov", "final_jac_max", "init_e2e_sv_mean"):
            assert k in e, (k, e.keys())
        assert e["region"] in (1, 2, 3)
        assert "xi" in e and e["xi_bin"].startswith("xi/T")
        if init == "critical":
            assert e["xi"] > 50 or math.isinf(e["xi"]), "critical init sits on chi = 1"
    r = cli("report", "--storage", url, "--by", "arch,region", "-f", "json")
    assert r.code == 0 and sum(x["trials"] for x in json.loads(r.out)) == 8
    r = cli("report", "--storage", url, "--by", "arch,xi_bin", "-f", "json")
    assert r.code == 0 and sum(x["trials"] for x in json.loads(r.out)) == 8
    out = tmp_path / "exp"
    assert cli("export", "--storage", url, "--out", str(out)).code == 0
    import pandas as pd

    t = pd.read_parquet(out / "trials.parquet")
    assert {"region", "init_lyapunov", "xi"} <= set(t.columns)


def test_critical_init_refused_for_gated_cells(cli, tmp_path):
    r = cli(
        "run",
        "--arch",
        "lstm",
        "--depth",
        "1",
        "--init",
        "critical",
        *FAST,
        "--storage",
        str(tmp_path / "x.db"),
    )
    assert r.code == 2 and "critical" in r.err and "lstm" in r.err
    assert not (tmp_path / "x.db").exists()


@pytest.mark.slow
@pytest.mark.parametrize("study", sorted(p.stem for p in (ROOT / "studies").glob("*.toml")))
def test_every_study_file_runs_scaled_down_and_plots(cli, tmp_path, study):
    url = f"sqlite:///{tmp_path / 'st.db'}"
    r = cli(
        "run",
        str(ROOT / "studies" / f"{study}.toml"),
        "--trials",
        "2",
        "--steps",
        "3",
        "--storage",
        url,
        "-q",
        "--pack-size",
        "8",
    )
    assert r.code == 0, r.err
    plots = tmp_path / "plots"
    r = cli("report", "--storage", url, "--plot", str(plots))
    assert r.code == 0, r.err
    names = {p.name for p in plots.iterdir()}
    assert {"feasible_vs_depth.png", "final_loss_box.png"} <= names
    assert any(n.startswith("outcome_") for n in names)
    for p in plots.iterdir():
        assert p.read_bytes()[:8] == PNG
    if study == "collins-table1":
        assert "Collins T1 %" in r.out
