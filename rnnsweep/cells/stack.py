"""A packed stack of recurrent layers with a linear readout.

``PackedRNN`` holds K independent trials of one structure (arch, depth, width,
nonlinearity). Layer l reads the sequence that layer l-1 outputs (``y`` for the
+RNN, ``h`` otherwise); the readout maps the top layer's output to the task
output (SCIENCE.md section 2). Its ``forward`` is the per-step reference.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

from rnnsweep.cells.base import Cell, InitConfig, Params
from rnnsweep.cells.zoo import (
    GRUCell,
    GRUTorchCell,
    IRNNCell,
    LSTMCell,
    MinimalRNNCell,
    PlusRNNCell,
    RNNCell,
    UGRNNCell,
)

__all__ = [
    "ARCHS",
    "ModelConfig",
    "PackedRNN",
    "canonical_arch",
    "count_params",
    "get_cell",
    "hidden_for_budget",
]

_CELLS: dict[str, type[Cell]] = {
    c.name: c
    for c in (RNNCell, IRNNCell, UGRNNCell, GRUCell, LSTMCell, PlusRNNCell, MinimalRNNCell)
}
ARCHS: tuple[str, ...] = tuple(_CELLS)
ALIASES = {"+rnn": "plusrnn", "intersection": "plusrnn", "minimal": "minimalrnn"}
GRU_RESETS = ("pre", "post")
# per-member nonlinearity codes of a pack that mixes them (as the fused time loops read them)
NONLINEARITY_CODES: dict[str, int] = {"tanh": 0, "relu": 1}
_CODE_NAMES = {code: name for name, code in NONLINEARITY_CODES.items()}


def canonical_arch(name: str) -> str:
    """Lower-case, alias-resolved architecture name; ValueError when unknown."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in _CELLS:
        raise ValueError(f"unknown arch {name!r}")
    return key


def get_cell(arch: str, gru_reset: str = "pre") -> Cell:
    """The cell for ``arch``; ``gru_reset`` picks Collins' (pre) or torch's (post) GRU."""
    arch = canonical_arch(arch)
    if arch == "gru":
        if gru_reset not in GRU_RESETS:
            raise ValueError(f"gru_reset must be 'pre' or 'post', got {gru_reset!r}")
        return GRUTorchCell() if gru_reset == "post" else GRUCell()
    return _CELLS[arch]()


@dataclass(frozen=True)
class ModelConfig:
    """The structure shared by every member of a pack."""

    arch: str  # canonical cell name, see ARCHS
    n_in: int  # task input width
    n_out: int  # task output width (logits or real outputs)
    hidden: int  # N: units per layer
    depth: int  # stacked layers
    nonlinearity: str = "tanh"  # s; resolved per cell (irnn: relu, plusrnn/minimalrnn fixed)
    gru_reset: Literal["pre", "post"] = "pre"  # GRU reset convention (Collins: pre)

    def to_dict(self) -> dict:
        return asdict(self)


def _layer_shapes(cfg: ModelConfig, cell: Cell) -> list[dict[str, tuple[int, ...]]]:
    return [cell.layer_shapes(cfg.n_in, cfg.hidden, layer) for layer in range(cfg.depth)]


def count_params(cfg: ModelConfig) -> int:
    """Exact trainable parameter count of one member, readout included."""
    cell = get_cell(cfg.arch, cfg.gru_reset)
    total = sum(math.prod(s) for shapes in _layer_shapes(cfg, cell) for s in shapes.values())
    return total + cfg.hidden * cfg.n_out + cfg.n_out


def hidden_for_budget(budget: int, cfg: ModelConfig, max_hidden: int = 1 << 16) -> int:
    """Collins' equal-parameter rule: the largest N whose total count fits ``budget``.

    The count grows strictly with N, so bisection finds the same N as a linear scan
    (the tests check it against one). ValueError when even N = 1 does not fit.
    """

    def fits(n: int) -> bool:
        return count_params(_replace_hidden(cfg, n)) <= budget

    if not fits(1):
        need = count_params(_replace_hidden(cfg, 1))
        raise ValueError(
            f"parameter budget {budget} is too small for {cfg.arch} at depth {cfg.depth}: "
            f"one unit per layer already needs {need}"
        )
    lo, hi = 1, max_hidden
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _replace_hidden(cfg: ModelConfig, hidden: int) -> ModelConfig:
    return ModelConfig(**{**cfg.to_dict(), "hidden": hidden})


