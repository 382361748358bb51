"""The Triton time loop (rnnsweep.kernels._triton) against the per-step autograd reference.

Runs the CUDA kernels' code on the CPU through Triton's interpreter
(``TRITON_INTERPRET=1``, set here before the kernels are imported; it stays set for
the rest of the process, which only Triton reads). Skips when triton is not
installed, unless ``CI`` is set: then it fails.

1. every cell and nonlinearity, depths 1 and 3 (+RNN: 2 and 3), K in {1, 5}, hidden
   20 (padded to 32) and 16, batch 5 (a part-filled tile), float32 and float64:
   output and every gradient of a whole stacked model (readout included) equal
   ``PackedRNN.forward`` + autograd within 1e-4 / 1e-8 relative; more batch tiles
   than one (B = 37, H = 57);
2. per-member nonlinearity codes: a mixed pack equals each member run alone with
   its own nonlinearity; uniform codes give the bits of the string form;
3. a diverging member (huge weights, inf/NaN) leaves the other members' outputs
   and gradients bit for bit as without it;
4. sizes over the on-chip budget fall back to the fused loop (also with codes);
   availability, precision switch and bad codes; no_grad, retain_graph, double backward;
5. launches per training step: constant in T for the Triton loop, growing for the
   torch-op loop;
6. compiled for real: every kernel through Triton's compiler and ptxas for sm_90 (no GPU
   needed); where a CUDA GPU is present, the kernels run on it (a child process without
   the interpreter) against the CPU reference, every cell, float32 and float64.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

# The interpreter, set before rnnsweep's Triton kernels are imported; except in the child
# process of test_cuda_kernels_compiled_for_the_gpu, which compiles them for a real GPU.
if os.environ.get("RNNSWEEP_TEST_TRITON_GPU") != "1":
    os.environ["TRITON_INTERPRET"] = "1"

if importlib.util.find_spec("triton") is None:  # pragma: no cover - depends on the install
    if os.environ.get("CI"):
        pytest.fail("triton is not installed: CI must run the Triton interpreter tests")
    pytest.skip("triton is not installed", allow_module_level=True)

import torch
from cellcases import ALL_VARIANTS, randomise
from test_kernels import _rel_err, _run

from rnnsweep.cells import InitConfig, ModelConfig, PackedRNN, get_cell
from rnnsweep.kernels import _triton
from rnnsweep.kernels._launches import launches_per_step
from rnnsweep.kernels._triton import (
    fits,
    launch_count,
    member_codes,
    triton_layer_forward,
    unavailable,
)
from rnnsweep.kernels.fused import fused_layer_forward

N_IN, N_OUT, T = 3, 2, 5
ON_GPU = os.environ.get("RNNSWEEP_TEST_TRITON_GPU") == "1"
TOLERANCES = {torch.float64: 1e-8, torch.float32: 1e-4}


def _variant_id(v: tuple[str, str, str]) -> str:
    arch, reset, s = v
    return f"{arch}-{reset}-{s}" if arch == "gru" else f"{arch}-{s}"


def _model(variant, depth, K, dtype, hidden, seed=0) -> PackedRNN:
    arch, reset, s = variant
    depth = max(depth, get_cell(arch).min_depth)
    cfg = ModelConfig(arch, N_IN, N_OUT, hidden, depth, nonlinearity=s, gru_reset=reset)  # type: ignore[arg-type]
    members = [InitConfig(b_fg=0.5 + 0.25 * k, seed=k) for k in range(K)]
    model = PackedRNN(cfg, members, dtype=dtype)
    randomise(model, seed)
    return model


def _inputs(K: int, B: int, dtype: torch.dtype, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(K, T, B, N_IN, generator=gen, dtype=torch.float64).to(dtype)
    w = torch.randn(K, T, B, N_OUT, generator=gen, dtype=torch.float64).to(dtype)
    return x, w


def _stack(model: PackedRNN, layer_forward, s):
    """``model.forward`` with ``layer_forward`` for every layer and nonlinearity ``s``."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        seq = x
        for layer in range(model.cfg.depth):
            seq = layer_forward(model.cell, model.layer_params(layer), seq, s)
        K, T_, B, H = seq.shape
        return (torch.bmm(seq.reshape(K, T_ * B, H), model.W_out) + model.b_out).view(K, T_, B, -1)

    return forward


def _reference(cell, p, x, s):
    return cell.layer_forward(p, x, s)


