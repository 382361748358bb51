"""Training: the packed optimizers against torch.optim, clipping against torch, and train_pack.

References are independent: torch.optim and torch.nn.utils.clip_grad_norm_ run
on each member's slice on its own; the divergence rule is re-derived from a
full learning curve; member isolation compares a pack with and without a member.
"""

from __future__ import annotations

import json
import math
import sqlite3

import pytest
import torch

from rnnsweep.cells import InitConfig, ModelConfig
from rnnsweep.tasks import make_task
from rnnsweep.train import MemberSpec, TrainConfig, train_pack
from rnnsweep.train.optim import PackedOptimizer, clip_grad_norm_packed

SHAPES = [(3, 4), (5,), (2, 2, 3)]  # per-member shapes of three parameter tensors


def _packed_params(K: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(K, *s, generator=g, dtype=torch.float64).requires_grad_() for s in SHAPES]


def _torch_opt(kind: str, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr)  # betas (0.9, 0.999), eps 1e-8
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.99)  # eps 1e-8, no centring
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


# ---- PackedOptimizer ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["adam", "rmsprop", "sgd"])
@pytest.mark.parametrize("lrs", [[3e-2], [1e-3, 3e-2, 0.2]], ids=["K1", "K3"])
def test_packed_optimizer_matches_torch_optim(kind, lrs):
    K = len(lrs)
    packed = _packed_params(K)
    # Each member's own copy, trained by its own torch.optim optimizer.
    refs = [[p.detach()[k].clone().requires_grad_() for p in packed] for k in range(K)]
    ref_opts = [_torch_opt(kind, refs[k], lrs[k]) for k in range(K)]
    opt = PackedOptimizer(packed, kind, torch.tensor(lrs, dtype=torch.float64))
    active = torch.ones(K, dtype=torch.bool)
    g = torch.Generator().manual_seed(1)
    for _ in range(10):
        grads = [torch.randn(K, *s, generator=g, dtype=torch.float64) for s in SHAPES]
        opt.zero_grad()
        for p, gr in zip(packed, grads, strict=True):
            p.grad = gr.clone()
        opt.step(active)
        for k in range(K):
            ref_opts[k].zero_grad()
            for r, gr in zip(refs[k], grads, strict=True):
                r.grad = gr[k].clone()
            ref_opts[k].step()
            for p, r in zip(packed, refs[k], strict=True):
                torch.testing.assert_close(p.detach()[k], r.detach(), rtol=1e-12, atol=1e-12)
    # Not vacuous: the parameters moved.
    assert not torch.equal(packed[0].detach()[0], _packed_params(K)[0][0])


@pytest.mark.parametrize("kind", ["adam", "rmsprop", "sgd"])
def test_frozen_member_is_untouched_bit_for_bit(kind):
    K = 3
    lr = torch.tensor([1e-2, 5e-2, 1e-1], dtype=torch.float64)
    a, b = _packed_params(K), _packed_params(K)
    opt_a, opt_b = PackedOptimizer(a, kind, lr.clone()), PackedOptimizer(b, kind, lr.clone())
    g = torch.Generator().manual_seed(2)
    all_on = torch.ones(K, dtype=torch.bool)
    frozen = torch.tensor([True, False, True])
    for step in range(8):
        grads = [torch.randn(K, *s, generator=g, dtype=torch.float64) for s in SHAPES]
        for p, q, gr in zip(a, b, grads, strict=True):
            p.grad = gr.clone()
            q.grad = gr.clone()
            if step >= 3:
                q.grad[1] = math.nan  # a frozen member's gradient may be anything
        if step < 3:
            opt_a.step(all_on)
            opt_b.step(all_on)
            continue
        before = [p.detach()[1].clone() for p in b]
        state_before = [(m[1].clone(), None if v is None else v[1].clone()) for m, v in opt_b.state]
        t_before = opt_b.t[1].clone()
        opt_a.step(all_on)
        opt_b.step(frozen)
        for p, p0 in zip(b, before, strict=True):
            assert torch.equal(p.detach()[1], p0)
        for (m, v), (m0, v0) in zip(opt_b.state, state_before, strict=True):
            assert torch.equal(m[1], m0)
            assert v is None or torch.equal(v[1], v0)
        assert torch.equal(opt_b.t[1], t_before)
        # The active members are exactly as if nobody had been frozen.
        for p, q in zip(a, b, strict=True):
            assert torch.equal(p.detach()[[0, 2]], q.detach()[[0, 2]])
    assert opt_b.t.tolist() == [8, 3, 8]


