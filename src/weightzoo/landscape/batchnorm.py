"""BatchNorm running statistics re-estimated for new weights, many models at once.

Weights that were never trained as they are (a point on a path between two models) have no
running statistics of their own: interpolating the endpoints' statistics does not give the mean
and variance that the interpolated weights produce. Garipov, Izmailov, Podoprikhin, Vetrov,
Wilson ("Loss Surfaces, Mode Connectivity, and Fast Ensembling of DNNs", arXiv:1802.10026)
recompute them at every point on training data, as :func:`torch.optim.swa_utils.update_bn`
does for one module: reset the statistics, run the batches through the network with BatchNorm
in train mode (each layer normalises with its batch's statistics) and keep the cumulative
average of each batch's mean and unbiased variance (``momentum=None``).

:func:`reestimate_bn` does the same for ``M`` stacked models, under ``vmap`` like the rest of
:mod:`weightzoo.landscape`. Only the BatchNorm layers run in train mode; dropout stays off, so
that the statistics are those of the network that is then evaluated.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm

from weightzoo.landscape._per_model import Batch, Params, over_models

__all__ = ["batch_norm_layers", "batch_statistics", "reestimate_bn"]


def batch_norm_layers(module: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """The BatchNorm layers of ``module`` that keep running statistics, with their names."""
    return [
        (name, layer)
        for name, layer in module.named_modules()
        if isinstance(layer, _BatchNorm) and layer.track_running_stats
    ]


@contextlib.contextmanager
def batch_statistics(module: nn.Module) -> Iterator[list[tuple[str, _BatchNorm]]]:
    """BatchNorm layers normalise with each batch's statistics and update no running ones.

    Train mode with ``track_running_stats=False`` (the patching ``torch.func`` recommends for
    BatchNorm under ``vmap``): nothing is written in place, so ``grad`` and ``vmap`` apply. The
    layers' modes and flags are restored on exit.

    Yields:
        The layers, as :func:`batch_norm_layers` lists them.
    """
    layers = batch_norm_layers(module)
    modes = [layer.training for _, layer in layers]
    for _, layer in layers:
        layer.train()
        layer.track_running_stats = False
    try:
        yield layers
    finally:
        for (_, layer), training in zip(layers, modes, strict=True):
            layer.train(training)
            layer.track_running_stats = True


def reestimate_bn(
    module: nn.Module,
    params: Params,
    buffers: Params,
    batches: Sequence[Batch],
    *,
    vectorize: bool = True,
) -> Params:
    """Buffers of ``M`` stacked models with BatchNorm statistics recomputed on ``batches``.

    For every model, the result equals ``torch.optim.swa_utils.update_bn`` run on a copy of
    ``module`` holding that model's weights, on the same batches, up to float32 rounding: each
    BatchNorm layer's ``running_mean`` and ``running_var`` become the average over the batches
    of the batch mean and unbiased batch variance of the layer's input (the network running
    with batch statistics, as in train mode), and ``num_batches_tracked`` the number of
    batches.

    Args:
        module: the architecture; its BatchNorm layers' modes are restored afterwards (the
            caller puts the rest of it in eval mode).
        params: stacked parameters ``{name: [M, ...]}``.
        buffers: stacked buffers; the running statistics in it are not read, the other
            buffers are used as they are.
        batches: ``(inputs, targets)`` pairs (the targets are not used).
        vectorize: ``vmap`` over models (else a loop).

    Returns:
        A new dict of buffers; ``buffers`` is not changed.
    """
    layers = batch_norm_layers(module)
    out = dict(buffers)
    if not layers:
        return out

    def statistics(p: Params, b: Params, x: Tensor) -> tuple[Tensor, ...]:
        found: list[Tensor] = []

        def record(_layer: nn.Module, args: tuple[Tensor, ...]) -> None:
            inputs = args[0]
            dims = [0, *range(2, inputs.dim())]  # every axis but the channels
            found.append(inputs.mean(dims))
            found.append(inputs.var(dims, unbiased=True))

        hooks = [layer.register_forward_pre_hook(record) for _, layer in layers]
        try:
            functional_call(module, (p, b), (x,))
        finally:
            for hook in hooks:
                hook.remove()
        return tuple(found)

    run = over_models(statistics, vectorize, (0, 0, None))
    means: list[Tensor] = []
    with batch_statistics(module):
        for count, (x, _) in enumerate(batches, start=1):
            found = run(params, buffers, x)
            if count == 1:
                means = [value.clone() for value in found]
                continue
            # The cumulative average of update_bn (momentum=None): factor 1 / count.
            for value, new in zip(means, found, strict=True):
                value.mul_(1 - 1 / count).add_(new, alpha=1 / count)
    for index, (name, _) in enumerate(layers):
        prefix = f"{name}." if name else ""
        mean, var = means[2 * index], means[2 * index + 1]
        out[f"{prefix}running_mean"] = mean.to(buffers.get(f"{prefix}running_mean", mean).dtype)
        out[f"{prefix}running_var"] = var.to(buffers.get(f"{prefix}running_var", var).dtype)
        tracked = f"{prefix}num_batches_tracked"
        if tracked in buffers:
            out[tracked] = buffers[tracked].new_full(buffers[tracked].shape, len(batches))
    return out