class PackedRNN(nn.Module):
    """K independent RNNs of one structure; every parameter has a leading K axis."""

    def __init__(
        self,
        cfg: ModelConfig,
        members: Sequence[InitConfig],
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        nonlinearities: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        assert len(members) >= 1, "a pack needs at least one member"
        self.cell = get_cell(cfg.arch, cfg.gru_reset)
        if cfg.depth < self.cell.min_depth:
            raise ValueError(f"{cfg.arch} needs depth >= {self.cell.min_depth}, got {cfg.depth}")
        self.cfg = cfg
        # s: the pack's nonlinearity, or, for a pack whose members differ (``nonlinearities``,
        # one per member), (K,) codes 0 tanh / 1 relu that the fused time loops read per member
        self.s: str | torch.Tensor = self.cell.resolve_nonlinearity(cfg.nonlinearity)
        if nonlinearities is not None:
            assert len(nonlinearities) == len(members), "one nonlinearity per member"
            names = [self.cell.resolve_nonlinearity(n) for n in nonlinearities]
            if len(set(names)) > 1:
                codes = [NONLINEARITY_CODES[n] for n in names]
                self.s = torch.tensor(codes, dtype=torch.int64, device=device)
            else:
                self.s = names[0]
        self.members = tuple(members)
        self.K = len(members)
        H = cfg.hidden

        # 1. Draw each member's parameters from its own generator, in a fixed order,
        #    so a member's init does not depend on the pack it is in.
        per_member: list[list[Params]] = []
        readouts: list[tuple[torch.Tensor, torch.Tensor]] = []
        for m in members:
            gen = torch.Generator().manual_seed(int(m.seed))
            layers = [
                self.cell.init_layer(cfg.n_in, H, layer, m, gen) for layer in range(cfg.depth)
            ]
            w_out = torch.randn(H, cfg.n_out, generator=gen, dtype=torch.float64) / math.sqrt(H)
            per_member.append(layers)
            readouts.append((w_out, torch.zeros(1, cfg.n_out, dtype=torch.float64)))

        # 2. Stack members along K.
        self.layers = nn.ModuleList()
        for layer in range(cfg.depth):
            pd = nn.ParameterDict()
            for name in per_member[0][layer]:
                stacked = torch.stack([pm[layer][name] for pm in per_member])  # (K, ...)
                pd[name] = nn.Parameter(stacked.to(device=device, dtype=dtype))
            self.layers.append(pd)
            fg = torch.stack([self.cell.fg_vector(H, m.b_fg) for m in members])  # (K, 1, GH)
            self.register_buffer(f"fg{layer}", fg.to(device=device, dtype=dtype))
        self.W_out = nn.Parameter(
            torch.stack([w for w, _ in readouts]).to(device=device, dtype=dtype)  # (K, H, O)
        )
        self.b_out = nn.Parameter(
            torch.stack([b for _, b in readouts]).to(device=device, dtype=dtype)  # (K, 1, O)
        )

    def subset(self, idx: Sequence[int]) -> PackedRNN:
        """A pack of this pack's members ``idx`` (positions), with their current parameters.

        Nothing is re-initialised: every parameter and buffer is this one's rows ``idx``.
        """
        sel = torch.as_tensor(list(idx), dtype=torch.long, device=self.W_out.device)
        with torch.no_grad():
            new = copy.deepcopy(self)
            for p in new.parameters():
                p.grad = None
                p.data = p.data.index_select(0, sel)
            for name, buf in list(new.named_buffers()):
                new.register_buffer(name, buf.index_select(0, sel))
        new.members = tuple(self.members[i] for i in idx)
        new.K = len(new.members)
        if isinstance(self.s, torch.Tensor):  # a subset of one nonlinearity is a plain pack
            codes = self.s.index_select(0, sel.to(self.s.device))
            kept = set(codes.tolist())
            new.s = _CODE_NAMES[kept.pop()] if len(kept) == 1 else codes
        return new

    def nonlinearity_groups(self) -> dict[str, list[int]]:
        """Member positions by nonlinearity name (one group unless the pack mixes them)."""
        if isinstance(self.s, str):
            return {self.s: list(range(self.K))}
        groups: dict[str, list[int]] = {}
        for k, code in enumerate(self.s.tolist()):
            groups.setdefault(_CODE_NAMES[code], []).append(k)
        return groups

    def write_members(self, src: PackedRNN, idx: Sequence[int]) -> None:
        """Copy ``src``'s parameters (all its members) into this pack's members ``idx``."""
        sel = torch.as_tensor(list(idx), dtype=torch.long, device=self.W_out.device)
        with torch.no_grad():
            for mine, theirs in zip(self.parameters(), src.parameters(), strict=True):
                mine.index_copy_(0, sel, theirs)

    @property
    def n_params(self) -> int:
        """Trainable parameters of one member."""
        return sum(p[0].numel() for p in self.parameters())

    def layer_params(self, layer: int) -> Params:
        """Layer ``layer``'s parameters plus its ``fg`` buffer, as the cell expects."""
        return {**dict(self.layers[layer].items()), "fg": getattr(self, f"fg{layer}")}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reference forward: ``(K, T, B, n_in) -> (K, T, B, n_out)``, one step at a time."""
        assert x.dim() == 4 and x.shape[0] == self.K, (
            f"expected (K={self.K}, T, B, I), got {tuple(x.shape)}"
        )
        if isinstance(self.s, torch.Tensor):  # a mixed pack: each nonlinearity's members
            seq = x.new_empty(*x.shape[:3], self.cfg.hidden)
            for name, idx in self.nonlinearity_groups().items():
                sel = torch.tensor(idx, dtype=torch.long, device=x.device)
                part = x.index_select(0, sel)
                for layer in range(self.cfg.depth):
                    p = {k: v.index_select(0, sel) for k, v in self.layer_params(layer).items()}
                    part = self.cell.layer_forward(p, part, name)
                seq = seq.index_copy(0, sel, part)
        else:
            seq = x
            for layer in range(self.cfg.depth):
                seq = self.cell.layer_forward(self.layer_params(layer), seq, self.s)
        K, T, B, H = seq.shape  # (K, T, B, H)
        out = torch.bmm(seq.reshape(K, T * B, H), self.W_out) + self.b_out  # (K, T*B, O)
        return out.reshape(K, T, B, -1)  # (K, T, B, O)
