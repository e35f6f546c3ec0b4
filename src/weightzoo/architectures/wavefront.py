"""Stacked GRU / LSTM layers of ``M`` networks at once, computed by wavefronts.

Cell ``(layer l, step t)`` of a stacked recurrent network depends only on ``(l - 1, t)`` (its
input) and ``(l, t - 1)`` (its previous state). Every cell with ``l + t = k`` can therefore run
in one batched step ``k``: the layers become an extra batch axis with per-layer weights, and the
``layers x steps`` cells of the stack take ``layers + steps - 1`` sequential steps instead of
``layers x steps``. Small networks (MLDS: width 12, sequences of 16 steps) are bound by the
count of small operations, not by arithmetic, so fewer steps means proportionally less time.

Each layer's weights are packed so that one ``torch.baddbmm`` per wavefront step computes every
gate of every active layer from ``u = [input, previous state]`` (both padded to one width
``P = max(input_size, hidden)``):

- GRU: ``u @ W + b`` gives ``[pre_r, pre_z, gi_n, gh_n]`` (``W`` ``[2P, 4H]``; the input rows
  feed ``gi_n`` and the state rows ``gh_n``, kept apart because ``n = tanh(gi_n + r * gh_n)``),
  with PyTorch's gate order and equations (``nn.GRU``);
- LSTM: ``u @ W + b`` gives ``[i, f, g, o]`` (``nn.LSTM``).

:func:`gru_stack` and :func:`lstm_stack` are plain tensor arithmetic: autograd, ``torch.func``
(``vmap``, ``grad``, ``jvp``) and higher derivatives all work through them.
:func:`gru_stack_bptt` computes the same GRU stack with a hand-written backward pass
(backpropagation through time over the saved gates, batched like the forward): a training step
then records one autograd node for the whole stack instead of one per small operation. It is
first-order only (a second derivative raises) and not for ``torch.func`` transforms.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

# (w_ih [M, G*H, in], w_hh [M, G*H, H], b_ih [M, G*H], b_hh [M, G*H]) of one layer
LayerParams = tuple[Tensor, Tensor, Tensor, Tensor]


def _pad_rows(weight_t: Tensor, rows: int) -> Tensor:
    """``[M, r, c]`` padded with zero rows to ``[M, rows, c]``."""
    extra = rows - weight_t.shape[1]
    if extra == 0:
        return weight_t
    return torch.cat([weight_t, weight_t.new_zeros(weight_t.shape[0], extra, weight_t.shape[2])], 1)


def pack_gru(layers: Sequence[LayerParams], width: int) -> tuple[Tensor, Tensor]:
    """Packed GRU weights ``[L, M, 2P, 4H]`` and biases ``[L, M, 1, 4H]`` (``P = width``).

    Columns ``[r, z, n_input, n_state]``: the input rows hold ``W_ir, W_iz, W_in, 0``, the state
    rows ``W_hr, W_hz, 0, W_hn``; biases ``b_ir + b_hr, b_iz + b_hz, b_in, b_hn``.
    """
    weights, biases = [], []
    for w_ih, w_hh, b_ih, b_hh in layers:
        h = w_hh.shape[2]
        wi = _pad_rows(w_ih.transpose(1, 2), width)  # [M, P, 3H]
        wh = _pad_rows(w_hh.transpose(1, 2), width)
        zeros = wi.new_zeros(wi.shape[0], width, h)
        top = torch.cat([wi, zeros], dim=2)
        bottom = torch.cat([wh[..., : 2 * h], zeros, wh[..., 2 * h :]], dim=2)
        weights.append(torch.cat([top, bottom], dim=1))
        rz = b_ih[:, : 2 * h] + b_hh[:, : 2 * h]
        biases.append(torch.cat([rz, b_ih[:, 2 * h :], b_hh[:, 2 * h :]], dim=1)[:, None])
    return torch.stack(weights), torch.stack(biases)


def pack_lstm(layers: Sequence[LayerParams], width: int) -> tuple[Tensor, Tensor]:
    """Packed LSTM weights ``[L, M, 2P, 4H]`` (input rows, then state rows) and biases."""
    weights = [
        torch.cat(
            [_pad_rows(w_ih.transpose(1, 2), width), _pad_rows(w_hh.transpose(1, 2), width)], 1
        )
        for w_ih, w_hh, _, _ in layers
    ]
    biases = [(b_ih + b_hh)[:, None] for _, _, b_ih, b_hh in layers]
    return torch.stack(weights), torch.stack(biases)


def _active(k: int, layers: int, steps: int) -> tuple[int, int]:
    """First and last layer (inclusive) with a cell on wavefront ``k``."""
    return max(0, k - steps + 1), min(layers - 1, k)


def _pad_last(x: Tensor, width: int) -> Tensor:
    extra = width - x.shape[-1]
    return x if extra == 0 else torch.cat([x, x.new_zeros(*x.shape[:-1], extra)], dim=-1)


def _wavefront(x: Tensor, weight: Tensor, bias: Tensor, hidden: int, cell, stateful: bool):
    """The stack's top-layer outputs ``[M, B, T, H]``.

    ``cell(pre, h, c) -> (h, c)`` maps the gate pre-activations ``[N, B, gates]`` and the
    previous states ``[N, B, H]`` of ``N`` cells to their new states (``c``: the LSTM's memory,
    tracked when ``stateful``; None for the GRU).
    """
    layers, m, two_p, gates = weight.shape
    width = two_p // 2
    _, b, steps, _ = x.shape
    inputs = _pad_last(x, width).unbind(2)  # once: indexing per step would copy x per step
    zero = x.new_zeros(m, b, width)
    outs: list[Tensor] = [zero] * layers  # latest h of each layer, padded to ``width``
    memory: list[Tensor] = [zero[..., :hidden]] * layers  # latest c of each layer (LSTM)
    top = []
    for k in range(layers + steps - 1):
        lo, hi = _active(k, layers, steps)
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
        c = torch.stack(memory[lo : hi + 1]).reshape(count * m, b, hidden) if stateful else None
        h, c = cell(pre, prev, c)
        new = _pad_last(h, width).reshape(count, m, b, width).unbind(0)
        outs[lo : hi + 1] = new
        if c is not None:
            memory[lo : hi + 1] = c.reshape(count, m, b, hidden).unbind(0)
        if hi == layers - 1:
            top.append(new[-1][..., :hidden])
    return torch.stack(top, dim=2)


def _gru_cell(pre: Tensor, prev: Tensor, _c: None) -> tuple[Tensor, None]:
    h = prev.shape[-1]
    r, z = torch.sigmoid(pre[..., : 2 * h]).chunk(2, dim=-1)
    n = torch.tanh(pre[..., 2 * h : 3 * h] + r * pre[..., 3 * h :])
    return n + z * (prev - n), None  # (1 - z) * n + z * h


def _lstm_cell(pre: Tensor, _prev: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    i, f, g, o = pre.chunk(4, dim=-1)  # PyTorch's order: i, f, g, o
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_stack(x: Tensor, weight: Tensor, bias: Tensor, hidden: int) -> Tensor:
    """GRU stack by wavefronts (autograd): top-layer outputs ``[M, B, T, H]``.

    Args:
        x: inputs ``[M, B, T, input_size]``.
        weight: packed weights ``[L, M, 2P, 4H]`` (:func:`pack_gru`).
        bias: packed biases ``[L, M, 1, 4H]``.
        hidden: the layers' width ``H``.
    """
    return _wavefront(x, weight, bias, hidden, _gru_cell, stateful=False)


def lstm_stack(x: Tensor, weight: Tensor, bias: Tensor, hidden: int) -> Tensor:
    """LSTM stack by wavefronts (autograd): top-layer outputs ``[M, B, T, H]``.

    Args:
        x: inputs ``[M, B, T, input_size]``.
        weight: packed weights ``[L, M, 2P, 4H]`` (:func:`pack_lstm`).
        bias: packed biases ``[L, M, 1, 4H]``.
        hidden: the layers' width ``H``.
    """
    return _wavefront(x, weight, bias, hidden, _lstm_cell, stateful=True)


# ------------------------------------------------------------------ hand-written backward (GRU)
def _gru_forward(x: Tensor, weight: Tensor, bias: Tensor, hidden: int, save: bool):
    """The GRU wavefront without autograd: outputs ``[M, B, T, H]`` and what backward needs.

    With ``save``, per wavefront step: the inputs ``u [N, B, 2P]``, the gates
    ``[r, z, pre_n, gh_n]`` (``N`` cells' ``[N, B, 4H]``), ``n`` and ``h_prev - n``.
    """
    layers, m, two_p, gates = weight.shape
    width = two_p // 2
    _, b, steps, size = x.shape
    h2, h3 = 2 * hidden, 3 * hidden
    # state[j + 1]: the latest output of layer j (padded to ``width``); state[0]: the input
    # of layer 0 at the current step. Layer l reads [state[l], state[l + 1]].
    state = x.new_zeros(layers + 1, m, b, width)
    out = x.new_empty(m, b, steps, hidden)
    saved = []
    for k in range(layers + steps - 1):
        lo, hi = _active(k, layers, steps)
        count = hi - lo + 1
        n_cells = count * m
        if k < steps:
            state[0, ..., :size] = x[:, :, k]
        u = torch.cat([state[lo : hi + 1], state[lo + 1 : hi + 2]], dim=-1).view(n_cells, b, two_p)
        pre = torch.baddbmm(
            bias[lo : hi + 1].reshape(n_cells, 1, gates),
            u,
            weight[lo : hi + 1].view(n_cells, two_p, gates),
        )
        rz = pre[..., :h2].sigmoid_()
        n = torch.addcmul(pre[..., h2:h3], rz[..., :hidden], pre[..., h3:]).tanh_()
        diff = u[..., width : width + hidden] - n
        h = torch.addcmul(n, rz[..., hidden:], diff).view(count, m, b, hidden)  # (1-z) n + z h
        state[lo + 1 : hi + 2, ..., :hidden] = h
        if hi == layers - 1:
            out[:, :, k - layers + 1] = h[-1]
        if save:
            saved.append((u, pre, n, diff))
    return out, saved


def _gru_backward(grad_out: Tensor, weight: Tensor, saved, size: int, need_x: bool):
    """Gradients of :func:`_gru_forward` w.r.t. ``x`` (or None), ``weight`` and ``bias``."""
    layers, m, two_p, gates = weight.shape
    width = two_p // 2
    _, b, steps, hidden = grad_out.shape
    h2, h3 = 2 * hidden, 3 * hidden
    grad_w = torch.zeros_like(weight)
    grad_b = weight.new_zeros(layers, m, 1, gates)
    grad_x = grad_out.new_zeros(m, b, steps, size) if need_x else None
    # acc[j + 1]: gradient w.r.t. the output of layer j on the wavefront being undone; acc[0]:
    # w.r.t. the input of layer 0 there. Every entry a wavefront reads was written by the one
    # after it, so it is never cleared.
    acc = grad_out.new_zeros(layers + 1, m, b, width)
    dpre = grad_out.new_empty(layers * m, b, gates)
    # [0 | dh * z | 0]: the direct path to the previous state, added to the matmul's gradient
    carry = grad_out.new_zeros(layers * m, b, two_p)
    sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input
    tanh_backward = torch.ops.aten.tanh_backward.grad_input
    for k in range(layers + steps - 2, -1, -1):
        lo, hi = _active(k, layers, steps)
        count = hi - lo + 1
        n_cells = count * m
        u, pre, n, diff = saved[k]
        if hi == layers - 1:
            acc[layers, ..., :hidden] += grad_out[:, :, k - layers + 1]
        dh = acc[lo + 1 : hi + 2, ..., :hidden].reshape(n_cells, b, hidden)
        r, z = pre[..., :hidden], pre[..., hidden:h2]
        d = dpre[:n_cells]
        torch.mul(dh, diff, out=d[..., hidden:h2])  # dL/dz
        tanh_backward(torch.addcmul(dh, dh, z, value=-1), n, grad_input=d[..., h2:h3])
        torch.mul(d[..., h2:h3], pre[..., h3:], out=d[..., :hidden])  # dL/dr
        torch.mul(d[..., h2:h3], r, out=d[..., h3:])  # dL/dgh_n
        sigmoid_backward(d[..., :h2], pre[..., :h2], grad_input=d[..., :h2])
        base = carry[:n_cells]
        torch.mul(dh, z, out=base[..., width : width + hidden])
        w = weight[lo : hi + 1].view(n_cells, two_p, gates)
        grad_w[lo : hi + 1].view(n_cells, two_p, gates).baddbmm_(u.transpose(1, 2), d)
        grad_b[lo : hi + 1] += d.sum(dim=1, keepdim=True).view(count, m, 1, gates)
        du = torch.baddbmm(base, d, w.transpose(1, 2)).view(count, m, b, two_p)
        acc[lo + 1 : hi + 2] = du[..., width:]  # to the same layers' previous outputs
        acc[lo] = du[0, ..., :width]  # to the layer below (or the input of layer 0)
        acc[lo + 1 : hi + 1] += du[1:, ..., :width]
        if need_x and lo == 0:
            grad_x[:, :, k] = acc[0, ..., :size]
    return grad_x, grad_w, grad_b


class _GRUStack(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, hidden: int) -> Tensor:
        out, saved = _gru_forward(x, weight, bias, hidden, save=True)
        ctx.save_for_backward(weight)
        ctx.saved = saved
        ctx.size = x.shape[-1]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        (weight,) = ctx.saved_tensors
        grad_x, grad_w, grad_b = _gru_backward(
            grad_out.contiguous(), weight, ctx.saved, ctx.size, ctx.needs_input_grad[0]
        )
        return grad_x, grad_w, grad_b, None


def gru_stack_bptt(x: Tensor, weight: Tensor, bias: Tensor, hidden: int) -> Tensor:
    """:func:`gru_stack` with a hand-written backward pass (first-order, no ``torch.func``).

    The forward saves the inputs and gates of every wavefront step; the backward runs the
    wavefronts in reverse with the same batched matmuls. Without gradients (``torch.no_grad``
    or no input that requires them) nothing is saved.

    Args:
        x: inputs ``[M, B, T, input_size]``.
        weight: packed weights ``[L, M, 2P, 4H]`` (:func:`pack_gru`).
        bias: packed biases ``[L, M, 1, 4H]``.
        hidden: the layers' width ``H``.
    """
    weight, bias = weight.contiguous(), bias.contiguous()
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or bias.requires_grad):
        return _GRUStack.apply(x, weight, bias, hidden)
    return _gru_forward(x, weight, bias, hidden, save=False)[0]
