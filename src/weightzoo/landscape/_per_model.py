"""Stacked weights of a population and mapping a per-model function over them.

Shared by the metric modules of :mod:`weightzoo.landscape`: rows or stacked dicts to
``(params, buffers)``, data batches, ``vmap`` or a loop over models, and random draws shared
by all models.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from weightzoo.errors import InvalidOptionError, LayoutError
from weightzoo.features import layout_of, unflatten
from weightzoo.storage.layout import Layout

Params = dict[str, Tensor]
Batch = tuple[Tensor, Tensor]
#: One batch ``(inputs, targets)`` or a sequence of batches.
Data = Batch | Sequence[Batch]
#: ``loss_fn(outputs, targets) -> scalar`` (the batch mean, as ``F.cross_entropy`` returns).
LossFn = Callable[[Tensor, Tensor], Tensor]


class RowWidthError(InvalidOptionError, LayoutError):
    """Rows whose width is not the layout's number of values."""


def stack_rows(
    module: nn.Module, rows: Tensor | np.ndarray, layout: Layout | None = None
) -> tuple[Params, Params]:
    """Split rows ``[M, P]`` into stacked parameters and buffers of ``module``.

    Args:
        module: the architecture the rows belong to.
        rows: ``M`` weight rows, as a zoo stores them (a single row ``[P]`` counts as ``M=1``).
        layout: the rows' layout (``zoo.layout``); by default ``layout_of(module)``.

    Returns:
        ``(params, buffers)``: ``{name: [M, *shape]}`` for the module's parameters (what the
        Hessian is taken over) and for the other tensors of the layout (BatchNorm running
        statistics). The tensors are copies, so the rows are never written to.

    Raises:
        RowWidthError: if the rows are not ``[M, layout.num_params]``.
        LayoutError: if the layout names a tensor that the module does not have.
    """
    if isinstance(rows, np.ndarray) and not rows.flags.writeable:
        rows = np.array(rows)  # a read-only memory map: torch warns on sharing it
    rows = torch.as_tensor(rows)
    if rows.dim() == 1:
        rows = rows.unsqueeze(0)
    layout = _check_width(module, tuple(rows.shape), layout)
    return _split(module, unflatten(rows, layout))


def _check_width(module: nn.Module, shape: tuple[int, ...], layout: Layout | None) -> Layout:
    layout = layout_of(module) if layout is None else layout
    if len(shape) != 2 or shape[1] != layout.num_params:
        raise RowWidthError(
            f"rows of shape {shape} do not fit {type(module).__name__}: its layout has "
            f"{layout.num_params} values per row; pass rows [M, {layout.num_params}] of this "
            "architecture (and layout=zoo.layout for a zoo's rows)"
        )
    return layout


def _split(module: nn.Module, tensors: Mapping[str, Tensor]) -> tuple[Params, Params]:
    names = dict(module.named_parameters())
    known = names.keys() | dict(module.named_buffers()).keys()
    unknown = [name for name in tensors if name not in known]
    if unknown:
        raise LayoutError(
            f"{type(module).__name__} has no tensors {unknown}; pass the weights of this "
            "architecture"
        )
    params = {k: v.detach().clone() for k, v in tensors.items() if k in names}
    buffers = {k: v.detach().clone() for k, v in tensors.items() if k not in names}
    missing = [name for name in names if name not in params]
    if missing:
        raise LayoutError(
            f"the weights lack the parameters {missing} of {type(module).__name__}; pass all "
            "of them"
        )
    return params, buffers


def weights_of(
    module: nn.Module, weights: Tensor | np.ndarray | Mapping[str, Tensor], layout: Layout | None
) -> tuple[Params, Params, int]:
    """Rows or a stacked dict -> ``(params, buffers, M)``."""
    if isinstance(weights, Mapping):
        params, buffers = _split(module, {k: torch.as_tensor(v) for k, v in weights.items()})
    else:
        params, buffers = stack_rows(module, weights, layout)
    sizes = {t.shape[0] for t in (*params.values(), *buffers.values()) if t.dim() > 0}
    if len(sizes) != 1:
        raise InvalidOptionError(
            f"stacked weights disagree on the number of models: {sorted(sizes)}; every tensor "
            "needs the same leading dimension M"
        )
    return params, buffers, sizes.pop()


def _is_recurrent(module: nn.Module) -> bool:
    return any(isinstance(m, nn.RNNBase) for m in module.modules())


