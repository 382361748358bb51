"""The compiled torch-op time loop (``RNNSWEEP_COMPILE=1``, rnnsweep.kernels._compiled)
against the per-step autograd reference, on the CPU.

This is the pointwise fusion meant for CUDA: each step of every cell as one
``torch.compile`` graph. Here inductor emits C++ instead of Triton, but the graphs,
the whole-buffer reads and writes at a tensor step index and every cell's second,
pure statement of its step are the same, so these tests check them. Compiling takes
a few seconds per cell, direction and shape, hence one depth and pack size per cell.
"""

from __future__ import annotations

import pytest
import torch
from cellcases import ALL_VARIANTS
from test_kernels import TOLERANCES, _inputs, _model, _rel_err, _run, _variant_id
from torch._dynamo.utils import counters

from rnnsweep.kernels import _compiled, fused_forward, kernel_for
from rnnsweep.kernels._base import SequenceKernel


@pytest.fixture
def compiled(monkeypatch):
    """The torch-op loop with compiled steps; counts the compiled steps that ran."""
    monkeypatch.setenv("RNNSWEEP_NATIVE", "0")
    monkeypatch.setenv("RNNSWEEP_COMPILE", "1")
    calls: list[str] = []
    real = _compiled.step_fn

    def counting(kernel: SequenceKernel, direction: str):
        fn = real(kernel, direction)
        return lambda r, t: (calls.append(direction), fn(r, t))

    monkeypatch.setattr(_compiled, "step_fn", counting)
    return calls


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=_variant_id)
def test_compiled_steps_match_reference(variant, dtype, compiled):
    """Depth 2 (the input layer and a deeper one), a pack of 3, every gradient."""
    model = _model(variant, 2, 3, dtype)
    x, w = _inputs(3, dtype)
    ref_out, ref_grads = _run(model, model.forward, x, w)
    out, grads = _run(model, lambda x: fused_forward(model, x), x, w)
    T, depth = x.shape[1], 2
    assert compiled.count("fwd") == compiled.count("bwd") == T * depth, "compiled steps not run"
    assert not counters["graph_break"], (
        f"a compiled step broke its graph: {counters['graph_break']}"
    )
    tol = TOLERANCES[dtype]
    assert _rel_err(out, ref_out) < tol
    errors = {name: _rel_err(grads[name], ref_grads[name]) for name in ref_grads}
    bad = {name: err for name, err in errors.items() if not err < tol}
    assert not bad, f"gradients off by more than {tol}: {bad}"


def test_switch_is_off_by_default(monkeypatch):
    from rnnsweep.backend import resolve_backend

    for name in ("RNNSWEEP_COMPILE", "RNNSWEEP_LOOP", "RNNSWEEP_NATIVE"):
        monkeypatch.delenv(name, raising=False)
    assert not resolve_backend("cpu").compiled
    monkeypatch.setenv("RNNSWEEP_COMPILE", "1")
    backend = resolve_backend("cpu")
    assert backend.compiled and backend.loop == "compiled"


def test_every_kernel_has_compiled_steps():
    """A cell added without its compiled form would fall to NotImplementedError under the
    switch: each kernel overrides both methods."""
    from rnnsweep.cells import get_cell

    for arch, _, _ in ALL_VARIANTS:
        kernel = type(kernel_for(get_cell(arch)))
        assert kernel.step_t is not SequenceKernel.step_t, kernel.__name__
        assert kernel.back_step_t is not SequenceKernel.back_step_t, kernel.__name__


def test_step_indices_are_cached_per_device():
    a = _compiled.step_indices(5, torch.device("cpu"))
    assert a is _compiled.step_indices(5, "cpu")
    assert [int(t) for t in a] == [0, 1, 2, 3, 4]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=_variant_id)
def test_compiled_steps_on_cuda_match_cpu_reference(variant, compiled):
    """Where the fusion is meant to run (Triton kernels). Not run here: no GPU."""
    import copy

    model = _model(variant, 2, 3, torch.float64)
    x, w = _inputs(3, torch.float64)
    ref_out, ref_grads = _run(model, model.forward, x, w)
    gpu = copy.deepcopy(model).to("cuda")
    out, grads = _run(gpu, lambda x: fused_forward(gpu, x), x.cuda(), w.cuda())
    assert compiled, "compiled steps not run"
    assert _rel_err(out.cpu(), ref_out) < 1e-8
    for name, g in grads.items():
        assert _rel_err(g.cpu(), ref_grads[name]) < 1e-8, name


@pytest.mark.slow
def test_graphed_training_with_compiled_steps_equals_the_eager_loop(compiled, monkeypatch):
    """The configuration meant for CUDA (RNNSWEEP_GRAPHS=1 RNNSWEEP_COMPILE=1), as far as
    the CPU runs it: fixed-buffer steps whose time loops are compiled graphs, a diverging
    member included, against the eager torch-op loop that drops frozen members."""
    import math

    from test_packing import TASK, _close, _losses, _member

    from rnnsweep.cells import InitConfig, ModelConfig
    from rnnsweep.train import MemberSpec, TrainConfig, train_pack

    cfg = ModelConfig("gru", TASK.n_in, TASK.n_out, 12, 2)
    bomb = MemberSpec(lr=1e3, clip=math.inf, init=InitConfig(seed=99))
    members = [_member(0), bomb, _member(1), _member(2)]
    f64 = TrainConfig(steps=12, batch_size=8, eval_every=4, eval_size=16, dtype="float64")
    monkeypatch.setenv("RNNSWEEP_COMPILE", "0")
    eager = train_pack(TASK, cfg, "adam", members, f64)
    assert not compiled
    monkeypatch.setenv("RNNSWEEP_GRAPHS", "1")
    monkeypatch.setenv("RNNSWEEP_COMPILE", "1")
    fused = train_pack(TASK, cfg, "adam", members, f64)
    assert "fwd" in compiled and "bwd" in compiled, "compiled steps not run"
    assert eager[1].diverged
    for a, b in zip(eager, fused, strict=True):
        assert (a.diverged, a.diverged_at) == (b.diverged, b.diverged_at)
        _close(_losses(a), _losses(b), rel=1e-9)
