"""Packed, fused training: a trial's results do not depend on its pack (issue 3)."""

from __future__ import annotations

import math

import pytest
import torch

from rnnsweep.backend import resolve_backend
from rnnsweep.cells import InitConfig, ModelConfig, PackedRNN
from rnnsweep.tasks import make_task
from rnnsweep.train import MemberSpec, TrainConfig, train_pack

TASK = make_task("parens", {"seq_len": 10})
CFG = TrainConfig(steps=12, batch_size=8, eval_every=4, eval_size=16)
OPTS = ("adam", "rmsprop", "sgd")


def _member(k: int, lr: float | None = None) -> MemberSpec:
    """Hyperparameters that vary with k: lr, clip, init scale, gate bias, init, seed."""
    return MemberSpec(
        lr=lr if lr is not None else 10 ** (-3 + (k % 5) * 0.4),
        clip=[0.5, 1.0, 5.0, math.inf][k % 4],
        init=InitConfig(
            init_scale=0.5 + 0.1 * (k % 7),
            b_fg=-1.0 + 0.5 * (k % 6),
            init="orthogonal" if k % 2 else "gaussian",
            seed=1000 + k,
        ),
    )


def _losses(res) -> list[float]:
    return [v for c in res.curve for v in (c["train_loss"], c["eval_loss"], c["eval_metric"])]


def _close(a: list[float], b: list[float], rel: float) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        if math.isnan(x):
            assert math.isnan(y)
        else:
            assert y == pytest.approx(x, rel=rel, abs=1e-7)


def _same_diagnostics(alone, packed) -> None:
    """Per-trial diagnostics (Jacobian norm, Lyapunov exponent, spectrum, region) at
    init and at the end do not depend on the pack either."""
    for when in ("diag_init", "diag_final"):
        a, b = getattr(alone, when), getattr(packed, when)
        assert a and a.keys() == b.keys(), when
        for key, value in a.items():
            assert b[key] == pytest.approx(value, rel=1e-3, abs=1e-6, nan_ok=True), (when, key)


@pytest.mark.parametrize("arch", ["ugrnn", "gru", "lstm"])
def test_alone_equals_inside_a_pack_of_32(arch):
    cfg = ModelConfig(arch, TASK.n_in, TASK.n_out, 12, 2)
    members = [_member(k) for k in range(32)]
    kinds = [OPTS[k % 3] for k in range(32)]
    packed = train_pack(TASK, cfg, kinds, members, CFG)
    for k in (0, 7, 31):
        alone = train_pack(TASK, cfg, kinds[k], [members[k]], CFG)[0]
        assert alone.diverged == packed[k].diverged
        _close(_losses(alone), _losses(packed[k]), rel=1e-5)
        _same_diagnostics(alone, packed[k])


def test_fused_training_matches_reference_training():
    cfg = ModelConfig("gru", TASK.n_in, TASK.n_out, 10, 2)
    members = [_member(k) for k in range(3)]
    fused = train_pack(TASK, cfg, "adam", members, CFG)
    ref = train_pack(
        TASK, cfg, "adam", members, CFG, backend=resolve_backend("cpu", CFG.dtype, "reference")
    )
    for f, r in zip(fused, ref, strict=True):
        _close(_losses(r), _losses(f), rel=1e-4)


def test_a_diverging_member_does_not_touch_the_others():
    cfg = ModelConfig("ugrnn", TASK.n_in, TASK.n_out, 12, 2)
    others = [_member(k) for k in range(5)]
    bomb = MemberSpec(lr=1e3, clip=math.inf, init=InitConfig(init_scale=1.0, seed=99))
    with_bomb = train_pack(TASK, cfg, "sgd", [*others[:2], bomb, *others[2:]], CFG)
    without = train_pack(TASK, cfg, "sgd", others, CFG)
    assert with_bomb[2].diverged and with_bomb[2].diverged_at is not None
    rest = with_bomb[:2] + with_bomb[3:]
    for a, b in zip(rest, without, strict=True):
        assert a.diverged == b.diverged
        assert _losses(a) == _losses(b)  # bit for bit: no member reads another's slice


def test_frozen_members_leave_the_pack(monkeypatch):
    """Diverged members are dropped from the live pack (it shrinks), and every member's
    results, diverged or not, are still those it gets trained alone."""
    cfg = ModelConfig("ugrnn", TASK.n_in, TASK.n_out, 12, 2)
    bomb = lambda seed: MemberSpec(lr=1e3, clip=math.inf, init=InitConfig(seed=seed))  # noqa: E731
    members = [_member(0), bomb(98), _member(1), _member(2), bomb(99)]
    sizes = []
    real_subset = PackedRNN.subset

    def spy(self, idx):
        sizes.append(len(idx))
        return real_subset(self, idx)

    monkeypatch.setattr(PackedRNN, "subset", spy)
    packed = train_pack(TASK, cfg, "sgd", members, CFG)
    assert sizes and sizes[-1] == 3, f"the pack never shrank to its 3 survivors: {sizes}"
    assert [r.diverged for r in packed] == [False, True, False, False, True]
    for member, res in zip(members, packed, strict=True):
        alone = train_pack(TASK, cfg, "sgd", [member], CFG)[0]
        assert (alone.diverged, alone.diverged_at) == (res.diverged, res.diverged_at)
        _close(_losses(alone), _losses(res), rel=1e-5)
        _same_diagnostics(alone, res)  # the frozen members' final map too


