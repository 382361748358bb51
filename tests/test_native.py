"""The native C time loops (rnnsweep/kernels/native): build, cache, fallback, arithmetic.

Their equivalence with the per-step reference, cell by cell, is in test_kernels.py
(every test there runs with both loops). Here: the build on this machine, the cache
(keyed, reused, no temporary files left), the fallback when the build fails, and
the float32 exp polynomial behind sigmoid/tanh against float64 NumPy, including
saturated and non-finite pre-activations.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from rnnsweep.backend import resolve_backend
from rnnsweep.cells import InitConfig, ModelConfig, PackedRNN
from rnnsweep.kernels import _native, fused_forward, fused_layer_forward

# In CI the native loops must build (they are the default CPU path): a missing compiler
# fails these tests there instead of skipping them.
HAS_CC = (
    shutil.which("cc") is not None or shutil.which("gcc") is not None or bool(os.environ.get("CI"))
)


@pytest.fixture
def fresh_build(tmp_path, monkeypatch):
    """A private cache directory and a forgotten library; restored afterwards."""
    monkeypatch.setenv("RNNSWEEP_CACHE", str(tmp_path))
    _native._library.cache_clear()
    yield tmp_path
    _native._library.cache_clear()


@pytest.mark.skipif(not HAS_CC, reason="no C compiler on this machine")
def test_native_loops_build_here(monkeypatch):
    monkeypatch.delenv("RNNSWEEP_NATIVE", raising=False)
    monkeypatch.delenv("RNNSWEEP_LOOP", raising=False)
    assert _native.available(), _native.build_error()
    assert _native.supports(torch.zeros(1))
    assert not _native.supports(torch.zeros(1, dtype=torch.float16))
    assert resolve_backend("cpu").loop == "native"  # auto's choice on the CPU
    monkeypatch.setenv("RNNSWEEP_NATIVE", "0")
    assert resolve_backend("cpu").loop == "torch"


@pytest.mark.skipif(not HAS_CC, reason="no C compiler on this machine")
def test_build_is_cached_under_a_key(fresh_build):
    first = _native._build()
    assert first.parent == fresh_build / "native" and first.name.startswith("layers-")
    stamp = first.stat().st_mtime_ns
    assert _native._build() == first and first.stat().st_mtime_ns == stamp  # reused
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporaries left
    assert _native.available()


@pytest.mark.skipif(not HAS_CC, reason="no C compiler on this machine")
def test_a_new_build_prunes_the_oldest(fresh_build):
    """Builds of other source versions pile up in the cache: a new build keeps the newest
    eight, itself included, and removes the rest, oldest first."""
    import os

    cache = fresh_build / "native"
    cache.mkdir(parents=True)
    for i in range(10):  # stale builds, the i-th touched i minutes after the epoch
        old = cache / f"layers-stale{i:02d}.so"
        old.write_bytes(b"")
        os.utime(old, (60 * i, 60 * i))
    new = _native._build()
    left = {p.name for p in cache.iterdir()}
    assert left == {new.name} | {f"layers-stale{i:02d}.so" for i in range(3, 10)}


def test_failed_build_falls_back_to_torch_ops(fresh_build, monkeypatch):
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    assert not _native.available()
    assert "false failed" in _native.build_error()
    assert not _native.supports(torch.zeros(1))
    assert resolve_backend("cpu").loop == "torch"  # auto falls back
    assert not list((fresh_build / "native").glob("*"))  # nothing half-written
    cfg = ModelConfig("ugrnn", 3, 2, 5, 2)
    model = PackedRNN(cfg, [InitConfig(seed=k) for k in range(2)], dtype=torch.float64)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(fused_forward(model, x), model.forward(x), rtol=1e-12, atol=1e-12)


def _one_step(arch: str, x: torch.Tensor) -> torch.Tensor:
    """The first step of a layer with W^h = 0, s0 = 0, biases 0 and W^x = [I, I, ...]:
    every gate's pre-activation is x itself. ``x`` is ``(K, 1, B, H)``."""
    K, _, _, H = x.shape
    cfg = ModelConfig(arch, H, 1, H, 1)
    model = PackedRNN(cfg, [InitConfig(seed=k) for k in range(K)], dtype=x.dtype)
    p = {name: torch.zeros_like(t) for name, t in model.layer_params(0).items()}
    G = p["Wx"].shape[-1] // H
    p["Wx"] = torch.eye(H, dtype=x.dtype).repeat(1, G).expand(K, H, G * H).contiguous()
    with torch.no_grad():
        return fused_layer_forward(model.cell, p, x, "tanh")