def _alone(model: PackedRNN, k: int, layer_forward, s, x, w):
    """Member k as a pack of one, run with ``layer_forward`` and nonlinearity ``s``."""
    alone = model.subset([k])
    return _run(alone, _stack(alone, layer_forward, s), x[k : k + 1], w[k : k + 1])


def _assert_close(got, ref, tol: float) -> None:
    out, grads = got
    ref_out, ref_grads = ref
    assert out.shape == ref_out.shape
    assert _rel_err(out, ref_out) < tol
    assert grads.keys() == ref_grads.keys()
    errors = {name: _rel_err(grads[name], ref_grads[name]) for name in ref_grads}
    bad = {name: err for name, err in errors.items() if not err < tol}
    assert not bad, f"gradients off by more than {tol}: {bad}"


# ---- 1. against the per-step reference ----------------------------------------------------------

# (depth, K, hidden, dtype): every pair of depth and K, each with both widths and dtypes
CASES = [
    (1, 1, 20, torch.float32),
    (1, 5, 16, torch.float64),
    pytest.param(3, 1, 16, torch.float32, marks=pytest.mark.slow),
    pytest.param(3, 5, 20, torch.float64, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("depth", "K", "hidden", "dtype"), CASES)
@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=_variant_id)
def test_triton_matches_reference(variant, depth, K, hidden, dtype):
    model = _model(variant, depth, K, dtype, hidden)
    x, w = _inputs(K, 5, dtype)
    before = launch_count()
    got = _run(model, _stack(model, triton_layer_forward, model.s), x, w)
    assert launch_count() - before == 2 * model.cfg.depth  # one per layer and direction
    _assert_close(got, _run(model, model.forward, x, w), TOLERANCES[dtype])


@pytest.mark.parametrize("variant", [("gru", "post", "tanh"), ("lstm", "pre", "relu")], ids=str)
def test_triton_several_batch_tiles(variant):
    """B = 37: two tiles of 32 (the second part-filled), dW^h summed over them; H = 57."""
    model = _model(variant, 1, 2, torch.float64, 57)
    x, w = _inputs(2, 37, torch.float64)
    got = _run(model, _stack(model, triton_layer_forward, model.s), x, w)
    _assert_close(got, _run(model, model.forward, x, w), TOLERANCES[torch.float64])


def test_contracts_no_grad_retain_graph_and_double_backward():
    """Forward under no_grad gives the same bits; a second backward (retain_graph) the same
    gradients (saved tensors are never modified); double backward raises."""
    model = _model(("lstm", "pre", "tanh"), 1, 2, torch.float64, 20)
    cell, p = model.cell, model.layer_params(0)
    x = _inputs(2, 5, torch.float64)[0].requires_grad_(True)
    out = triton_layer_forward(cell, p, x, "tanh")
    with torch.no_grad():
        assert torch.equal(triton_layer_forward(cell, p, x, "tanh"), out)
    loss = (out * out).sum()
    first = torch.autograd.grad(loss, [x, p["Wh"]], retain_graph=True)
    second = torch.autograd.grad(loss, [x, p["Wh"]], create_graph=False)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    out = triton_layer_forward(cell, p, x, "tanh")
    with pytest.raises(RuntimeError, match="no double backward"):
        torch.autograd.grad(out.sum(), [x], create_graph=True)


# ---- 2. per-member nonlinearity ---------------------------------------------------------------

MIXABLE = [v for v in ALL_VARIANTS if v[2] == "tanh" and len(get_cell(v[0]).nonlinearities) == 2]


@pytest.mark.parametrize("variant", MIXABLE, ids=_variant_id)
def test_mixed_nonlinearities_equal_each_member_alone(variant):
    codes = [0, 1, 1, 0]  # tanh, relu, relu, tanh
    K, dtype = len(codes), torch.float64
    model = _model(variant, 2, K, dtype, 20)
    x, w = _inputs(K, 5, dtype)
    out, grads = _run(model, _stack(model, triton_layer_forward, torch.tensor(codes)), x, w)
    for k, code in enumerate(codes):
        ref_out, ref_grads = _alone(model, k, _reference, ("tanh", "relu")[code], x, w)
        got = (out[k : k + 1], {n: g[k : k + 1] for n, g in grads.items()})
        _assert_close(got, (ref_out, ref_grads), TOLERANCES[dtype])


