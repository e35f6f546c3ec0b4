"""The wavefront GRU stack with a hand-written backward pass (backpropagation through time).

:func:`gru_stack_bptt` computes what :func:`weightzoo.families.mlds.wavefront.gru_stack` does,
with the same packed weights and the same batched matmul per wavefront step, but as one
``torch.autograd.Function``: the forward runs without recording anything and saves each
wavefront step's inputs and gates; the backward runs the wavefronts in reverse, two batched
matmuls per step (the weights' gradient and the gradient flowing to the inputs). A training
step then costs one autograd node for the whole stack instead of one per small operation, and
the backward's elementwise work is a handful of fused kernels (``sigmoid_backward``,
``tanh_backward``) per step.

It is first-order only (asking for a second derivative raises) and is not meant for
``torch.func`` transforms (``vmap``, ``grad``, ``jvp``): use ``gru_stack`` there.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from weightzoo.families.mlds.wavefront import active_layers


def _gru_forward(x: Tensor, weight: Tensor, bias: Tensor, hidden: int, save: bool):
    """The GRU wavefront without autograd: top-layer outputs ``[M, B, T, H]``, saved steps.

    With ``save``, each wavefront step's inputs ``u`` and gates (what :func:`_gru_backward`
    reads); else an empty list.
    """
    layers, m, two_p, gates = weight.shape
    width = two_p // 2
    _, b, steps, size = x.shape
    # state[j + 1]: the latest output of layer j (padded to ``width``); state[0]: the input of
    # layer 0 at the current step. Layer l reads [state[l], state[l + 1]] and writes state[l + 1].
    state = x.new_zeros(layers + 1, m, b, width)
    slot = state[0, ..., :size]
    inputs = x.unbind(2)
    views: dict[tuple[int, int], tuple[Tensor, ...]] = {}  # the same few (lo, hi) recur
    top, saved = [], []
    for k in range(layers + steps - 1):
        lo, hi = active_layers(k, layers, steps)
        cells = (hi - lo + 1) * m
        if (lo, hi) not in views:
            views[lo, hi] = (
                state[lo : hi + 1],
                state[lo + 1 : hi + 2],
                state[lo + 1 : hi + 2, ..., :hidden],
                weight[lo : hi + 1].view(cells, two_p, gates),
                bias[lo : hi + 1].view(cells, 1, gates),
            )
        below, prev, written, w, bb = views[lo, hi]
        if k < steps:
            slot.copy_(inputs[k])
        u = torch.cat([below, prev], dim=-1).view(cells, b, two_p)
        pre = torch.baddbmm(bb, u, w)
        rz, pre_n, gh_n = pre.split([2 * hidden, hidden, hidden], dim=-1)
        r, z = rz.sigmoid_().chunk(2, dim=-1)
        n = torch.addcmul(pre_n, r, gh_n).tanh_()
        diff = u.narrow(-1, width, hidden) - n
        h = torch.addcmul(n, z, diff)  # (1 - z) * n + z * h_prev
        written.copy_(h.view(written.shape))
        if hi == layers - 1:
            top.append(h.narrow(0, cells - m, m))  # cells are layer-major: the last m are the top
        if save:
            saved.append((u, rz, r, z, gh_n, n, diff))
    return torch.stack(top, dim=2), saved


def _gru_backward(grad_out: Tensor, weight: Tensor, saved, size: int, need_x: bool):
    """Gradients of :func:`_gru_forward` w.r.t. ``x`` (or None), ``weight`` and ``bias``."""
    layers, m, two_p, gates = weight.shape
    width = two_p // 2
    _, b, steps, hidden = grad_out.shape
    grad_w = torch.zeros_like(weight)
    grad_b = weight.new_zeros(layers, m, 1, gates)
    grad_x = grad_out.new_zeros(m, b, steps, size) if need_x else None
    # acc[j + 1]: the gradient w.r.t. the output of layer j on the wavefront being undone;
    # acc[0]: w.r.t. the input of layer 0 there. Every entry a wavefront reads was written by
    # the wavefront after it, so it is never cleared.
    acc = grad_out.new_zeros(layers + 1, m, b, width)
    acc_top = acc[layers, ..., :hidden]
    # [0 | dh * z | 0]: the direct path to the previous state, added to the matmul's gradient
    carry = grad_out.new_zeros(layers * m, b, two_p)
    grad_outs = grad_out.unbind(2)
    sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input
    tanh_backward = torch.ops.aten.tanh_backward.grad_input
    views: dict[tuple[int, int], tuple[Tensor, ...]] = {}
    for k in range(layers + steps - 2, -1, -1):
        lo, hi = active_layers(k, layers, steps)
        count = hi - lo + 1
        cells = count * m
        if (lo, hi) not in views:
            base = carry[:cells]
            views[lo, hi] = (
                acc[lo + 1 : hi + 2, ..., :hidden],
                acc[lo + 1 : hi + 2],
                acc[lo],
                acc[lo + 1 : hi + 1],
                base,
                base[..., width : width + hidden],
                weight[lo : hi + 1].view(cells, two_p, gates).transpose(1, 2),
                grad_w[lo : hi + 1].view(cells, two_p, gates),
                grad_b[lo : hi + 1].view(cells, 1, gates),
            )
        acc_h, acc_prev, acc_lo, acc_mid, base, base_h, w_t, g_w, g_b = views[lo, hi]
        u, rz, r, z, gh_n, n, diff = saved[k]
        if hi == layers - 1:
            acc_top.add_(grad_outs[k - layers + 1])
        dh = acc_h.reshape(cells, b, hidden)
        d = grad_out.new_empty(cells, b, gates)
        d_r, d_z, d_n, d_gh = d.split(hidden, dim=-1)
        torch.mul(dh, diff, out=d_z)
        tanh_backward(torch.addcmul(dh, dh, z, value=-1), n, grad_input=d_n)
        torch.mul(d_n, gh_n, out=d_r)
        torch.mul(d_n, r, out=d_gh)
        d_rz = d.narrow(-1, 0, 2 * hidden)
        sigmoid_backward(d_rz, rz, grad_input=d_rz)
        torch.mul(dh, z, out=base_h)
        g_w.baddbmm_(u.transpose(1, 2), d)
        g_b.add_(d.sum(dim=1, keepdim=True))
        du_below, du_prev = torch.baddbmm(base, d, w_t).view(count, m, b, two_p).split(width, -1)
        acc_prev.copy_(du_prev)  # to the same layers' previous outputs
        acc_lo.copy_(du_below[0])  # to the layer below (layer 0: to the input)
        acc_mid.add_(du_below[1:])
        if grad_x is not None and lo == 0:
            grad_x[:, :, k] = acc[0, ..., :size]
    return grad_x, grad_w, grad_b


class _GRUStack(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, hidden: int) -> Tensor:
        out, saved = _gru_forward(x, weight, bias, hidden, save=True)
        ctx.save_for_backward(weight)
        ctx.saved = saved  # intermediates of this call only, never inputs or outputs
        ctx.size = x.shape[-1]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        (weight,) = ctx.saved_tensors
        need_x = ctx.needs_input_grad[0]
        grads = _gru_backward(grad_out.contiguous(), weight, ctx.saved, ctx.size, need_x)
        return (*grads, None)


def gru_stack_bptt(x: Tensor, weight: Tensor, bias: Tensor, hidden: int) -> Tensor:
    """The wavefront GRU stack with a hand-written backward: top-layer outputs ``[M, B, T, H]``.

    Without gradients (``torch.no_grad``, or no argument that requires them) nothing is saved.

    Args:
        x: inputs ``[M, B, T, input_size]``.
        weight: packed weights ``[L, M, 2P, 4H]``
            (:func:`~weightzoo.families.mlds.wavefront.pack_gru`).
        bias: packed biases ``[L, M, 1, 4H]``.
        hidden: the layers' width ``H``.
    """
    weight, bias = weight.contiguous(), bias.contiguous()
    needs = x.requires_grad or weight.requires_grad or bias.requires_grad
    if torch.is_grad_enabled() and needs:
        return _GRUStack.apply(x, weight, bias, hidden)
    return _gru_forward(x, weight, bias, hidden, save=False)[0]
