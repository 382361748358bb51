"""Throughput benchmark: one trial at a time versus packed, fused training.

Three ways to train the same workload (task, cell, depth, width, sequence,
batch, 300 steps):

(a) ``naive``: one trial at a time, the per-step reference implementation;
(b) ``torch``: one trial at a time with torch.nn.GRU / LSTM / RNN (cells that
    have one; ugrnn, +RNN and minimalRNN have none);
(c) ``packed``: K trials at once with the fused kernels.

Each is timed over a few training steps after a warm-up, and a trial's time is
extrapolated to the workload's step count (evaluations excluded, for all
three alike). Achieved GFLOP/s counts matrix-product flops only (forward and
backward: 3x the forward products), and the sgemm peak is measured in the same
run with the same thread count, so the ratio compares like with like.

A backend on CUDA runs all three on a GPU (each timed step ends in a synchronisation,
the peak is a 4096^3 float32 product there). The packed figures are of the backend's
time loop (``--loop``) and graphs setting; the row's ``cpu_loop`` names the backend.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from rnnsweep.backend import Backend, resolve_backend
from rnnsweep.cells import InitConfig, ModelConfig, PackedRNN, get_cell
from rnnsweep.kernels import _native
from rnnsweep.kernels.heap import keep_freed_buffers
from rnnsweep.kernels.loops import get_loop
from rnnsweep.tasks import make_task
from rnnsweep.tasks.base import Batch
from rnnsweep.train import _graphs
from rnnsweep.train.optim import PackedOptimizer, clip_grad_norm_packed

if TYPE_CHECKING:
    from rnnsweep.study.worker import RunSummary

__all__ = [
    "BenchCase",
    "BenchRow",
    "PeerCase",
    "forward_flops",
    "measure_sgemm_gflops",
    "run_bench",
    "versus_peer",
]

TORCH_MODULES = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM, "rnn": torch.nn.RNN}


@dataclass(frozen=True)
class BenchCase:
    """One workload: parens by default, as in the project's reference workload."""

    arch: str = "ugrnn"
    depth: int = 2
    hidden: int = 64
    seq_len: int = 50
    batch_size: int = 32
    steps: int = 300  # steps per trial the trials-per-hour figure assumes


@dataclass
class BenchRow:
    arch: str
    depth: int
    hidden: int
    seq_len: int
    batch_size: int
    pack_size: int
    naive_ms_per_step: float
    torch_ms_per_step: float | None
    packed_ms_per_step: float  # per pack step (K trials)
    naive_trials_per_hour: float
    torch_trials_per_hour: float | None
    packed_trials_per_hour: float
    speedup_vs_naive: float
    speedup_vs_torch: float | None
    gflops: float  # packed, achieved
    peak_gflops: float  # measured sgemm (torch's BLAS) in the same run
    fraction_of_peak: float
    # the native loops' own AVX-512 GEMM on a 512^3 product in the same run (None where
    # not built): on AMD CPUs it outruns torch's MKL, so it is the stricter peak
    native_gemm_gflops: float | None
    fraction_of_native_gemm: float | None
    threads: int
    # which time loop the packed kernels ran: rnnsweep.kernels._native.status() on the
    # CPU; on CUDA the torch-op loop and which of its switches were on (loop_status)
    cpu_loop: str
    device: str = "cpu"
    # on CUDA: kernel launches per packed training step (torch.profiler's CUDA runtime
    # launch calls) and the packed step's peak GPU memory; None on the CPU
    launches_per_step: int | None = None
    peak_gpu_mb: float | None = None


def bench_suite(quick: bool) -> list[BenchCase]:
    """The benchmark's cases: the reference workload (ugrnn, depth 2, width 64), and unless
    ``quick`` the GRU and LSTM beside it and two deep, wide stacks."""
    cases = [BenchCase("ugrnn", 2, 64)]
    if not quick:
        cases += [
            BenchCase("gru", 2, 64),
            BenchCase("lstm", 2, 64),
            BenchCase("ugrnn", 8, 128),
            BenchCase("gru", 8, 128),
        ]
    return cases


def _synced(step: Callable[[], object], device: str) -> Callable[[], None]:
    """``step`` followed by a wait for the device (a no-op on the CPU), so a timer sees
    the work and not just its launch."""
    if torch.device(device).type != "cuda":
        return lambda: (step(), None)[1]
    return lambda: (step(), torch.cuda.synchronize(device))[1]


