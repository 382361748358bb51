"""The cell zoo: Collins et al. 2017 section 2 and Chen et al. 2018 (SCIENCE.md section 2).

``s`` is the per-trial nonlinearity (tanh or ReLU), ``sigma`` the logistic
sigmoid. Pre-activations are ``W^{.h} h_{t-1} + W^{.x} x_t + b^.``; the input
part ``W^{.x} x_t + b^. (+ b^{fg})`` arrives precomputed as ``xp_t``.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from rnnsweep.cells.base import Cell, InitConfig, Params, activation

__all__ = [
    "GRUCell",
    "GRUTorchCell",
    "IRNNCell",
    "LSTMCell",
    "MinimalRNNCell",
    "PlusRNNCell",
    "RNNCell",
    "UGRNNCell",
]


def _recurrent(p: Params, h: torch.Tensor) -> torch.Tensor:
    """``h @ Wh`` for every member: ``(K, B, H) @ (K, H, G*H) -> (K, B, G*H)``."""
    return torch.bmm(h, p["Wh"])


class RNNCell(Cell):
    """Vanilla RNN, Collins et al. 2017 eq. (1): ``h_t = s(W^h h_{t-1} + W^x x_t + b^h)``."""

    name = "rnn"
    title = "vanilla RNN (C 1)"
    n_gates = 1

    def step(self, p, xp_t, x_t, state, s):
        (h,) = state
        h = activation(s)(xp_t + _recurrent(p, h))  # (K, B, H)
        return (h,), h


class IRNNCell(RNNCell):
    """IRNN (Le et al. 2015; Collins eq. 1): ReLU vanilla RNN, ``W^h = I`` and zero biases at init.

    The init scale applies to ``W^x`` only: the identity is the point of the cell.
    """

    name = "irnn"
    title = "IRNN (Le et al. 2015; C 1)"
    nonlinearities = ("relu",)

    def init_weight(self, name, shape, hidden, cfg: InitConfig, gen):
        if name == "Wh":
            return torch.eye(hidden, dtype=torch.float64)
        return super().init_weight(name, shape, hidden, cfg, gen)


class UGRNNCell(Cell):
    """Update-gate RNN, Collins et al. 2017 eqs. (2)-(4).

    ``c_t = s(.)``, ``g_t = sigma(. + b^{fg})``, ``h_t = g_t * h_{t-1} + (1 - g_t) * c_t``.
    Blocks: [c, g].
    """

    name = "ugrnn"
    title = "update-gate RNN (C 2-4)"
    n_gates = 2
    fg_blocks = (1,)

    def step(self, p, xp_t, x_t, state, s):
        (h,) = state
        c_pre, g_pre = (xp_t + _recurrent(p, h)).chunk(2, dim=-1)  # 2 x (K, B, H)
        c = activation(s)(c_pre)
        g = torch.sigmoid(g_pre)
        h = g * h + (1 - g) * c
        return (h,), h


class GRUCell(Cell):
    """GRU, Collins et al. 2017 eqs. (5)-(8): reset gate applied *before* ``W^{ch}``.

    ``r = sigma(.)``, ``u = sigma(. + b^{fg})``,
    ``c = s(W^{ch} (r * h_{t-1}) + W^{cx} x_t + b^c)``, ``h_t = u * h_{t-1} + (1 - u) * c``.
    Blocks: [r, u, c]. This is the ``gru_reset = "pre"`` convention (Collins,
    Cho et al. 2014); see :class:`GRUTorchCell` for torch.nn.GRU's ``"post"``.
    """

    name = "gru"
    title = "GRU, reset before W^ch (C 5-8)"
    n_gates = 3
    fg_blocks = (1,)
    reset: ClassVar[str] = "pre"

    def step(self, p, xp_t, x_t, state, s):
        (h,) = state
        H = h.shape[-1]
        ru = torch.sigmoid(xp_t[..., : 2 * H] + torch.bmm(h, p["Wh"][..., : 2 * H]))
        r, u = ru.chunk(2, dim=-1)  # 2 x (K, B, H)
        c = activation(s)(xp_t[..., 2 * H :] + torch.bmm(r * h, p["Wh"][..., 2 * H :]))
        h = u * h + (1 - u) * c
        return (h,), h


class GRUTorchCell(GRUCell):
    """GRU in torch.nn.GRU's convention: ``c = s(W^{cx} x + b^c + r * (W^{ch} h + b^{hn}))``.

    The reset gate multiplies the recurrent *product* (after ``W^{ch}``), which
    needs a separate recurrent candidate bias ``b_hn`` ``(K, 1, H)``.
    """

    title = "GRU, reset after W^ch (torch.nn.GRU)"
    reset = "post"

    def layer_shapes(self, n_in, hidden, layer):
        shapes = super().layer_shapes(n_in, hidden, layer)
        shapes["b_hn"] = (1, hidden)
        return shapes

    def step(self, p, xp_t, x_t, state, s):
        (h,) = state
        H = h.shape[-1]
        gh = _recurrent(p, h)  # (K, B, 3H)
        ru = torch.sigmoid(xp_t[..., : 2 * H] + gh[..., : 2 * H])
        r, u = ru.chunk(2, dim=-1)
        c = activation(s)(xp_t[..., 2 * H :] + r * (gh[..., 2 * H :] + p["b_hn"]))
        h = u * h + (1 - u) * c
        return (h,), h


class LSTMCell(Cell):
    """LSTM, Collins et al. 2017 eqs. (9)-(14).

    ``i, f (+ b^{fg}), o = sigma(.)``, ``c^{in} = s(.)``, ``c_t = f * c_{t-1} + i * c^{in}``,
    ``h_t = o * tanh(c_t)``. Blocks: [i, f, o, c_in]; state (h, c).
    """

    name = "lstm"
    title = "LSTM (C 9-14)"
    n_gates = 4
    n_states = 2
    fg_blocks = (1,)

    def step(self, p, xp_t, x_t, state, s):
        h, c = state
        i_pre, f_pre, o_pre, c_pre = (xp_t + _recurrent(p, h)).chunk(4, dim=-1)
        i, f, o = torch.sigmoid(i_pre), torch.sigmoid(f_pre), torch.sigmoid(o_pre)
        c = f * c + i * activation(s)(c_pre)
        h = o * torch.tanh(c)
        return (h, c), h


class PlusRNNCell(Cell):
    """+RNN (intersection RNN), Collins et al. 2017 eqs. (15)-(20).

    ``y^{in} = relu(.)``, ``h^{in} = tanh(.)``, ``g^y, g^h = sigma(. + b^{fg})``,
    ``y_t = g^y * x_t + (1 - g^y) * y^{in}``, ``h_t = g^h * h_{t-1} + (1 - g^h) * h^{in}``.
    Blocks: [y_in, h_in, g_y, g_h]. The depth output ``y`` needs ``dim x = dim y``,
    so layer 0 first maps the input to the hidden width with a linear projection
    ``P`` ``(n_in, H)`` plus bias ``Pb`` (TensorFlow's ``num_in_proj``). Collins
    exclude depth 1: a single +RNN layer's output is a gated mix of its own
    (projected) input, which adds little over a linear model.
    """

    name = "plusrnn"
    title = "+RNN / intersection RNN (C 15-20)"
    n_gates = 4
    fg_blocks = (2, 3)
    nonlinearities = ("relu+tanh",)
    separate_output = True
    min_depth = 2

    def input_width(self, n_in, hidden, layer):
        return hidden

    def layer_shapes(self, n_in, hidden, layer):
        shapes: dict[str, tuple[int, ...]] = {}
        if layer == 0:
            shapes["P"] = (n_in, hidden)
            shapes["Pb"] = (1, hidden)
        shapes.update(super().layer_shapes(n_in, hidden, layer))
        return shapes

    def layer_forward(self, p, x, s):
        if "P" in p:
            K, T, B, n_in = x.shape
            x = torch.bmm(x.reshape(K, T * B, n_in), p["P"]) + p["Pb"]  # (K, T*B, H)
            x = x.reshape(K, T, B, -1)  # (K, T, B, H)
        return super().layer_forward(p, x, s)

    def step(self, p, xp_t, x_t, state, s):
        (h,) = state
        y_pre, h_pre, gy_pre, gh_pre = (xp_t + _recurrent(p, h)).chunk(4, dim=-1)
        y_in, h_in = torch.relu(y_pre), torch.tanh(h_pre)
        g_y, g_h = torch.sigmoid(gy_pre), torch.sigmoid(gh_pre)
        y = g_y * x_t + (1 - g_y) * y_in
        h = g_h * h + (1 - g_h) * h_in
        return (h,), y


class MinimalRNNCell(Cell):
    """minimalRNN, Chen, Pennington & Schoenholz 2018 eqs. (3)-(5).

    ``z_t = tanh(W^z x_t + b^z)``, ``u_t = sigma(W^u h_{t-1} + V^u z_t + b^u (+ b^{fg}))``,
    ``h_t = u_t * h_{t-1} + (1 - u_t) * z_t``. ``Wx``/``bz`` hold ``W^z``/``b^z``;
    ``Vu``, ``Wh`` = ``W^u`` and ``b`` = ``b^u`` the gate. The embedding ``z`` and
    the gate's input part ``V^u z + b^u`` depend on the input alone, so both are
    precomputed for all steps (two batched products).
    """

    name = "minimalrnn"
    title = "minimalRNN (Chen et al. 2018)"
    n_gates = 1
    fg_blocks = (0,)
    nonlinearities = ("tanh",)

    def layer_shapes(self, n_in, hidden, layer):
        width = self.input_width(n_in, hidden, layer)
        return {
            "Wx": (width, hidden),
            "bz": (1, hidden),
            "Vu": (hidden, hidden),
            "Wh": (hidden, hidden),
            "b": (1, hidden),
            "s0": (1, hidden),
        }

    def input_projection(self, p, x):
        K, T, B, width = x.shape
        z = torch.tanh(torch.bmm(x.reshape(K, T * B, width), p["Wx"]) + p["bz"])  # (K, T*B, H)
        up = torch.bmm(z, p["Vu"]) + p["b"] + p["fg"]  # (K, T*B, H)
        return torch.cat([up, z], dim=-1).reshape(K, T, B, -1)  # (K, T, B, 2H): [u_pre, z]

    def step(self, p, xp_t, x_t, state, s):
        (h,) = state
        up, z = xp_t.chunk(2, dim=-1)
        u = torch.sigmoid(up + _recurrent(p, h))
        h = u * h + (1 - u) * z
        return (h,), h