def in_eval_mode(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn(module, ...)`` with ``module`` in eval mode, restoring every submodule's mode."""

    @functools.wraps(fn)
    def wrapper(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        modes = [(m, m.training) for m in module.modules()]
        module.eval()
        try:
            return fn(module, *args, **kwargs)
        finally:
            for m, training in modes:
                m.training = training

    return wrapper


def resolve_plan(module: nn.Module, vectorize: bool | None, hvp: str | None) -> tuple[bool, str]:
    """``(vectorize, hvp)`` with the defaults filled in for ``module``."""
    # vmap has no batching rule for the fused RNN kernels, and their forward-mode AD fails.
    recurrent = _is_recurrent(module)
    vectorize = (not recurrent) if vectorize is None else bool(vectorize)
    hvp = ("reverse" if recurrent else "auto") if hvp is None else hvp
    if hvp not in ("forward", "reverse", "auto"):
        raise InvalidOptionError(f"hvp must be 'forward', 'reverse' or 'auto', got {hvp!r}")
    return vectorize, hvp


def as_batches(data: Data, device: torch.device, dtype: torch.dtype) -> list[Batch]:
    """``data`` as a list of ``(inputs, targets)`` on ``device``, float inputs in ``dtype``."""
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], tuple | list):
        data = [data]  # one batch (tensors or arrays), not a sequence of two batches
    out = []
    for batch in data:
        x, y = batch
        x = torch.as_tensor(x).to(device)
        out.append((x.to(dtype) if x.is_floating_point() else x, torch.as_tensor(y).to(device)))
    if not out:
        raise InvalidOptionError("data holds no batches; pass (inputs, targets) or a list of them")
    return out


def batch_shares(batches: Sequence[Batch]) -> list[float]:
    """Each batch's share of the samples: the loss over ``data`` is the sample mean."""
    sizes = [len(x) for x, _ in batches]
    return [n / sum(sizes) for n in sizes]


def over_models(
    fn: Callable[..., Any], vectorize: bool, in_dims: tuple[Any, ...]
) -> Callable[..., Any]:
    """``vmap(fn, in_dims)``, or the same mapping as a loop over models."""
    if vectorize:
        return vmap(fn, in_dims=in_dims)

    def loop(*args: Any) -> Any:
        size = next(_leading(a) for a, d in zip(args, in_dims, strict=True) if d == 0)
        outs = [
            fn(*(_index(a, i) if d == 0 else a for a, d in zip(args, in_dims, strict=True)))
            for i in range(size)
        ]
        return _stack(outs)

    return loop


def _leading(tree: Any) -> int:
    if isinstance(tree, Mapping):
        return next(iter(tree.values())).shape[0]
    return tree.shape[0]


def _index(tree: Any, i: int) -> Any:
    if isinstance(tree, Mapping):
        return {k: v[i] for k, v in tree.items()}
    return tree[i]


def _stack(outs: list[Any]) -> Any:
    first = outs[0]
    if isinstance(first, Mapping):
        return {k: torch.stack([o[k] for o in outs]) for k in first}
    if isinstance(first, tuple):
        return tuple(_stack([o[j] for o in outs]) for j in range(len(first)))
    return torch.stack(outs)


def per_model_dot(a: Params, b: Params) -> Tensor:
    """Per-model inner product of stacked dicts: ``[M]``."""
    return sum((a[k] * b[k]).flatten(1).sum(1) for k in a)


def chunk_slices(size: int, chunk: int | None) -> list[slice]:
    """Slices of ``chunk`` models covering ``size`` (one slice for ``chunk=None``)."""
    if chunk is None:
        return [slice(0, size)]
    if chunk < 1:
        raise InvalidOptionError(f"chunk must be a positive number of models, got {chunk}")
    return [slice(i, min(i + chunk, size)) for i in range(0, size, chunk)]


def shared_draw(params: Params, generator: torch.Generator, draw: str) -> Params:
    """One random tensor per parameter, shaped like a single model's."""
    out = {}
    for name, value in params.items():
        shape, dtype = value.shape[1:], value.dtype
        if draw == "normal":
            sample = torch.randn(shape, generator=generator, dtype=dtype)
        else:
            sample = torch.randint(0, 2, shape, generator=generator).to(dtype) * 2 - 1
        out[name] = sample.to(value.device)
    return out


def loss_of(module: nn.Module, loss_fn: LossFn) -> Callable[..., Tensor]:
    """``(params, buffers, x, y) -> loss`` of one model, for the ``torch.func`` transforms."""

    def loss(p: Params, b: Params, x: Tensor, y: Tensor) -> Tensor:
        return loss_fn(functional_call(module, (p, b), (x,)), y)

    return loss


def slice_weights(weights: Any, part: slice) -> Any:
    """Models ``part`` of rows or of a stacked dict."""
    if isinstance(weights, Mapping):
        return {k: torch.as_tensor(v)[part] for k, v in weights.items()}
    return weights[part]


def count_models(module: nn.Module, weights: Any, layout: Layout | None) -> int:
    """The number of models, after checking the rows' width (without copying them)."""
    if isinstance(weights, Mapping):
        return weights_of(module, weights, layout)[2]
    shape = tuple(np.shape(weights))
    _check_width(module, shape if len(shape) != 1 else (1, *shape), layout)
    return shape[0] if len(shape) == 2 else 1
