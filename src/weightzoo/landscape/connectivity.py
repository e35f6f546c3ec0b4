"""Mode connectivity of model pairs: the linear path and a trained quadratic Bézier curve."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad

from weightzoo.errors import InvalidOptionError
from weightzoo.landscape._per_model import (
    Data,
    LossFn,
    Params,
    as_batches,
    batch_shares,
    in_eval_mode,
    loss_of,
    over_models,
    resolve_plan,
    weights_of,
)
from weightzoo.landscape.batchnorm import batch_norm_layers, batch_statistics, reestimate_bn
from weightzoo.landscape.options import Knobs, LandscapeOptions, resolve_options
from weightzoo.storage.layout import Layout

__all__ = ["ConnectivityResult", "barrier", "mode_connectivity", "signed_mc"]


def barrier(values: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Barrier height along a path: ``max_t [v(t) - ((1 - t) v(0) + t v(1))]``.

    The largest excess of the loss (or error) over the straight line between the endpoints'
    values. It is ``>= 0`` (the endpoints give 0); 0 means no bump anywhere on the path.

    Args:
        values: ``[..., k]`` values at times ``t`` (``t[0] = 0``, ``t[-1] = 1``).
        t: ``[k]`` times.

    Returns:
        ``[...]`` barrier heights.
    """
    values, t = np.asarray(values, dtype=np.float64), np.asarray(t, dtype=np.float64)
    line = (1 - t) * values[..., :1] + t * values[..., -1:]
    return (values - line).max(-1)


def signed_mc(values: np.ndarray) -> np.ndarray:
    """The signed mode connectivity ``mc`` of the phase diagrams (Yang et al. 2021).

    ``mc = (v(0) + v(1)) / 2 - v(t*)`` with ``t* = argmax_t |v(t) - (v(0) + v(1)) / 2|``, for
    ``v`` a loss or an error along the trained curve. ``mc < 0``: the curve rises above the
    endpoints (a barrier, the models sit in different basins); ``mc > 0``: the curve goes lower
    than the endpoints (the endpoints are not minima, typically under-trained); ``mc ~ 0``: well
    connected.

    Args:
        values: ``[..., k]`` values along the path, endpoints first and last.

    Returns:
        ``[...]`` signed ``mc``.
    """
    values = np.asarray(values, dtype=np.float64)
    mid = (values[..., :1] + values[..., -1:]) / 2
    star = np.abs(values - mid).argmax(-1)[..., None]
    return (mid - np.take_along_axis(values, star, -1))[..., 0]


@dataclass(frozen=True)
class ConnectivityResult:
    """Loss and error along the linear path and the trained Bézier curve, per model pair.

    Attributes:
        t: ``[k]`` path times from 0 (model a) to 1 (model b).
        linear_loss: ``[M, k]`` loss at ``(1 - t) a + t b``.
        curve_loss: ``[M, k]`` loss at ``(1 - t)^2 a + 2 t (1 - t) c + t^2 b``.
        linear_error: ``[M, k]`` ``1 - accuracy`` on the linear path (None without an
            ``accuracy_fn``).
        curve_error: ``[M, k]`` the same on the curve.
        control: the trained control points ``c``, ``{name: [M, ...]}``.
    """

    t: np.ndarray
    linear_loss: np.ndarray
    curve_loss: np.ndarray
    linear_error: np.ndarray | None
    curve_error: np.ndarray | None
    control: Params

    @property
    def linear_barrier(self) -> np.ndarray:
        """``[M]`` :func:`barrier` of the loss on the linear path."""
        return barrier(self.linear_loss, self.t)

    @property
    def curve_barrier(self) -> np.ndarray:
        """``[M]`` :func:`barrier` of the loss on the curve."""
        return barrier(self.curve_loss, self.t)

    @property
    def mc(self) -> np.ndarray:
        """``[M]`` :func:`signed_mc` of the loss on the curve."""
        return signed_mc(self.curve_loss)

    @property
    def mc_error(self) -> np.ndarray | None:
        """``[M]`` :func:`signed_mc` of the error on the curve (None without accuracy)."""
        return None if self.curve_error is None else signed_mc(self.curve_error)


