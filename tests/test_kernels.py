"""The fused kernels of rnnsweep.kernels against the per-step autograd reference.

1. every cell and nonlinearity, depth {1, 3}, pack size {1, 5}, float64 and float32:
   the output and the gradient of a scalar loss w.r.t. every parameter and the
   input equal ``PackedRNN.forward`` + autograd (relative error max|a-b| / max|b|),
   also with the backward's local derivatives formed in chunks of steps;
2. float64 ``gradcheck`` of one fused layer per cell, w.r.t. every layer tensor;
3. member isolation: a NaN in member 0 leaves the other members' outputs and
   gradients exactly as they are without it;
4. contracts: forward under ``no_grad``, a second backward with ``retain_graph``,
   double backward raising, gradients only where asked for, a cell without a
   kernel, CUDA against the CPU reference where a GPU is present.

1-3 and the contracts run three times on the CPU: with the native C time loops
(rnnsweep/kernels/native), with float32 products through their own AVX-512 GEMM
(where built) and through torch's BLAS (``RNNSWEEP_NATIVE=blas``), and with the
torch-op loop (``RNNSWEEP_NATIVE=0``); the ``loop`` fixture checks that the loop it
names is the one that ran.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable

import pytest
import torch
from cellcases import ALL_VARIANTS, randomise

from rnnsweep.backend import default_loop
from rnnsweep.cells import Cell, InitConfig, ModelConfig, PackedRNN, get_cell
from rnnsweep.kernels import _native, fused_forward, fused_layer_forward, kernel_for
from rnnsweep.kernels._base import SequenceKernel

N_IN, N_OUT, T, B, H = 3, 2, 6, 3, 6


TOLERANCES = {torch.float64: 1e-8, torch.float32: 1e-4}


def _variant_id(v: tuple[str, str, str]) -> str:
    arch, reset, s = v
    return f"{arch}-{reset}-{s}" if arch == "gru" else f"{arch}-{s}"


def _model(
    variant: tuple[str, str, str],
    depth: int,
    K: int,
    dtype: torch.dtype,
    *,
    hidden: int = H,
    n_in: int = N_IN,
    seed: int = 0,
) -> PackedRNN:
    """A pack with every parameter random (s0 included) and a different nonzero b_fg per member."""
    arch, reset, s = variant
    cfg = ModelConfig(arch, n_in, N_OUT, hidden, depth, nonlinearity=s, gru_reset=reset)  # type: ignore[arg-type]
    members = [InitConfig(b_fg=0.5 + 0.25 * k, seed=k) for k in range(K)]
    model = PackedRNN(cfg, members, dtype=dtype)
    randomise(model, seed)
    return model


def _depth(variant: tuple[str, str, str], depth: int) -> int:
    """``depth``, raised to the cell's minimum (the +RNN needs 2)."""
    return max(depth, get_cell(variant[0]).min_depth)


