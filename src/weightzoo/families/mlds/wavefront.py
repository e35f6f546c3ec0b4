"""Stacked GRU layers of ``M`` networks at once, computed by wavefronts.

Cell ``(layer l, step t)`` of a stacked recurrent network depends only on ``(l - 1, t)`` (its
input) and ``(l, t - 1)`` (its previous state). Every cell with ``l + t = k`` can therefore run
in one batched step ``k``: the layers become an extra batch axis with per-layer weights, and the
``layers x steps`` cells of the stack take ``layers + steps - 1`` sequential steps instead of
``layers x steps``. Small networks (MLDS: width 12, sequences of 16 steps) are bound by the
count of small operations, not by arithmetic, so fewer steps means proportionally less time.

Each layer's weights are packed (:func:`pack_gru`) so that one ``torch.baddbmm`` per wavefront
step computes every gate of every active layer from ``u = [input, previous state]`` (both
padded to one width ``P = max(input_size, hidden)``): ``u @ W + b`` gives
``[pre_r, pre_z, gi_n, gh_n]`` (``W`` ``[2P, 4H]``; the input rows feed ``gi_n`` and the state
rows ``gh_n``, kept apart because ``n = tanh(gi_n + r * gh_n)``), with PyTorch's gate order and
equations (``nn.GRU``). The matmul then also multiplies two zero blocks (a quarter of ``W``),
which costs less than a second matmul per step.

:func:`gru_stack` is plain tensor arithmetic: autograd, ``torch.func`` (``vmap``, ``grad``,
``jvp``) and higher derivatives all work through it.
:func:`weightzoo.families.mlds.gru_bptt.gru_stack_bptt` computes the same GRU stack with a
hand-written backward pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

# (w_ih [M, G*H, in], w_hh [M, G*H, H], b_ih [M, G*H], b_hh [M, G*H]) of one layer
LayerParams = tuple[Tensor, Tensor, Tensor, Tensor]


def _pad_last(x: Tensor, width: int) -> Tensor:
    """``x`` padded with zeros along its last axis to ``width``."""
    extra = width - x.shape[-1]
    return x if extra == 0 else torch.cat([x, x.new_zeros(*x.shape[:-1], extra)], dim=-1)


def _stacked(layers: Sequence[LayerParams], width: int) -> tuple[Tensor, ...]:
    """Every layer's weights transposed ``[L, M, P, G*H]`` (zero rows up to ``P``), biases.

    Each of the four is stacked in one call; the biases are ``[L, M, G*H]``.
    """
    w_ih = torch.stack([_pad_last(layer[0], width) for layer in layers]).transpose(2, 3)
    w_hh = _pad_last(torch.stack([layer[1] for layer in layers]), width).transpose(2, 3)
    b_ih = torch.stack([layer[2] for layer in layers])
    b_hh = torch.stack([layer[3] for layer in layers])
    return w_ih, w_hh, b_ih, b_hh


def pack_gru(layers: Sequence[LayerParams], width: int) -> tuple[Tensor, Tensor]:
    """Packed GRU weights ``[L, M, 2P, 4H]`` and biases ``[L, M, 1, 4H]`` (``P = width``).

    Columns ``[r, z, n_input, n_state]``: the input rows hold ``W_ir, W_iz, W_in, 0``, the state
    rows ``W_hr, W_hz, 0, W_hn``; biases ``b_ir + b_hr, b_iz + b_hz, b_in, b_hn``.
    """
    w_ih, w_hh, b_ih, b_hh = _stacked(layers, width)
    h = w_hh.shape[-1] // 3
    zeros = w_ih.new_zeros(*w_ih.shape[:-1], h)
    top = torch.cat([w_ih, zeros], dim=-1)
    bottom = torch.cat([w_hh[..., : 2 * h], zeros, w_hh[..., 2 * h :]], dim=-1)
    rz = b_ih[..., : 2 * h] + b_hh[..., : 2 * h]
    bias = torch.cat([rz, b_ih[..., 2 * h :], b_hh[..., 2 * h :]], dim=-1)
    return torch.cat([top, bottom], dim=2), bias[:, :, None]


def active_layers(k: int, layers: int, steps: int) -> tuple[int, int]:
    """First and last layer (inclusive) with a cell on wavefront ``k``."""
    return max(0, k - steps + 1), min(layers - 1, k)


def gru_stack(x: Tensor, weight: Tensor, bias: Tensor, hidden: int) -> Tensor:
    """GRU stack by wavefronts (autograd): top-layer outputs ``[M, B, T, H]``.

    Args:
        x: inputs ``[M, B, T, input_size]``.
        weight: packed weights ``[L, M, 2P, 4H]`` (:func:`pack_gru`).
        bias: packed biases ``[L, M, 1, 4H]``.
        hidden: the layers' width ``H``.
    """
    layers, m, two_p, gates = weight.shape
    width = two_p // 2
    _, b, steps, _ = x.shape
    inputs = _pad_last(x, width).unbind(2)  # once: indexing per step would copy x per step
    outs: list[Tensor] = [x.new_zeros(m, b, width)] * layers  # latest h per layer, padded
    top = []
    for k in range(layers + steps - 1):
        lo, hi = active_layers(k, layers, steps)
        count = hi - lo + 1
        below = [inputs[k] if layer == 0 else outs[layer - 1] for layer in range(lo, hi + 1)]
        u = torch.cat([torch.stack(below), torch.stack(outs[lo : hi + 1])], dim=-1)
        w = weight if count == layers else weight[lo : hi + 1]
        bb = bias if count == layers else bias[lo : hi + 1]
        pre = torch.baddbmm(
            bb.reshape(count * m, 1, gates),
            u.reshape(count * m, b, two_p),
            w.reshape(count * m, two_p, gates),
        )
        prev = u[..., width : width + hidden].reshape(count * m, b, hidden)
        r, z = torch.sigmoid(pre[..., : 2 * hidden]).chunk(2, dim=-1)
        n = torch.tanh(pre[..., 2 * hidden : 3 * hidden] + r * pre[..., 3 * hidden :])
        h = n + z * (prev - n)  # (1 - z) * n + z * h_prev
        new = _pad_last(h, width).reshape(count, m, b, width).unbind(0)
        outs[lo : hi + 1] = new
        if hi == layers - 1:
            top.append(new[-1][..., :hidden])
    return torch.stack(top, dim=2)
