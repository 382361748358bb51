"""What telling Optuna the dashboard's view of a trial costs (docs/PERFORMANCE.md, issue 15).

    .venv/bin/python benchmarks/dashboard_storage.py [--trials 300] [--evals 13] [--out FILE]

A real one-cell study is run first (rnnsweep run, a few trials), so that a real committed
row (with its diagnostics) is told. Then, on two copies of that SQLite file, ``--trials``
RUNNING trials are created in the cell and told the same row with a learning curve of
``--evals`` evaluations (13: the reference workload's 300 steps at eval_every 25, steps
0..300):

- ``before``: what rnnsweep told before issue 15 (two boolean attributes, the
  constraint, COMPLETE with the value: four storage calls, four commits);
- ``now``: :meth:`CellStudy.tell` (numeric attributes, the constraint, the curve as
  intermediate values and the value, one transaction).

Reported per trial: milliseconds per tell (median of the run, so that another process's
burst on a shared machine does not dominate) and bytes the SQLite file grew (after a WAL
checkpoint), each for before and now, and the difference.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnsweep.store import Store  # noqa: E402
from rnnsweep.study import resolve_stored  # noqa: E402
from rnnsweep.study.optuna_bridge import CONSTRAINTS_KEY, CellStudy, trial_id  # noqa: E402

FAST_TOML = "[task_options]\nseq_len = 8\n[train]\neval_every = 6\neval_size = 16\n"


def _file_bytes(db: Path) -> int:
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size, pages = (
        con.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_size", "page_count")
    )
    con.close()
    return page_size * pages


def _tell_before(cell: CellStudy, tid: int, row: dict) -> None:
    """rnnsweep's tell before issue 15 (git 1527015), for comparison."""
    diverged = bool(row["diverged"])
    value = math.inf if diverged else row["final_loss"]
    st = cell.storage
    st.set_trial_user_attr(tid, "diverged", diverged)
    st.set_trial_user_attr(tid, "solved", bool(row["solved"]))
    st.set_trial_system_attr(tid, CONSTRAINTS_KEY, (1.0,) if diverged else (0.0,))
    st.set_trial_state_values(tid, TrialState.COMPLETE, [value])


def measure(db: Path, mode: str, trials: int, evals: int) -> dict:
    store = Store(f"sqlite:///{db}", create=True)
    resolved = resolve_stored(store.study_spec("bench"))
    (plan,) = resolved.plans
    cell = CellStudy(resolved.spec, store, plan)
    row = store.trial_rows([trial_id(t) for t in cell.study.trials])[0]
    row = {**row, "diverged": False, "solved": False, "final_loss": 0.5, "diverged_at": None}
    curve = [{"step": 25 * i, "eval_loss": 1.0 / (1 + i)} for i in range(evals)]
    params = dict(cell.study.trials[0].params)
    before = _file_bytes(db)
    times = []
    for i in range(trials):
        tid = trial_id(cell.create_trial(params, {"rnnsweep_slot": 1000 + i}))
        t0 = time.perf_counter()
        if mode == "now":
            cell.tell(tid, row, curve)
        else:
            _tell_before(cell, tid, row)
        times.append(time.perf_counter() - t0)
    store.dispose()
    grown = _file_bytes(db) - before
    return {"ms": 1e3 * statistics.median(times), "bytes": grown / trials}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--evals", type=int, default=13)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "fast.toml").write_text(FAST_TOML)
        base = d / "base.db"
        cmd = [sys.executable, "-m", "rnnsweep", "run", str(d / "fast.toml"), "--arch", "gru",
               "--depth", "1", "--trials", "2", "--steps", "12", "--batch-size", "8",
               "--params", "1k", "-q", "--study", "bench",
               "--storage", f"sqlite:///{base}"]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        out = {}
        for mode in ("before", "now"):
            db = d / f"{mode}.db"
            shutil.copy(base, db)
            out[mode] = measure(db, mode, a.trials, a.evals)
    out["extra_ms"] = out["now"]["ms"] - out["before"]["ms"]
    out["extra_bytes"] = out["now"]["bytes"] - out["before"]["bytes"]
    out.update(trials=a.trials, evals=a.evals)
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