def _run(
    model: PackedRNN,
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    w: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Output and the gradients of ``sum(out * w)`` w.r.t. every parameter and ``x``."""
    model.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    out = forward(x)
    (out * w).sum().backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    grads["x"] = x.grad.detach().clone()
    return out.detach(), grads


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max|a - b| / max|b|`` (``max|a|`` when b is all zero)."""
    scale = b.abs().max().item()
    diff = (a - b).abs().max().item()
    return diff / scale if scale > 0 else diff


def _inputs(K: int, dtype: torch.dtype, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(K, T, B, N_IN, generator=gen, dtype=torch.float64).to(dtype)
    w = torch.randn(K, T, B, N_OUT, generator=gen, dtype=torch.float64).to(dtype)
    return x, w


@pytest.fixture(params=["native", "native-blas", "torch"])
def loop(request, monkeypatch):
    """Run the test with the native C time loops (float32 products through their own
    AVX-512 GEMM where built, or all through torch's BLAS) or the torch-op loop, and
    check which ran."""
    calls = []
    real_run = _native.run
    monkeypatch.setattr(_native, "run", lambda *a, **k: (calls.append(a[0]), real_run(*a, **k)))
    if request.param.startswith("native"):
        if not _native.available():
            message = f"native loops unavailable: {_native.build_error()}"
            if os.environ.get("CI"):  # the default CPU path must be tested in CI
                pytest.fail(message)
            pytest.skip(message)
        blas = request.param == "native-blas"
        monkeypatch.setenv("RNNSWEEP_NATIVE", "blas" if blas else "1")
        assert default_loop("cpu", torch.float32).name == ("blas" if blas else "native")
    else:
        monkeypatch.setenv("RNNSWEEP_NATIVE", "0")
    yield request.param
    if request.param.startswith("native"):
        assert calls, "the native loops never ran"
    else:
        assert not calls, f"the native loops ran with RNNSWEEP_NATIVE=0: {calls}"


# ---- 1. against the per-step reference --------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("K", [1, 5])
@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=_variant_id)
def test_fused_matches_reference(variant, depth, K, dtype, loop):
    model = _model(variant, _depth(variant, depth), K, dtype)
    x, w = _inputs(K, dtype)
    ref_out, ref_grads = _run(model, model.forward, x, w)
    out, grads = _run(model, lambda x: fused_forward(model, x), x, w)
    tol = TOLERANCES[dtype]
    assert out.shape == ref_out.shape == (K, T, B, N_OUT)
    assert _rel_err(out, ref_out) < tol
    assert grads.keys() == ref_grads.keys()
    errors = {name: _rel_err(grads[name], ref_grads[name]) for name in ref_grads}
    bad = {name: err for name, err in errors.items() if not err < tol}
    assert not bad, f"gradients off by more than {tol}: {bad}"


@pytest.mark.parametrize("chunk", [1, 4])
@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=_variant_id)
def test_chunked_backward_matches_reference(variant, chunk, monkeypatch):
    """Local derivatives formed a few steps at a time (as on the CPU at real sizes; the
    tiny sizes above fit one chunk): 1 step, and 4 steps of T = 6 (a ragged last chunk)."""
    monkeypatch.setattr(SequenceKernel, "chunk_steps", lambda self, r: chunk)
    monkeypatch.setenv("RNNSWEEP_NATIVE", "0")  # chunks are the torch-op loop's
    model = _model(variant, 2, 3, torch.float64)
    x, w = _inputs(3, torch.float64)
    _, ref_grads = _run(model, model.forward, x, w)
    _, grads = _run(model, lambda x: fused_forward(model, x), x, w)
    for name, g in grads.items():
        assert _rel_err(g, ref_grads[name]) < 1e-8, name


def test_fused_layer_matches_cell_layer_forward(loop):
    """The layer entry point itself, on a deeper layer of each cell (input width H)."""
    for variant in ALL_VARIANTS:
        model = _model(variant, 2, 3, torch.float64)
        p = model.layer_params(1)
        x = torch.randn(3, T, B, H, dtype=torch.float64)
        ref = model.cell.layer_forward(p, x, model.s)
        out = fused_layer_forward(model.cell, p, x, model.s)
        assert _rel_err(out, ref) < 1e-12, _variant_id(variant)