@pytest.mark.skipif(not HAS_CC, reason="no C compiler on this machine")
@pytest.mark.parametrize("arch", ["rnn", "ugrnn"])
def test_float32_gates_against_numpy(arch, monkeypatch):
    """tanh (rnn: h = tanh(x)) and tanh/sigmoid together (ugrnn: h = tanh(x) (1 - sigma(x)))
    over [-100, 100], absolute error against float64 NumPy; then +-inf and NaN."""
    monkeypatch.setenv("RNNSWEEP_NATIVE", "1")
    grid = np.concatenate([np.linspace(-100, 100, 4001), np.linspace(-1e-3, 1e-3, 201)])
    x64 = grid.reshape(1, 1, -1, 1)  # (K=1, T=1, B, H=1): no zero weights to meet an inf
    h = _one_step(arch, torch.tensor(x64, dtype=torch.float32)).double().numpy()
    want = np.tanh(x64) if arch == "rnn" else np.tanh(x64) / (1 + np.exp(x64))
    assert np.abs(h - want).max() < 3e-7
    special = torch.tensor([np.inf, -np.inf, np.nan, 0.0], dtype=torch.float32)
    h = _one_step(arch, special.reshape(1, 1, 4, 1))[0, 0, :, 0]
    assert h[3] == 0 and torch.isnan(h[2])
    if arch == "rnn":
        assert h[0] == 1 and h[1] == -1
    else:  # tanh(inf) (1 - sigma(inf)) = 0; tanh(-inf) (1 - sigma(-inf)) = -1
        assert abs(h[0]) < 1e-30 and h[1] == -1


def test_python_struct_mirrors_the_c_layer():
    """``_Layer``'s fields are ``Layer``'s in native/layers.c, in order: a mismatch would
    hand the C code the wrong buffers."""
    import re

    src = (_native._SRC_DIR / "layers.c").read_text()
    body = re.search(r"typedef struct \{(.*?)\} Layer;", src, re.S).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    names = []
    for decl in filter(str.strip, body.split(";")):  # "int64_t K, T, B, H" / "void *A, *Hs"
        _, rest = decl.split(None, 1)
        names += [n.strip(" *\n") for n in rest.split(",")]
    assert names == [name for name, _ in _native._Layer._fields_]


needs_own_gemm = pytest.mark.skipif(
    not (_native.available() and _native.built_with_own_gemm()),
    reason="no AVX-512 GEMM built on this CPU (the BLAS path is tested everywhere)",
)


@needs_own_gemm
@pytest.mark.parametrize(
    "M, K, N",
    [(1, 1, 1), (8, 64, 32), (32, 64, 128), (13, 5, 17), (37, 300, 70), (64, 1600, 128), (9, 0, 5)],
)
@pytest.mark.parametrize("a_transposed", [False, True])
def test_own_gemm_against_float64(M, K, N, a_transposed, monkeypatch):
    """``_native.bmm`` (native/gemm.h) against a float64 product: full 8 x 32 tiles, row and
    column tails, sums longer than one pass (K > 256), an operand read transposed in
    place and one that is not unit-stride (copied), an empty sum."""
    monkeypatch.delenv("RNNSWEEP_NATIVE", raising=False)
    g = torch.Generator().manual_seed(M * 1000 + K * 10 + N)
    a = torch.randn(3, K, M, generator=g).transpose(1, 2) if a_transposed else None
    a = torch.randn(3, M, K, generator=g) if a is None else a
    b = torch.randn(3, N, K, generator=g).transpose(1, 2)  # (3, K, N), columns unit-stride
    got = _native.bmm(a, b, own=True)
    want = torch.bmm(a.double(), b.double())
    assert got.shape == (3, M, N) and got.dtype == torch.float32
    scale = want.abs().max().clamp_min(1.0)
    assert (got.double() - want).abs().max() / scale < 1e-5