def forward_flops(cfg: ModelConfig, seq_len: int, batch: int) -> float:
    """Matrix-product flops of one member's forward pass (2 per multiply-add)."""
    cell = get_cell(cfg.arch, cfg.gru_reset)
    rows = seq_len * batch
    total = 0.0
    for layer in range(cfg.depth):
        for name, shape in cell.layer_shapes(cfg.n_in, cfg.hidden, layer).items():
            if name in ("Wx", "Wh", "Vu", "P"):
                total += 2.0 * rows * shape[0] * shape[1]
    return total + 2.0 * rows * cfg.hidden * cfg.n_out


def _gflops(product: Callable[[], object], flops: float, seconds: float) -> float:
    """Rate of ``product`` (``flops`` each call) over about ``seconds``, after a warm-up."""
    for _ in range(3):
        product()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        product()
        reps += 1
    return flops * reps / (time.perf_counter() - t0) / 1e9


def measure_sgemm_gflops(n: int = 1024, seconds: float = 1.0, device: str = "cpu") -> float:
    """float32 matrix-multiply rate of this machine (torch's BLAS), at torch's thread count;
    on CUDA of a 4096^3 product (cuBLAS; TF32 as torch's default leaves it: off)."""
    if torch.device(device).type == "cuda":
        n = max(n, 4096)
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return _gflops(_synced(lambda: a @ b, device), 2.0 * n**3, seconds)


def measure_native_gemm_gflops(n: int = 512, seconds: float = 1.0) -> float | None:
    """The native loops' own float32 GEMM (native/gemm.h) on an n^3 product, at torch's
    thread count; None where it is not built (no AVX-512, or the switch says otherwise)."""
    if not _native.built_with_own_gemm():
        return None
    a, b = torch.randn(1, n, n), torch.randn(1, n, n)
    return _gflops(lambda: _native.bmm(a, b, own=True), 2.0 * n**3, seconds)


