"""Linear CKA between activations, and the activations of stacked models at a layer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from weightzoo.errors import InvalidOptionError
from weightzoo.landscape._per_model import (
    Params,
    in_eval_mode,
    over_models,
    resolve_plan,
    weights_of,
)
from weightzoo.storage.layout import Layout

__all__ = ["UnknownLayerError", "cka", "cka_between", "layer_activations"]


class UnknownLayerError(InvalidOptionError):
    """A layer name that the module does not have."""


def cka(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> Tensor:
    """Linear CKA between activation matrices (Kornblith et al. 2019, arXiv:1905.00414).

    ``CKA(X, Y) = ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F)`` with ``X_c``, ``Y_c``
    the column-centred matrices (the same examples in the same row order). It lies in
    ``[0, 1]``, is 1 for ``X = Y``, and is invariant to orthogonal transforms and isotropic
    scaling of either side. Computed in float64, through the ``n x n`` Gram matrices when
    there are fewer examples than features.

    Args:
        a: ``[n, d1]`` or a batch ``[B, n, d1]``.
        b: ``[n, d2]`` or ``[B, n, d2]`` (same ``n`` and ``B``).

    Returns:
        A scalar tensor, or ``[B]``; NaN where one side is constant over the examples.

    Raises:
        InvalidOptionError: for mismatched shapes or fewer than 2 examples.
    """
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.dim() not in (2, 3) or a.dim() != b.dim() or a.shape[:-1] != b.shape[:-1]:
        raise InvalidOptionError(
            f"cka needs [n, d1] and [n, d2] (or [B, n, d1] and [B, n, d2]) with the same n, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.shape[-2] < 2:
        raise InvalidOptionError(f"cka needs at least 2 examples, got {a.shape[-2]}")
    a = a.double() - a.double().mean(-2, keepdim=True)
    b = b.double() - b.double().mean(-2, keepdim=True)
    n, d1, d2 = a.shape[-2], a.shape[-1], b.shape[-1]
    if n < d1 * d2 / max(d1 + d2, 1):
        ka, kb = a @ a.transpose(-1, -2), b @ b.transpose(-1, -2)
        cross = (ka * kb).sum((-1, -2))
        norm_a, norm_b = ka.square().sum((-1, -2)).sqrt(), kb.square().sum((-1, -2)).sqrt()
    else:
        cross = (b.transpose(-1, -2) @ a).square().sum((-1, -2))
        norm_a = (a.transpose(-1, -2) @ a).square().sum((-1, -2)).sqrt()
        norm_b = (b.transpose(-1, -2) @ b).square().sum((-1, -2)).sqrt()
    denom = norm_a * norm_b
    return torch.where(denom > 0, cross / denom.clamp_min(1e-300), torch.nan)


@in_eval_mode
def layer_activations(
    module: nn.Module,
    params: Tensor | np.ndarray | Mapping[str, Tensor],
    inputs: Tensor,
    *,
    layer: str | None = None,
    layout: Layout | None = None,
    vectorize: bool | None = None,
) -> Tensor:
    """Each model's activations at one layer, flattened per example.

    Args:
        module: the architecture.
        params: rows ``[M, P]`` (with ``layout``) or stacked tensors ``{name: [M, ...]}``.
        inputs: ``[n, ...]`` inputs, the same for every model.
        layer: a submodule name from ``module.named_modules()`` (e.g. ``"module_list.11"``);
            its output is taken (a forward hook). ``None``: the module's output.
        layout: the rows' layout; by default ``layout_of(module)``.
        vectorize: ``vmap`` over models (default: yes, except for recurrent modules).

    Returns:
        ``[M, n, d]``: the layer's output of each model on each input, flattened after the
        example dimension (a recurrent layer's ``(output, state)`` gives its output).

    Raises:
        UnknownLayerError: for a name the module does not have, listing the ones it has.
    """
    p, b, _ = weights_of(module, params, layout)
    vectorize, _ = resolve_plan(module, vectorize, None)
    first = next(iter(p.values()))
    inputs = torch.as_tensor(inputs).to(first.device)
    inputs = inputs.to(first.dtype) if inputs.is_floating_point() else inputs
    target: nn.Module | None = None
    if layer is not None:
        modules = dict(module.named_modules())
        if layer not in modules or layer == "":
            known = ", ".join(name for name in modules if name)
            raise UnknownLayerError(
                f"{type(module).__name__} has no layer {layer!r}; its layers: {known}"
            )
        target = modules[layer]
    captured: list[Tensor] = []

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output)

    def one(q: Params, c: Params, x: Tensor) -> Tensor:
        captured.clear()
        out = functional_call(module, (q, c), (x,))
        if target is not None:
            out = captured[-1]  # the last call, should the layer run more than once
        return out.reshape(out.shape[0], -1)

    handle = target.register_forward_hook(hook) if target is not None else None
    try:
        with torch.no_grad():
            return over_models(one, vectorize, (0, 0, None))(p, b, inputs)
    finally:
        if handle is not None:
            handle.remove()


def cka_between(
    module: nn.Module,
    params_a: Tensor | np.ndarray | Mapping[str, Tensor],
    params_b: Tensor | np.ndarray | Mapping[str, Tensor],
    inputs: Tensor,
    *,
    layer: str | None = None,
    layout: Layout | None = None,
    vectorize: bool | None = None,
) -> Tensor:
    """Linear CKA between model ``i`` of ``params_a`` and model ``i`` of ``params_b``.

    Args:
        module: the architecture.
        params_a: the first models (rows ``[M, P]`` or stacked tensors).
        params_b: their partners, the same number of models.
        inputs: ``[n, ...]`` inputs for both.
        layer: see :func:`layer_activations` (``None``: the outputs).
        layout: the rows' layout; by default ``layout_of(module)``.
        vectorize: ``vmap`` over models (default: yes, except for recurrent modules).

    Returns:
        ``[M]`` CKA values in float64.
    """
    acts_a, acts_b = (
        layer_activations(module, params, inputs, layer=layer, layout=layout, vectorize=vectorize)
        for params in (params_a, params_b)
    )
    if acts_a.shape[0] != acts_b.shape[0]:
        raise InvalidOptionError(
            f"cka_between needs as many partners as models, got {acts_a.shape[0]} and "
            f"{acts_b.shape[0]}"
        )
    return cka(acts_a, acts_b)
