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


def _runs(kinds: Sequence[str]) -> list[tuple[str, int, int]]:
    """Maximal runs of one optimizer kind: ``(kind, lo, hi)`` with ``kinds[lo:hi]`` all ``kind``."""
    runs: list[tuple[str, int, int]] = []
    for k, kind in enumerate(kinds):
        if runs and runs[-1][0] == kind:
            runs[-1] = (kind, runs[-1][1], k + 1)
        else:
            runs.append((kind, k, k + 1))
    return runs


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
    """Adam, RMSprop or SGD with momentum: one learning rate, and one optimizer, per member.

    Follows torch.optim's update rules (Adam: Kingma & Ba 2015 with bias
    correction; RMSprop: ``alpha = 0.99``, no centring; SGD: heavy-ball momentum
    ``v = mu v + g``, ``p -= lr v``) so a K = 1 pack matches torch.optim.

    ``kind`` is one optimizer for the whole pack or one per member. Members of
    different kinds share the state tensors (member k only ever reads slice k,
    with its own rule), so a pack need not be split by optimizer. Where members of
    one kind sit side by side (``train_pack`` orders them so) and all are active,
    each kind updates its slice of the pack in place; otherwise each kind's update
    is computed for the whole pack and selected per member. Either way every
    member's numbers are exactly those it would get alone.
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        kind: str | Sequence[str],
        lr: torch.Tensor,
        *,
        momentum: float = 0.9,
        betas: tuple[float, float] = (0.9, 0.999),
        alpha: float = 0.99,
        eps: float = 1e-8,
    ) -> None:
        kinds = [kind] * lr.shape[0] if isinstance(kind, str) else list(kind)
        assert len(kinds) == lr.shape[0], f"{len(kinds)} optimizer kinds for {lr.shape[0]} members"
        for k in kinds:
            if k not in OPTIMIZERS:
                raise ValueError(f"unknown optimizer {k!r}; choose one of {', '.join(OPTIMIZERS)}")
        self.params = list(params)
        self.kinds = kinds
        # (K,) bool per kind present: which members follow which rule.
        self.masks = {
            k: torch.tensor([x == k for x in kinds], device=lr.device)
            for k in OPTIMIZERS
            if k in kinds
        }
        self.runs = _runs(kinds)
        self.lr = lr  # (K,)
        self.momentum, self.betas, self.alpha, self.eps = momentum, betas, alpha, eps
        self.t = torch.zeros_like(lr)  # (K,) steps taken per member (Adam bias correction)
        self.state = [
            (torch.zeros_like(p), torch.zeros_like(p) if "adam" in self.masks else None)
            for p in self.params
        ]

    def _advance(self, kind: str, m, v, g, lr, t) -> torch.Tensor:
        """Advance the moments ``m``, ``v`` in place under ``kind``'s rule; return the step
        to subtract. The same in-place arithmetic serves both paths of :meth:`step`, so a
        member's numbers never depend on whether a frozen member shares its pack."""
        if kind == "sgd":
            m.mul_(self.momentum).add_(g)
            return m * lr
        if kind == "rmsprop":
            m.mul_(self.alpha).addcmul_(g, g, value=1 - self.alpha)
            return (g * lr).div_(m.sqrt().add_(self.eps))
        b1, b2 = self.betas
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (v / (1 - b2**t)).sqrt_().add_(self.eps)  # sqrt(v_hat) + eps
        return (m * (lr / (1 - b1**t))).div_(denom)  # lr m_hat / (sqrt(v_hat) + eps)

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        """One update of the active members ``(K,)`` bool; frozen members are untouched.

        When every member is active and the members of each rule sit side by side (the
        usual case on the CPU, where frozen members leave the pack), each rule updates
        its slice of the state in place: a third of the passes through memory of the
        selecting path below, and one rule's arithmetic per member instead of all.
        """
        self.t.copy_(torch.where(active, self.t + 1, self.t))  # in place: a CUDA graph's buffer
        in_place = (
            len(self.runs) == len(self.masks) and active.device.type == "cpu" and bool(active.all())
        )
        steps = self.t.clamp_min(1)  # (K,): Adam's bias-correction exponent
        for p, (m, v) in zip(self.params, self.state, strict=True):
            if p.grad is None:
                continue
            lr, t = _per_member(self.lr, p), _per_member(steps, p)
            if in_place:
                for kind, lo, hi in self.runs:  # views: the update lands in place
                    vs = None if v is None else v[lo:hi]
                    upd = self._advance(kind, m[lo:hi], vs, p.grad[lo:hi], lr[lo:hi], t[lo:hi])
                    p[lo:hi].sub_(upd)
                continue
            act = _per_member(active, p)
            g = torch.where(act, p.grad, torch.zeros_like(p.grad))
            m_new, v_new, upd = m, v, None  # each kind's rows replace these (torch.where)
            for kind, mask in self.masks.items():
                km, kv = m.clone(), None if v is None else v.clone()
                ku = self._advance(kind, km, kv, g, lr, t)
                sel = _per_member(mask, p)
                m_new = torch.where(sel, km, m_new)
                if kind == "adam":
                    v_new = torch.where(sel, kv, v_new)
                upd = ku if upd is None else torch.where(sel, ku, upd)
            m.copy_(torch.where(act, m_new, m))
            if v is not None and v_new is not None:
                v.copy_(torch.where(act, v_new, v))
            p.copy_(torch.where(act, p - upd, p))

    def keep(self, idx: torch.Tensor, params: Sequence[torch.Tensor]) -> None:
        """Go on with members ``idx`` ``(n,)`` only, now living in ``params`` (a pack of n).

        Each kept member's state (moments, step count, learning rate, optimizer kind)
        moves with it unchanged, so its updates are those it would get in any pack.
        """
        sel = idx.tolist()
        self.params = list(params)
        self.kinds = [self.kinds[i] for i in sel]
        self.runs = _runs(self.kinds)
        self.masks = {k: m[idx] for k, m in self.masks.items() if k in self.kinds}
        self.lr, self.t = self.lr[idx], self.t[idx]
        self.state = [(m[idx], None if v is None else v[idx]) for m, v in self.state]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None
