"""``landscape_metrics``: several metrics of a population by name, in chunks of models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from weightzoo.errors import InvalidOptionError
from weightzoo.landscape._per_model import (
    Data,
    LossFn,
    as_batches,
    chunk_slices,
    count_models,
    slice_weights,
)
from weightzoo.landscape.cka import cka_between
from weightzoo.landscape.connectivity import mode_connectivity
from weightzoo.landscape.hessian import (
    TopEigenvalues,
    hessian_top_eigenvalue_details,
    hessian_trace,
    warn_unconverged,
)
from weightzoo.landscape.options import Knobs, LandscapeOptions, resolve_options
from weightzoo.storage.layout import Layout

__all__ = ["METRICS", "UnknownMetricError", "landscape_metrics"]

#: Metric names :func:`landscape_metrics` knows. ``cka``, ``mc``, ``mc_error``,
#: ``linear_barrier`` and ``curve_barrier`` compare each model with its partner.
METRICS = (
    "hessian_top",
    "hessian_trace",
    "cka",
    "mc",
    "mc_error",
    "linear_barrier",
    "curve_barrier",
)

_PAIR_METRICS = frozenset(METRICS[2:])
_CONNECTIVITY_METRICS = frozenset(METRICS[3:])


class UnknownMetricError(InvalidOptionError):
    """A metric name that :func:`landscape_metrics` does not know."""


def landscape_metrics(
    module: nn.Module,
    rows: Tensor | np.ndarray | Mapping[str, Tensor],
    data: Data,
    loss_fn: LossFn,
    metrics: Sequence[str] = ("hessian_top", "hessian_trace"),
    *,
    layout: Layout | None = None,
    partners: Tensor | np.ndarray | Mapping[str, Tensor] | None = None,
    accuracy_fn: LossFn | None = None,
    cka_inputs: Tensor | None = None,
    cka_layer: str | None = None,
    options: Knobs = None,
) -> dict[str, np.ndarray]:
    """Several landscape metrics of ``M`` models, ``options.chunk`` models at a time.

    Metric names (:data:`METRICS`): ``hessian_top`` (:func:`hessian_top_eigenvalue`, largest
    magnitude), ``hessian_trace`` (:func:`hessian_trace`), and, comparing model ``i`` with
    ``partners[i]`` (e.g. the same configuration from another seed): ``cka``
    (:func:`cka_between` on ``cka_inputs``, default the inputs of the first batch of
    ``data``), ``mc`` and ``mc_error`` (:func:`signed_mc` of the loss / error on the trained
    curve; ``mc_error`` needs ``accuracy_fn``), ``linear_barrier`` and ``curve_barrier``
    (:func:`barrier` of the loss). The connectivity metrics share one curve per pair. Each
    measurement takes its knobs from ``options``: ``hessian_top`` its ``iters``, ``tol`` and
    ``seed``; ``hessian_trace`` its ``probes`` and ``seed``; the connectivity metrics those
    of :func:`mode_connectivity` (``points``, ``steps``, the curve's training, ``seed`` and
    ``bn_update``); all its ``chunk`` and ``vectorize``.

    Args:
        module: the architecture (``weightzoo.architectures.build_model(zoo.manifest.spec)``).
        rows: rows ``[M, P]`` (with ``layout``) or stacked tensors ``{name: [M, ...]}``.
        data: ``(inputs, targets)`` or a sequence of such batches (the training data).
        loss_fn: ``loss_fn(outputs, targets)``, the batch mean.
        metrics: names from :data:`METRICS`.
        layout: the rows' layout (``zoo.layout``); by default ``layout_of(module)``.
        partners: ``M`` partner models for the pair metrics.
        accuracy_fn: ``accuracy_fn(outputs, targets)``, the batch's fraction correct.
        cka_inputs: inputs for ``cka``.
        cka_layer: layer for ``cka`` (see :func:`layer_activations`; default the outputs).
        options: the knobs (chunks, seed, power-iteration budget, probes, path times, curve
            training, ``vmap``, BatchNorm re-estimation); default ``LandscapeOptions()``; a
            mapping changes only its knobs of those defaults.

    Returns:
        ``{metric: float64 array [M]}`` in the order asked for.

    Raises:
        UnknownMetricError: for a name not in :data:`METRICS`.
        RowWidthError: for rows (or partners) of the wrong width.
        InvalidOptionError: for a pair metric without ``partners``, or ``mc_error`` without
            ``accuracy_fn``.
    """
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    wanted = set(metrics)
    knobs = resolve_options(options, LandscapeOptions())
    size = _checked_size(module, rows, metrics, layout, partners, accuracy_fn is not None)
    if cka_inputs is None and "cka" in wanted:
        cka_inputs = as_batches(data, torch.device("cpu"), torch.float32)[0][0]
    out: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    tops: list[TopEigenvalues] = []
    for part in chunk_slices(size, knobs.chunk):
        mine = slice_weights(rows, part)
        theirs = None if partners is None else slice_weights(partners, part)
        common = {"layout": layout, "vectorize": knobs.vectorize}
        if "hessian_top" in wanted:
            top = hessian_top_eigenvalue_details(
                module, mine, data, loss_fn, layout=layout, options=knobs
            )
            tops.append(top)
            out["hessian_top"].append(top.values.double().cpu().numpy())
        if "hessian_trace" in wanted:
            probes, seed = knobs.probes, knobs.seed
            trace = hessian_trace(module, mine, data, loss_fn, probes=probes, seed=seed, **common)
            out["hessian_trace"].append(trace.double().cpu().numpy())
        if "cka" in wanted:
            similarity = cka_between(module, mine, theirs, cka_inputs, layer=cka_layer, **common)
            out["cka"].append(similarity.cpu().numpy())
        if wanted & _CONNECTIVITY_METRICS:
            result = mode_connectivity(
                module, mine, theirs, data, loss_fn, layout=layout, accuracy_fn=accuracy_fn,
                options=knobs,
            )  # fmt: skip
            for name in wanted & _CONNECTIVITY_METRICS:
                out[name].append(np.asarray(getattr(result, name), dtype=np.float64))
    if tops:
        warn_unconverged(tops, knobs.tol, knobs.iters, stacklevel=2)
    return {m: np.concatenate(v) if v else np.zeros(0) for m, v in out.items()}


def _checked_size(
    module: nn.Module,
    rows: Tensor | np.ndarray | Mapping[str, Tensor],
    metrics: list[str],
    layout: Layout | None,
    partners: Tensor | np.ndarray | Mapping[str, Tensor] | None,
    has_accuracy: bool,
) -> int:
    """The number of models, once the request of :func:`landscape_metrics` is checked.

    Raises:
        UnknownMetricError: for a name not in :data:`METRICS`.
        InvalidOptionError: for a pair metric without partners (or another number of them),
            or ``mc_error`` without an accuracy function.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise UnknownMetricError(
            f"unknown landscape metric(s) {unknown}; known: {', '.join(METRICS)}"
        )
    wanted = set(metrics)
    if wanted & _PAIR_METRICS and partners is None:
        raise InvalidOptionError(
            f"metrics {sorted(wanted & _PAIR_METRICS)} compare each model with a partner; pass "
            "partners=rows of the same shape (e.g. the same configuration, another seed)"
        )
    if "mc_error" in wanted and not has_accuracy:
        raise InvalidOptionError("metric 'mc_error' needs accuracy_fn(outputs, targets)")
    size = count_models(module, rows, layout)
    if partners is not None and size != count_models(module, partners, layout):
        raise InvalidOptionError(
            f"partners must hold one model per row: {size} rows, "
            f"{count_models(module, partners, layout)} partners"
        )
    return size