def test_mixed_pack_updates_each_optimizers_slice_in_place_as_torch_optim_does():
    """Members sorted by optimizer (as train_pack orders them): each kind updates its own
    slice in place. Every member against torch.optim, and bit for bit against the
    selecting path the same members take when their kinds are interleaved."""
    kinds = ["adam", "adam", "rmsprop", "sgd", "sgd"]
    lrs = [1e-2, 3e-2, 1e-3, 5e-2, 1e-1]
    K = len(kinds)
    packed, mixed = _packed_params(K), _packed_params(K)
    perm = [3, 0, 2, 4, 1]  # kinds interleaved: sgd adam rmsprop sgd adam
    opt = PackedOptimizer(packed, kinds, torch.tensor(lrs, dtype=torch.float64))
    assert opt.runs == [("adam", 0, 2), ("rmsprop", 2, 3), ("sgd", 3, 5)]
    with torch.no_grad():
        for q, p in zip(mixed, packed, strict=True):
            q.copy_(p[perm])
    opt_mixed = PackedOptimizer(
        mixed, [kinds[k] for k in perm], torch.tensor([lrs[k] for k in perm], dtype=torch.float64)
    )
    assert len(opt_mixed.runs) == 5  # not contiguous: the selecting path
    refs = [[p.detach()[k].clone().requires_grad_() for p in packed] for k in range(K)]
    ref_opts = [_torch_opt(kinds[k], refs[k], lrs[k]) for k in range(K)]
    active = torch.ones(K, dtype=torch.bool)
    g = torch.Generator().manual_seed(4)
    for _ in range(6):
        grads = [torch.randn(K, *s, generator=g, dtype=torch.float64) for s in SHAPES]
        for p, q, gr in zip(packed, mixed, grads, strict=True):
            p.grad, q.grad = gr.clone(), gr[perm].clone()
        opt.step(active)
        opt_mixed.step(active)
        for k in range(K):
            for r, gr in zip(refs[k], grads, strict=True):
                r.grad = gr[k].clone()
            ref_opts[k].step()
            for p, r in zip(packed, refs[k], strict=True):
                torch.testing.assert_close(p.detach()[k], r.detach(), rtol=1e-12, atol=1e-12)
        for p, q in zip(packed, mixed, strict=True):
            assert torch.equal(p.detach()[perm], q.detach())


# ---- clipping ------------------------------------------------------------------


def test_clip_matches_torch_per_member_and_isolates_nan():
    K = 4
    params = _packed_params(K)
    g = torch.Generator().manual_seed(3)
    grads = [torch.randn(K, *s, generator=g, dtype=torch.float64) * 2.0 for s in SHAPES]
    grads[1][2, 3] = math.nan  # member 2 has a NaN gradient entry
    for p, gr in zip(params, grads, strict=True):
        p.grad = gr.clone()
    # Member norms are about 2 * sqrt(29) ~ 10.8: clip members 0 and 3, leave member 1 alone.
    max_norm = torch.tensor([1.0, 1e3, 0.5, 3.0], dtype=torch.float64)
    norms = clip_grad_norm_packed(params, max_norm)

    for k in (0, 1, 3):
        ref = [gr[k].clone().requires_grad_() for gr in grads]
        for r in ref:
            r.grad = r.detach().clone()
        total = torch.nn.utils.clip_grad_norm_(ref, float(max_norm[k]))
        assert float(norms[k]) == pytest.approx(float(total), rel=1e-12)
        for p, r in zip(params, ref, strict=True):
            # torch adds 1e-6 to the norm in the clip coefficient, we add 1e-12.
            torch.testing.assert_close(p.grad[k], r.grad, rtol=1e-6, atol=0.0)
    clipped = math.sqrt(sum(float(p.grad[0].pow(2).sum()) for p in params))
    assert clipped == pytest.approx(1.0, rel=1e-6)
    for p, gr in zip(params, grads, strict=True):
        assert torch.equal(p.grad[1], gr[1])  # under its threshold: untouched
    assert math.isnan(float(norms[2]))
    for p in params:
        assert torch.equal(p.grad[2], torch.zeros_like(p.grad[2]))


# ---- train_pack ----------------------------------------------------------------


def _parens(seq_len: int = 10):
    return make_task("parens", {"seq_len": seq_len})


def _cfg(task, hidden: int = 8, arch: str = "ugrnn") -> ModelConfig:
    return ModelConfig(arch, task.n_in, task.n_out, hidden, 1)


SMALL = TrainConfig(steps=20, batch_size=8, eval_every=6, eval_size=32)


def _m(lr: float, seed: int, clip: float = 10.0, scale: float = 1.0, b_fg: float = 0.0):
    return MemberSpec(lr=lr, clip=clip, init=InitConfig(init_scale=scale, b_fg=b_fg, seed=seed))


