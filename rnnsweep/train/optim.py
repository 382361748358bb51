"""Batched optimizers and per-member gradient clipping for a pack of K trials.

Every parameter tensor has a leading K axis. Each member has its own learning
rate and clipping threshold, and an ``active`` mask freezes diverged members:
their parameters and optimizer state stop changing, so a NaN in one member can
never reach another (the update of member k reads only slice k).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["OPTIMIZERS", "PackedOptimizer", "clip_grad_norm_packed"]

OPTIMIZERS = ("adam", "rmsprop", "sgd")


def _per_member(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a ``(K,)`` vector to broadcast against ``like`` ``(K, ...)``."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def clip_grad_norm_packed(params: Sequence[torch.Tensor], max_norm: torch.Tensor) -> torch.Tensor:
    """Scale each member's gradient so its global 2-norm is at most ``max_norm[k]``.

    Returns the per-member norms ``(K,)`` before clipping (inf/NaN where the
    gradient is not finite; such members' gradients are zeroed and the member
    is left to the divergence check).
    """
    grads = [p.grad for p in params if p.grad is not None]
    sq = torch.stack([g.reshape(g.shape[0], -1).pow(2).sum(dim=1) for g in grads]).sum(dim=0)
    norm = sq.sqrt()  # (K,)
    ok = torch.isfinite(norm)  # (K,)
    scale = torch.clamp(max_norm / (norm + 1e-12), max=1.0)  # (K,)
    for g in grads:
        # A select, not a multiply by 0: 0 * NaN and 0 * inf are NaN.
        g.copy_(torch.where(_per_member(ok, g), g * _per_member(scale, g), torch.zeros_like(g)))
    return norm


class PackedOptimizer:
    """Adam, RMSprop or SGD with momentum, one learning rate per member.

    Follows torch.optim's update rules (Adam: Kingma & Ba 2015 with bias
    correction; RMSprop: ``alpha = 0.99``, no centring; SGD: heavy-ball momentum
    ``v = mu v + g``, ``p -= lr v``) so a K = 1 pack matches torch.optim.
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        kind: str,
        lr: torch.Tensor,
        *,
        momentum: float = 0.9,
        betas: tuple[float, float] = (0.9, 0.999),
        alpha: float = 0.99,
        eps: float = 1e-8,
    ) -> None:
        if kind not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {kind!r}; choose one of {', '.join(OPTIMIZERS)}")
        self.params = list(params)
        self.kind = kind
        self.lr = lr  # (K,)
        self.momentum, self.betas, self.alpha, self.eps = momentum, betas, alpha, eps
        self.t = torch.zeros_like(lr)  # (K,) steps taken per member (Adam bias correction)
        self.state = [
            (torch.zeros_like(p), torch.zeros_like(p) if kind == "adam" else None)
            for p in self.params
        ]

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        """One update of the active members ``(K,)`` bool; frozen members are untouched."""
        self.t = torch.where(active, self.t + 1, self.t)
        b1, b2 = self.betas
        for p, (m, v) in zip(self.params, self.state, strict=True):
            if p.grad is None:
                continue
            act = _per_member(active, p)
            g = torch.where(act, p.grad, torch.zeros_like(p.grad))
            lr = _per_member(self.lr, p)
            if self.kind == "sgd":
                m.copy_(torch.where(act, self.momentum * m + g, m))
                upd = lr * m
            elif self.kind == "rmsprop":
                m.copy_(torch.where(act, self.alpha * m + (1 - self.alpha) * g * g, m))
                upd = lr * g / (m.sqrt() + self.eps)
            else:
                m.copy_(torch.where(act, b1 * m + (1 - b1) * g, m))
                v.copy_(torch.where(act, b2 * v + (1 - b2) * g * g, v))
                t = _per_member(self.t.clamp_min(1), p)
                m_hat = m / (1 - b1**t)
                v_hat = v / (1 - b2**t)
                upd = lr * m_hat / (v_hat.sqrt() + self.eps)
            p.copy_(torch.where(act, p - upd, p))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None