def test_uniform_codes_give_the_bits_of_the_name():
    model = _model(("ugrnn", "pre", "relu"), 1, 3, torch.float32, 20)
    x, w = _inputs(3, 5, torch.float32)
    named = _run(model, _stack(model, triton_layer_forward, "relu"), x, w)
    coded = _run(model, _stack(model, triton_layer_forward, torch.ones(3, dtype=torch.int32)), x, w)
    assert torch.equal(named[0], coded[0])
    assert all(torch.equal(named[1][n], coded[1][n]) for n in named[1])


# ---- 3. member isolation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [("rnn", "pre", "relu"), ("gru", "pre", "tanh"), ("lstm", "pre", "tanh"),
     ("plusrnn", "pre", "tanh")],
    ids=_variant_id,
)  # fmt: skip
def test_diverging_member_stays_isolated(variant):
    """Member 1's weights blown up (its output or gradients turn inf/NaN): members 0 and 2
    keep their bits."""
    K, dtype = 3, torch.float32
    model = _model(variant, 2, K, dtype, 20)
    x, w = _inputs(K, 5, dtype)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.rsplit(".", 1)[-1] in ("Wh", "Wx", "P"):
                p[1].mul_(1e38)  # products overflow float32
            if name.endswith("Wh"):
                p[1, 0, 0] = float("inf")  # gated cells saturate finitely without it
    out, grads = _run(model, _stack(model, triton_layer_forward, model.s), x, w)
    member1 = [out[1], *(g[1] for g in grads.values())]
    assert not all(torch.isfinite(t).all() for t in member1), "member 1 stayed finite"
    keep = [0, 2]
    rest = model.subset(keep)
    ref_out, ref_grads = _run(rest, _stack(rest, triton_layer_forward, rest.s), x[keep], w[keep])
    assert torch.equal(out[keep], ref_out)
    for name, g in ref_grads.items():
        assert torch.equal(grads[name][keep], g), name


# ---- 4. sizes, availability, switches ---------------------------------------------------------


def test_fits_budget():
    assert fits(64, 4, torch.float32) is None  # every cell at H = 64 in float32
    assert fits(20, 4, torch.float64) is None
    reason = fits(128, 3, torch.float32)
    assert reason is not None and "KiB" in reason
    assert fits(128, 1, torch.float32) is None
    assert fits(64, 3, torch.float64) is not None


@pytest.mark.parametrize("codes", [None, [1, 0]], ids=["name", "codes"])
def test_oversized_layer_falls_back_to_the_fused_loop(codes):
    variant = ("lstm", "pre", "tanh")
    model = _model(variant, 1, 2, torch.float64, 33)  # 64 x 256 float64: 128 KiB
    assert fits(33, 4, torch.float64) is not None
    x, w = _inputs(2, 3, torch.float64)
    s = model.s if codes is None else torch.tensor(codes)
    before = launch_count()
    got = _run(model, _stack(model, triton_layer_forward, s), x, w)
    assert launch_count() == before, "the Triton kernels ran a layer over the budget"
    if codes is None:
        ref = _run(model, model.forward, x, w)
    else:  # member 0 relu, member 1 tanh: the fused loop, one member at a time
        parts = [_alone(model, k, fused_layer_forward, ("tanh", "relu")[c], x, w)
                 for k, c in enumerate(codes)]  # fmt: skip
        ref = (torch.cat([p[0] for p in parts]),
               {n: torch.cat([p[1][n] for p in parts]) for n in parts[0][1]})  # fmt: skip
    _assert_close(got, ref, TOLERANCES[torch.float64])


def test_unavailable(monkeypatch):
    assert unavailable("cpu", torch.float32) is None
    assert unavailable("cpu", torch.float64) is None
    assert "float16" in unavailable("cpu", torch.float16)
    assert "meta" in unavailable("meta", torch.float32)
    monkeypatch.delenv("TRITON_INTERPRET")
    reason = unavailable("cpu", torch.float32)
    assert reason is not None and "TRITON_INTERPRET=1" in reason
    model = _model(("rnn", "pre", "tanh"), 1, 1, torch.float32, 16)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        triton_layer_forward(model.cell, model.layer_params(0), torch.zeros(1, 2, 3, N_IN), "tanh")


def test_tf32_switch(monkeypatch):
    monkeypatch.delenv("RNNSWEEP_TF32", raising=False)
    assert _triton._precision(torch.float32) == "ieee"
    monkeypatch.setenv("RNNSWEEP_TF32", "1")
    assert _triton._precision(torch.float32) == "tf32"
    assert _triton._precision(torch.float64) == "ieee"