def _bezier(t: Tensor | float, a: Params, c: Params, b: Params) -> Params:
    return {k: (1 - t) ** 2 * a[k] + 2 * t * (1 - t) * c[k] + t**2 * b[k] for k in a}


def _lerp(t: Tensor | float, a: Params, b: Params) -> Params:
    return {k: (1 - t) * a[k] + t * b[k] for k in a}


def _train_control(
    module: nn.Module,
    loss_fn: LossFn,
    ends: tuple[Params, Params, Params, Params],
    train: list[tuple[Tensor, Tensor]],
    sgd: LandscapeOptions,
    *,
    vectorize: bool,
    bn_update: bool,
) -> Params:
    """The Bézier control points after ``sgd.steps`` SGD steps from the midpoints.

    Args:
        module: the architecture.
        loss_fn: the batch loss.
        ends: parameters and buffers of both endpoints ``(pa, pb, ba, bb)``.
        train: the batches, in turn.
        sgd: ``steps`` (0: the midpoints, the linear path), ``lr``, ``momentum``,
            ``weight_decay`` and ``seed`` (of the times drawn).
        vectorize: ``vmap`` over pairs.
        bn_update: BatchNorm on batch statistics while training.
    """
    pa, pb, ba, bb = ends
    loss = loss_of(module, loss_fn)

    def curve_loss(c: Params, a: Params, b: Params, u: Params, w: Params, t: Tensor, x, y):
        return loss(_bezier(t, a, c, b), _lerp(t, u, w), x, y)

    step = over_models(grad(curve_loss), vectorize, (0, 0, 0, 0, 0, None, None, None))
    control = {k: (pa[k] + pb[k]) / 2 for k in pa}
    velocity = {k: torch.zeros_like(v) for k, v in control.items()}
    generator = torch.Generator().manual_seed(int(sgd.seed))
    first = next(iter(pa.values()))
    # With bn_update, BatchNorm trains on batch statistics (no running ones are written).
    with batch_statistics(module) if bn_update else contextlib.nullcontext():
        for i in range(sgd.steps):
            x, y = train[i % len(train)]
            t = torch.rand((), generator=generator, dtype=first.dtype).to(first.device)
            grads = step(control, pa, pb, ba, bb, t, x, y)
            for k in control:
                velocity[k] = sgd.momentum * velocity[k] + grads[k]
                velocity[k] = velocity[k] + sgd.weight_decay * control[k]
                control[k] = control[k] - sgd.lr * velocity[k]
    return control


