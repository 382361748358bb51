"""The benchmark's machinery (not its speed: speed lives in docs/PERFORMANCE.md)."""

from __future__ import annotations

import json

from rnnsweep.bench import BenchCase, forward_flops, rows_as_dicts, run_bench
from rnnsweep.cells import ModelConfig
from rnnsweep.kernels import _native

JSON_KEYS = {
    "naive_trials_per_hour",
    "torch_trials_per_hour",
    "packed_trials_per_hour",
    "speedup_vs_naive",
    "speedup_vs_torch",
    "gflops",
    "peak_gflops",
    "pack_size",
}


def test_run_bench_rows_have_the_json_contract():
    rows = rows_as_dicts(
        run_bench(
            [BenchCase("gru", 1, 8, seq_len=5, batch_size=4)],
            pack_size=3,
            timed_steps=1,
            peak_seconds=0.05,
        )
    )
    (row,) = rows
    assert JSON_KEYS <= row.keys()
    assert row["pack_size"] == 3
    for k in (
        "naive_trials_per_hour",
        "torch_trials_per_hour",
        "packed_trials_per_hour",
        "gflops",
        "peak_gflops",
    ):
        assert row[k] > 0, k
    assert row["speedup_vs_naive"] == row["packed_trials_per_hour"] / row["naive_trials_per_hour"]
    assert row["cpu_loop"] == _native.status()  # which time loop the packed figures are of
    if _native.own_gemm():  # the stricter peak: the native loops' own GEMM
        assert row["native_gemm_gflops"] > 0
        assert row["fraction_of_native_gemm"] == row["gflops"] / row["native_gemm_gflops"]
    else:
        assert row["native_gemm_gflops"] is None and row["fraction_of_native_gemm"] is None
    json.dumps(rows)  # plain JSON values


def test_ugrnn_has_no_torch_baseline():
    (row,) = rows_as_dicts(
        run_bench(
            [BenchCase("ugrnn", 1, 8, seq_len=5, batch_size=4)],
            pack_size=2,
            timed_steps=1,
            peak_seconds=0.05,
        )
    )
    assert row["torch_trials_per_hour"] is None and row["speedup_vs_torch"] is None


def test_forward_flops_counts_every_product():
    """ugrnn, 1 layer: 2*T*B*(I*2H + H*2H) + readout 2*T*B*H*O, counted by hand."""
    cfg = ModelConfig("ugrnn", 3, 2, 4, 1)
    T, B = 5, 7
    expected = 2 * T * B * (3 * 8 + 4 * 8) + 2 * T * B * 4 * 2
    assert forward_flops(cfg, T, B) == expected


def test_end_to_end_times_whole_runs_per_pack_size():
    """Tiny whole studies through the real runner and SQLite: one row per pack size, every
    trial run and stored, the first size the unit of the speedups."""
    from rnnsweep.bench import end_to_end

    rows = end_to_end(pack_sizes=(1, 3), trials=3, steps=2)
    assert [r["pack_size"] for r in rows] == [1, 3]
    for r in rows:
        assert r["trials"] == 3 and r["wall_s"] > 0 and 0 < r["storage_fraction"] < 1
    assert rows[0]["speedup"] == 1.0
    assert rows[1]["speedup"] == rows[0]["wall_s"] / rows[1]["wall_s"]


def test_time_rounds_interleaves_the_steps():
    """Every step is timed once per round, after one warm-up call, in an order that
    rotates, so that a slow spell of the machine cannot land on one step alone."""
    from rnnsweep.bench import _time_rounds

    calls: list[str] = []
    steps = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    t = _time_rounds(steps, rounds=3)
    assert set(t) == {"a", "b", "c"} and all(v >= 0 for v in t.values())
    assert calls == ["a", "b", "c", "a", "b", "c", "b", "c", "a", "c", "a", "b"]
