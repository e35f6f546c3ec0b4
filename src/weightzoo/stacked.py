"""Many networks of one sequential architecture at once: stacked convolutions and batched matmuls.

:func:`weightzoo.evaluate` runs ``M`` rows of a zoo as one population. ``vmap`` over
``functional_call`` does that for any module, but on a CPU it turns each layer into the same
small per-model kernels the loop would run, plus layout copies. For the networks that are one
``nn.Sequential`` of convolutions, 2-D max-pools, element-wise activations, dropout (identity in
eval mode), ``Flatten`` and linear layers (Model Zoos CNN-s / CNN-m, the trajectory MLP and
CNN), this module runs the population as a few large kernels instead:

* a convolution on inputs every model shares (the images) is one matmul of the inputs'
  patches (cut once for all models) with the ``M x C`` stacked filters, whose output is
  already channels-last; a 2x2 max-pool after it is a maximum over four contiguous blocks of
  that output, and the bias is added after the pool (on a quarter of the values);
* later convolutions are one grouped convolution with ``groups = M`` (channels stay
  model-major: model ``m`` owns channels ``m*C .. m*C + C - 1``), channels-last on the CPU
  (oneDNN's faster layout for grouped convolutions);
* a 2x2 max-pool is the maximum of four strided views (``F.max_pool2d`` also computes indices
  and is several times slower on the CPU);
* linear layers are one matmul on shared inputs, else one ``baddbmm`` over models;
* activations run in place on the tensors the forward made (no new buffer to fill).

The results are those of each network run alone, up to float32 rounding (different summation
order in the kernels); ``tests/functional/test_functional.py`` checks them against the loop.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from weightzoo.architectures.image import RateDropout, SeqNet

_ELEMENTWISE = (nn.Tanh, nn.Sigmoid, nn.ReLU, nn.GELU, nn.LeakyReLU, nn.Identity)
_DROPOUT = (RateDropout, nn.Dropout)


def supports(net: nn.Module) -> bool:
    """Whether :func:`forward` can run ``net``: a :class:`SeqNet` in eval mode of known layers."""
    if not isinstance(net, SeqNet) or net.training:
        return False
    layers = list(net.module_list)
    if not layers or not isinstance(layers[-1], nn.Linear):
        return False
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
                return False
        elif isinstance(layer, nn.Flatten):
            if (layer.start_dim, layer.end_dim) != (1, -1):
                return False
        elif not isinstance(layer, (nn.MaxPool2d, nn.Linear, *_ELEMENTWISE, *_DROPOUT)):
            return False
    return True


def forward(net: SeqNet, params: dict[str, Tensor], x: Tensor) -> Tensor:
    """Outputs ``[M, B, classes]`` of ``M`` stacked networks of ``net``'s architecture.

    Args:
        net: the architecture (its own weights are not used); :func:`supports` must hold.
        params: stacked parameters ``{"module_list.<i>.weight": [M, ...], ...}``.
        x: inputs ``[B, C, H, W]`` shared by every model, or ``[M, B, C, H, W]`` per model.

    Returns:
        The outputs of network ``m`` on its inputs at ``[m]``.
    """
    models = next(iter(params.values())).shape[0]
    channels_last = x.device.type == "cpu"
    # Three layouts: "shared" [B, ...] (the same for every model), "conv" [B, M*C, H, W]
    # (model-major channels) and "flat" [M, B, F].
    kind, h = "shared", x
    if x.dim() == 5:  # one input batch per model
        kind, h = "conv", x.transpose(0, 1).reshape(x.shape[1], -1, *x.shape[3:])
    layers = list(net.module_list)
    pooled = False  # the layer before was a shared-input conv that did this max-pool already
    owned = False  # h is a new tensor, not (a view of) the caller's inputs: in place is safe
    for index, layer in enumerate(layers):
        weight = params.get(f"module_list.{index}.weight")
        bias = params.get(f"module_list.{index}.bias")
        owned = owned or isinstance(layer, nn.Conv2d | nn.Linear | nn.MaxPool2d)
        if isinstance(layer, nn.Conv2d):
            assert weight is not None
            after = layers[index + 1] if index + 1 < len(layers) else None
            if kind == "shared" and layer.groups == 1:
                pooled = isinstance(after, nn.MaxPool2d) and _plain_pool(after)
                kind, h = "conv", _shared_conv(layer, weight, bias, h, pooled)
                continue
            kind, h = "conv", _conv(layer, weight, bias, kind, h, models, channels_last)
        elif isinstance(layer, nn.MaxPool2d) and pooled:
            pooled = False
        elif isinstance(layer, nn.MaxPool2d):
            h = _max_pool(layer, h)
        elif isinstance(layer, nn.Flatten):
            if kind == "conv":  # model-major channels: [B, M*C, H, W] -> [M, B, C*H*W]
                h = h.contiguous().view(h.shape[0], models, -1).transpose(0, 1)
                kind = "flat"
            elif kind == "shared":
                h = h.flatten(1)
        elif isinstance(layer, nn.Linear):
            assert weight is not None
            kind, h = "flat", _linear(weight, bias, kind, h, models)
        elif isinstance(layer, _DROPOUT):
            continue  # eval mode: the identity
        else:  # element-wise: the layout does not matter
            h = _elementwise(layer, h, in_place=owned)
    return h  # "flat": supports() asks for a Linear last


def _elementwise(layer: nn.Module, h: Tensor, in_place: bool) -> Tensor:
    """``layer(h)``, in place where ``h`` is an intermediate (no new large buffer to fill)."""
    if not in_place or isinstance(layer, nn.Identity):
        return layer(h)
    if isinstance(layer, nn.Tanh):
        return h.tanh_()
    if isinstance(layer, nn.Sigmoid):
        return h.sigmoid_()
    if isinstance(layer, nn.ReLU):
        return h.relu_()
    if isinstance(layer, nn.LeakyReLU):
        return F.leaky_relu_(h, layer.negative_slope)
    return layer(h)


def _conv(
    layer: nn.Conv2d,
    weight: Tensor,
    bias: Tensor | None,
    kind: str,
    h: Tensor,
    models: int,
    channels_last: bool,
) -> Tensor:
    groups = layer.groups
    if kind == "shared" and groups > 1:
        # A grouped convolution of shared inputs: give every model its own copy first.
        h, kind = h.repeat(1, models, 1, 1), "conv"
    stacked = weight.reshape(-1, *weight.shape[2:])
    if channels_last:
        h = h.contiguous(memory_format=torch.channels_last)
        stacked = stacked.contiguous(memory_format=torch.channels_last)
    return F.conv2d(
        h,
        stacked,
        None if bias is None else bias.reshape(-1),
        layer.stride,
        layer.padding,
        layer.dilation,
        groups if kind == "shared" else groups * models,
    )


def _shared_conv(
    layer: nn.Conv2d, weight: Tensor, bias: Tensor | None, x: Tensor, pool: bool
) -> Tensor:
    """Every model's convolution of the same inputs as one matmul on their patches.

    ``[B*L, C*k*k] @ [C*k*k, M*O]``: the patches are cut once for all models, and the matmul
    is far faster than oneDNN's convolution for the few input channels of a first layer. Its
    output, rows ``(image, place)`` and columns ``(model, channel)``, is already the
    channels-last layout of ``[B, M*O, H, W]`` that the grouped convolutions after it read.
    With ``pool``, the 2x2 max-pool that follows is done here too: the patches are ordered by
    their place in the pooling window, so that the pool is a maximum over four contiguous
    blocks of the matmul's output instead of over strided views of it; the bias is added after
    the pool, on a quarter of the values (``max(x + b) == max(x) + b`` exactly: rounding
    ``x + b`` is monotone in ``x``).
    """
    kernel, stride = layer.kernel_size, layer.stride
    padding, dilation = layer.padding, layer.dilation
    size = [
        (x.shape[-2 + i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
        for i in range(2)
    ]
    patches = F.unfold(x, kernel, dilation, padding, stride)  # [B, C*k*k, H*W]
    batch, depth = patches.shape[:2]
    filters = weight.reshape(-1, depth).T  # [C*k*k, M*O]
    channels = filters.shape[1]
    if not pool:
        rows = patches.transpose(1, 2).reshape(-1, depth)  # [(B, H, W), C*k*k]
        if bias is None:
            out = rows @ filters
        else:
            out = torch.addmm(bias.reshape(1, -1), rows, filters)
        return out.view(batch, *size, channels).permute(0, 3, 1, 2)
    rows, cols = size[0] // 2, size[1] // 2  # floor, as max_pool2d does
    grid = patches.view(batch, depth, size[0], size[1])[:, :, : rows * 2, : cols * 2]
    # [B, 2, 2, H/2, W/2, C*k*k]: image, then place in the window, then pooled place.
    grid = grid.reshape(batch, depth, rows, 2, cols, 2).permute(0, 3, 5, 2, 4, 1)
    out = (grid.reshape(-1, depth) @ filters).view(batch, 4, rows * cols, channels)
    pooled = torch.maximum(out[:, 0], out[:, 1])
    pooled = torch.maximum(pooled, out[:, 2], out=pooled)
    pooled = torch.maximum(pooled, out[:, 3], out=pooled)
    if bias is not None:
        pooled += bias.reshape(-1)
    return pooled.view(batch, rows, cols, channels).permute(0, 3, 1, 2)


def _plain_pool(layer: nn.MaxPool2d) -> bool:
    """A 2x2 max-pool of stride 2 without padding, dilation or ceil mode."""
    return (
        layer.kernel_size in (2, (2, 2))
        and layer.stride in (2, (2, 2))
        and layer.padding in (0, (0, 0))
        and layer.dilation in (1, (1, 1))
        and not layer.ceil_mode
        and not layer.return_indices
    )


def _max_pool(layer: nn.MaxPool2d, h: Tensor) -> Tensor:
    if not _plain_pool(layer):
        return F.max_pool2d(
            h, layer.kernel_size, layer.stride, layer.padding, layer.dilation, layer.ceil_mode
        )
    rows, cols = h.shape[-2] // 2 * 2, h.shape[-1] // 2 * 2  # floor, as max_pool2d does
    h = h[..., :rows, :cols]
    top = torch.maximum(h[..., 0::2, 0::2], h[..., 0::2, 1::2])
    return torch.maximum(top, torch.maximum(h[..., 1::2, 0::2], h[..., 1::2, 1::2]))


def _linear(weight: Tensor, bias: Tensor | None, kind: str, h: Tensor, models: int) -> Tensor:
    if kind == "conv":
        raise ValueError("a linear layer after a convolution needs a Flatten between them")
    if kind == "shared":  # one matmul for every model: [B, F] @ [F, M*O]
        out_features = weight.shape[1]
        out = (h @ weight.reshape(-1, weight.shape[-1]).T).view(h.shape[0], models, out_features)
        out = out.transpose(0, 1)
        return out if bias is None else out + bias[:, None, :]
    if bias is None:
        return h @ weight.transpose(1, 2)
    return bias[:, None, :].baddbmm(h, weight.transpose(1, 2))