# ---- 2. gradcheck ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=_variant_id)
def test_gradcheck_fused_layer(variant, loop):
    """Layer 0 (the +RNN's with its input projection), every tensor including the b_fg buffer."""
    model = _model(variant, _depth(variant, 1), 2, torch.float64, hidden=3, n_in=2)
    p = {name: t.detach().clone() for name, t in model.layer_params(0).items()}
    names = sorted(p)
    x = torch.randn(2, 4, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def layer(x: torch.Tensor, *tensors: torch.Tensor) -> torch.Tensor:
        return fused_layer_forward(model.cell, dict(zip(names, tensors, strict=True)), x, model.s)

    inputs = (x.requires_grad_(True), *(p[n].requires_grad_(True) for n in names))
    assert torch.autograd.gradcheck(layer, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


# ---- 3. member isolation ----------------------------------------------------------------------


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=_variant_id)
def test_nan_in_one_member_stays_there(variant, loop):
    K = 3
    clean = _model(variant, 2, K, torch.float64)
    poisoned = copy.deepcopy(clean)
    with torch.no_grad():
        for p in poisoned.layers[0].values():
            p[0].fill_(float("nan"))
    x, w = _inputs(K, torch.float64)
    ref_out, ref_grads = _run(clean, lambda x: fused_forward(clean, x), x, w)
    out, grads = _run(poisoned, lambda x: fused_forward(poisoned, x), x, w)
    assert torch.isnan(out[0]).all(), "the poison did not reach member 0"
    assert torch.isfinite(out[1:]).all()
    torch.testing.assert_close(out[1:], ref_out[1:], rtol=1e-12, atol=0)
    for name, g in grads.items():
        assert torch.isfinite(g[1:]).all(), f"NaN leaked into other members' d{name}"
        torch.testing.assert_close(g[1:], ref_grads[name][1:], rtol=1e-12, atol=0, msg=name)


# ---- 4. contracts -----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=_variant_id)
def test_forward_under_no_grad(variant, loop):
    model = _model(variant, 2, 2, torch.float64)
    x, _ = _inputs(2, torch.float64)
    with torch.no_grad():
        out = fused_forward(model, x)
        ref = model.forward(x)
    assert not out.requires_grad
    assert _rel_err(out, ref) < 1e-12


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=_variant_id)
def test_second_backward_with_retain_graph(variant, loop):
    """Saved activations are never modified in place, so a retained graph can be reused."""
    model = _model(variant, 2, 2, torch.float64)
    x, w = _inputs(2, torch.float64)
    loss = (fused_forward(model, x) * w).sum()
    loss.backward(retain_graph=True)
    first = {name: p.grad.clone() for name, p in model.named_parameters()}
    loss.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, 2 * first[name], msg=name)


def test_double_backward_raises():
    model = _model(("ugrnn", "pre", "tanh"), 1, 2, torch.float64)
    x, w = _inputs(2, torch.float64)
    (g,) = torch.autograd.grad(
        (fused_forward(model, x) * w).sum(), [model.layers[0]["Wh"]], create_graph=True
    )
    with pytest.raises(RuntimeError, match="once_differentiable"):
        g.sum().backward()


def test_frozen_input_and_weights_get_no_gradient(loop):
    """Only the gradients autograd asks for are formed; the rest stay None."""
    model = _model(("gru", "post", "tanh"), 1, 2, torch.float64)
    p = dict(model.layer_params(0))
    p["Wx"] = p["Wx"].detach()
    x, _ = _inputs(2, torch.float64)  # no requires_grad
    fused_layer_forward(model.cell, p, x, model.s).sum().backward()
    assert model.layers[0]["Wx"].grad is None
    assert model.layers[0]["Wh"].grad is not None and model.layers[0]["b_hn"].grad is not None


def test_cell_without_kernel_is_rejected():
    class Custom(Cell):
        name = "custom"
        n_gates = 1

    with pytest.raises(ValueError, match="no fused kernel for cell 'Custom'"):
        kernel_for(Custom())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=_variant_id)
def test_cuda_matches_cpu_reference(variant):
    model = _model(variant, 2, 3, torch.float64)
    x, w = _inputs(3, torch.float64)
    ref_out, ref_grads = _run(model, model.forward, x, w)
    gpu = copy.deepcopy(model).to("cuda")
    out, grads = _run(gpu, lambda x: fused_forward(gpu, x), x.cuda(), w.cuda())
    assert _rel_err(out.cpu(), ref_out) < 1e-8
    for name, g in grads.items():
        assert _rel_err(g.cpu(), ref_grads[name]) < 1e-8, name
