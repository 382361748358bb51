"""Whole runs (issue 17): a study's trials fill whole packs, the progress bar moves within
a pack, the output does not grow with the packs, and the bench's peer comparison runs."""

from __future__ import annotations

import os

import pytest

from rnnsweep.cli import main
from rnnsweep.kernels import _native
from rnnsweep.store import Store
from rnnsweep.study import resolve, run_study, spec_from_dict
from rnnsweep.study import worker as worker_mod

native = pytest.mark.skipif(not _native.available(), reason="native loops not built")


def _spec(name: str, trials: int, steps: int = 6, **more):
    return spec_from_dict(
        {
            "name": name,
            "task": "parens",
            "arch": "gru",
            "depth": 1,
            "trials": trials,
            "seed": 3,
            "model": {"hidden": 6},
            "task_options": {"seq_len": 8},
            "train": {"steps": steps, "batch_size": 4, "eval_every": 3, "eval_size": 8},
            **more,
        }
    )


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, float]] = []

    def start(self, total: int, done: int, feasible: int) -> None:
        self.events.append(("start", total))

    def advance(self, done: int, feasible: int) -> None:
        self.events.append(("advance", done))

    def partial(self, trials: float) -> None:
        self.events.append(("partial", trials))


@native
def test_a_mixed_study_trains_as_one_pack_and_reports_progress_per_step(tmp_path):
    """tanh and relu trials of one cell share one pack on the native loop (each row says
    pack size 8), and the progress hears the pack's fraction done after every step, so
    a bar's ETA holds from the first pack on."""
    store = Store(f"sqlite:///{tmp_path / 's.db'}", create=True)
    rec = _Recorder()
    summary = run_study(resolve(_spec("mixed", 8)), store, pack_size=8, progress=rec, loop="native")
    assert summary.trials_run == 8
    df = store.trials_frame("mixed")
    assert set(df["nonlinearity"]) == {"tanh", "relu"}  # the study mixes them
    assert set(df["pack_size"]) == {8}  # ... in one pack
    partial = [v for kind, v in rec.events if kind == "partial"]
    assert partial == sorted(partial) and len(partial) == 6  # one per step
    assert partial[0] == pytest.approx(8 / 6) and partial[-1] == pytest.approx(8)
    assert rec.events[0] == ("start", 8) and rec.events[-1] == ("advance", 8)
    store.dispose()


def test_a_loop_that_cannot_mix_splits_the_pack_by_nonlinearity(tmp_path):
    """The reference loop runs one nonlinearity per pack: the worker groups by it."""
    store = Store(f"sqlite:///{tmp_path / 's.db'}", create=True)
    run_study(resolve(_spec("ref", 6, steps=2)), store, pack_size=6, loop="reference")
    df = store.trials_frame("ref")
    counts = df.groupby("nonlinearity").size().to_dict()
    assert set(counts) == {"tanh", "relu"}
    for nl, n in counts.items():
        assert set(df[df["nonlinearity"] == nl]["pack_size"]) == {n}
    store.dispose()


def _run_lines(tmp_path, capfd, pack: int) -> list[str]:
    db = tmp_path / f"p{pack}.db"
    args = ["run", "-a", "gru", "-d", "1", "--trials", "8", "--steps", "4", "--hidden", "6"]
    args += ["--lr", "1e-4:30", "--pack-size", str(pack), "--storage", f"sqlite:///{db}"]
    args += ["--study", "lines", "--threads", "1"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code in (0, None)
    out, err = capfd.readouterr()
    return [line for line in (out + err).splitlines() if line.strip()]


def test_output_does_not_grow_with_packs(tmp_path, capfd):
    """Eight trials (lr up to 30: some diverge, packs shrink) as eight packs of one or one
    pack of eight: the same number of output lines, one summary line for the study."""
    one = _run_lines(tmp_path, capfd, 1)
    eight = _run_lines(tmp_path, capfd, 8)
    assert len(one) == len(eight), (one, eight)
    assert sum("complete" in line for line in eight) == 1


def test_idle_threads_take_the_cores_others_leave(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert worker_mod.idle_threads() == cores
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 5.0, 0.0, 0.0))
    assert worker_mod.idle_threads() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (cores - 0.8, 0.0, 0.0))
    assert worker_mod.idle_threads() == 1


@pytest.mark.slow
def test_versus_peer_times_both_and_gives_the_ratio():
    """A tiny comparison through real processes: rnnsweep run and the peer script, each on
    its own SQLite file; the ratio is the quotient of the trials per hour."""
    from rnnsweep.bench import PeerCase, versus_peer

    rows = versus_peer([PeerCase("gru", 1, hidden=4, seq_len=6, trials=2, steps=2)], (1,))
    (r,) = rows
    assert r["threads"] == 1 and r["rnnsweep_s"] > 0 and r["peer_s"] > 0
    assert r["speedup"] == pytest.approx(r["rnnsweep_trials_per_hour"] / r["peer_trials_per_hour"])
    assert r["peer"] == "optuna + torch.nn.GRU"


def test_eta_rows_compare_the_bar_with_the_time_left():
    """`bench --eta`'s measurement: one row per pack but the last, the ETA the bar showed
    at the end of that pack (the bar is drawn from the worker's reports) and the time the
    rest of the study took after it."""
    from rnnsweep.bench import eta_rows

    rows = eta_rows(trials=6, steps=3, pack_size=2, hidden=4)
    assert [r["trials_done"] for r in rows] == [2, 4]
    for r in rows:
        assert r["actual_s"] > 0 and r["eta_s"] is not None and r["eta_s"] > 0
        assert r["error"] == pytest.approx((r["eta_s"] - r["actual_s"]) / r["actual_s"])
    assert rows[0]["elapsed_s"] < rows[1]["elapsed_s"]