@pytest.mark.parametrize("arch", ["ugrnn", "lstm"])
def test_fixed_buffer_steps_equal_the_eager_loop(arch, monkeypatch):
    """RNNSWEEP_GRAPHS=1 (on CUDA a replayed graph; here the same fixed-buffer step run
    eagerly): frozen members stay in the pack, masked, and every member's results,
    the diverged ones' included, are those of the eager loop, where they leave it."""
    from rnnsweep.train import _graphs

    cfg = ModelConfig(arch, TASK.n_in, TASK.n_out, 12, 2)
    bomb = MemberSpec(lr=1e3, clip=math.inf, init=InitConfig(seed=99))
    members = [_member(0), bomb, _member(1), _member(2)]
    kinds = ["sgd", "sgd", "adam", "rmsprop"]
    eager = train_pack(TASK, cfg, kinds, members, CFG)
    monkeypatch.setenv("RNNSWEEP_GRAPHS", "1")
    calls = []
    real_call = _graphs.GraphedStep.__call__
    monkeypatch.setattr(
        _graphs.GraphedStep, "__call__", lambda self, b: (calls.append(1), real_call(self, b))[1]
    )
    monkeypatch.setattr(PackedRNN, "subset", lambda *a: pytest.fail("a fixed-buffer pack shrank"))
    fixed = train_pack(TASK, cfg, kinds, members, CFG)
    assert calls, "the fixed-buffer step never ran"
    assert eager[1].diverged and not any(r.diverged for r in eager[::2])
    for a, b in zip(eager, fixed, strict=True):
        assert (a.diverged, a.diverged_at) == (b.diverged, b.diverged_at)
        _close(_losses(a), _losses(b), rel=1e-6)
        _same_diagnostics(a, b)  # a frozen member's final map: its parameters stayed put


def test_graphed_step_copies_each_batch_into_its_fixed_buffers():
    from rnnsweep.train._graphs import GraphedStep

    seen = []
    first = TASK.sample_pack([torch.Generator().manual_seed(0)], 4)
    step = GraphedStep(lambda b: (seen.append(b), b.x.sum())[1:], first)
    second = TASK.sample_pack([torch.Generator().manual_seed(1)], 4)
    (total,) = step(second)
    assert seen[0] is step.batch and seen[0].x is not second.x  # the fixed buffers
    assert float(total) == pytest.approx(float(second.x.sum()))
    with pytest.raises(AssertionError, match="batch"):
        step(TASK.sample_pack([torch.Generator().manual_seed(1)], 5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("fusion", ["0", "1"], ids=["eager-steps", "compiled-steps"])
def test_cuda_graph_training_equals_the_cpu(fusion, monkeypatch):
    """The replayed CUDA graph (warm-up, capture, replays), with and without the compiled
    steps, against the eager CPU loop, a diverging member included. Not run here: no GPU."""

    cfg = ModelConfig("gru", TASK.n_in, TASK.n_out, 12, 2)
    bomb = MemberSpec(lr=1e3, clip=math.inf, init=InitConfig(seed=99))
    members = [_member(0), bomb, _member(1), _member(2)]
    f64 = TrainConfig(steps=12, batch_size=8, eval_every=4, eval_size=16, dtype="float64")
    cpu = train_pack(TASK, cfg, "adam", members, f64)
    monkeypatch.setenv("RNNSWEEP_GRAPHS", "1")
    monkeypatch.setenv("RNNSWEEP_COMPILE", fusion)
    gpu = train_pack(TASK, cfg, "adam", members, f64, backend=resolve_backend("cuda", f64.dtype))
    for a, b in zip(cpu, gpu, strict=True):
        assert (a.diverged, a.diverged_at) == (b.diverged, b.diverged_at)
        _close(_losses(a), _losses(b), rel=1e-6)


def test_a_member_that_diverges_at_initialisation_leaves_the_pack_at_step_0():
    """A member whose held-out loss is already non-finite at step 0 is frozen by the first
    evaluation, before any training step: the pack shrinks before step 0's batch is used,
    and the others still train exactly as alone (this crashed with a batch of the old K)."""
    cfg = ModelConfig("rnn", TASK.n_in, TASK.n_out, 12, 1)
    others = [_member(k) for k in range(3)]
    bomb = MemberSpec(lr=1e-3, clip=1.0, init=InitConfig(init_scale=math.nan, seed=77))
    with_bomb = train_pack(TASK, cfg, "adam", [others[0], bomb, *others[1:]], CFG)
    without = train_pack(TASK, cfg, "adam", others, CFG)
    assert with_bomb[1].diverged and with_bomb[1].diverged_at == 0
    for a, b in zip([with_bomb[0], *with_bomb[2:]], without, strict=True):
        assert _losses(a) == _losses(b)