def _time_rounds(steps: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Seconds per call of each step, median of ``rounds`` rounds after one warm-up call.

    Each round times every step once, in an order that rotates from round to round, so
    a slow minute of a shared machine falls on all of them alike and their ratios hold.
    """
    names = list(steps)
    for name in names:
        steps[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def _packed_step_fn(
    case: BenchCase, K: int, loop: str, device: str = "cpu", graphs: bool = False
) -> tuple[Callable[[], None], ModelConfig]:
    """One training step (forward, backward, clip, Adam) of a K-member pack with time loop
    ``loop``; with ``graphs``, on fixed buffers (on CUDA a replayed graph), as in training."""
    keep_freed_buffers()  # as train_pack does
    task = make_task("parens", {"seq_len": case.seq_len})
    cfg = ModelConfig(case.arch, task.n_in, task.n_out, case.hidden, case.depth)
    members = [InitConfig(init_scale=1.0, b_fg=1.0, seed=k) for k in range(K)]
    model = PackedRNN(cfg, members, device=device)
    params = list(model.parameters())
    opt = PackedOptimizer(params, "adam", torch.full((K,), 1e-3, device=device))
    clip = torch.full((K,), 1.0, device=device)
    active = torch.ones(K, dtype=torch.bool, device=device)
    gens = [torch.Generator().manual_seed(k) for k in range(K)]
    time_loop = get_loop(loop)

    def fwd(x: torch.Tensor) -> torch.Tensor:
        return time_loop.model_forward(model, x)

    def train(batch: Batch) -> tuple[torch.Tensor]:
        loss = task.loss(fwd(batch.x), batch)
        opt.zero_grad()
        loss.sum().backward()
        clip_grad_norm_packed(params, clip)
        opt.step(active)
        return (loss,)

    sample = lambda: task.sample_pack(gens, case.batch_size).to(device)  # noqa: E731
    run: Callable[[Batch], tuple[torch.Tensor]] = train
    if graphs:  # the naive baseline stays plain
        run = _graphs.GraphedStep(train, sample())
        for _ in range(_graphs.WARMUP_STEPS + 1):  # warm-up and capture stay out of the timing
            run(sample())
    return _synced(lambda: run(sample()), device), cfg


def _torch_step_fn(case: BenchCase, device: str = "cpu") -> Callable[[], None] | None:
    """One training step of torch.nn's own module for this cell (cuDNN on CUDA), or None."""
    module = TORCH_MODULES.get(case.arch)
    if module is None:
        return None
    task = make_task("parens", {"seq_len": case.seq_len})
    rnn = module(task.n_in, case.hidden, num_layers=case.depth).to(device)
    readout = torch.nn.Linear(case.hidden, task.n_out).to(device)
    params = list(rnn.parameters()) + list(readout.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        batch = task.sample(gen, case.batch_size).to(device)
        out, _ = rnn(batch.x)  # (T, B, H)
        logits = readout(out).unsqueeze(0)  # (1, T, B, O)
        one = Batch(batch.x.unsqueeze(0), batch.y.unsqueeze(0), batch.mask.unsqueeze(0))
        loss = task.loss(logits, one).sum()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    return _synced(step, device)


def cuda_launches(step: Callable[[], None]) -> int:
    """Kernel launches of one call of ``step`` on CUDA: the CUDA runtime's and driver's
    launch calls that torch.profiler records (cuDNN's, cuBLAS's, Triton's alike).
    Not measured on a GPU yet (no GPU was lent; docs/PERFORMANCE.md)."""
    step()
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    ) as prof:
        step()
    names = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx")
    return sum(1 for e in prof.events() or [] if e.name in names)


def cuda_peak_mb(step: Callable[[], None], device: str) -> float:
    """Peak GPU memory (MiB) allocated while ``step`` runs once."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def cuda_backends(device: str) -> list[Backend]:
    """What ``bench --device cuda`` compares, besides torch.nn (cuDNN) one trial at a time:
    the torch-op loop; the torch-op loop with compiled steps and graph replay; the Triton
    loop (where Triton imports)."""
    import dataclasses

    torch_ops = resolve_backend(device, "float32", "torch")
    compiled = dataclasses.replace(resolve_backend(device, "float32", "compiled"), graphs=True)
    out = [dataclasses.replace(torch_ops, graphs=False), compiled]
    if get_loop("triton").unavailable(torch.device(device), torch.float32) is None:
        out.append(resolve_backend(device, "float32", "triton"))
    return out


def run_bench(
    cases: Sequence[BenchCase],
    *,
    pack_size: int = 32,
    timed_steps: int = 5,
    peak_seconds: float = 1.0,
    on_case: Callable[[BenchRow], None] | None = None,
    backend: Backend | None = None,
) -> list[BenchRow]:
    """Time every case three ways on the backend's device (default: ``auto`` on the CPU):
    one row per case; the packed figures are of the backend's time loop."""
    backend = backend or resolve_backend("cpu")
    device = backend.device
    threads = torch.get_num_threads()
    peak = measure_sgemm_gflops(seconds=peak_seconds, device=device)
    on_cpu = torch.device(device).type == "cpu"
    native_peak = measure_native_gemm_gflops(seconds=peak_seconds) if on_cpu else None
    rows = []
    for case in cases:
        naive_step, cfg = _packed_step_fn(case, 1, "reference", device)
        packed_step, _ = _packed_step_fn(case, pack_size, backend.loop, device, backend.graphs)
        steps = {"naive": naive_step, "packed": packed_step}
        torch_step = _torch_step_fn(case, device)
        if torch_step is not None:
            steps["torch"] = torch_step
        t = _time_rounds(steps, timed_steps)
        t_naive, t_packed, t_torch = t["naive"], t["packed"], t.get("torch")

        def per_hour(seconds_per_step: float, trials: int = 1, steps: int = case.steps) -> float:
            return 3600.0 * trials / (seconds_per_step * steps)

        launches = peak_mb = None
        if torch.device(device).type == "cuda":
            launches = cuda_launches(packed_step)
            peak_mb = cuda_peak_mb(packed_step, device)
        flops = 3.0 * forward_flops(cfg, case.seq_len, case.batch_size) * pack_size
        gflops = flops / t_packed / 1e9
        packed_tph = per_hour(t_packed, pack_size)
        naive_tph = per_hour(t_naive)
        torch_tph = per_hour(t_torch) if t_torch is not None else None
        row = BenchRow(
            arch=case.arch,
            depth=case.depth,
            hidden=case.hidden,
            seq_len=case.seq_len,
            batch_size=case.batch_size,
            pack_size=pack_size,
            naive_ms_per_step=1e3 * t_naive,
            torch_ms_per_step=None if t_torch is None else 1e3 * t_torch,
            packed_ms_per_step=1e3 * t_packed,
            naive_trials_per_hour=naive_tph,
            torch_trials_per_hour=torch_tph,
            packed_trials_per_hour=packed_tph,
            speedup_vs_naive=packed_tph / naive_tph,
            speedup_vs_torch=None if torch_tph is None else packed_tph / torch_tph,
            gflops=gflops,
            peak_gflops=peak,
            fraction_of_peak=gflops / peak,
            native_gemm_gflops=native_peak,
            fraction_of_native_gemm=gflops / native_peak if native_peak else None,
            threads=threads,
            cpu_loop=backend.describe(),
            device=device,
            launches_per_step=launches,
            peak_gpu_mb=peak_mb,
        )
        rows.append(row)
        if on_case is not None:
            on_case(row)
    return rows


def rows_as_dicts(rows: Sequence[BenchRow]) -> list[dict]:
    out = []
    for r in rows:
        d = asdict(r)
        for k, v in d.items():
            if isinstance(v, float) and not math.isfinite(v):
                d[k] = None
        out.append(d)
    return out


def packed_step_seconds(
    case: BenchCase, K: int, timed_steps: int = 3, device: str = "cpu"
) -> float:
    """Seconds per training step of a K-member fused pack (``auto``'s loop; median after a
    warm-up)."""
    backend = resolve_backend(device)
    step, _ = _packed_step_fn(case, K, backend.loop, device, backend.graphs)
    return _time_rounds({"packed": step}, timed_steps)["packed"]


def scaling(base: BenchCase, *, timed_steps: int = 3, device: str = "cpu") -> list[dict]:
    """How a packed training step's time grows with K, depth, width and sequence length.

    One axis at a time from ``base`` (K = 32); ``ms_per_trial_step`` is the pack
    step divided by K, the cost that trials per hour is made of.
    """
    axes = {
        "K": [1, 8, 32, 64],
        "depth": [1, 2, 4, 8],
        "hidden": [32, 64, 128, 256],
        "seq_len": [25, 50, 100, 200],
    }
    rows = []
    for axis, values in axes.items():
        for v in values:
            K = v if axis == "K" else 32
            case = BenchCase(
                base.arch,
                v if axis == "depth" else base.depth,
                v if axis == "hidden" else base.hidden,
                v if axis == "seq_len" else base.seq_len,
                base.batch_size,
            )
            t = packed_step_seconds(case, K, timed_steps, device)
            task = make_task("parens", {"seq_len": case.seq_len})
            cfg = ModelConfig(case.arch, task.n_in, task.n_out, case.hidden, case.depth)
            flops = 3.0 * forward_flops(cfg, case.seq_len, case.batch_size) * K
            rows.append(
                {
                    "axis": axis,
                    "value": v,
                    "K": K,
                    "depth": case.depth,
                    "hidden": case.hidden,
                    "seq_len": case.seq_len,
                    "ms_per_pack_step": 1e3 * t,
                    "ms_per_trial_step": 1e3 * t / K,
                    "gflops": flops / t / 1e9,
                }
            )
    return rows


def peak_memory(case: BenchCase, K: int) -> dict:
    """Peak resident memory of one fused training step of a K-member pack.

    Runs in a fresh Python process and reads its high-water mark VmHWM from
    /proc (reset by exec, unlike ``ru_maxrss``, which a child inherits from its
    parent on Linux), before building the pack and after two training steps.
    """
    import json
    import subprocess
    import sys

    loop = resolve_backend("cpu").loop
    code = f"""
import json, torch
from rnnsweep.bench import BenchCase, _packed_step_fn
torch.set_num_threads(1)
import rnnsweep.kernels  # imports count towards the baseline
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
before = hwm()
step, cfg = _packed_step_fn(BenchCase(*{list(asdict(case).values())!r}), {K}, {loop!r})
step(); step()
after = hwm()
print(json.dumps({{"baseline_mb": before / 1024, "peak_mb": after / 1024}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res.update(
        arch=case.arch,
        depth=case.depth,
        hidden=case.hidden,
        seq_len=case.seq_len,
        batch_size=case.batch_size,
        K=K,
        step_mb=res["peak_mb"] - res["baseline_mb"],
    )
    return res


def end_to_end(
    pack_sizes: Sequence[int] = (1, 32), trials: int = 32, steps: int = 300, threads: int = 1
) -> list[dict]:
    """Wall time of a whole ``rnnsweep run`` (store included) of ``trials`` trials of the
    reference workload, once per pack size, each on a fresh temporary SQLite file.

    A two-step, one-trial run first pays the process's one-time costs (imports, the
    native build, first calls), which would otherwise land on the first size.
    """
    _e2e_run(1, trials=1, steps=2, threads=threads)  # warm-up, not timed
    rows = []
    for k in pack_sizes:
        wall, summary = _e2e_run(k, trials=trials, steps=steps, threads=threads)
        rows.append(
            {
                "pack_size": k,
                "trials": summary.trials_run,
                "wall_s": wall,
                "storage_s": summary.storage_time,
                "storage_ms_per_trial": 1e3 * summary.storage_time / summary.trials_run,
                "storage_fraction": summary.storage_time / wall,
            }
        )
    base = rows[0]["wall_s"]
    for r in rows:
        r["speedup"] = base / r["wall_s"]
    return rows


def _e2e_run(k: int, *, trials: int, steps: int, threads: int) -> tuple[float, RunSummary]:
    """One timed study of the reference workload with pack size k: (seconds, summary)."""
    import tempfile
    from pathlib import Path

    from rnnsweep.store import Store
    from rnnsweep.study import resolve, run_study, spec_from_dict

    with tempfile.TemporaryDirectory() as d:
        spec = spec_from_dict(
            {
                "name": f"e2e-k{k}",
                "task": "parens",
                "arch": "ugrnn",
                "depth": 2,
                "trials": trials,
                "seed": 0,
                "model": {"hidden": 64},
                "train": {"steps": steps, "batch_size": 32},
            }
        )
        store = Store(f"sqlite:///{Path(d) / 'e2e.db'}", create=True)
        t0 = time.perf_counter()
        summary = run_study(resolve(spec), store, pack_size=k, threads=threads)
        wall = time.perf_counter() - t0
        store.dispose()
    return wall, summary


def eta_rows(
    arch: str = "gru",
    *,
    trials: int = 96,
    steps: int = 100,
    threads: int = 1,
    pack_size: int = 32,
    hidden: int = 64,
) -> list[dict]:
    """How right the progress bar's ETA is: a study of ``trials`` trials in packs of
    ``pack_size`` (depth 2, parens of length 50) under the bar ``rnnsweep run`` draws (not
    drawn here), the ETA it shows at the end of each pack against the time the rest of
    the study then took. One row per pack but the last."""
    import tempfile

    from rnnsweep.progress import StudyBar
    from rnnsweep.store import Store
    from rnnsweep.study import resolve, run_study, spec_from_dict

    marks: list[tuple[float, float, float | None]] = []  # (time, trials done, ETA shown)

    class _Marked(StudyBar):
        def advance(self, done: int, feasible: int) -> None:
            super().advance(done, feasible)
            marks.append((time.perf_counter(), self.done, self.eta()))

    spec = spec_from_dict(
        {
            "name": "eta",
            "task": "parens",
            "task_options": {"seq_len": 50},
            "arch": arch,
            "depth": 2,
            "trials": trials,
            "seed": 0,
            "model": {"hidden": hidden},
            "train": {"steps": steps, "batch_size": 32},
        }
    )
    with tempfile.TemporaryDirectory() as d:
        store = Store(f"sqlite:///{Path(d) / 'eta.db'}", create=True)
        t0 = time.perf_counter()
        run_study(
            resolve(spec),
            store,
            pack_size=pack_size,
            threads=threads,
            progress=_Marked("eta", enabled=False),
        )
        end = time.perf_counter()
        store.dispose()
    rows = []
    for t, done, eta in marks[:-1]:
        left = end - t
        rows.append(
            {
                "arch": arch,
                "trials_done": int(done),
                "elapsed_s": t - t0,
                "eta_s": eta,
                "actual_s": left,
                "error": None if eta is None else (eta - left) / left,
            }
        )
    return rows


def launch_rows(
    loops: Sequence[str] = ("torch", "triton"), seq_lens: Sequence[int] = (50, 200)
) -> list[dict]:
    """Launches (aten ops plus Triton kernels) of one training step of gru, depth 2, width
    64, batch 32, a pack of one, per time loop and sequence length, counted on the CPU
    (:mod:`rnnsweep.kernels._launches`): the structural figure of a loop, measurable
    without a GPU. The Triton loop runs under its interpreter (``TRITON_INTERPRET=1``)."""
    from rnnsweep.kernels._launches import launches_per_step

    rows = []
    for name in loops:
        loop = get_loop(name)
        for T in seq_lens:
            n = launches_per_step(loop.layer_forward, T=T)
            rows.append(
                {"loop": name, "seq_len": T, "aten_ops": n.aten_ops, "triton": n.triton,
                 "launches": n.total}
            )  # fmt: skip
    return rows


# ---- whole runs against a user's own script (issue 17) -------------------------------------

PEER_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "peer_optuna_gru.py"
PEER_ARCHS = ("gru", "lstm", "rnn", "ugrnn")  # ugrnn: the peer runs torch.nn.GRU (it has none)


@dataclass(frozen=True)
class PeerCase:
    """One whole-run comparison: a study of ``trials`` random settings of one cell."""

    arch: str = "gru"
    depth: int = 2
    hidden: int = 64
    seq_len: int = 50
    batch_size: int = 32
    trials: int = 32
    steps: int = 300


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one command (a fresh process: its imports count, as for a user)."""
    import subprocess

    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=7200)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{' '.join(cmd[:4])}... exited {proc.returncode}: {tail}")
    return wall