def _assert_same(a, b, rel: float) -> None:
    """Two MemberResults agree (wall time aside); NaN matches NaN."""
    assert (a.diverged, a.diverged_at, a.steps_run) == (b.diverged, b.diverged_at, b.steps_run)
    assert [c["step"] for c in a.curve] == [c["step"] for c in b.curve]
    for ca, cb in zip(a.curve, b.curve, strict=True):
        for key in ("train_loss", "eval_loss", "eval_metric"):
            assert ca[key] == pytest.approx(cb[key], rel=rel, abs=0.0, nan_ok=True), key
    for key in ("initial_loss", "final_loss", "best_loss", "metric"):
        assert getattr(a, key) == pytest.approx(getattr(b, key), rel=rel, abs=0.0, nan_ok=True)


def test_train_pack_is_deterministic():
    task = _parens()
    members = [_m(1e-2, 11), _m(3e-2, 12, scale=2.0)]
    r1 = train_pack(task, _cfg(task), "adam", members, SMALL)
    r2 = train_pack(task, _cfg(task), "adam", members, SMALL)
    for a, b in zip(r1, r2, strict=True):
        assert a.curve == b.curve
        assert (a.final_loss, a.metric, a.initial_loss) == (b.final_loss, b.metric, b.initial_loss)
    assert r1[0].curve != r1[1].curve  # different seeds and hyperparameters: different runs


@pytest.mark.parametrize(("steps", "expected"), [(20, [0, 6, 12, 18, 20]), (18, [0, 6, 12, 18])])
def test_curve_steps(steps, expected):
    task = _parens()
    cfg = TrainConfig(steps=steps, batch_size=8, eval_every=6, eval_size=32)
    (res,) = train_pack(task, _cfg(task), "adam", [_m(1e-2, 5)], cfg)
    assert not res.diverged and res.steps_run == steps
    assert [c["step"] for c in res.curve] == expected
    assert res.final_loss == res.curve[-1]["eval_loss"]
    assert res.metric == res.curve[-1]["eval_metric"]
    assert res.best_loss == min(c["eval_loss"] for c in res.curve)
    assert res.initial_loss == res.curve[0]["train_loss"]


def test_diverging_member_does_not_touch_the_others():
    task = _parens()
    good = [_m(1e-2, 21, clip=1.0), _m(0.3, 22, clip=5.0, scale=1.5)]
    bad = _m(1e3, 23, clip=1e9)
    with_bad = train_pack(task, _cfg(task), "sgd", [good[0], bad, good[1]], SMALL)
    without = train_pack(task, _cfg(task), "sgd", good, SMALL)

    div = with_bad[1]
    assert div.diverged and div.diverged_at is not None
    assert div.steps_run == div.diverged_at < SMALL.steps
    assert math.isnan(div.final_loss) and math.isnan(div.metric)
    assert div.curve[-1]["step"] == div.diverged_at
    for a, b in zip([with_bad[0], with_bad[2]], without, strict=True):
        assert not a.diverged
        _assert_same(a, b, rel=1e-6)


def _predicted_divergence(res, factor: float) -> int | None:
    """Where the rule "loss > factor x initial train loss" fires, from a full curve.

    ``res`` ran with ``eval_every=1`` and no divergence: entry d holds the train
    loss of step d-1 (entry 0: step 0) and the eval loss after d updates. The loop
    checks eval(0), then for each step s: train(s), then eval(s + 1).
    """
    limit = factor * res.initial_loss
    c = res.curve
    if c[0]["eval_loss"] > limit:
        return 0
    for s in range(len(c) - 1):
        if c[s + 1]["train_loss"] > limit:
            return s
        if c[s + 1]["eval_loss"] > limit:
            return s + 1
    return None


@pytest.mark.parametrize("factor", [1.01, 1.3, 3.0, 10.0])
def test_divergence_factor_rule_matches_the_curve(factor):
    task = _parens()
    base = TrainConfig(steps=30, batch_size=8, eval_every=1, eval_size=32, divergence_factor=1e30)
    member = [_m(5.0, 31, clip=1e9)]  # sgd lr 5: the loss climbs steadily, stays finite
    (free,) = train_pack(task, _cfg(task), "sgd", member, base)
    assert not free.diverged
    expected = _predicted_divergence(free, factor)
    assert expected is not None

    cfg = TrainConfig(**{**base.to_dict(), "divergence_factor": factor})
    (res,) = train_pack(task, _cfg(task), "sgd", member, cfg)
    assert res.diverged and res.diverged_at == expected
    assert res.steps_run == expected and math.isnan(res.final_loss)
    last = res.curve[-1]
    assert last["step"] == expected
    # Diverged on a finite loss above the limit: the factor rule, not non-finiteness.
    seen = [x for x in (last["train_loss"], last["eval_loss"]) if math.isfinite(x)]
    assert seen and max(seen) > factor * res.initial_loss
    # Up to the divergence, the run is the unlimited one.
    assert res.curve[:-1] == free.curve[: len(res.curve) - 1]