def test_bad_codes():
    cell = get_cell("gru")
    with pytest.raises(ValueError, match="0 \\(tanh\\) or 1"):
        member_codes(cell, torch.tensor([0, 2]), 2, torch.device("cpu"))
    with pytest.raises(ValueError, match="\\(2,\\) integer"):
        member_codes(cell, torch.tensor([0, 1, 0]), 2, torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown nonlinearity"):
        member_codes(cell, "sigmoid", 2, torch.device("cpu"))
    fixed = member_codes(get_cell("plusrnn"), "relu+tanh", 2, torch.device("cpu"))
    assert fixed.tolist() == [0, 0]


# ---- 5. launches per training step ------------------------------------------------------------


@pytest.mark.slow
def test_launches_constant_in_T_for_triton_growing_for_torch_ops(monkeypatch):
    monkeypatch.setenv("RNNSWEEP_NATIVE", "0")  # fused_layer_forward: the torch-op loop
    small = {"arch": "gru", "depth": 1, "hidden": 16, "B": 4}
    tri = [launches_per_step(triton_layer_forward, T=t, **small) for t in (50, 200)]
    ops = [launches_per_step(fused_layer_forward, T=t, **small) for t in (50, 200)]
    assert tri[0] == tri[1]
    assert tri[0].triton == 2  # one launch per layer and direction
    assert ops[0].triton == ops[1].triton == 0
    assert ops[1].aten_ops > ops[0].aten_ops + 150 * 10  # at least 10 ops per added step
    assert tri[0].total < ops[0].total / 10


# ---- the Triton loop as a registered time loop, through training and `run` ------------------


def test_training_isolates_a_diverging_member_in_the_triton_loop():
    """train_pack with the Triton loop: a member that diverges (lr 1e3) leaves every other
    member's curve bit for bit as in a pack without it."""
    import math

    from test_packing import TASK, _losses, _member

    from rnnsweep.backend import resolve_backend
    from rnnsweep.train import MemberSpec, TrainConfig, train_pack

    cfg = ModelConfig("ugrnn", TASK.n_in, TASK.n_out, 12, 1)
    small = TrainConfig(steps=6, batch_size=4, eval_every=3, eval_size=8)
    backend = resolve_backend("cpu", "float32", "triton")
    assert backend.loop == "triton" and backend.products == "triton-interpreter"
    others = [_member(k) for k in range(3)]
    bomb = MemberSpec(lr=1e3, clip=math.inf, init=InitConfig(init_scale=1.0, seed=99))
    with_bomb = train_pack(TASK, cfg, "sgd", [others[0], bomb, *others[1:]], small, backend=backend)
    without = train_pack(TASK, cfg, "sgd", others, small, backend=backend)
    assert with_bomb[1].diverged
    for a, b in zip([with_bomb[0], *with_bomb[2:]], without, strict=True):
        assert _losses(a) == _losses(b)


@pytest.mark.slow
def test_run_with_the_triton_loop_equals_the_native_loop(cli, tmp_path):
    """`rnnsweep run --loop triton` (the interpreter) and `--loop native` on the same small
    two-cell study: the same trials, per-trial losses within 1e-4 relative, and each row
    names its loop. Learning rates stay moderate: at lr near 1 a trial's loss is chaotic in
    the rounding of its first steps (seen: 13.27 against 13.60 after 4 steps)."""
    import math

    from rnnsweep.store import Store

    args = ["run", "--arch", "gru,ugrnn", "--depth", "1", "--trials", "3", "--steps", "4",
            "--batch-size", "4", "--hidden", "8", "--nonlinearity", "tanh", "--task", "parens",
            "--lr", "1e-3:1e-2", "--init-scale", "0.5:1.5", "-q", "--study", "tri"]  # fmt: skip
    frames = {}
    for loop in ("native", "triton"):
        url = f"sqlite:///{tmp_path / (loop + '.db')}"
        r = cli(*args, "--loop", loop, "--storage", url)
        assert r.code == 0, r.err
        store = Store(url, create=False)
        frames[loop] = store.trials_frame("tri").sort_values(["arch", "seed"]).reset_index()
        store.dispose()
    nat, tri = frames["native"], frames["triton"]
    assert set(tri["loop"]) == {"triton"} and set(nat["loop"]) == {"native"}
    assert list(nat["seed"]) == list(tri["seed"]) and list(nat["lr"]) == list(tri["lr"])
    for col in ("initial_loss", "final_loss", "best_loss", "metric"):
        for a, b in zip(nat[col], tri[col], strict=True):
            if a is None or (isinstance(a, float) and math.isnan(a)):
                assert b is None or math.isnan(b)
            else:
                assert b == pytest.approx(a, rel=1e-4), col


# ---- 6. compiled for a real GPU ---------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


@needs_cuda
@pytest.mark.slow
def test_cuda_kernels_compiled_for_the_gpu():
    """Runs the ``gpu``-marked tests below in a child process without TRITON_INTERPRET."""
    env = {**os.environ, "RNNSWEEP_TEST_TRITON_GPU": "1"}
    env.pop("TRITON_INTERPRET", None)
    root = Path(__file__).resolve().parent.parent
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__]
    result = subprocess.run([*args, "-k", "on_gpu"], cwd=root, env=env, capture_output=True,
                            text=True, timeout=1200)  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]