@in_eval_mode
def mode_connectivity(
    module: nn.Module,
    params_a: Tensor | np.ndarray | Mapping[str, Tensor],
    params_b: Tensor | np.ndarray | Mapping[str, Tensor],
    data: Data,
    loss_fn: LossFn,
    *,
    layout: Layout | None = None,
    accuracy_fn: LossFn | None = None,
    eval_data: Data | None = None,
    options: Knobs = None,
) -> ConnectivityResult:
    """Connect model ``i`` of ``params_a`` with model ``i`` of ``params_b``, all pairs at once.

    The quadratic Bézier curve ``phi(t) = (1 - t)^2 a + 2 t (1 - t) c + t^2 b`` of Garipov et
    al. (arXiv:1802.10026) starts with its control point ``c`` at the midpoint ``(a + b) / 2``
    (the linear path) and trains ``c`` by ``steps`` steps of SGD with momentum on
    ``loss(phi(t))``, with ``t ~ U(0, 1)`` drawn anew each step (one ``t`` for all pairs) and
    the batches of ``data`` in turn. The endpoints stay fixed. Both paths are then evaluated
    at ``points`` evenly spaced times on ``eval_data`` (default: ``data``, the training data,
    as the phase diagrams use).

    BatchNorm, as Garipov et al. handle it (``bn_update``, the default for a module with
    BatchNorm layers that keep running statistics): the curve trains with BatchNorm on each
    batch's statistics (train mode for those layers only), and at every evaluated ``t``, on
    both paths, the running statistics are recomputed for the weights at ``t`` on all batches
    of ``data`` (:func:`weightzoo.landscape.batchnorm.reestimate_bn`, what
    ``torch.optim.swa_utils.update_bn`` does for one module) before the evaluation in eval
    mode. That includes the endpoints: their values are those of the two models with
    re-estimated statistics, not with the statistics they stored. With ``bn_update=False``
    the buffers follow the straight line between the endpoints' on both paths and training
    runs on them too (eval mode): the statistics then do not match the weights between the
    endpoints.

    Args:
        module: the architecture.
        params_a: the first models (rows ``[M, P]`` or stacked tensors).
        params_b: their partners, the same number of models.
        data: batches the curve trains on.
        loss_fn: ``loss_fn(outputs, targets)``, the batch mean.
        layout: the rows' layout; by default ``layout_of(module)``.
        accuracy_fn: ``accuracy_fn(outputs, targets)`` -> the batch's fraction correct; gives
            the error curves and ``mc_error``.
        eval_data: batches to evaluate the paths on (default: ``data``).
        options: the knobs: ``points`` (path times ``k``, at least 3: both endpoints and a
            midpoint), ``steps`` (SGD steps on the control point; 0: the curve is the linear
            path, whose values it then copies without evaluating it), ``lr``, ``momentum``,
            ``weight_decay`` (an L2 penalty on the control point), ``seed`` (of the times
            ``t`` drawn during training), ``vectorize`` (over pairs) and ``bn_update``
            (``None``: when the module has BatchNorm layers with running statistics); by
            default ``LandscapeOptions()``'s (a mapping changes only its knobs of those).

    Returns:
        A :class:`ConnectivityResult` (barrier heights and ``mc`` are its properties).

    Raises:
        InvalidOptionError: for a bad option or a different number of partners.
    """
    knobs = resolve_options(options, LandscapeOptions())
    points, steps = knobs.points, knobs.steps
    if points < 3 or steps < 0:
        raise InvalidOptionError(
            f"points must be at least 3 and steps at least 0, got {points} and {steps}"
        )
    pa, ba, size = weights_of(module, params_a, layout)
    pb, bb, size_b = weights_of(module, params_b, layout)
    if size != size_b:
        raise InvalidOptionError(
            f"mode_connectivity needs one partner per model, got {size} and {size_b} models"
        )
    vectorize, _ = resolve_plan(module, knobs.vectorize, None)
    bn_update = knobs.bn_update
    if bn_update is None:
        bn_update = bool(batch_norm_layers(module))
    first = next(iter(pa.values()))
    train = as_batches(data, first.device, first.dtype)
    evaluate = train if eval_data is None else as_batches(eval_data, first.device, first.dtype)
    control = _train_control(
        module, loss_fn, (pa, pb, ba, bb), train, knobs, vectorize=vectorize, bn_update=bn_update
    )

    times = np.linspace(0.0, 1.0, points)
    shares = batch_shares(evaluate)

    def measure(q: Params, c: Params, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        out = functional_call(module, (q, c), (x,))
        acc = accuracy_fn(out, y) if accuracy_fn is not None else out.new_zeros(())
        return loss_fn(out, y), acc

    run = over_models(measure, vectorize, (0, 0, None, None))
    curves = {name: np.zeros((size, points)) for name in ("ll", "cl", "la", "ca")}
    with torch.no_grad():
        for j, t in enumerate(times.tolist()):
            paths = {"l": (_lerp(t, pa, pb), _lerp(t, ba, bb))}
            if steps:  # an untrained curve is the linear path: copied below, not evaluated
                paths["c"] = (_bezier(t, pa, control, pb), _lerp(t, ba, bb))
            for key, (q, c) in paths.items():
                if bn_update:
                    c = reestimate_bn(module, q, c, train, vectorize=vectorize)
                for (x, y), share in zip(evaluate, shares, strict=True):
                    value, acc = run(q, c, x, y)
                    curves[key + "l"][:, j] += share * value.double().cpu().numpy()
                    curves[key + "a"][:, j] += share * acc.double().cpu().numpy()
    if not steps:
        curves["cl"], curves["ca"] = curves["ll"].copy(), curves["la"].copy()
    errors = accuracy_fn is not None
    return ConnectivityResult(
        t=times,
        linear_loss=curves["ll"],
        curve_loss=curves["cl"],
        linear_error=1 - curves["la"] if errors else None,
        curve_error=1 - curves["ca"] if errors else None,
        control={k: v.detach() for k, v in control.items()},
    )
