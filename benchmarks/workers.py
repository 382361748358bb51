"""Trials per hour with 1, 2 and 4 workers on SQLite and PostgreSQL, and the storage
overhead per trial (docs/PERFORMANCE.md, issue 4).

    .venv/bin/python benchmarks/workers.py [--trials 48] [--steps 40] [--out FILE]

Each run is a fresh study of the reference workload's shape (parens, ugrnn, depth 2,
hidden 64, sequence 50, batch 32) with fewer steps so that storage work is a visible
share of the time; `rnnsweep run --workers W --pack-size 8` runs it, and the workers'
own accounting of seconds spent in the store ("storage X ms/trial") is read off their
closing lines. PostgreSQL is a throwaway server started for the purpose (tests/pgserver.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def run_once(url: str, workers: int, trials: int, steps: int) -> dict:
    env = {**os.environ, "RNNSWEEP_STORAGE": url}
    cmd = [
        sys.executable,
        "-m",
        "rnnsweep",
        "run",
        "--arch",
        "ugrnn",
        "--depth",
        "2",
        "--hidden",
        "64",
        "--trials",
        str(trials),
        "--steps",
        str(steps),
        "--study",
        f"w{workers}",
        "--workers",
        str(workers),
        "--pack-size",
        "8",
        "--quiet",
    ]
    if workers == 1:
        cmd = [c for c in cmd if c not in ("--workers",)]
        cmd.remove("1")
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(p.stderr)
    text = " ".join(p.stderr.split())  # Rich wraps long lines
    per_trial = [float(m) for m in re.findall(r"storage ([0-9.]+) ms/trial", text)]
    counts = [int(m) for m in re.findall(r"([0-9]+) trials run", text)]
    weighted = sum(a * b for a, b in zip(per_trial, counts, strict=False)) / max(
        1, sum(counts[: len(per_trial)])
    )
    return {
        "workers": workers,
        "trials": trials,
        "wall_s": wall,
        "trials_per_hour": 3600 * trials / wall,
        "storage_ms_per_trial": weighted,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=48)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import pgserver

    rows = []
    server = pgserver.start()
    try:
        with tempfile.TemporaryDirectory() as d:
            for kind in ("sqlite", "postgresql"):
                for w in (1, 2, 4):
                    url = (
                        f"sqlite:///{Path(d) / f'w{w}.db'}"
                        if kind == "sqlite"
                        else server.new_database()
                    )
                    row = run_once(url, w, args.trials, args.steps)
                    row["storage"] = kind
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        server.stop()
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