def _rnnsweep_cmd(case: PeerCase, threads: int | None, db: Path, loop: str | None) -> list[str]:
    import sys

    toml = db.with_suffix(".toml")  # the sequence length has no flag: a study file says it
    toml.write_text(f'task = "parens"\n[task_options]\nseq_len = {case.seq_len}\n')
    cmd = [sys.executable, "-m", "rnnsweep", "run", str(toml), "--arch", case.arch]
    cmd += ["--depth", str(case.depth), "--hidden", str(case.hidden), "--trials", str(case.trials)]
    cmd += ["--steps", str(case.steps), "--batch-size", str(case.batch_size), "--seed", "0"]
    cmd += ["--storage", f"sqlite:///{db}", "--quiet", "--pack-size", "32"]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    if loop is not None:
        cmd += ["--loop", loop]
    return cmd


def _peer_cmd(case: PeerCase, threads: int, db: Path) -> list[str]:
    import sys

    cmd = [sys.executable, str(PEER_SCRIPT), "--arch", case.arch, "--depth", str(case.depth)]
    cmd += ["--hidden", str(case.hidden), "--seq-len", str(case.seq_len)]
    cmd += ["--batch-size", str(case.batch_size), "--trials", str(case.trials)]
    cmd += ["--steps", str(case.steps), "--threads", str(threads), "--storage", f"sqlite:///{db}"]
    return cmd