def test_non_finite_loss_diverges_even_without_a_factor():
    task = _parens()
    cfg = TrainConfig(
        steps=20, batch_size=8, eval_every=5, eval_size=32, divergence_factor=math.inf
    )
    res = train_pack(task, _cfg(task), "sgd", [_m(1e30, 41, clip=1e9), _m(1e-2, 42)], cfg)
    assert res[0].diverged and not res[1].diverged
    last = res[0].curve[-1]
    assert last["step"] == res[0].diverged_at
    assert not (math.isfinite(last["train_loss"]) and math.isfinite(last["eval_loss"]))
    assert math.isfinite(res[1].final_loss)


LEARN = TrainConfig(steps=150, batch_size=32, eval_every=50, eval_size=128)


@pytest.mark.parametrize(
    ("name", "opts", "bound"),
    [
        ("parens", {"seq_len": 10}, None),  # < half the initial eval loss
        ("memory", {"n_vec": 4, "delay": 3}, 0.1),  # solved: < 10% of the target variance (1)
    ],
)
def test_training_learns(name, opts, bound):
    task = make_task(name, opts)
    (res,) = train_pack(task, _cfg(task, hidden=16), "adam", [_m(1e-2, 7)], LEARN)
    assert not res.diverged
    start = res.curve[0]["eval_loss"]
    assert res.final_loss < 0.5 * start, (start, res.final_loss)
    if bound is not None:
        assert res.final_loss < bound < start


def test_result_does_not_depend_on_pack_position():
    task = _parens()
    target = _m(2e-2, 51, clip=2.0, scale=1.2, b_fg=1.0)
    others = [
        _m(1e-3, 52, clip=0.5, scale=0.5, b_fg=-1.0),
        _m(0.1, 53, scale=2.5, b_fg=3.0),
        _m(5e-2, 54, clip=100.0),
    ]
    (alone,) = train_pack(task, _cfg(task), "rmsprop", [target], SMALL)
    pack = train_pack(task, _cfg(task), "rmsprop", [others[0], others[1], target, others[2]], SMALL)
    assert not alone.diverged
    _assert_same(pack[2], alone, rel=1e-5)


# ---- capacity through the runner -------------------------------------------------


def test_capacity_study_records_bits_per_param(tmp_path):
    from rnnsweep.store import Store
    from rnnsweep.study import resolve, run_study, spec_from_dict

    spec = spec_from_dict(
        {
            "name": "cap",
            "task": "capacity",
            "arch": "gru",
            "depth": 1,
            "trials": 3,
            "seed": 1,
            "device": "cpu",
            "task_options": {"b": 16, "n_bits": 8, "unroll": 3},
            "model": {"params": 400},
            "train": {"steps": 40, "batch_size": 16, "eval_every": 20},
            "space": {"lr": "3e-3:3e-2", "optimizer": "adam", "clip": 10.0},
        }
    )
    db = tmp_path / "cap.db"
    store = Store(f"sqlite:///{db}", create=True)
    try:
        summary = run_study(resolve(spec), store)
    finally:
        store.dispose()
    assert summary.trials_run == 3

    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT diverged, metric, params, extra_json FROM rnnsweep_trials "
        "WHERE study = 'cap' AND state = 'complete'"
    ).fetchall()
    con.close()
    assert len(rows) == 3
    feasible = [r for r in rows if not r[0]]
    # Some trial must have stored information (p away from 1/2), or the formula is barely tested.
    assert any(abs(r[1] - 0.5) > 0.1 for r in feasible), rows
    for _, p, n_params, extra in feasible:
        b = 16
        ent = sum(q * math.log2(q) for q in (p, 1 - p) if q > 0)  # p log2 p + (1-p) log2 (1-p)
        bits = b + b * ent
        got = json.loads(extra)
        assert got["bits"] == pytest.approx(bits, rel=1e-9, abs=1e-12)
        assert got["bits_per_param"] == pytest.approx(bits / n_params, rel=1e-9, abs=1e-15)
        assert 0 < n_params <= 400
    for d, _, _, extra in rows:
        if d:
            assert json.loads(extra) == {}
