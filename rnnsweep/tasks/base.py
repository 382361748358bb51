"""The task interface: synthetic sequence problems generated on the fly.

A task turns a ``torch.Generator`` into a :class:`Batch` for *one* pack member;
the trainer stacks K members' batches along a leading axis, so every member's
data depends only on its own seed (a trial's results do not depend on the pack
it landed in). The model emits ``n_out`` features per step; the task alone knows
how to read them (``loss`` and ``metric``), so heads with several softmaxes
(parens) or real outputs (memory) need no special casing in the model.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

__all__ = ["Batch", "ClassificationTask", "RegressionTask", "Task", "TaskOptionError"]


class TaskOptionError(ValueError):
    """A task option is unknown or out of range (turned into a SpecError upstream)."""


def _int_option(task: str, option: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` checked to be an int in ``[low, high]``, else TaskOptionError naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TaskOptionError(f"{task} option {option} must be an integer, got {value!r}")
    if value < low:
        raise TaskOptionError(f"{task} option {option} must be >= {low}, got {value!r}")
    if high is not None and value > high:
        raise TaskOptionError(f"{task} option {option} must be <= {high}, got {value!r}")
    return value


def _float_option(task: str, option: str, value: Any, low: float, high: float) -> float:
    """``value`` checked to be a real number in ``[low, high)``, else TaskOptionError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise TaskOptionError(f"{task} option {option} must be a real number, got {value!r}")
    if not low <= value < high:
        raise TaskOptionError(f"{task} option {option} must be in [{low}, {high}), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Batch:
    """Inputs and targets, for one member ``(T, B, ...)`` or a pack ``(K, T, B, ...)``.

    ``y`` is ``long`` class indices ``(..., T, B, S)`` for classification with S
    independent softmaxes, or ``float`` ``(..., T, B, n_out)`` for regression.
    ``mask`` ``(..., T, B)`` is 1.0 where the loss and metric apply, 0.0 elsewhere.
    """

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Batch:
        x = self.x.to(device=device, dtype=dtype) if dtype is not None else self.x.to(device)
        mask = self.mask.to(device=device, dtype=x.dtype)
        y = self.y.to(device)
        if y.is_floating_point() and dtype is not None:
            y = y.to(dtype)
        return Batch(x, y, mask)

    @staticmethod
    def at_end(x: torch.Tensor, target: torch.Tensor) -> Batch:
        """A batch scored at its last step only: inputs ``x`` ``(T, B, n_in)`` and the last
        step's target ``(B, S)`` (class indices) or ``(B, n_out)`` (reals); y is zero and
        unmasked elsewhere."""
        T, B = x.shape[:2]
        y = target.new_zeros(T, *target.shape)  # (T, B, S) or (T, B, n_out)
        y[-1] = target
        mask = torch.zeros(T, B)  # (T, B)
        mask[-1] = 1.0
        return Batch(x, y, mask)

    @staticmethod
    def stack(batches: list[Batch]) -> Batch:
        """Stack K members' batches along a new leading pack axis."""
        return Batch(
            torch.stack([b.x for b in batches]),  # (K, T, B, n_in)
            torch.stack([b.y for b in batches]),  # (K, T, B, S) or (K, T, B, n_out)
            torch.stack([b.mask for b in batches]),  # (K, T, B)
        )


class Task(ABC):
    """A synthetic sequence task.

    Subclasses set the class attributes, accept their options as keyword
    arguments in ``__init__`` (validating them, raising TaskOptionError with the
    offending value), and implement ``sample``. Classification tasks inherit
    ``loss``/``metric`` from :class:`ClassificationTask`, regression tasks from
    :class:`RegressionTask`.
    """

    name: ClassVar[str]
    kind: ClassVar[Literal["classification", "regression"]]
    metric_name: ClassVar[str]  # e.g. "accuracy", "mse"
    higher_metric_is_better: ClassVar[bool]
    description: ClassVar[str]  # one line, shown by `rnnsweep tasks`

    n_in: int
    n_out: int
    seq_len: int
    solved_threshold: float  # an eval loss below this counts as "solved"

    @abstractmethod
    def sample(self, generator: torch.Generator, batch_size: int) -> Batch:
        """One member's batch ``(T, B, ...)`` on the CPU, deterministic for the generator."""

    def sample_pack(self, generators: Sequence[torch.Generator], batch_size: int) -> Batch:
        """Every member's batch, stacked ``(K, T, B, ...)``: member k's is exactly
        ``sample(generators[k], batch_size)``. A task may form all of them in one pass."""
        return Batch.stack([self.sample(g, batch_size) for g in generators])

    def eval_batch(self, seed: int, size: int) -> Batch:
        """The held-out evaluation set: ``size`` samples from a seed of its own."""
        g = torch.Generator().manual_seed(seed)
        return self.sample(g, size)

    @abstractmethod
    def loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Per-member mean loss ``(K,)`` from model output ``(K, T, B, n_out)``."""

    @abstractmethod
    def metric(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Per-member evaluation metric ``(K,)``."""

    def summary(self, eval_loss: float, metric: float, n_params: int) -> dict[str, float]:
        """Task-specific extra numbers stored with a trial (e.g. bits per parameter)."""
        return {}

    def objective(self, eval_loss: float, metric: float) -> float:
        """The value an adaptive sampler minimises for a finished trial: the eval loss,
        unless a task measures something else (capacity: minus the stored bits)."""
        return eval_loss

    def options(self) -> dict[str, Any]:
        """The task's resolved options, stored with every trial's config."""
        return {}

    @property
    def T(self) -> int:
        """The sequence length a model unrolls over (every task's own answer)."""
        return self.seq_len

    @functools.cached_property
    def R(self) -> float:
        """The input moment ``R = E[x^2]`` per input unit (Chen et al.'s mean-field input
        variance), over the first 64 held-out sequences of seed 0, in float64. One value
        per task instance, so one per study: the trials' ``xi`` and the report's xi
        contours both read it."""
        return float((self.eval_batch(0, 64).x.double() ** 2).mean())


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over (T, B) of ``values`` ``(K, T, B)`` where ``mask`` is 1, per member ``(K,)``."""
    total = (values * mask).sum(dim=(-2, -1))
    count = mask.sum(dim=(-2, -1)).clamp_min(1.0)
    return total / count


class ClassificationTask(Task):
    """S independent softmaxes over C classes each: ``n_out = S * C``, ``y`` ``(K, T, B, S)``."""

    kind = "classification"
    metric_name = "accuracy"
    higher_metric_is_better = True
    n_streams: int  # S
    n_classes: int  # C

    def _logits(self, out: torch.Tensor) -> torch.Tensor:
        K, T, B, _ = out.shape
        return out.reshape(K, T, B, self.n_streams, self.n_classes)  # (K, T, B, S, C)

    def loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        logits = self._logits(out)  # (K, T, B, S, C)
        # -log softmax(z)_y = log sum exp(z) - z_y, shifted by the (constant) row maximum;
        # spelled out because torch's CPU log_softmax over a short last axis measured
        # 3.5x slower (12.6 vs 3.5 ms fwd+bwd for a pack of 32 on parens). NaN stays NaN.
        z = logits - logits.detach().amax(dim=-1, keepdim=True)
        nll = z.exp().sum(dim=-1).log() - z.gather(-1, batch.y.unsqueeze(-1)).squeeze(-1)
        return _masked_mean(nll.mean(dim=-1), batch.mask)

    def metric(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        hit = (self._logits(out).argmax(dim=-1) == batch.y).to(out.dtype)  # (K, T, B, S)
        return _masked_mean(hit.mean(dim=-1), batch.mask)

    def chance_loss(self) -> float:
        return math.log(self.n_classes)


class RegressionTask(Task):
    """Real targets ``y`` ``(K, T, B, n_out)``, squared error averaged over outputs."""

    kind = "regression"
    metric_name = "mse"
    higher_metric_is_better = False

    def loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        sq = ((out - batch.y) ** 2).mean(dim=-1)  # (K, T, B)
        return _masked_mean(sq, batch.mask)

    def metric(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.loss(out, batch)
