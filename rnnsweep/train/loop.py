"""Training one pack of K trials that share a structure, each with its own fate.

Divergence (Collins et al. 2017's *infeasible*): a member whose training loss, or
held-out loss at an evaluation, is not finite or exceeds ``divergence_factor``
times its own initial training loss is frozen at that step and recorded as
diverged.
This is data, never an error: the other members train on.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import torch

from rnnsweep.backend import Backend, resolve_backend
from rnnsweep.cells import InitConfig, ModelConfig, PackedRNN
from rnnsweep.kernels.heap import keep_freed_buffers
from rnnsweep.tasks.base import Batch, Task
from rnnsweep.train import _graphs

if TYPE_CHECKING:
    from rnnsweep.kernels.loops import TimeLoop
from rnnsweep.train.optim import OPTIMIZERS, PackedOptimizer, clip_grad_norm_packed

__all__ = ["MemberResult", "MemberSpec", "TrainConfig", "train_pack"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Held-out sequences per forward of an evaluation on the CPU: a pack's per-step buffers
# then fit in the caches as a training batch's do (a GPU takes the whole set at once).
# The 256 held-out sequences of a gru pack of 27 (depth 2, hidden 64) took 721 ms in one
# forward, 425 ms in chunks of 32, with identical outputs (docs/PERFORMANCE.md, issue 17).
EVAL_CHUNK = 32


@dataclass(frozen=True)
class TrainConfig:
    """How every member of a pack is trained (shared by the pack)."""

    steps: int = 300  # optimizer steps per trial
    batch_size: int = 32  # sequences per step
    eval_every: int = 25  # learning-curve resolution (steps)
    eval_size: int = 256  # held-out sequences per evaluation
    eval_seed: int = 1_000_003  # the held-out set's seed, shared by every trial of a study
    divergence_factor: float = 10.0  # train loss > factor * initial loss => diverged
    momentum: float = 0.9  # SGD heavy-ball momentum
    dtype: str = "float32"
    # Ribeiro-style smoothness diagnostics at initialisation and after training
    # (rnnsweep.theory.diagnostics), on diagnostic_sequences held-out sequences.
    diagnostics: bool = True
    diagnostic_sequences: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MemberSpec:
    """One trial's own hyperparameters inside a pack."""

    lr: float
    clip: float  # max global gradient norm (inf: no clipping)
    init: InitConfig = field(default_factory=InitConfig)


@dataclass
class MemberResult:
    """What one trial of a pack produced."""

    diverged: bool
    diverged_at: int | None  # step at which divergence was detected
    steps_run: int
    initial_loss: float  # training loss at step 0
    final_loss: float  # evaluation loss at the end (nan when diverged)
    best_loss: float  # lowest evaluation loss on the curve (nan if none finite)
    metric: float  # task metric at the end (nan when diverged)
    wall_time: float  # pack wall time / K (seconds)
    curve: list[dict[str, float]]  # {"step", "train_loss", "eval_loss", "eval_metric"}
    diag_init: dict[str, float] = field(default_factory=dict)  # diagnostics at step 0
    diag_final: dict[str, float] = field(default_factory=dict)  # ... after training
    diag_time: float = 0.0  # seconds the diagnostics took (pack / K)


def _diagnose(model: PackedRNN, x: torch.Tensor) -> list[dict]:
    """Cheap settings of :func:`rnnsweep.theory.diagnostics.diagnose` (model dtype,
    20 Lanczos steps, one sequence for the end-to-end spectrum): its cost is
    measured in docs/PERFORMANCE.md. Never fails a trial: on error, empty dicts."""
    from rnnsweep.theory.diagnostics import diagnose

    groups = model.nonlinearity_groups()
    if len(groups) > 1:  # a mixed pack: the diagnostics' step map takes one nonlinearity
        out: list[dict] = [{} for _ in range(model.K)]
        for idx in groups.values():
            sel = torch.tensor(idx, dtype=torch.long, device=x.device)
            for k, d in zip(idx, _diagnose(model.subset(idx), x.index_select(0, sel)), strict=True):
                out[k] = d
        return out
    try:
        with torch.no_grad():
            return diagnose(model, x.detach(), iters=20, n_batch=1, dtype=None)
    except (RuntimeError, ValueError) as exc:  # noqa: F841 - diagnostics are best effort
        return [{} for _ in range(model.K)]


class _LivePack:
    """The members still training, as one pack: shrinks as members freeze.

    A frozen (diverged) member's parameters never change again, so computing it on
    would be wasted work: :meth:`compact` copies the live parameters back into the
    full pack (which keeps every member for the final diagnostics) and goes on with
    the active members only, each with its own optimizer state, clipping threshold
    and data stream. No member's numbers depend on which others share its pack.
    """

    def __init__(
        self,
        full: PackedRNN,
        loop: TimeLoop,
        opt: PackedOptimizer,
        clip: torch.Tensor,  # (K,)
        gens: list[torch.Generator],
        eval_one: Batch,
        device: str | torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.full, self.loop, self.opt = full, loop, opt
        self.eval_one, self.device, self.dtype = eval_one, device, dtype
        self.clip, self.gens = clip, gens
        self.ids = list(range(full.K))  # live position -> member position
        self._use(full)

    def _use(self, model: PackedRNN) -> None:
        self.model = model
        self.forward = functools.partial(self.loop.model_forward, model)
        self.params = list(model.parameters())
        self.live = torch.tensor(self.ids, dtype=torch.long, device=self.device)
        n = len(self.ids)
        self.eval_batch = Batch.stack([self.eval_one] * n).to(self.device, self.dtype)
        x = self.eval_batch.x  # (n, T, B_eval, I)
        chunk = EVAL_CHUNK if torch.device(self.device).type == "cpu" else x.shape[2]
        starts = range(0, x.shape[2], chunk)
        self.eval_chunks = [x[:, :, i : i + chunk].contiguous() for i in starts]

    def eval_forward(self) -> torch.Tensor:
        """The live members' outputs on the held-out set ``(n, T, B_eval, O)``, run
        ``EVAL_CHUNK`` sequences at a time (each sequence's numbers do not depend on
        the others it runs with, so the result is the whole batch's, bit for bit)."""
        return torch.cat([self.forward(x) for x in self.eval_chunks], dim=2)

    def compact(self, active: torch.Tensor) -> torch.Tensor:
        """Keep the active members only; returns the new (all-true) active mask."""
        keep = torch.nonzero(active).flatten()
        pos = keep.tolist()
        self.write_back()
        model = self.model.subset(pos)
        self.opt.keep(keep, list(model.parameters()))
        self.clip = self.clip[keep]
        self.gens = [self.gens[i] for i in pos]
        self.ids = [self.ids[i] for i in pos]
        self._use(model)
        return torch.ones(len(pos), dtype=torch.bool, device=self.device)

    def write_back(self) -> None:
        """Copy the live members' parameters into the full pack."""
        if self.model is not self.full:
            self.full.write_members(self.model, self.ids)


def _data_seed(seed: int) -> int:
    """A member's training-data seed, decorrelated from its initialisation seed."""
    return (seed * 2_654_435_761 + 97) % (2**63 - 1)


def _train_step(
    pack: _LivePack,
    task: Task,
    batch: Batch,
    active: torch.Tensor,
    initial: torch.Tensor,
    factor: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Steps 2-5 of one training step of the live members, as device work only (no host
    synchronisation, fixed shapes: a CUDA graph can capture it, see ``_graphs``).

    ``active`` ``(n,)`` is updated in place; returns the training losses ``(n,)`` and
    the members frozen by the loss check and by the gradient check ``(n,)`` bool each.
    """
    losses = task.loss(pack.forward(batch.x), batch)  # (n,)

    # 3. Divergence: non-finite, or above divergence_factor x the initial loss.
    ok = torch.isfinite(losses) & (losses <= factor * initial)
    bad_loss = active & ~ok
    active &= ok

    # 4. Backward on the active members only: a frozen member's NaN never enters.
    total = torch.where(active, losses, torch.zeros_like(losses)).sum()
    pack.opt.zero_grad()
    total.backward()

    # 5. Per-member clipping, then a masked batched update. A non-finite gradient
    #    norm is divergence too (the loss was finite, its slope not).
    finite = torch.isfinite(clip_grad_norm_packed(pack.params, pack.clip))
    bad_grad = active & ~finite
    active &= finite
    pack.opt.step(active)
    return losses.detach(), bad_loss, bad_grad


def train_pack(
    task: Task,
    model_cfg: ModelConfig,
    optimizer: str | Sequence[str],
    members: Sequence[MemberSpec],
    cfg: TrainConfig,
    *,
    backend: Backend | None = None,
    on_step: Callable[[int], None] | None = None,
    nonlinearities: Sequence[str] | None = None,
) -> list[MemberResult]:
    """Train K members of one structure together; return one result per member.

    ``nonlinearities`` (one per member) lets a pack mix them where the backend's time
    loop can (``mixes_nonlinearity``); default: ``model_cfg.nonlinearity`` for all.

    ``backend`` (:mod:`rnnsweep.backend`) says where and how: device, time loop
    (per-step autograd ``reference``, or the fused kernels of :mod:`rnnsweep.kernels`
    with their ``torch``/``compiled``/``native``/``blas`` loops: the same function, held
    to float tolerance by the tests) and graphs. Default: the CPU in ``cfg.dtype``, the
    loop the environment names, else ``auto``'s. The backend's dtype must be ``cfg.dtype``.
    """
    if backend is None:
        backend = resolve_backend("cpu", cfg.dtype)
    assert backend.dtype == cfg.dtype, f"backend {backend.dtype} for a {cfg.dtype} config"
    device = backend.device
    kinds = [optimizer] * len(members) if isinstance(optimizer, str) else list(optimizer)
    assert all(k in OPTIMIZERS for k in kinds), f"optimizers {kinds} not all in {OPTIMIZERS}"
    assert cfg.steps >= 1 and cfg.eval_every >= 1, "steps and eval_every must be >= 1"
    # Members of one optimizer side by side, so that each optimizer updates its slice of
    # the pack in place (PackedOptimizer); the results go back in the callers' order.
    order = sorted(range(len(members)), key=lambda k: OPTIMIZERS.index(kinds[k]))
    if order != list(range(len(members))):
        results = train_pack(
            task,
            model_cfg,
            [kinds[k] for k in order],
            [members[k] for k in order],
            cfg,
            backend=backend,
            on_step=on_step,
            nonlinearities=None if nonlinearities is None else [nonlinearities[k] for k in order],
        )
        by_member = dict(zip(order, results, strict=True))
        return [by_member[k] for k in range(len(members))]
    t_start = time.perf_counter()
    dtype = _DTYPES[cfg.dtype]
    K = len(members)
    if torch.device(device).type == "cpu":
        keep_freed_buffers()  # per-step buffers stay on the heap (see rnnsweep.kernels.heap)

    # 1. Model, per-member hyperparameters, optimizer, data streams and held-out set.
    full = PackedRNN(
        model_cfg, [m.init for m in members], dtype=dtype, device=device,
        nonlinearities=nonlinearities,
    )  # fmt: skip
    if isinstance(full.s, torch.Tensor) and not backend.time_loop.mixes_nonlinearity:
        raise ValueError(f"the {backend.loop} loop runs one nonlinearity per pack")
    lr = torch.tensor([m.lr for m in members], dtype=dtype, device=device)  # (K,)
    clip = torch.tensor([m.clip for m in members], dtype=dtype, device=device)  # (K,)
    opt = PackedOptimizer(list(full.parameters()), kinds, lr, momentum=cfg.momentum)
    gens = [torch.Generator().manual_seed(_data_seed(m.init.seed)) for m in members]
    eval_one = task.eval_batch(cfg.eval_seed, cfg.eval_size)
    pack = _LivePack(full, backend.time_loop, opt, clip, gens, eval_one, device, dtype)

    # Per-member records, indexed by the member's position in ``members``; ``active``
    # and the tensors of ``pack`` are indexed by position in the live pack.
    active = torch.ones(K, dtype=torch.bool, device=device)
    diverged_at: list[int | None] = [None] * K
    curves: list[list[dict[str, float]]] = [[] for _ in range(K)]
    last_eval = torch.full((K,), math.nan, dtype=dtype, device=device)
    last_metric = torch.full((K,), math.nan, dtype=dtype, device=device)

    def evaluate(step: int, train_loss: torch.Tensor) -> None:
        nonlocal active  # updated in place (a graphed step reads this very tensor)
        with torch.no_grad():
            out = pack.eval_forward()
            ev = task.loss(out, pack.eval_batch)  # (n,)
            met = task.metric(out, pack.eval_batch)  # (n,)
        # The held-out loss obeys the same rule as the training loss: an update
        # that blows the model up is caught at the evaluation that follows it.
        limit = cfg.divergence_factor * initial[pack.live]
        bad = active & ~(torch.isfinite(ev) & (ev <= limit))
        for k in torch.nonzero(bad).flatten().tolist():
            diverged_at[pack.ids[k]] = step
        active &= ~bad
        for k, orig in enumerate(pack.ids):
            if diverged_at[orig] is None or diverged_at[orig] == step:
                curves[orig].append(
                    {
                        "step": step,
                        "train_loss": float(train_loss[k]),
                        "eval_loss": float(ev[k]),
                        "eval_metric": float(met[k]),
                    }
                )
        last_eval[pack.live] = torch.where(active, ev, last_eval[pack.live])
        last_metric[pack.live] = torch.where(active, met, last_metric[pack.live])

    # 1b. Smoothness diagnostics of the initial map, on a few held-out sequences.
    diag_x = pack.eval_batch.x[:, :, : cfg.diagnostic_sequences]  # (K, T, b, I)
    diag_time = 0.0
    diag_init: list[dict] = [{} for _ in range(K)]
    if cfg.diagnostics:
        t_diag = time.perf_counter()
        diag_init = _diagnose(full, diag_x)
        diag_time += time.perf_counter() - t_diag

    def freeze(bad: torch.Tensor, step: int, losses: torch.Tensor) -> None:
        """Record live members ``bad`` (n,) as diverged at ``step`` (``active`` already
        says so: the step's device work updated it)."""
        for k in torch.nonzero(bad).flatten().tolist():
            diverged_at[pack.ids[k]] = step
            curves[pack.ids[k]].append(
                {
                    "step": step,
                    "train_loss": float(losses[k]),
                    "eval_loss": math.nan,
                    "eval_metric": math.nan,
                }
            )

    # 1c. Step 0's batch and the initial training losses the divergence rule compares
    #     with (step 0 computes the same numbers again, with autograd on: the step is
    #     device work only, so it cannot stop halfway to set them), then the held-out
    #     set at initialisation.
    batch = task.sample_pack(pack.gens, cfg.batch_size).to(device, dtype)
    with torch.no_grad():
        initial = task.loss(pack.forward(batch.x), batch)  # (K,)
    evaluate(0, initial)

    def run_step(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return _train_step(pack, task, batch, active, initial[pack.live], cfg.divergence_factor)

    # On fixed buffers (RNNSWEEP_GRAPHS=1): frozen members stay in the pack, masked, so
    # that shapes and buffers never change; on CUDA the step is a replayed graph.
    graphed = _graphs.GraphedStep(run_step, batch) if backend.graphs else None

    step = 0
    for step in range(cfg.steps):
        # 2. Drop frozen members from the pack (their parameters are final), then
        #    one step of every live member on its own batch.
        if not bool(active.any()):  # the last ones diverged at an evaluation
            break
        if graphed is None and not bool(active.all()):
            keep = torch.nonzero(active).flatten()  # live positions before compaction
            active = pack.compact(active)
            if step == 0:  # step 0's batch was drawn for the whole pack: keep the live rows
                batch = Batch(batch.x[keep], batch.y[keep], batch.mask[keep])
        if step > 0:
            batch = task.sample_pack(pack.gens, cfg.batch_size).to(device, dtype)
        losses, bad_loss, bad_grad = (graphed or run_step)(batch)
        # the step's one synchronisation: which members it froze, and why
        bad = torch.stack([bad_loss, bad_grad]).cpu()  # (2, n)
        if bool(bad.any()):
            lost = losses.cpu()
            freeze(bad[0], step, lost)
            freeze(bad[1], step, lost)
            if not bool(active.any()):
                break
        if on_step is not None:
            on_step(step + 1)

        # 6. Learning curve on the held-out set.
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.steps:
            evaluate(done, losses)

    # 7. Diagnostics of the trained map (a diverged member's last finite one).
    pack.write_back()
    diag_final: list[dict] = [{} for _ in range(K)]
    if cfg.diagnostics:
        t_diag = time.perf_counter()
        diag_final = _diagnose(full, diag_x)
        diag_time += time.perf_counter() - t_diag

    # 8. One result per member.
    wall = (time.perf_counter() - t_start) / K
    results = []
    for k in range(K):
        div = diverged_at[k] is not None
        evals = [c["eval_loss"] for c in curves[k] if math.isfinite(c["eval_loss"])]
        results.append(
            MemberResult(
                diverged=div,
                diverged_at=diverged_at[k],
                steps_run=diverged_at[k] if div else cfg.steps,
                initial_loss=float(initial[k]),
                final_loss=math.nan if div else float(last_eval[k]),
                best_loss=min(evals) if evals else math.nan,
                metric=math.nan if div else float(last_metric[k]),
                wall_time=wall,
                curve=curves[k],
                diag_init=diag_init[k],
                diag_final=diag_final[k],
                diag_time=diag_time / K,
            )
        )
    return results
