"""Rows of a zoo as the inputs of weight-space learning libraries.

* :func:`to_nfn` / :func:`from_nfn`: nfn's ``WeightSpaceFeatures`` (Zhou et al., "Permutation
  Equivariant Neural Functionals", arXiv:2302.14040; ``pip install nfn``).
* :func:`to_weights_biases` / :func:`from_weights_biases`: the ``(weights, biases)`` tuples of
  DWSNets (Navon et al., "Equivariant Architectures for Learning in Deep Weight Spaces",
  arXiv:2301.12780) and neural graphs (Kofinas et al., "Graph Neural Networks for Learning
  Equivariant Representations of Neural Networks", arXiv:2403.12143).
* :func:`zoo_module_shapes`: the module shapes of a zoo whose manifest does not record them.

Every converter takes ``params``, the ``{state_dict name: [B, *shape]}`` dict of
``ZooDataset(features=("params",))`` (or ``[B, P]`` weight rows), and the zoo's layout. The
networks must be chains of layers of one weight and one bias each (``Linear``, ``Conv2d``): MLPs
and CNNs such as CNN-s. A ``Linear`` that reads the flatten of the last conv's ``[C, H, W]``
map is used as a ``[out, C, H, W]`` kernel, its module shape (recorded in the layout, or given
as ``module_shapes``), so that permuting the conv's channels permutes its inputs.

See ``docs/interop.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from weightzoo.errors import LayoutError, MissingExtraError
from weightzoo.storage.layout import Layout, TensorSpec

__all__ = [
    "from_nfn",
    "from_weights_biases",
    "to_nfn",
    "to_weights_biases",
    "zoo_module_shapes",
]

Params = Mapping[str, Tensor] | Tensor | np.ndarray


@dataclass(frozen=True)
class _Layer:
    """One layer of a chain: its weight, its bias and the shape the weight is used in."""

    weight: TensorSpec
    bias: TensorSpec
    shape: tuple[int, ...]  # [out, in] or [out, in, kh, kw]

    @property
    def kernel(self) -> tuple[int, ...]:
        """The spatial part of the weight (``()`` for a linear layer)."""
        return self.shape[2:]


# --------------------------------------------------------------------------------------------
# the chain of layers a layout describes
# --------------------------------------------------------------------------------------------


def _chain(
    layout: Layout,
    module_shapes: Mapping[str, Sequence[int]] | None,
    *,
    flatten_as_kernel: bool = True,
) -> list[_Layer]:
    """The layout's layers, checked to be a chain that nfn, DWSNets and neural graphs take.

    ``flatten_as_kernel``: a ``Linear`` on the flatten of a conv's map is used in its module
    shape ``[out, C, H, W]`` (else in its stored shape ``[out, C * H * W]``).
    """
    if module_shapes:
        layout = layout.with_module_shapes(module_shapes)
    layers: list[_Layer] = []
    for name, tensors in layout.layers().items():
        weight, bias = _weight_and_bias(name, tensors)
        shape = weight.shape
        previous = layers[-1] if layers else None
        if previous is not None and shape[1] != previous.shape[0]:
            shape = _flattened(weight, previous, as_kernel=flatten_as_kernel)
        layers.append(_Layer(weight, bias, shape))
    if not layers:
        raise LayoutError("the layout has no tensors, so there is no layer to convert")
    return layers


def _weight_and_bias(name: str, tensors: list[TensorSpec]) -> tuple[TensorSpec, TensorSpec]:
    """The one weight and one bias of layer ``name``, checked."""
    leaves = {t.name.rsplit(".", 1)[-1]: t for t in tensors}
    if len(tensors) != 2 or set(leaves) != {"weight", "bias"}:
        kinds = ("weight", "bias")
        odd = next((t.name for t in tensors if t.name.rsplit(".", 1)[-1] not in kinds), None)
        raise LayoutError(
            f"tensor {odd or tensors[0].name!r}: layer {name!r} has "
            f"{', '.join(t.name for t in tensors)}, but "
            "nfn, DWSNets and neural graphs take layers of one weight and one bias (Linear, "
            "Conv2d; no BatchNorm, attention or bias-free layers)"
        )
    weight, bias = leaves["weight"], leaves["bias"]
    if len(weight.shape) not in (2, 4):
        raise LayoutError(
            f"tensor {weight.name!r} of shape {weight.shape}: only Linear (2-d) and Conv2d "
            "(4-d) weights convert"
        )
    if bias.shape != weight.shape[:1]:
        raise LayoutError(
            f"tensor {bias.name!r} of shape {bias.shape} is not the bias of {weight.name!r} "
            f"{weight.shape}"
        )
    return weight, bias


def _flattened(weight: TensorSpec, previous: _Layer, *, as_kernel: bool) -> tuple[int, ...]:
    """The shape a linear weight that reads the flatten of the previous conv's map is used in.

    Its module shape ``[out, C, H, W]`` (``as_kernel``), or its stored shape ``[out, C*H*W]``.
    """
    channels = previous.shape[0]
    if len(weight.shape) != 2 or not previous.kernel or weight.shape[1] % channels:
        raise LayoutError(
            f"tensor {weight.name!r} of shape {weight.shape} takes {weight.shape[1]} inputs but "
            f"{previous.weight.name!r} gives {channels}: the layers are not a chain"
        )
    if not as_kernel:
        return weight.shape
    view = weight.module_shape
    if view is None:
        raise LayoutError(
            f"tensor {weight.name!r} of shape {weight.shape} reads the flatten of the "
            f"{channels}-channel map of {previous.weight.name!r}, and the layout does not record "
            f"how (a zoo written before module shapes were): pass module_shapes="
            f"{{{weight.name!r}: ({weight.shape[0]}, {channels}, H, W)}} with the map's H x W "
            "(weightzoo.interop.zoo_module_shapes(zoo) finds it)"
        )
    if len(view) != 4 or view[1] != channels:
        raise LayoutError(
            f"tensor {weight.name!r}: module shape {view} is not [out, {channels}, H, W], the "
            f"flatten of the {channels}-channel map of {previous.weight.name!r}"
        )
    return view


# --------------------------------------------------------------------------------------------
# params in, params out
# --------------------------------------------------------------------------------------------


def _as_params(params: Params, layout: Layout) -> dict[str, Tensor]:
    """``{name: [B, *shape]}`` from a params dict or from ``[B, P]`` rows, checked."""
    if not isinstance(params, Mapping):
        from weightzoo.features import unflatten

        rows = torch.as_tensor(params)
        if rows.dim() != 2:
            raise LayoutError(
                f"weight rows have shape {tuple(rows.shape)}; pass a batch [B, "
                f"{layout.num_params}] or a params dict"
            )
        return unflatten(rows, layout)
    out: dict[str, Tensor] = {}
    for spec in layout:
        value = params.get(spec.name)
        if value is None:
            raise LayoutError(
                f"params have no tensor {spec.name!r}; they have {', '.join(params) or 'none'}"
            )
        value = torch.as_tensor(value)
        if value.dim() != len(spec.shape) + 1 or tuple(value.shape[1:]) != spec.shape:
            raise LayoutError(
                f"params[{spec.name!r}] has shape {tuple(value.shape)}; the layout expects a "
                f"batch [B, {', '.join(map(str, spec.shape))}] (add .unsqueeze(0) to one item)"
            )
        out[spec.name] = value
    return out


def _batch_size(params: Mapping[str, Tensor]) -> int:
    sizes = {int(v.shape[0]) for v in params.values()}
    if len(sizes) != 1:
        raise LayoutError(f"params hold batches of different sizes {sorted(sizes)}")
    return sizes.pop()


# --------------------------------------------------------------------------------------------
# nfn
# --------------------------------------------------------------------------------------------


def to_nfn(
    params: Params,
    layout: Layout,
    *,
    module_shapes: Mapping[str, Sequence[int]] | None = None,
) -> Any:
    """A batch of networks as nfn's ``WeightSpaceFeatures``.

    As nfn's own ``state_dict_to_tensors`` builds them, with one channel: weights
    ``[B, 1, out, in]`` (``Linear``) or ``[B, 1, out, in, kh, kw]`` (``Conv2d``), biases
    ``[B, 1, out]``. A ``Linear`` that reads the flatten of the last conv's ``[C, H, W]`` map
    becomes ``[B, 1, out, C, H, W]``, as nfn takes a CNN whose flatten feeds a linear layer.

    Args:
        params: ``{state_dict name: [B, *shape]}`` (the ``params`` feature of a batch) or
            ``[B, P]`` weight rows.
        layout: the rows' layout (``zoo.layout``).
        module_shapes: module shapes the layout does not record (zoos written before they
            were), e.g. ``{"module_list.11.weight": (20, 4, 3, 3)}``.

    Returns:
        ``nfn.common.WeightSpaceFeatures``.

    Raises:
        MissingExtraError: if nfn is not installed.
        LayoutError: for a layout that is not a chain of Linear/Conv2d layers with biases,
            naming the tensor, or params that do not match it.
    """
    common = _nfn()
    layers = _chain(layout, module_shapes)
    tensors = _as_params(params, layout)
    batch = _batch_size(tensors)
    weights = tuple(tensors[layer.weight.name].reshape(batch, 1, *layer.shape) for layer in layers)
    biases = tuple(tensors[layer.bias.name].reshape(batch, 1, -1) for layer in layers)
    return common.WeightSpaceFeatures(weights, biases)


def from_nfn(
    features: Any,
    layout: Layout,
    *,
    module_shapes: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, Tensor]:
    """Inverse of :func:`to_nfn`: ``{state_dict name: [B, *shape]}`` from one-channel features.

    Args:
        features: ``WeightSpaceFeatures`` (or anything with ``weights`` and ``biases``) of one
            channel, e.g. the output of an nfn layer with ``out_channels=1``.
        layout: the layout of the networks.
        module_shapes: as :func:`to_nfn`.

    Raises:
        LayoutError: for features of another number of layers, channels or shapes.
    """
    layers = _chain(layout, module_shapes)
    if not len(features.weights) == len(features.biases) == len(layers):
        raise LayoutError(
            f"features have {len(features.weights)} weights and {len(features.biases)} biases "
            f"for the layout's {len(layers)} layers"
        )
    pairs = zip(features.weights, features.biases, strict=True)
    out: dict[str, Tensor] = {}
    for layer, (weight, bias) in zip(layers, pairs, strict=True):
        for spec, value, expected in (
            (layer.weight, weight, layer.shape),
            (layer.bias, bias, None),
        ):
            expected = expected or spec.shape
            if value.dim() != len(expected) + 2 or value.shape[1] != 1:
                raise LayoutError(
                    f"features for {spec.name!r} have shape {tuple(value.shape)}; expected "
                    f"[B, 1, {', '.join(map(str, expected))}] (one channel)"
                )
            out[spec.name] = value.reshape(value.shape[0], *spec.shape)
    return {spec.name: out[spec.name] for spec in layout}


def _nfn() -> Any:
    try:
        import nfn.common
    except ImportError:
        raise MissingExtraError(
            "weightzoo.interop.to_nfn needs nfn, which is not installed; install it with "
            "`pip install nfn`"
        ) from None
    return nfn.common


# --------------------------------------------------------------------------------------------
# DWSNets and neural graphs
# --------------------------------------------------------------------------------------------


def _padding(kernel: tuple[int, ...], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``F.pad`` amounts that centre ``kernel`` in ``size`` (width first, as F.pad wants)."""
    dh, dw = size[0] - kernel[0], size[1] - kernel[1]
    return (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2)