def versus_peer(
    cases: Sequence[PeerCase] = (PeerCase(),),
    threads: Sequence[int] = (1, 2),
    *,
    loop: str | None = None,
    on_row: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Whole-run trials per hour of ``rnnsweep run`` against the peer script a user would
    write (``benchmarks/peer_optuna_gru.py``: Optuna plus torch.nn, one trial at a time),
    the same study (cell, search space, steps, trials budget) for both, each a fresh
    process on a fresh SQLite file, at each thread count.

    The two run back to back, alternating which goes first from one thread count to the
    next, so that a slow minute of a shared machine falls on both alike. One row per case
    and thread count, with the ratio ``speedup`` (rnnsweep's trials per hour over the
    peer's). ``loop`` is the rnnsweep run's ``--loop`` (None: its default).
    """
    import os
    import tempfile

    if not PEER_SCRIPT.exists():
        raise FileNotFoundError(f"the peer script is not here: {PEER_SCRIPT} (a source checkout)")
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    rows = []
    for i, (case, n) in enumerate((c, n) for c in cases for n in threads):
        with tempfile.TemporaryDirectory() as d:
            cmds = {
                "rnnsweep": _rnnsweep_cmd(case, n, Path(d) / "rnnsweep.db", loop),
                "peer": _peer_cmd(case, n, Path(d) / "peer.db"),
            }
            order = ["peer", "rnnsweep"] if i % 2 == 0 else ["rnnsweep", "peer"]
            wall = {name: _timed(cmds[name], env) for name in order}
        tph = {name: 3600.0 * case.trials / w for name, w in wall.items()}
        peer_module = "GRU" if case.arch == "ugrnn" else case.arch.upper()
        row = {
            "arch": case.arch,
            "depth": case.depth,
            "hidden": case.hidden,
            "trials": case.trials,
            "steps": case.steps,
            "threads": n,
            "peer": f"optuna + torch.nn.{peer_module}",
            "rnnsweep_s": wall["rnnsweep"],
            "peer_s": wall["peer"],
            "rnnsweep_trials_per_hour": tph["rnnsweep"],
            "peer_trials_per_hour": tph["peer"],
            "speedup": tph["rnnsweep"] / tph["peer"],
            "first": order[0],
        }
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows
