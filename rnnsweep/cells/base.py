"""The cell interface: equations of one recurrent layer, packed over K trials.

Every parameter carries a leading *pack* axis K: member k of a pack is an
independent trial with its own initialisation, gate bias and seed. A layer owns

- ``Wx`` ``(K, I, G*H)`` and ``Wh`` ``(K, H, G*H)``: the rows of the single
  per-layer matrix ``[x, h] -> G*H`` (SCIENCE.md section 2), kept as two tensors
  so that the input projection of all time steps is one batched product;
- ``b`` ``(K, 1, G*H)``: the trainable biases of all G gate blocks;
- ``s0`` ``(K, 1, S*H)``: the learned initial state (S = 2 for the LSTM's (h, c));
- ``fg`` ``(K, 1, G*H)``, a buffer: ``b_fg`` in the forget/update gate blocks
  and 0 elsewhere, added to the pre-activations (the equations' ``+ b^{fg}``).

A cell declares its gate count, its state count, which blocks take ``b_fg`` and
its step equations; the input projection and initialisation are shared here.
The per-step ``step`` is the *reference* implementation that the fused kernels
of :mod:`rnnsweep.kernels` are tested against.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal, TypeVar

import torch

__all__ = ["Cell", "InitConfig", "Params", "State", "activation", "for_cell"]

Params = dict[str, torch.Tensor]
State = tuple[torch.Tensor, ...]

Nonlinearity = Literal["tanh", "relu"]


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The pointwise nonlinearity ``s`` by name."""
    if name == "tanh":
        return torch.tanh
    if name == "relu":
        return torch.relu
    raise ValueError(f"unknown nonlinearity {name!r}; choose tanh or relu")


@dataclass(frozen=True)
class InitConfig:
    """Per-member initialisation: what may differ between members of one pack."""

    init_scale: float = 1.0  # sigma: weights ~ N(0, sigma^2 / fan_in), or sigma * orthogonal
    b_fg: float = 0.0  # scalar added to forget/update gate pre-activations (C 3, 7, 10, 18)
    init: Literal["gaussian", "orthogonal", "critical"] = "gaussian"  # recurrent matrices
    seed: int = 0  # the member's own seed: initialisation and data
    # init = "critical": W^h = critical_sigma_w * orthogonal, the sigma_w on the
    # mean-field chi = 1 line (Chen et al. 2018) for this init_scale (= sigma_v),
    # b_fg (= mu_b) and the task's input moment R. rnnsweep.theory.critical
    # computes it; the cells only use it, so they need no theory.
    critical_sigma_w: float | None = None
    input_scale: float | None = None  # sigma_v for W^x (None: init_scale)
    bias_scale: float = 0.0  # sigma_b: biases b ~ N(0, sigma_b^2) at init (Chen et al.)


