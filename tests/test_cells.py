"""The cells of SCIENCE.md section 2 against independent references.

1. torch.nn.GRU / LSTM / RNN with copied weights (the GRU in its own "post" convention);
2. a step-by-step NumPy transcription of the equations, one explicit matrix per gate;
3. float64 gradcheck of the whole stack w.r.t. every parameter;
4. the equal-parameter rule against a brute-force scan over instantiated models;
5. pack independence: member k of a pack equals the same member alone;
6. initialisation and naming contracts.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from cellcases import ALL_VARIANTS, randomise
from torch import nn

from rnnsweep.cells import (
    InitConfig,
    ModelConfig,
    PackedRNN,
    canonical_arch,
    count_params,
    hidden_for_budget,
)

N_IN, T, B = 3, 6, 4


def _variant_id(v: tuple[str, str, str]) -> str:
    arch, reset, s = v
    return f"{arch}-{reset}-{s}" if arch == "gru" else f"{arch}-{s}"


def _identity_readout(model: PackedRNN) -> None:
    """``W_out = I``, ``b_out = 0``: the model's output is the top layer's sequence."""
    with torch.no_grad():
        model.W_out.copy_(torch.eye(model.cfg.hidden).expand_as(model.W_out))
        model.b_out.zero_()


# ---- 1. against torch.nn ---------------------------------------------------------------------

# Our block j is torch's gate block PERM[j]. torch: GRU (r, z, n), LSTM (i, f, g, o).
# Ours: gru [r, u, c], lstm [i, f, o, c_in], rnn [h].
_TORCH_PERM = {"gru": (0, 1, 2), "lstm": (0, 1, 3, 2), "rnn": (0,)}


def _reorder(w: torch.Tensor, perm: tuple[int, ...], H: int) -> torch.Tensor:
    """Reorder the H-row gate blocks of a torch weight/bias (first axis G*H)."""
    return torch.cat([w[j * H : (j + 1) * H] for j in perm], dim=0)


def _torch_module(arch: str, s: str, H: int, depth: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    if arch == "gru":
        return nn.GRU(N_IN, H, num_layers=depth)
    if arch == "lstm":
        return nn.LSTM(N_IN, H, num_layers=depth)
    return nn.RNN(N_IN, H, num_layers=depth, nonlinearity=s)


def _copy_from_torch(model: PackedRNN, k: int, mod: nn.Module, arch: str, s0: torch.Tensor):
    """Member k of ``model`` := ``mod``; ``s0`` ``(depth, S*H)`` the initial states."""
    H = mod.hidden_size
    perm = _TORCH_PERM[arch]
    with torch.no_grad():
        for layer in range(mod.num_layers):
            w_ih = getattr(mod, f"weight_ih_l{layer}")  # (G*H, I)
            w_hh = getattr(mod, f"weight_hh_l{layer}")  # (G*H, H)
            b_ih = getattr(mod, f"bias_ih_l{layer}")
            b_hh = getattr(mod, f"bias_hh_l{layer}")
            p = model.layers[layer]
            p["Wx"][k] = _reorder(w_ih, perm, H).T
            p["Wh"][k] = _reorder(w_hh, perm, H).T
            if arch == "gru":
                # r, u: the two biases add; candidate: b_c = b_in, b_hn = b_hh_n (inside r *).
                p["b"][k, 0] = torch.cat([b_ih[: 2 * H] + b_hh[: 2 * H], b_ih[2 * H :]])
                p["b_hn"][k, 0] = b_hh[2 * H :]
            else:
                p["b"][k, 0] = _reorder(b_ih + b_hh, perm, H)
            p["s0"][k, 0] = s0[layer]


@pytest.mark.parametrize(
    "dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)], ids=["f32", "f64"]
)
@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize(
    "arch, s", [("gru", "tanh"), ("lstm", "tanh"), ("rnn", "tanh"), ("rnn", "relu")]
)
def test_matches_torch_nn(arch, s, depth, K, dtype, tol):
    H = 5
    S = 2 if arch == "lstm" else 1
    cfg = ModelConfig(arch, N_IN, H, H, depth, nonlinearity=s, gru_reset="post")
    model = PackedRNN(cfg, [InitConfig(seed=k) for k in range(K)], dtype=dtype)
    _identity_readout(model)
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(K, T, B, N_IN, generator=gen, dtype=torch.float64)
    expected = []
    for k in range(K):
        mod = _torch_module(arch, s, H, depth, seed=100 + k).to(torch.float64)
        # Torch starts from a given state; ours is the learned s0, the same for the whole batch.
        s0 = 0.5 * torch.randn(depth, S * H, generator=gen, dtype=torch.float64)
        _copy_from_torch(model, k, mod, arch, s0)
        h0 = s0[:, None, :].expand(depth, B, S * H)  # (depth, B, S*H)
        state = tuple(t.to(dtype).contiguous() for t in h0.chunk(S, dim=-1))  # (h0,) or (h0, c0)
        with torch.no_grad():
            out, _ = mod.to(dtype)(x[k].to(dtype), state[0] if S == 1 else state)
        expected.append(out)  # (T, B, H): the top layer's h sequence
    with torch.no_grad():
        got = model(x.to(dtype))  # (K, T, B, H)
    torch.testing.assert_close(got, torch.stack(expected), atol=tol, rtol=0)


# ---- 2. against a NumPy transcription of SCIENCE.md section 2 --------------------------------


def _sigma(a):
    return 1.0 / (1.0 + np.exp(-a))


def _s(name):
    return np.tanh if name == "tanh" else (lambda a: np.maximum(a, 0.0))


def _gates(w, n):
    """Split the last axis into n equal per-gate blocks (the documented block order)."""
    return np.split(w, n, axis=-1)


def _np_rnn(p, x, s, b_fg):
    """C 1: h_t = s(W^h h_{t-1} + W^x x_t + b^h) (IRNN: the same with s = ReLU)."""
    act = _s(s)
    W_x, W_h, b_h = p["Wx"], p["Wh"], p["b"][0]
    h = np.tile(p["s0"][0], (x.shape[1], 1))
    out = []
    for t in range(x.shape[0]):
        h = act(h @ W_h + x[t] @ W_x + b_h)
        out.append(h)
    return np.stack(out)


def _np_ugrnn(p, x, s, b_fg):
    """C 2-4: c = s(.), g = sigma(. + b_fg), h = g h + (1 - g) c. Blocks [c, g]."""
    act = _s(s)
    W_cx, W_gx = _gates(p["Wx"], 2)
    W_ch, W_gh = _gates(p["Wh"], 2)
    b_c, b_g = _gates(p["b"][0], 2)
    h = np.tile(p["s0"][0], (x.shape[1], 1))
    out = []
    for t in range(x.shape[0]):
        c = act(h @ W_ch + x[t] @ W_cx + b_c)
        g = _sigma(h @ W_gh + x[t] @ W_gx + b_g + b_fg)
        h = g * h + (1 - g) * c
        out.append(h)
    return np.stack(out)


def _np_gru(p, x, s, b_fg, reset):
    """C 5-8: r = sigma(.), u = sigma(. + b_fg), c = s(W^ch (r h) + W^cx x + b^c),
    h = u h + (1 - u) c. "post" (torch): c = s(W^cx x + b^c + r (W^ch h + b^hn)).
    Blocks [r, u, c]."""
    act = _s(s)
    W_rx, W_ux, W_cx = _gates(p["Wx"], 3)
    W_rh, W_uh, W_ch = _gates(p["Wh"], 3)
    b_r, b_u, b_c = _gates(p["b"][0], 3)
    h = np.tile(p["s0"][0], (x.shape[1], 1))
    out = []
    for t in range(x.shape[0]):
        r = _sigma(h @ W_rh + x[t] @ W_rx + b_r)
        u = _sigma(h @ W_uh + x[t] @ W_ux + b_u + b_fg)
        if reset == "pre":
            c = act((r * h) @ W_ch + x[t] @ W_cx + b_c)
        else:
            c = act(x[t] @ W_cx + b_c + r * (h @ W_ch + p["b_hn"][0]))
        h = u * h + (1 - u) * c
        out.append(h)
    return np.stack(out)


def _np_lstm(p, x, s, b_fg):
    """C 9-14: i, f (+ b_fg), o = sigma(.), c_in = s(.), c = f c + i c_in, h = o tanh(c).
    Blocks [i, f, o, c_in]; s0 = [h0, c0]."""
    act = _s(s)
    W_ix, W_fx, W_ox, W_cx = _gates(p["Wx"], 4)
    W_ih, W_fh, W_oh, W_ch = _gates(p["Wh"], 4)
    b_i, b_f, b_o, b_c = _gates(p["b"][0], 4)
    h0, c0 = _gates(p["s0"][0], 2)
    h = np.tile(h0, (x.shape[1], 1))
    c = np.tile(c0, (x.shape[1], 1))
    out = []
    for t in range(x.shape[0]):
        i = _sigma(h @ W_ih + x[t] @ W_ix + b_i)
        f = _sigma(h @ W_fh + x[t] @ W_fx + b_f + b_fg)
        o = _sigma(h @ W_oh + x[t] @ W_ox + b_o)
        c_in = act(h @ W_ch + x[t] @ W_cx + b_c)
        c = f * c + i * c_in
        h = o * np.tanh(c)
        out.append(h)
    return np.stack(out)


def _np_plusrnn(p, x, s, b_fg):
    """C 15-20: y_in = relu(.), h_in = tanh(.), g_y, g_h = sigma(. + b_fg),
    y = g_y x + (1 - g_y) y_in, h = g_h h + (1 - g_h) h_in; the layer outputs y.
    Blocks [y_in, h_in, g_y, g_h]; layer 0 first projects x -> x P + Pb."""
    if "P" in p:
        x = x @ p["P"] + p["Pb"][0]
    W_yx, W_hx, W_gyx, W_ghx = _gates(p["Wx"], 4)
    W_yh, W_hh, W_gyh, W_ghh = _gates(p["Wh"], 4)
    b_y, b_h, b_gy, b_gh = _gates(p["b"][0], 4)
    h = np.tile(p["s0"][0], (x.shape[1], 1))
    out = []
    for t in range(x.shape[0]):
        y_in = np.maximum(h @ W_yh + x[t] @ W_yx + b_y, 0.0)
        h_in = np.tanh(h @ W_hh + x[t] @ W_hx + b_h)
        g_y = _sigma(h @ W_gyh + x[t] @ W_gyx + b_gy + b_fg)
        g_h = _sigma(h @ W_ghh + x[t] @ W_ghx + b_gh + b_fg)
        y = g_y * x[t] + (1 - g_y) * y_in
        h = g_h * h + (1 - g_h) * h_in
        out.append(y)
    return np.stack(out)


def _np_minimalrnn(p, x, s, b_fg):
    """Chen: z = tanh(W^z x + b^z), u = sigma(W^u h + V^u z + b^u + b_fg), h = u h + (1-u) z."""
    W_z, b_z, V_u, W_u, b_u = p["Wx"], p["bz"][0], p["Vu"], p["Wh"], p["b"][0]
    h = np.tile(p["s0"][0], (x.shape[1], 1))
    out = []
    for t in range(x.shape[0]):
        z = np.tanh(x[t] @ W_z + b_z)
        u = _sigma(h @ W_u + z @ V_u + b_u + b_fg)
        h = u * h + (1 - u) * z
        out.append(h)
    return np.stack(out)


def _np_layer(arch, reset):
    if arch == "gru":
        return lambda p, x, s, b_fg: _np_gru(p, x, s, b_fg, reset)
    return {
        "rnn": _np_rnn,
        "irnn": _np_rnn,
        "ugrnn": _np_ugrnn,
        "lstm": _np_lstm,
        "plusrnn": _np_plusrnn,
        "minimalrnn": _np_minimalrnn,
    }[arch]


def _np_model(model: PackedRNN, members, x: np.ndarray, arch, reset, s) -> np.ndarray:
    """``x`` ``(K, T, B, I)`` -> ``(K, T, B, O)``, member by member, layer by layer."""
    layer_fn = _np_layer(arch, reset)
    outs = []
    for k, m in enumerate(members):
        seq = x[k]  # (T, B, I)
        for layer in range(model.cfg.depth):
            p = {n: t[k].detach().numpy() for n, t in model.layers[layer].items()}
            seq = layer_fn(p, seq, s, m.b_fg)  # (T, B, H)
        w_out = model.W_out[k].detach().numpy()
        b_out = model.b_out[k, 0].detach().numpy()
        outs.append(seq @ w_out + b_out)
    return np.stack(outs)


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=_variant_id)
def test_matches_numpy_transcription(variant):
    arch, reset, s = variant
    members = [
        InitConfig(init_scale=1.0, b_fg=1.3, seed=1),
        InitConfig(init_scale=0.8, b_fg=-0.7, init="orthogonal", seed=2),
    ]
    cfg = ModelConfig(arch, N_IN, 2, 4, 2, nonlinearity=s, gru_reset=reset)
    model = PackedRNN(cfg, members, dtype=torch.float64)
    randomise(model, seed=7)
    # The fg buffers carry b_fg (the reference adds m.b_fg itself, per the equations).
    x = np.random.default_rng(0).normal(size=(2, T, B, N_IN))
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    expected = _np_model(model, members, x, arch, reset, s)
    np.testing.assert_allclose(got, expected, atol=1e-10, rtol=0)


def test_b_fg_changes_the_output_of_gated_cells():
    """Guard on the reference test above: b_fg is not silently dropped by either side."""
    cfg = ModelConfig("lstm", N_IN, 2, 4, 2)
    x = torch.randn(1, T, B, N_IN, dtype=torch.float64)
    outs = []
    for b_fg in (0.0, 2.0):
        model = PackedRNN(cfg, [InitConfig(b_fg=b_fg)], dtype=torch.float64)
        randomise(model, seed=3)
        with torch.no_grad():
            outs.append(model(x))
    assert (outs[0] - outs[1]).abs().max() > 1e-3


# ---- 3. gradients ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=_variant_id)
def test_gradcheck_all_parameters(variant):
    arch, reset, s = variant
    K, H, T_, B_, n_in, n_out = 2, 3, 4, 2, 2, 2
    cfg = ModelConfig(arch, n_in, n_out, H, 2, nonlinearity=s, gru_reset=reset)
    model = PackedRNN(cfg, [InitConfig(b_fg=0.5, seed=0), InitConfig(b_fg=-1.0, seed=1)])
    model = model.to(torch.float64)
    randomise(model, seed=11)
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    buffers = dict(model.named_buffers())
    x = torch.randn(K, T_, B_, n_in, dtype=torch.float64, requires_grad=True)

    def f(x, *ps):
        return torch.func.functional_call(
            model, {**dict(zip(names, ps, strict=True)), **buffers}, (x,)
        )

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-6, rtol=1e-4)


# ---- 4. parameter budget ---------------------------------------------------------------------


def _instantiated_count(cfg: ModelConfig) -> int:
    model = PackedRNN(cfg, [InitConfig()], dtype=torch.float64)
    return sum(p[0].numel() for p in model.parameters())


def _brute_force_hidden(budget: int, cfg: ModelConfig) -> int | None:
    """Largest N whose instantiated model fits. Every layer holds W^h with >= N^2 entries,
    so no N above sqrt(budget / depth) can fit: scan all N up to there."""
    best = None
    for n in range(1, math.isqrt(budget // cfg.depth) + 1):
        c = ModelConfig(**{**cfg.to_dict(), "hidden": n})
        if _instantiated_count(c) <= budget:
            best = n
    return best


@pytest.mark.parametrize(
    "arch, reset, depth, budget",
    [
        ("rnn", "pre", 1, 2_000),
        ("irnn", "pre", 8, 2_000),
        ("lstm", "pre", 1, 20_000),
        ("lstm", "pre", 8, 2_000),
        ("gru", "pre", 1, 2_000),
        ("gru", "post", 2, 20_000),
        ("ugrnn", "pre", 8, 20_000),
        ("plusrnn", "pre", 2, 2_000),
        ("plusrnn", "pre", 8, 20_000),
        ("minimalrnn", "pre", 2, 20_000),
    ],
)
def test_hidden_for_budget_matches_brute_force(arch, reset, depth, budget):
    cfg = ModelConfig(arch, 7, 5, 1, depth, gru_reset=reset)
    n = hidden_for_budget(budget, cfg)
    assert n == _brute_force_hidden(budget, cfg)
    fitted = ModelConfig(**{**cfg.to_dict(), "hidden": n})
    assert count_params(fitted) == _instantiated_count(fitted) <= budget
    above = ModelConfig(**{**cfg.to_dict(), "hidden": n + 1})
    assert count_params(above) == _instantiated_count(above) > budget


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=_variant_id)
@pytest.mark.parametrize("hidden", [1, 7])
def test_count_params_equals_instantiated(variant, hidden):
    arch, reset, _ = variant
    for depth in (2, 3):
        cfg = ModelConfig(arch, 4, 3, hidden, depth, gru_reset=reset)
        assert count_params(cfg) == _instantiated_count(cfg)


def test_budget_boundaries():
    cfg = ModelConfig("lstm", 5, 5, 1, 2)
    one_unit = count_params(cfg)
    assert hidden_for_budget(one_unit, cfg) == 1
    with pytest.raises(ValueError, match="too small"):
        hidden_for_budget(one_unit - 1, cfg)
    with pytest.raises(ValueError):
        hidden_for_budget(10, ModelConfig("plusrnn", 5, 5, 1, 8))


# ---- 5. packing ------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=_variant_id)
def test_pack_members_are_independent(variant):
    arch, reset, s = variant
    members = [
        InitConfig(init_scale=1.0, b_fg=1.0, seed=5),
        InitConfig(init_scale=0.5, b_fg=-2.0, init="orthogonal", seed=6),
        InitConfig(init_scale=2.0, b_fg=0.3, seed=7),
    ]
    cfg = ModelConfig(arch, N_IN, 2, 8, 2, nonlinearity=s, gru_reset=reset)
    pack = PackedRNN(cfg, members)
    x = torch.randn(3, T, B, N_IN, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = pack(x)
        for k, m in enumerate(members):
            alone = PackedRNN(cfg, [m])
            for (name, p_pack), p_alone in zip(
                pack.named_parameters(), alone.parameters(), strict=True
            ):
                torch.testing.assert_close(p_pack[k], p_alone[0], atol=0, rtol=0, msg=name)
            torch.testing.assert_close(y[k], alone(x[k : k + 1])[0], atol=1e-6, rtol=0)


# ---- 6. initialisation and names -------------------------------------------------------------


@pytest.mark.parametrize("init", ["gaussian", "orthogonal"])
def test_irnn_init_is_identity_and_zero_biases(init):
    H = 6
    cfg = ModelConfig("irnn", N_IN, 2, H, 3)
    model = PackedRNN(cfg, [InitConfig(init_scale=1.7, init=init, seed=s) for s in range(2)])
    assert model.s == "relu"
    for layer in model.layers:
        for k in range(2):
            torch.testing.assert_close(layer["Wh"][k], torch.eye(H), atol=0, rtol=0)
        assert torch.all(layer["b"] == 0) and torch.all(layer["s0"] == 0)
    assert torch.all(model.b_out == 0)


@pytest.mark.parametrize(
    "arch, reset",
    [
        ("rnn", "pre"),
        ("ugrnn", "pre"),
        ("gru", "pre"),
        ("gru", "post"),
        ("lstm", "pre"),
        ("plusrnn", "pre"),
        ("minimalrnn", "pre"),
    ],
)
def test_orthogonal_init_blocks(arch, reset):
    H, scale = 16, 1.3
    cfg = ModelConfig(arch, N_IN, 2, H, 2, gru_reset=reset)
    model = PackedRNN(cfg, [InitConfig(init_scale=scale, init="orthogonal", seed=3)] * 2)
    model = model.to(torch.float64)
    for layer in model.layers:
        wh = layer["Wh"][0]  # (H, G*H)
        assert wh.shape[1] % H == 0
        for q in wh.split(H, dim=1):
            torch.testing.assert_close(q.T @ q, scale**2 * torch.eye(H, dtype=torch.float64))


@pytest.mark.parametrize("arch", ["rnn", "lstm", "minimalrnn"])
def test_gaussian_init_std(arch):
    H, n_in, scale = 256, 64, 1.5
    model = PackedRNN(ModelConfig(arch, n_in, 2, H, 1), [InitConfig(init_scale=scale, seed=4)])
    layer = model.layers[0]
    assert abs(layer["Wh"][0].std().item() / (scale / math.sqrt(H)) - 1) < 0.1
    assert abs(layer["Wx"][0].std().item() / (scale / math.sqrt(n_in)) - 1) < 0.1


def test_plusrnn_needs_depth_two():
    with pytest.raises(ValueError):
        PackedRNN(ModelConfig("plusrnn", N_IN, 2, 4, 1), [InitConfig()])
    PackedRNN(ModelConfig("plusrnn", N_IN, 2, 4, 2), [InitConfig()])


def test_arch_names():
    assert canonical_arch("+rnn") == "plusrnn"
    assert canonical_arch(" +RNN ") == "plusrnn"
    assert canonical_arch("GRU") == "gru"
    with pytest.raises(ValueError, match="unknown arch"):
        canonical_arch("transformer")
    with pytest.raises(ValueError):
        PackedRNN(ModelConfig("rnn", N_IN, 2, 4, 1, nonlinearity="sigmoid"), [InitConfig()])
    with pytest.raises(ValueError):
        PackedRNN(ModelConfig("gru", N_IN, 2, 4, 1, gru_reset="mid"), [InitConfig()])
