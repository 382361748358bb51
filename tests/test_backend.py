"""The recorded backend and the resolved study, through the CLI as a user meets them.

- ``studies`` counts cells and requested trials after ``exclude``;
- ``--loop torch`` and ``--loop native`` runs of one study differ only in the backend
  columns and within float tolerance, and every row and ``trials.parquet`` names it;
- an unknown loop is one line and exit 2 from a flag, the environment or a study file,
  and the loop is not part of the spec hash;
- the report's xi contours and each trial's stored xi and xi_bin agree (padded digits).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import torch
from conftest import FAST

from rnnsweep.kernels.loops import get_loop
from rnnsweep.report.theory import xi_contours_for
from rnnsweep.store import Store
from rnnsweep.study import resolve_stored, spec_from_dict
from rnnsweep.theory.trial import xi_bin

BACKEND_COLS = ["loop", "products", "compiled", "graphs", "dtype", "device", "torch_version"]
# columns that may differ between two runs of one study on different loops
NOT_COMPARED = {"loop", "products", "compiled", "graphs", "wall_time", "created_at", "id"}
NOT_COMPARED |= {"optuna_trial_id"}
# log10 of the end-to-end Jacobian's condition number (~1e6 after training): in float32 its
# smallest singular value carries a relative error near cond * eps ~ 0.06, so the two loops
# agree on it to about 0.03 in log10 (measured 0.008), not to 1e-4 relative.
COND_TOL = 0.05


def test_studies_counts_cells_and_trials_after_exclude(cli, tmp_path, fast_toml):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    r = cli(
        "run",
        str(fast_toml),
        "--arch",
        "gru,plusrnn",
        "--depth",
        "1,2",
        "--exclude",
        "plusrnn/d1",
        "--trials",
        "2",
        *FAST,
        "--study",
        "ex",
        "--storage",
        url,
    )
    assert r.code == 0, r.err
    (s,) = json.loads(cli("studies", "--format", "json", "--storage", url).out)
    assert (s["cells"], s["requested"], s["complete"]) == (3, 6, 6)


def _run_loop(cli, tmp_path, fast_toml, loop: str) -> tuple[str, pd.DataFrame]:
    url = f"sqlite:///{tmp_path / f'{loop}.db'}"
    args = ["--arch", "gru,rnn", "--depth", "1", "--trials", "3", *FAST, "--study", "lp"]
    r = cli("run", str(fast_toml), *args, "--loop", loop, "--storage", url)
    assert r.code == 0, r.err
    store = Store(url, create=False)
    try:
        df = store.trials_frame("lp")
    finally:
        store.dispose()
    return url, df.sort_values(["arch", "trial_number"]).reset_index(drop=True)


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is None and b is None
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-9)
    return a == b


def test_torch_and_native_loops_differ_only_in_the_backend(cli, tmp_path, fast_toml):
    url_t, torch_df = _run_loop(cli, tmp_path, fast_toml, "torch")
    _, native_df = _run_loop(cli, tmp_path, fast_toml, "native")
    assert len(torch_df) == len(native_df) == 6
    assert list(torch_df.columns) == list(native_df.columns)
    for col in torch_df.columns:
        if col in NOT_COMPARED:
            continue
        for i, (a, b) in enumerate(zip(torch_df[col], native_df[col], strict=True)):
            if col in ("extra_json", "config_json"):
                a, b = json.loads(a), json.loads(b)
                assert a.keys() == b.keys(), (col, i)
                for k in a:
                    if k.endswith("log10_cond"):  # see COND_TOL
                        assert abs(a[k] - b[k]) < COND_TOL, (col, i, k, a[k], b[k])
                        continue
                    assert _same(a[k], b[k]), (col, i, k, a[k], b[k])
            else:
                assert _same(a, b), (col, i, a, b)
    assert set(torch_df["loop"]) == {"torch"} and set(torch_df["products"]) == {"blas"}
    assert set(native_df["loop"]) == {"native"}
    own = get_loop("native").products(torch.device("cpu"))  # own-avx512, or blas without it
    assert own in ("own-avx512", "blas") and set(native_df["products"]) == {own}
    for df in (torch_df, native_df):
        for col in BACKEND_COLS:
            assert df[col].notna().all(), col
        assert set(df["dtype"]) == {"float32"} and set(df["device"]) == {"cpu"}
        assert not df["compiled"].any() and not df["graphs"].any()

    out = tmp_path / "out"
    r = cli("export", "--storage", url_t, "--study", "lp", "--format", "parquet", "--out", str(out))
    assert r.code == 0, r.err
    pq = pd.read_parquet(out / "trials.parquet")
    assert len(pq) == 6
    for col in BACKEND_COLS:
        assert col in pq.columns and pq[col].notna().all(), col
    assert set(pq["loop"]) == {"torch"}


def _one_line_exit_2(r) -> None:
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert "foo" in lines[0] and "Traceback" not in r.err


def test_unknown_loop_is_one_line_and_exit_2(cli, tmp_path, fast_toml, monkeypatch):
    db = tmp_path / "bad.db"
    base = ["run", "--arch", "gru", "--depth", "1", "--trials", "1", *FAST]
    _one_line_exit_2(cli(*base, "--loop", "foo", "--storage", f"sqlite:///{db}"))

    monkeypatch.setenv("RNNSWEEP_LOOP", "foo")
    _one_line_exit_2(cli(*base, "--storage", f"sqlite:///{db}"))
    monkeypatch.delenv("RNNSWEEP_LOOP")

    toml = tmp_path / "loop.toml"
    toml.write_text(fast_toml.read_text().replace("[train]", '[train]\nloop = "foo"'))
    _one_line_exit_2(cli("run", str(toml), *base[1:], "--storage", f"sqlite:///{db}"))
    assert not db.exists()  # nothing half-written


def test_the_loop_is_not_part_of_the_spec_hash():
    d = {"task": "parens", "task_options": {"seq_len": 8}, "arch": ["gru"], "trials": 2}
    plain = spec_from_dict(d)
    with_loop = spec_from_dict({**d, "train": {"loop": "torch"}})
    assert plain.spec_hash() == with_loop.spec_hash()
    assert plain.identity() == with_loop.identity()


XI_TOML = """
task = "digits"
[task_options]
pad = 4
[train]
eval_every = 6
eval_size = 16
[space]
nonlinearity = ["tanh"]
init = ["gaussian"]
sigma_b = {low = 0.0, high = 0.5}
"""


def test_report_xi_contours_agree_with_each_trials_xi(cli, tmp_path):
    toml = tmp_path / "xi.toml"
    toml.write_text(XI_TOML)
    url = f"sqlite:///{tmp_path / 'xi.db'}"
    r = cli(
        "run", str(toml), "--arch", "rnn", "--depth", "1", "--trials", "4", *FAST,
        "--study", "xi", "--storage", url,
    )  # fmt: skip
    assert r.code == 0, r.err
    store = Store(url, create=False)
    try:
        resolved = resolve_stored(store.study_spec("xi"))
        df = store.trials_frame("xi")
    finally:
        store.dispose()
    assert resolved.T == 64 + 4
    contours = xi_contours_for(resolved)("rnn", "init_scale", "sigma_b")
    assert contours is not None
    checked = 0
    for _, t in df.iterrows():
        extra = json.loads(t["extra_json"])
        if "xi" not in extra:
            continue
        _, xi = contours(np.array([t["init_scale"]]), np.array([t["sigma_b"]]))
        assert xi.shape == (1, 1)
        assert math.isclose(xi[0, 0], extra["xi"], rel_tol=1e-9), (xi, extra)
        assert extra["xi_bin"] == xi_bin(extra["xi"], resolved.T)
        checked += 1
    assert checked == len(df) == 4
    assert df["sigma_b"].gt(0).any()  # the contours' second axis really varies
