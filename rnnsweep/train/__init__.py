"""Training a pack of trials: batched optimizers and the training loop."""

from __future__ import annotations

from rnnsweep.train.loop import MemberResult, MemberSpec, TrainConfig, train_pack
from rnnsweep.train.optim import OPTIMIZERS, PackedOptimizer, clip_grad_norm_packed

__all__ = [
    "OPTIMIZERS",
    "MemberResult",
    "MemberSpec",
    "PackedOptimizer",
    "TrainConfig",
    "clip_grad_norm_packed",
    "train_pack",
]
