"""Ribeiro diagnostics (SCIENCE.md section 5) against independent references.

1. the full-state map: ``run_states`` against each cell's reference ``layer_forward``;
2. the generic estimators on linear maps ``F -> A F + x`` with a known spectrum:
   lambda_1 = log rho(A), ||J|| = sigma_1(A), dF_T/dF_0 = A^T;
3. every cell at depth 1 and 2: the Lanczos step norm and the end-to-end spectrum
   against dense Jacobians from ``torch.autograd.functional.jacobian`` + NumPy SVD;
4. regions: a tiny-init net is contractive, a sigma_w = 3 tanh RNN is chaotic;
5. pack independence: a nan member poisons only itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from cellcases import ALL_VARIANTS, randomise

from rnnsweep.cells import InitConfig, ModelConfig, PackedRNN
from rnnsweep.theory.diagnostics import (
    REGION_CHAOTIC,
    REGION_CONTRACTIVE,
    REGION_EDGE,
    REGION_UNKNOWN,
    _pull_cotangents,
    _push_tangents,
    diagnose,
    end_to_end_spectrum,
    jacobian_norms,
    largest_lyapunov,
    lyapunov_exponent,
    ribeiro_region,
    run_states,
    stack_step,
    step_jacobian_norms,
    unrolled_singular_values,
)

torch.set_num_threads(1)

N_IN, H = 3, 5

CASES = [
    (*v, depth) for v in ALL_VARIANTS for depth in (1, 2) if not (v[0] == "plusrnn" and depth < 2)
]


def _case_id(case: tuple[str, str, str, int]) -> str:
    arch, reset, s, depth = case
    name = f"{arch}-{reset}" if arch == "gru" else arch
    return f"{name}-{s}-d{depth}"


def _model(arch, reset, s, depth, K=2, hidden=H, dtype=torch.float64, **init) -> PackedRNN:
    cfg = ModelConfig(arch, N_IN, 2, hidden, depth, nonlinearity=s, gru_reset=reset)
    return PackedRNN(cfg, [InitConfig(seed=k, **init) for k in range(K)], dtype=dtype)


def _inputs(K: int, T: int, B: int, seed: int = 1, dtype=torch.float64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(K, T, B, N_IN, generator=gen, dtype=torch.float64).to(dtype)


# ---- 1. the full-state map ----------------------------------------------------------------


def _reference_h(model: PackedRNN, x: torch.Tensor) -> list[torch.Tensor]:
    """Each layer's h sequence ``(K, T, B, H)`` from the cell's own per-layer reference."""
    cell, s = model.cell, model.s
    seq, hs = x, []
    for layer in range(model.cfg.depth):
        p = model.layer_params(layer)
        out = cell.layer_forward(p, seq, s)  # (K, T, B, H): the layer's depth output y
        if cell.separate_output:
            # +RNN: y != h, so replay the layer (its projection as in layer_forward) for h.
            inp = seq
            if "P" in p:
                inp = torch.einsum("ktbi,kih->ktbh", seq, p["P"]) + p["Pb"].unsqueeze(1)
            xp = cell.input_projection(p, inp)
            state, h = cell.initial_state(p, x.shape[2]), []
            for t in range(x.shape[1]):
                state, _ = cell.step(p, xp[:, t], inp[:, t], state, s)
                h.append(state[0])
            hs.append(torch.stack(h, dim=1))
        else:
            hs.append(out)
        seq = out
    return hs


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_run_states_matches_reference_forward(case):
    arch, reset, s, depth = case
    model = _model(arch, reset, s, depth, K=2, dtype=torch.float32)
    randomise(model, seed=7)
    x = _inputs(2, 6, 3, dtype=torch.float32)
    with torch.no_grad():
        F = run_states(model, x)  # (K, T+1, B, D)
        ref = _reference_h(model, x)
    S = model.cell.n_states
    assert F.shape == (2, 7, 3, depth * S * H)
    for layer, h in enumerate(ref):
        lo = layer * S * H
        torch.testing.assert_close(F[:, 1:, :, lo : lo + H], h, atol=1e-6, rtol=0)
    # F_0 is the learned initial state of every layer.
    s0 = torch.cat([model.layer_params(layer)["s0"] for layer in range(depth)], dim=-1)
    torch.testing.assert_close(F[:, 0], s0.expand(2, 3, -1), atol=0, rtol=0)


# ---- 2. linear maps with a known spectrum -------------------------------------------------


def _linear_pack(rhos: list[tuple[float, ...]], seed: int = 0) -> torch.Tensor:
    """``A_k = Q diag(eig_k) Q^{-1}`` ``(K, D, D)``: non-normal, real dominant eigenvalue."""
    rng = np.random.default_rng(seed)
    mats = []
    for eig in rhos:
        Q = rng.standard_normal((len(eig), len(eig))) + 2 * np.eye(len(eig))
        mats.append(Q @ np.diag(eig) @ np.linalg.inv(Q))
    return torch.tensor(np.stack(mats))


EIGS = [(1.1, 0.7, -0.5, 0.4, 0.2, -0.1), (0.8, -0.5, 0.45, 0.3, 0.1, 0.05)]


def _linear_step(A: torch.Tensor):
    return lambda F, x_t: torch.bmm(F, A.transpose(1, 2)) + x_t  # row-wise F -> A F + x


def test_lyapunov_of_linear_map_is_log_spectral_radius():
    A = _linear_pack(EIGS)
    K, D, N, T = 2, A.shape[-1], 3, 250
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(K, T, N, D, generator=gen, dtype=torch.float64)
    F0 = torch.randn(K, N, D, generator=gen, dtype=torch.float64)
    lam = largest_lyapunov(_linear_step(A), F0, x, burn_in=50)  # (K, N)
    for k, eig in enumerate(EIGS):
        expected = math.log(max(abs(e) for e in eig))
        assert lam[k].numpy() == pytest.approx(expected, rel=0.02)
    # sigma_1(A) > rho(A) for these non-normal A: the estimator must not return it.
    assert lam[0].max() < math.log(np.linalg.svd(A[0].numpy(), compute_uv=False)[0]) - 0.05


def test_jacobian_norm_of_linear_map_is_largest_singular_value():
    A = _linear_pack(EIGS)
    K, D, N = 2, A.shape[-1], 4
    gen = torch.Generator().manual_seed(1)
    F = torch.randn(K, N, D, generator=gen, dtype=torch.float64)
    x = torch.randn(K, N, D, generator=gen, dtype=torch.float64)
    sig = jacobian_norms(_linear_step(A), F, x)  # (K, N)
    for k in range(K):
        exact = np.linalg.svd(A[k].numpy(), compute_uv=False)[0]
        np.testing.assert_allclose(sig[k].numpy(), exact, rtol=1e-3)


def test_unrolled_spectrum_of_linear_map():
    A = _linear_pack(EIGS)
    K, D, N, T = 2, A.shape[-1], 2, 4
    gen = torch.Generator().manual_seed(2)
    step = _linear_step(A)
    x = torch.randn(K, T, N, D, generator=gen, dtype=torch.float64)
    states = torch.randn(K, T + 1, N, D, generator=gen, dtype=torch.float64)  # J ignores F
    sv = unrolled_singular_values(step, states, x)  # (K, N, D)
    for k in range(K):
        exact = np.linalg.svd(np.linalg.matrix_power(A[k].numpy(), T), compute_uv=False)
        np.testing.assert_allclose(sv[k].numpy(), np.broadcast_to(exact, (N, D)), rtol=1e-10)


# ---- 3. every cell against dense Jacobians ------------------------------------------------


def _dense_step_jacobians(model: PackedRNN, x: torch.Tensor) -> np.ndarray:
    """``J_t`` for every (k, t, b): ``(K, T, B, D, D)``, from the dense Jacobian of the step.

    Also checks the block structure the estimators rely on: no coupling across (k, b).
    """
    F = run_states(model, x)
    K, T, B, _ = x.shape
    D = F.shape[-1]
    out = np.zeros((K, T, B, D, D))
    for t in range(T):
        jac = torch.autograd.functional.jacobian(
            lambda s, t=t: stack_step(model, s, x[:, t]), F[:, t]
        )  # (K, B, D, K, B, D)
        jac = jac.reshape(K * B, D, K * B, D)
        for i in range(K * B):
            out[i // B, t, i % B] = jac[i, :, i, :].numpy()
            jac[i, :, i, :] = 0
        assert jac.abs().max() == 0, "the step couples members or batch elements"
    return out


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_estimators_match_dense_jacobians(case):
    arch, reset, s, depth = case
    K, T, B = 2, 5, 3
    model = _model(arch, reset, s, depth, K=K)
    randomise(model, seed=11)
    x = _inputs(K, T, B)
    J = _dense_step_jacobians(model, x)  # (K, T, B, D, D)
    sigma = np.linalg.svd(J, compute_uv=False)[..., 0]  # (K, T, B)

    # Step-Jacobian norm: max and mean over (t, b).
    jac_max, jac_mean = step_jacobian_norms(model, x, iters=50)
    np.testing.assert_allclose(jac_max.numpy(), sigma.max(axis=(1, 2)), rtol=1e-3)
    np.testing.assert_allclose(jac_mean.numpy(), sigma.mean(axis=(1, 2)), rtol=1e-3)

    # End-to-end: J_T ... J_1 of the first two sequences.
    n = 2
    prod = np.broadcast_to(np.eye(J.shape[-1]), (K, n) + J.shape[-2:]).copy()
    for t in range(T):
        prod = J[:, t, :n] @ prod
    sv = np.linalg.svd(prod, compute_uv=False)  # (K, n, D)
    e2e = end_to_end_spectrum(model, x, n_batch=n)
    smax, smin = sv.max(-1), sv.min(-1)
    expected = {"mean": sv.mean(-1), "std": sv.std(-1), "max": smax}
    for key, value in expected.items():
        np.testing.assert_allclose(e2e[key].numpy(), value.mean(-1), rtol=1e-4, err_msg=key)
    # Dead ReLU units make J singular: there sigma_min is rounding noise ~1e-16 sigma_max.
    np.testing.assert_allclose(
        e2e["min"].numpy(), smin.mean(-1), rtol=1e-4, atol=1e-12 * smax.max()
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = smax / smin  # inf or nan where J is singular or zero
    well = (cond < 1e8).all(-1)  # (K,): every sequence's spectrum above the noise floor
    np.testing.assert_allclose(
        e2e["log10_condition"].numpy()[well], np.log10(cond).mean(-1)[well], rtol=1e-4
    )
    assert (e2e["log10_condition"].numpy()[~well] > 4).all()  # saturated, not nan

    # lambda_1 cannot exceed the mean log step norm over the same steps (burn-in T // 4).
    lam = lyapunov_exponent(model, x)
    # The estimator floors a zero growth (dead ReLU step) at the smallest normal float.
    tiny = np.finfo(np.float64).tiny
    bound = np.log(np.maximum(sigma[:, T // 4 :], tiny)).mean(axis=(1, 2))
    assert (lam.numpy() <= bound + 1e-9).all(), (lam, bound)


@pytest.mark.parametrize(
    "arch, reset, depth, hidden",
    [("rnn", "pre", 1, 64), ("gru", "post", 2, 40), ("lstm", "pre", 2, 24)],
    ids=["rnn-D64", "gru-post-D80", "lstm-D96"],
)
def test_lanczos_converges_with_fewer_steps_than_D(arch, reset, depth, hidden):
    """iters = 30 < D: the Krylov space is not exhausted, so this tests convergence."""
    K, T, B = 2, 3, 2
    model = _model(arch, reset, "tanh", depth, K=K, hidden=hidden)
    randomise(model, seed=13)
    x = _inputs(K, T, B)
    sigma = np.linalg.svd(_dense_step_jacobians(model, x), compute_uv=False)[..., 0]
    jac_max, jac_mean = step_jacobian_norms(model, x, iters=30)
    np.testing.assert_allclose(jac_max.numpy(), sigma.max(axis=(1, 2)), rtol=1e-3)
    np.testing.assert_allclose(jac_mean.numpy(), sigma.mean(axis=(1, 2)), rtol=1e-3)
    assert (jac_max.numpy() <= sigma.max(axis=(1, 2)) * (1 + 1e-12)).all()  # a lower bound


def test_row_chunking_does_not_change_step_norms(monkeypatch):
    model = _model("gru", "pre", "tanh", 2, K=2)
    randomise(model, seed=4)
    x = _inputs(2, 7, 3)
    whole = step_jacobian_norms(model, x)
    # K * rows * D = 2 * 4 * 10: 4 rows per chunk, of T * B = 21.
    monkeypatch.setattr("rnnsweep.theory.diagnostics.CHUNK_ENTRIES", 2 * 4 * 10)
    chunked = step_jacobian_norms(model, x)
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)


@pytest.mark.parametrize("through", [_pull_cotangents, _push_tangents], ids=["pull", "push"])
def test_passes_do_not_change_unrolled_products(monkeypatch, through):
    """Each step recorded on a few copies of its state, the (co)tangents a few at a time."""
    model = _model("lstm", "pre", "tanh", 2, K=2)  # D = 20
    randomise(model, seed=6)
    x = _inputs(2, 5, 3)
    F = run_states(model, x)  # (K, T+1, B, D)
    step = lambda s, x_t: stack_step(model, s, x_t)  # noqa: E731
    gen = torch.Generator().manual_seed(8)
    V = torch.randn(2, 3, 20, 20, generator=gen, dtype=torch.float64)  # (K, B, m, D)
    whole = through(step, F, x, V)  # m = 20 < ROWS_PER_PASS: one pass
    monkeypatch.setattr("rnnsweep.theory.diagnostics.ROWS_PER_PASS", 8)
    passes = through(step, F, x, V)  # 3 passes of 8 rows, the last one padded
    torch.testing.assert_close(passes, whole, rtol=1e-12, atol=0)


def test_randomized_end_to_end_bounds_the_exact_spectrum():
    """D > max_dim: the leading values from the range finder, never above the exact ones."""
    K, T, B = 2, 12, 2
    model = _model("lstm", "pre", "tanh", 2, K=K)  # D = 20
    randomise(model, seed=3)
    x = _inputs(K, T, B)
    F = run_states(model, x)
    step = lambda s, x_t: stack_step(model, s, x_t)  # noqa: E731
    exact = unrolled_singular_values(step, F, x)  # (K, B, 20)
    approx = unrolled_singular_values(step, F, x, max_dim=10, rank=6)  # (K, B, 6)
    assert approx.shape == (K, B, 6)
    assert (approx <= exact[..., :6] * (1 + 1e-9)).all()
    torch.testing.assert_close(approx[..., 0], exact[..., 0], rtol=1e-3, atol=0)


# ---- 4. regions ---------------------------------------------------------------------------


def test_region_thresholds():
    nan = math.nan
    lam = torch.tensor([-0.3, 0.2, 0.0, 0.005, nan, -0.1])
    jac = torch.tensor([0.9, 1.5, 1.2, 1.1, 0.5, nan])
    expected = [
        REGION_CONTRACTIVE,
        REGION_CHAOTIC,
        REGION_EDGE,
        REGION_EDGE,  # below eps = 0.01: finite-run noise, not chaos
        REGION_UNKNOWN,
        REGION_UNKNOWN,
    ]
    assert ribeiro_region(lam, jac).tolist() == expected


@pytest.mark.parametrize("arch", ["rnn", "ugrnn", "gru", "lstm", "minimalrnn"])
def test_tiny_init_is_contractive(arch):
    model = _model(arch, "pre", "tanh", 2, K=2, hidden=8, init_scale=0.1)
    diag = diagnose(model, _inputs(2, 30, 4))
    for d in diag:
        assert d["jac_max"] < 1 and d["lyapunov"] < 0, d
        assert d["region"] == REGION_CONTRACTIVE


def test_strong_tanh_rnn_is_chaotic():
    """sigma_w = 3, N = 200: deep in the chaotic phase of the mean-field theory (lambda_1 > 0)."""
    model = _model("rnn", "pre", "tanh", 1, K=2, hidden=200, init_scale=3.0)
    x = 0.3 * _inputs(2, 150, 2)
    lam = lyapunov_exponent(model, x, burn_in=50)
    jac_max, _ = step_jacobian_norms(model, x[:, :40])
    assert (lam > 0.1).all(), lam
    assert (jac_max > 1).all(), jac_max
    assert ribeiro_region(lam, jac_max).tolist() == [REGION_CHAOTIC] * 2


# ---- 5. pack independence -----------------------------------------------------------------


@pytest.mark.parametrize("max_dim", [256, 8], ids=["exact", "randomized"])
def test_nan_member_poisons_only_itself(max_dim):
    K = 3
    clean = _model("ugrnn", "pre", "tanh", 2, K=K)
    randomise(clean, seed=5)
    bad = _model("ugrnn", "pre", "tanh", 2, K=K)
    bad.load_state_dict(clean.state_dict())
    with torch.no_grad():
        bad.layers[1]["Wh"][1, 0, 0] = math.nan
    x = _inputs(K, 8, 3)
    got = diagnose(bad, x, max_dim=max_dim, rank=4)
    ref = diagnose(clean, x, max_dim=max_dim, rank=4)
    assert got[1]["region"] == REGION_UNKNOWN
    assert all(math.isnan(v) for k, v in got[1].items() if k != "region"), got[1]
    for k in (0, 2):
        assert got[k]["region"] == ref[k]["region"]
        for key, value in ref[k].items():
            assert math.isfinite(value), (key, value)
            assert got[k][key] == pytest.approx(value, rel=1e-12), key


def test_diagnose_keys_and_burn_in_check():
    model = _model("gru", "post", "tanh", 1, K=1)
    (d,) = diagnose(model, _inputs(1, 10, 2))
    assert set(d) == {
        "jac_max",
        "jac_mean",
        "lyapunov",
        "e2e_sv_mean",
        "e2e_sv_std",
        "e2e_log10_cond",
        "region",
    }
    assert isinstance(d["region"], int)
    assert all(isinstance(v, float) for k, v in d.items() if k != "region")
    with pytest.raises(ValueError, match="burn_in"):
        lyapunov_exponent(model, _inputs(1, 10, 2), burn_in=10)