@needs_own_gemm
def test_own_gemm_keeps_a_nan_in_its_member(monkeypatch):
    """A NaN in one member's operand reaches that member's products only (the row it is
    in), never another member's: the isolation the packs rely on."""
    monkeypatch.delenv("RNNSWEEP_NATIVE", raising=False)
    a, b = torch.randn(4, 40, 70), torch.randn(4, 70, 50)
    clean = _native.bmm(a, b, own=True)
    a[1, 17, 3] = float("nan")
    dirty = _native.bmm(a, b, own=True)
    assert torch.isnan(dirty[1, 17]).all()
    rows = torch.ones(40, dtype=torch.bool)
    rows[17] = False
    assert torch.equal(dirty[1, rows], clean[1, rows])
    assert torch.equal(dirty[[0, 2, 3]], clean[[0, 2, 3]])


@pytest.mark.skipif(not HAS_CC, reason="no C compiler on this machine")
@pytest.mark.parametrize("mode", ["1", "blas"])
@pytest.mark.parametrize(
    "arch, reset",
    [("rnn", "pre"), ("ugrnn", "pre"), ("gru", "pre"), ("gru", "post"), ("lstm", "pre")],
)
def test_native_backward_over_many_gradient_passes(arch, reset, mode, monkeypatch):
    """At sizes where the loop's products use full tiles and the weight gradients come in
    several passes of 256 rows (T B = 40 x 9 = 360 rows: F is a ring of 29 steps, the last
    pass a short one; hidden 40: column tails), the fused gradients equal the per-step
    reference's, float32, both product paths."""
    assert _native.grad_pass_steps(9) == 29
    monkeypatch.setenv("RNNSWEEP_NATIVE", mode)
    cfg = ModelConfig(arch, 7, 3, 40, 2, gru_reset=reset)  # type: ignore[arg-type]
    model = PackedRNN(cfg, [InitConfig(seed=k, init_scale=1.2) for k in range(2)])
    x = torch.randn(2, 40, 9, 7, generator=torch.Generator().manual_seed(1))
    w = torch.randn(2, 40, 9, 3, generator=torch.Generator().manual_seed(2))
    grads = []
    for forward in (model.forward, lambda x: fused_forward(model, x)):
        model.zero_grad(set_to_none=True)
        (forward(x) * w).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, want in grads[0].items():
        err = (grads[1][name] - want).abs().max() / want.abs().max()
        assert err < 1e-4, f"{name}: relative error {err:.2e}"


@pytest.mark.skipif(not HAS_CC, reason="no C compiler on this machine")
@pytest.mark.parametrize("mode", ["1", "blas"])
@pytest.mark.parametrize("arch", ["rnn", "ugrnn", "gru", "lstm", "minimalrnn", "plusrnn"])
def test_inference_forward_equals_the_training_forward(arch, mode, monkeypatch):
    """Without autograd (an evaluation), the native forward holds A as a ring of one
    projection pass (T = 20 steps at B = 32: a ring of 8, the last pass a short one of 4)
    and its outputs are the training forward's, bit for bit, every cell."""
    monkeypatch.setenv("RNNSWEEP_NATIVE", mode)
    cfg = ModelConfig(arch, 5, 3, 24, 2)
    model = PackedRNN(cfg, [InitConfig(seed=k, init_scale=1.3) for k in range(3)])
    x = torch.randn(3, 20, 32, 5, generator=torch.Generator().manual_seed(4))
    trained = fused_forward(model, x)
    assert trained.requires_grad
    with torch.no_grad():
        inferred = fused_forward(model, x)
    assert torch.equal(inferred, trained.detach())

    # and it did hold a ring: the A the C loop was handed, per layer call
    seen = []
    run = _native.run
    monkeypatch.setattr(
        _native,
        "run",
        lambda name, s, dims, t, **kw: (seen.append(t["A"].shape[1]), run(name, s, dims, t, **kw)),
    )
    with torch.no_grad():
        fused_forward(model, x)
    ring = arch != "minimalrnn"  # its input side is formed outside the loop (no ring)
    assert seen == [_native.grad_pass_steps(32) if ring else 20] * 2
