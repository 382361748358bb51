"""Packs that mix nonlinearities (issue 17): a trial's numbers do not change with its pack.

The fused time loops read the nonlinearity per member (``s`` as (K,) codes), so a
study's trials of both nonlinearities fill one pack instead of two half packs. Each
member of a mixed pack must equal itself trained alone: bit for bit on the native loop
(a member runs the very same C code either way), to float tolerance on the torch-op one.
"""

from __future__ import annotations

import math

import pytest
import torch

from rnnsweep.backend import resolve_backend
from rnnsweep.cells import InitConfig, ModelConfig, PackedRNN
from rnnsweep.kernels import _native
from rnnsweep.kernels.loops import get_loop
from rnnsweep.tasks import make_task
from rnnsweep.train import MemberSpec, TrainConfig, train_pack

TASK = make_task("parens", {"seq_len": 10})
CFG = TrainConfig(steps=10, batch_size=8, eval_every=5, eval_size=16)
OPTS = ("adam", "rmsprop", "sgd")
NLS = ("relu", "tanh", "tanh", "relu", "tanh", "relu")


def _member(k: int) -> MemberSpec:
    return MemberSpec(
        lr=10 ** (-3 + (k % 5) * 0.4),
        clip=[0.5, 1.0, 5.0, math.inf][k % 4],
        init=InitConfig(init_scale=0.5 + 0.1 * (k % 7), b_fg=-1.0 + 0.5 * (k % 6), seed=50 + k),
    )


def _numbers(res) -> list[float]:
    curve = [v for c in res.curve for v in (c["train_loss"], c["eval_loss"], c["eval_metric"])]
    return [res.initial_loss, res.final_loss, res.metric, float(res.steps_run), *curve]


def _bits(values: list[float]) -> list[str]:
    return ["nan" if math.isnan(v) else float(v).hex() for v in values]


native = pytest.mark.skipif(not _native.available(), reason="native loops not built")


@native
@pytest.mark.parametrize("arch", ["gru", "ugrnn", "lstm", "rnn"])
def test_mixed_pack_member_equals_its_uniform_pack_bit_for_bit_on_the_native_loop(arch):
    """Member k of a mixed pack has the very bits it has in a pack of the same members
    and optimizers where all take k's nonlinearity; and its initial map equals itself
    alone. (Trained alone it is not bit for bit even without mixing: with rmsprop a
    member's last ulp can depend on its slice of the pack, seen here for ugrnn, and ten
    steps at lr 0.04 amplify it to 1e-4; tests/test_packing.py holds it to rel 1e-5.)"""
    backend = resolve_backend("cpu", "float32", "native")
    cfg = ModelConfig(arch, TASK.n_in, TASK.n_out, 8, 2)
    members = [_member(k) for k in range(len(NLS))]
    kinds = [OPTS[k % 3] for k in range(len(NLS))]
    torch.set_num_threads(1)
    mixed = train_pack(TASK, cfg, kinds, members, CFG, backend=backend, nonlinearities=NLS)
    uniform = {
        nl: train_pack(
            TASK, cfg, kinds, members, CFG, backend=backend, nonlinearities=[nl] * len(NLS)
        )  # fmt: skip
        for nl in set(NLS)
    }
    for k, nl in enumerate(NLS):
        assert _bits(_numbers(mixed[k])) == _bits(_numbers(uniform[nl][k])), (arch, k, nl)
        assert mixed[k].diag_init == pytest.approx(uniform[nl][k].diag_init, rel=1e-3)
        alone_cfg = ModelConfig(arch, TASK.n_in, TASK.n_out, 8, 2, nonlinearity=nl)
        alone = train_pack(TASK, alone_cfg, kinds[k], [members[k]], CFG, backend=backend)[0]
        # the initial map and its held-out evaluation, before any update: bit for bit
        assert _bits(_numbers(mixed[k])[4:7]) == _bits(_numbers(alone)[4:7])
        assert mixed[k].initial_loss == alone.initial_loss
        assert mixed[k].diag_init.keys() == alone.diag_init.keys() != set()


@pytest.mark.parametrize("loop", ["torch", "reference"])
def test_mixed_layer_equals_each_nonlinearity_alone(loop):
    """One layer's forward and gradients in a mixed pack equal those of each member's
    uniform pack (the torch-op loop's act/dact with codes; the reference forward by
    groups)."""
    cfg = ModelConfig("gru", TASK.n_in, TASK.n_out, 8, 2)
    inits = [_member(k).init for k in range(len(NLS))]
    mixed = PackedRNN(cfg, inits, nonlinearities=NLS)
    assert isinstance(mixed.s, torch.Tensor)
    x = torch.randn(len(NLS), 10, 4, TASK.n_in, generator=torch.Generator().manual_seed(0))
    out = get_loop(loop).model_forward(mixed, x)
    out.square().sum().backward()
    for k, nl in enumerate(NLS):
        one = PackedRNN(ModelConfig("gru", TASK.n_in, TASK.n_out, 8, 2, nl), [inits[k]])
        ref = get_loop(loop).model_forward(one, x[k : k + 1])
        ref.square().sum().backward()
        torch.testing.assert_close(out[k : k + 1], ref, rtol=1e-6, atol=1e-6)
        for pm, p1 in zip(mixed.parameters(), one.parameters(), strict=True):
            torch.testing.assert_close(pm.grad[k : k + 1], p1.grad, rtol=1e-5, atol=1e-6)


def test_a_loop_that_cannot_mix_refuses_a_mixed_pack():
    backend = resolve_backend("cpu", "float32", "reference")
    cfg = ModelConfig("gru", TASK.n_in, TASK.n_out, 8, 1)
    with pytest.raises(ValueError, match="one nonlinearity per pack"):
        train_pack(TASK, cfg, "adam", [_member(0), _member(1)], CFG, backend=backend,
                   nonlinearities=["tanh", "relu"])  # fmt: skip