@pytest.mark.slow
def test_kernels_compile_for_sm90_without_a_gpu(tmp_path):
    """Every cell's two kernels through Triton's real compiler (frontend, LLVM, ptxas) for
    an H100/H200, float32 at H = 64, in a child process without the interpreter: the
    interpreter runs the kernels as Python and misses what only compiling finds (two such
    bugs were found this way: a non-constexpr global, an LLVM crash on the LSTM backward)."""
    # a fresh cache: compiler flags (the SLP workaround) are not part of Triton's cache key
    env = {**os.environ, "TRITON_DEFAULT_FP_FUSION": "1", "TRITON_CACHE_DIR": str(tmp_path)}
    env.pop("TRITON_INTERPRET", None)
    code = (
        "from rnnsweep.kernels._triton import compile_report\n"
        "for name, use in compile_report(90, 64).items(): print(name, use)\n"
    )
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                            capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 14 and all("REG:" in line for line in lines), result.stdout


@pytest.mark.skipif(not ON_GPU, reason="run by test_cuda_kernels_compiled_for_the_gpu")
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=_variant_id)
def test_on_gpu_matches_cpu_reference(variant, dtype):
    """Depth 2, K = 3, H = 20, B = 37 (two batch tiles), on CUDA against the CPU reference."""
    assert unavailable("cuda", dtype) is None
    model = _model(variant, 2, 3, dtype, 20)
    x, w = _inputs(3, 37, dtype)
    ref = _run(model, model.forward, x, w)
    gpu = model.to("cuda")
    out, grads = _run(gpu, _stack(gpu, triton_layer_forward, gpu.s), x.cuda(), w.cuda())
    got = (out.cpu(), {n: g.cpu() for n, g in grads.items()})
    _assert_close(got, ref, TOLERANCES[dtype])


@pytest.mark.parametrize("arch", ["rnn", "gru", "lstm", "irnn"])
def test_fallback_runs_mixed_codes_as_their_uniform_packs(arch):
    """Sizes the Triton loop refuses go to the torch-op loop one nonlinearity group at a
    time: each member's output and gradients are those of a pack of its own nonlinearity,
    bit for bit (a cell of one fixed nonlinearity ignores the codes). Handing the torch-op
    loop the mixed codes instead fails this: its weight gradients moved by one ulp."""
    from rnnsweep.kernels.loops import get_loop

    names = ["tanh", "relu", "relu", "tanh"]
    cfg = ModelConfig(arch, N_IN, N_OUT, 6, 1)
    model = PackedRNN(cfg, [InitConfig(seed=k) for k in range(4)], nonlinearities=names)
    x = torch.randn(4, T, 3, N_IN, generator=torch.Generator().manual_seed(5))
    p = {n: t.detach().clone().requires_grad_() for n, t in model.layer_params(0).items()}
    s = model.s if isinstance(model.s, torch.Tensor) else torch.tensor([0, 1, 1, 0])
    out = _triton._fallback(model.cell, p, x, s)
    out.square().sum().backward()
    for name in ("tanh", "relu"):
        idx = [k for k, n in enumerate(names) if n == name]
        sub = {n: t.detach()[idx].requires_grad_() for n, t in p.items()}
        s_k = name if len(model.cell.nonlinearities) > 1 else model.cell.nonlinearities[0]
        want = fused_layer_forward(model.cell, sub, x[idx], s_k, loop=get_loop("torch"))
        want.square().sum().backward()
        assert torch.equal(out[idx].detach(), want.detach())
        for n, t in sub.items():
            if t.grad is not None:
                assert torch.equal(p[n].grad[idx], t.grad), n
