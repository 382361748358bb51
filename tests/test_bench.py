"""The benchmark's machinery (not its speed: speed lives in docs/PERFORMANCE.md)."""

from __future__ import annotations

import json

import pytest
import torch

from rnnsweep.backend import resolve_backend
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
    # which time loop the packed figures are of
    assert row["cpu_loop"] == resolve_backend("cpu").describe()
    if _native.built_with_own_gemm():  # the stricter peak: the native loops' own GEMM
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


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--device", "gpu"], "cpu, cuda or cuda:N, got 'gpu'"),
        (["--device", "cuda", "--e2e"], "--memory, --e2e and --eta measure the CPU"),
        (["--device", "cuda:0", "--memory"], "--memory, --e2e and --eta measure the CPU"),
    ],
)
def test_bench_rejects_a_bad_device_in_one_line(cli, args, needle):
    r = cli("bench", *args)
    assert r.code == 2, r.err
    (line,) = [ln for ln in r.err.splitlines() if ln.strip()]
    assert line.startswith("Error: ") and needle in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_bench_on_cuda_without_one_says_so(cli):
    r = cli("bench", "--device", "cuda", "--quick")
    assert r.code == 2
    assert r.err.strip() == "Error: --device cuda requested but no CUDA device is visible"


def test_bench_times_the_fixed_buffer_step(monkeypatch):
    """RNNSWEEP_GRAPHS=1: the packed step runs through GraphedStep (a replayed graph on
    CUDA), warmed up outside the timing, and the row says the loop it timed."""
    from rnnsweep.train import _graphs

    monkeypatch.setenv("RNNSWEEP_GRAPHS", "1")
    calls = []
    real_call = _graphs.GraphedStep.__call__
    monkeypatch.setattr(
        _graphs.GraphedStep, "__call__", lambda self, b: (calls.append(1), real_call(self, b))[1]
    )
    (row,) = run_bench(
        [BenchCase("ugrnn", 1, 8, seq_len=5, batch_size=4)],
        pack_size=2,
        timed_steps=1,
        peak_seconds=0.05,
    )
    # warm-up and capture (4), the rounds' warm-up call and one timed round
    assert len(calls) == _graphs.WARMUP_STEPS + 1 + 2
    assert row.packed_trials_per_hour > 0 and row.device == "cpu"
    assert "graphs" in row.cpu_loop and resolve_backend("cpu").graphs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bench_on_cuda_compares_the_loops_in_one_run(cli):
    """`bench --device cuda --quick` (no --loop): one row per loop (torch ops; compiled steps
    with graph replay; Triton where it imports), each with launches per step and peak GPU
    memory, beside torch.nn (cuDNN) one trial at a time."""
    r = cli("bench", "--device", "cuda", "--quick", "--format", "json")
    assert r.code == 0, r.err
    rows = json.loads(r.out)
    loops = [row["cpu_loop"].split()[0] for row in rows]
    assert loops[:2] == ["torch", "compiled"]
    for row in rows:
        assert row["launches_per_step"] > 0 and row["peak_gpu_mb"] > 0
        assert row["torch_trials_per_hour"] > 0