def _kernel_size(layers: list[_Layer], max_kernel_size: Sequence[int] | None) -> tuple[int, int]:
    """The common kernel size every spatial weight is padded to (checked)."""
    if max_kernel_size is None:
        return (0, 0)
    size = tuple(int(d) for d in max_kernel_size)
    if len(size) != 2:
        raise LayoutError(f"max_kernel_size must be (height, width), got {max_kernel_size!r}")
    for layer in layers:
        if layer.kernel and (layer.kernel[0] > size[0] or layer.kernel[1] > size[1]):
            raise LayoutError(
                f"tensor {layer.weight.name!r} has a {layer.kernel[0]}x{layer.kernel[1]} kernel, "
                f"larger than max_kernel_size {size}"
            )
    return size  # type: ignore[return-value]


def to_weights_biases(
    params: Params,
    layout: Layout,
    *,
    module_shapes: Mapping[str, Sequence[int]] | None = None,
    max_kernel_size: Sequence[int] | None = None,
    flatten_as_kernel: bool = True,
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """A batch of networks as the ``(weights, biases)`` tuples of DWSNets and neural graphs.

    Weights are ``[B, in, out, 1]`` for a ``Linear`` (DWSNets' ``INRDataset``: the transpose
    of PyTorch's ``[out, in]``, with a feature dimension) and ``[B, in, out, kh * kw]`` for a
    ``Conv2d`` (neural graphs' ``CNNDataset``: the kernel flattened into the features); biases
    are ``[B, out, 1]``. A ``Linear`` that reads the flatten of the last conv's ``[C, H, W]``
    map is used as a ``C``-input kernel, ``[B, C, out, H * W]``, so that its inputs are the
    conv's channels; with ``flatten_as_kernel=False`` it keeps its ``C * H * W`` inputs,
    ``[B, C * H * W, out, 1]``, the form neural graphs' ``CNNDataset`` reads before its own
    ``flattening_method`` expands the last conv (which assumes channels-last flattening, not
    PyTorch's channels-first). DWSNets takes MLPs, whose layers all have one feature.

    Args:
        params: ``{state_dict name: [B, *shape]}`` or ``[B, P]`` weight rows.
        layout: the rows' layout (``zoo.layout``).
        module_shapes: as :func:`to_nfn`.
        max_kernel_size: ``(height, width)`` to pad every kernel to, centred (as neural graphs
            pads them, so that all layers have ``height * width`` features); ``None``: no
            padding.
        flatten_as_kernel: use a ``Linear`` on a flattened map as a kernel (see above).

    Returns:
        ``(weights, biases)``, one tensor per layer each.

    Raises:
        LayoutError: for a layout that is not a chain of Linear/Conv2d layers with biases,
            naming the tensor, or a kernel larger than ``max_kernel_size``.
    """
    layers = _chain(layout, module_shapes, flatten_as_kernel=flatten_as_kernel)
    size = _kernel_size(layers, max_kernel_size)
    tensors = _as_params(params, layout)
    batch = _batch_size(tensors)
    weights, biases = [], []
    for layer in layers:
        w = tensors[layer.weight.name].reshape(batch, *layer.shape).transpose(1, 2)
        if layer.kernel:
            if max_kernel_size is not None:
                w = F.pad(w, _padding(layer.kernel, size))
            w = w.flatten(3)
        else:
            w = w.unsqueeze(-1)
        weights.append(w)
        biases.append(tensors[layer.bias.name].unsqueeze(-1))
    return tuple(weights), tuple(biases)


def from_weights_biases(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    layout: Layout,
    *,
    module_shapes: Mapping[str, Sequence[int]] | None = None,
    max_kernel_size: Sequence[int] | None = None,
    flatten_as_kernel: bool = True,
) -> dict[str, Tensor]:
    """Inverse of :func:`to_weights_biases`: ``{state_dict name: [B, *shape]}``.

    Args:
        weights: one ``[B, in, out, features]`` tensor per layer.
        biases: one ``[B, out, 1]`` tensor per layer.
        layout: the layout of the networks.
        module_shapes: as :func:`to_nfn`.
        max_kernel_size: the padding :func:`to_weights_biases` used (it is cut off).
        flatten_as_kernel: as :func:`to_weights_biases` used it.

    Raises:
        LayoutError: for tuples of another number of layers or shapes.
    """
    layers = _chain(layout, module_shapes, flatten_as_kernel=flatten_as_kernel)
    size = _kernel_size(layers, max_kernel_size)
    if not len(weights) == len(biases) == len(layers):
        raise LayoutError(
            f"got {len(weights)} weights and {len(biases)} biases for the layout's "
            f"{len(layers)} layers"
        )
    out: dict[str, Tensor] = {}
    for layer, w, b in zip(layers, weights, biases, strict=True):
        out_dim, in_dim = layer.shape[:2]
        padded = size if layer.kernel and max_kernel_size is not None else layer.kernel
        features = math.prod(padded)
        if tuple(w.shape[1:]) != (in_dim, out_dim, features) or tuple(b.shape[1:]) != (out_dim, 1):
            raise LayoutError(
                f"weights/biases for {layer.weight.name!r} have shapes {tuple(w.shape)} / "
                f"{tuple(b.shape)}; expected [B, {in_dim}, {out_dim}, {features}] / "
                f"[B, {out_dim}, 1]"
            )
        w = w.transpose(1, 2)
        if layer.kernel:
            w = w.reshape(*w.shape[:3], *padded)
            top, left = (padded[0] - layer.kernel[0]) // 2, (padded[1] - layer.kernel[1]) // 2
            w = w[..., top : top + layer.kernel[0], left : left + layer.kernel[1]]
        out[layer.weight.name] = w.reshape(w.shape[0], *layer.weight.shape)
        out[layer.bias.name] = b.squeeze(-1)
    return {spec.name: out[spec.name] for spec in layout}


# --------------------------------------------------------------------------------------------
# zoos written before module shapes were recorded
# --------------------------------------------------------------------------------------------


def zoo_module_shapes(zoo: Any, model: int | None = None) -> dict[str, tuple[int, ...]]:
    """The module shapes of a zoo's tensors, found by running its module on the ``meta`` device.

    For zoos whose manifest does not record them; pass the result as ``module_shapes``.

    Args:
        zoo: a :class:`~weightzoo.zoo.Zoo` or a zoo directory, of a weightzoo architecture.
        model: the model whose columns build the module (a hyperparameter-grid zoo with
            several activations needs one; the shapes are the same for every model).

    Raises:
        UnbuildableSpecError: for an imported zoo (no weightzoo architecture to run).
    """
    from weightzoo.features import module_shapes
    from weightzoo.functional import input_shape
    from weightzoo.zoo import Zoo

    zoo = zoo if isinstance(zoo, Zoo) else Zoo(zoo)
    return module_shapes(zoo.build_model(model), input_shape(zoo))
