"""Cost of each launcher against local: time from `rnnsweep run` to the first trial
starting, and the overhead per trial (README "Clusters", issue 16).

    PYTHONPATH=. python benchmarks/launchers.py [--trials 16] [--steps 40] [--out FILE]

One throwaway PostgreSQL server (tests/pgserver.py), one single-node Slurm
(tests/slurmcluster.py, needs root and Debian's Slurm packages) and one two-node Ray
cluster (tests/raycluster.py) are started for the purpose. Each launcher runs the same
fresh study (parens, rnn, depth 1, 1k parameters, sequence 8) with 2 workers and pack
size 2. "first trial" is the earliest Optuna datetime_start minus the moment `run` was
started (one machine, one clock); "overhead/trial" is (wall - local's wall) / trials.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

TOML = """
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


def first_start(url: str, study: str) -> float:
    import optuna

    starts = []
    for s in optuna.get_all_study_summaries(storage=url):
        if s.study_name.startswith(study + "."):
            st = optuna.load_study(study_name=s.study_name, storage=url)
            starts += [t.datetime_start for t in st.trials if t.datetime_start]
    return min(starts).timestamp()


def run_once(launcher: str, url: str, env: dict, toml: Path, trials: int, cwd: Path) -> dict:
    import subprocess

    study = f"bench-{launcher}"
    cmd = [sys.executable, "-m", "rnnsweep", "run", str(toml), "--arch", "rnn", "--depth", "1"]
    cmd += ["--trials", str(trials), "--study", study, "--pack-size", "2", "--workers", "2"]
    cmd += ["--launcher", launcher, "--quiet"]
    t0 = dt.datetime.now().timestamp()
    p0 = time.perf_counter()
    r = subprocess.run(
        cmd,
        env={**env, "RNNSWEEP_STORAGE": url},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    wall = time.perf_counter() - p0
    if r.returncode != 0:
        raise SystemExit(f"{launcher}: {r.stderr}")
    return {"launcher": launcher, "first_trial_s": first_start(url, study) - t0, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    import os

    import pgserver
    import raycluster
    import slurmcluster

    tmp = Path(tempfile.mkdtemp(prefix="rnnsweep-bench-"))
    toml = tmp / "study.toml"
    toml.write_text(TOML.format(steps=a.steps))
    pg = pgserver.start()
    slurm = ray = None
    rows = []
    try:
        slurm = slurmcluster.start()
        ray = raycluster.start()
        envs = {"local": dict(os.environ), "slurm": slurm.env(), "ray": ray.env()}
        for launcher in ("local", "slurm", "ray"):
            rows.append(run_once(launcher, pg.new_database(), envs[launcher], toml, a.trials, tmp))
            print(rows[-1], file=sys.stderr)
    finally:
        for c in (ray, slurm, pg):
            if c is not None:
                c.stop()
    local = rows[0]["wall_s"]
    for row in rows:
        row["overhead_per_trial_s"] = (row["wall_s"] - local) / a.trials
    print(f"{'launcher':8} {'first trial s':>13} {'wall s':>8} {'overhead/trial s':>17}")
    for row in rows:
        print(
            f"{row['launcher']:8} {row['first_trial_s']:13.1f} {row['wall_s']:8.1f} "
            f"{row['overhead_per_trial_s']:17.2f}"
        )
    if a.out:
        a.out.write_text(json.dumps({"trials": a.trials, "steps": a.steps, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