class Cell:
    """One recurrent layer's equations. Subclasses set the ClassVars and ``step``."""

    name: ClassVar[str]
    title: ClassVar[str]  # human name with the source equations
    n_gates: ClassVar[int]  # G: number of H-wide blocks in the fused matrix
    n_states: ClassVar[int] = 1  # S: tensors in the recurrent state
    fg_blocks: ClassVar[tuple[int, ...]] = ()  # blocks that receive b_fg
    # Nonlinearities a study may choose for ``s``; a single entry means fixed.
    nonlinearities: ClassVar[tuple[str, ...]] = ("tanh", "relu")
    # True when the layer's depth output y differs from its recurrent state h.
    separate_output: ClassVar[bool] = False
    min_depth: ClassVar[int] = 1

    # ---- shapes and counting -------------------------------------------------

    def input_width(self, n_in: int, hidden: int, layer: int) -> int:
        """Width of the sequence that ``Wx`` multiplies in ``layer``."""
        return n_in if layer == 0 else hidden

    def layer_shapes(self, n_in: int, hidden: int, layer: int) -> dict[str, tuple[int, ...]]:
        """Per-member parameter shapes of one layer (no K axis)."""
        width = self.input_width(n_in, hidden, layer)
        gh = self.n_gates * hidden
        return {
            "Wx": (width, gh),
            "Wh": (hidden, gh),
            "b": (1, gh),
            "s0": (1, self.n_states * hidden),
        }

    def resolve_nonlinearity(self, requested: str) -> str:
        """The nonlinearity actually used: fixed cells ignore the request."""
        if len(self.nonlinearities) == 1:
            return self.nonlinearities[0]
        if requested not in self.nonlinearities:
            raise ValueError(
                f"{self.name} takes nonlinearity {' or '.join(self.nonlinearities)}, "
                f"got {requested!r}"
            )
        return requested

    # ---- initialisation ------------------------------------------------------

    def init_layer(
        self, n_in: int, hidden: int, layer: int, cfg: InitConfig, gen: torch.Generator
    ) -> Params:
        """One member's parameters for one layer, float64, drawn in a fixed order."""
        shapes = self.layer_shapes(n_in, hidden, layer)
        p: Params = {}
        for name, shape in shapes.items():
            if name.startswith("W") or name.startswith("V") or name == "P":
                p[name] = self.init_weight(name, shape, hidden, cfg, gen)
            elif name == "b" and cfg.bias_scale > 0:
                p[name] = torch.randn(shape, generator=gen, dtype=torch.float64) * cfg.bias_scale
            else:
                p[name] = torch.zeros(shape, dtype=torch.float64)
        return p

    def init_weight(
        self,
        name: str,
        shape: tuple[int, ...],
        hidden: int,
        cfg: InitConfig,
        gen: torch.Generator,
    ) -> torch.Tensor:
        """Gaussian ``N(0, sigma^2/fan_in)``; recurrent blocks may be ``sigma * orthogonal``."""
        fan_in = shape[0]
        if name == "Wh" and cfg.init in ("orthogonal", "critical") and shape[0] == hidden:
            scale = cfg.init_scale
            if cfg.init == "critical":
                assert cfg.critical_sigma_w is not None, "critical init needs critical_sigma_w"
                scale = cfg.critical_sigma_w
            blocks = [haar_orthogonal(hidden, gen) * scale for _ in range(shape[1] // hidden)]
            return torch.cat(blocks, dim=1)
        w = torch.randn(shape, generator=gen, dtype=torch.float64)
        scale = cfg.init_scale
        if name in ("Wx", "P") and cfg.input_scale is not None:
            scale = cfg.input_scale
        return w * (scale / math.sqrt(fan_in))

    def fg_vector(self, hidden: int, b_fg: float) -> torch.Tensor:
        """``(1, G*H)``: ``b_fg`` in the forget/update blocks, zero elsewhere."""
        v = torch.zeros(1, self.n_gates * hidden, dtype=torch.float64)
        for blk in self.fg_blocks:
            v[:, blk * hidden : (blk + 1) * hidden] = b_fg
        return v

    # ---- the equations ---------------------------------------------------------

    def input_projection(self, p: Params, x: torch.Tensor) -> torch.Tensor:
        """All time steps at once: ``(K, T, B, I) -> (K, T, B, G*H)``."""
        K, T, B, width = x.shape
        xp = torch.bmm(x.reshape(K, T * B, width), p["Wx"])  # (K, T*B, G*H)
        xp = xp + p["b"] + p["fg"]
        return xp.reshape(K, T, B, -1)  # (K, T, B, G*H)

    def initial_state(self, p: Params, batch: int) -> State:
        """The learned initial state, broadcast over the batch: S tensors ``(K, B, H)``."""
        K, _, sh = p["s0"].shape
        s0 = p["s0"].expand(K, batch, sh)  # (K, B, S*H)
        return tuple(s0.chunk(self.n_states, dim=-1))

    def step(
        self, p: Params, xp_t: torch.Tensor, x_t: torch.Tensor, state: State, s: str
    ) -> tuple[State, torch.Tensor]:
        """One time step: ``xp_t`` ``(K, B, G*H)``, ``x_t`` ``(K, B, I)`` -> (state, y_t)."""
        raise NotImplementedError

    def layer_forward(self, p: Params, x: torch.Tensor, s: str) -> torch.Tensor:
        """Per-step reference over a sequence: ``(K, T, B, I) -> (K, T, B, H)``."""
        xp = self.input_projection(p, x)  # (K, T, B, G*H)
        state = self.initial_state(p, x.shape[2])
        outputs = []
        for t in range(x.shape[1]):
            state, y_t = self.step(p, xp[:, t], x[:, t], state, s)
            outputs.append(y_t)
        return torch.stack(outputs, dim=1)  # (K, T, B, H)


def haar_orthogonal(n: int, gen: torch.Generator) -> torch.Tensor:
    """A Haar-random ``(n, n)`` orthogonal matrix (QR with sign fix, Mezzadri 2007)."""
    a = torch.randn(n, n, generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


_V = TypeVar("_V")


def for_cell(table: dict[type, _V], cell: object, what: str) -> _V:
    """The entry of ``table`` for ``cell``'s nearest class in its MRO (an IRNNCell finds
    its RNNCell's); ValueError naming ``what`` where none is registered."""
    for klass in type(cell).__mro__:
        if klass in table:
            return table[klass]
    raise ValueError(f"no {what} for cell {type(cell).__name__!r}")
