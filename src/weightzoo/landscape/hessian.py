"""Hessian top eigenvalue (power iteration) and trace (Hutchinson) of stacked models."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import grad, jvp, vjp

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
    per_model_dot,
    resolve_plan,
    shared_draw,
    weights_of,
)
from weightzoo.landscape.options import (
    DEFAULT_ITERS,
    DEFAULT_TOL,
    Knobs,
    LandscapeOptions,
    resolve_options,
)
from weightzoo.precision import exact_cuda
from weightzoo.storage.layout import Layout

__all__ = [
    "DEFAULT_ITERS",
    "DEFAULT_TOL",
    "TopEigenvalues",
    "hessian_top_eigenvalue",
    "hessian_top_eigenvalue_details",
    "hessian_trace",
    "warn_unconverged",
]

_log = logging.getLogger(__name__)

#: Relative residual above which a model that met the tolerance still counts as not converged:
#: two eigenvalues of equal magnitude and opposite sign
#: leave the iteration alternating between them with a residual of order 1.
_RESIDUAL_WARNING = 0.1


def _hvp_one(module: nn.Module, loss_fn: LossFn, mode: str) -> Callable[..., Params]:
    """``(p, b, v, x, y) -> H v`` for one model, ``H`` the Hessian of the batch loss at ``p``."""
    loss = loss_of(module, loss_fn)

    def hvp(p: Params, b: Params, v: Params, x: Tensor, y: Tensor) -> Params:
        def g(q: Params) -> Params:
            return grad(loss)(q, b, x, y)

        if mode == "forward":
            return jvp(g, (p,), (v,))[1]
        return vjp(g, p)[1](v)[0]  # the Hessian is symmetric, so v^T H = (H v)^T

    return hvp


class _HVP:
    """Hessian-vector products of the loss over all of ``data``, for stacked models."""

    def __init__(
        self,
        module: nn.Module,
        data: Data,
        loss_fn: LossFn,
        params: Params,
        *,
        vectorize: bool,
        mode: str,
    ) -> None:
        first = next(iter(params.values()))
        self.batches = as_batches(data, first.device, first.dtype)
        self.shares = batch_shares(self.batches)
        self._args = (module, loss_fn, vectorize)
        self.mode = mode
        self._build("forward" if mode == "auto" else mode)

    def _build(self, mode: str) -> None:
        module, loss_fn, vectorize = self._args
        one = _hvp_one(module, loss_fn, mode)
        self.per_model = over_models(one, vectorize, (0, 0, 0, None, None))

        def per_probe(p: Params, b: Params, vs: Params, x: Tensor, y: Tensor) -> Params:
            return over_models(one, vectorize, (None, None, 0, None, None))(p, b, vs, x, y)

        # Probes are shared by all models: a map over probes inside the map over models.
        self.probes = over_models(per_probe, vectorize, (0, 0, None, None, None))

    def __call__(self, params: Params, buffers: Params, v: Params) -> Params:
        """``H v`` for stacked ``v`` ``[M, ...]``."""
        return self._sum("per_model", params, buffers, v)

    def shared(self, params: Params, buffers: Params, vs: Params) -> Params:
        """``H v_k`` for probes ``vs`` ``[K, ...]`` shared by all models: ``[M, K, ...]``."""
        return self._sum("probes", params, buffers, vs)

    def _sum(self, which: str, params: Params, buffers: Params, v: Params) -> Params:
        if self.mode == "auto":
            self.mode = "forward"
            try:
                return self._sum(which, params, buffers, v)
            except RuntimeError as exc:
                # Some backward formulas have no forward-mode derivative (F.mse_loss,
                # the fused RNN kernels): reverse-over-reverse computes the same product.
                _log.info("forward-over-reverse HVP failed (%s); using reverse mode", exc)
                self.mode = "reverse"
                self._build("reverse")
        fn = getattr(self, which)
        total: Params | None = None
        device = next(iter(params.values())).device
        for (x, y), share in zip(self.batches, self.shares, strict=True):
            # TF32 convolutions on CUDA cost a CNN's Hessian products about three digits.
            with exact_cuda(device):
                out = fn(params, buffers, v, x, y)
            out = {k: t.detach() * share for k, t in out.items()}
            total = out if total is None else {k: total[k] + out[k] for k in total}
        assert total is not None
        return total


class _GraphHVP:
    """Hessian-vector products on one fixed batch from one gradient graph, for stacked models.

    The graph of the batch gradient (``create_graph=True``) is built once; each product is a
    second ``torch.autograd.grad`` through it with the vector as ``grad_outputs`` and the graph
    kept (``retain_graph=True``), as PyHessian does on one batch: one backward pass per
    product instead of a forward and two backward passes. The loss summed over models has a
    block-diagonal Hessian, so the product of the sum is each model's own.
    """

    def __init__(
        self, module: nn.Module, batch: tuple[Tensor, Tensor], loss_fn: LossFn,
        params: Params, buffers: Params, *, vectorize: bool,
    ) -> None:  # fmt: skip
        self.device = next(iter(params.values())).device
        self.names = list(params)
        self.leaves = [params[k].detach().requires_grad_() for k in self.names]
        loss = over_models(loss_of(module, loss_fn), vectorize, (0, 0, None, None))
        x, y = batch
        with torch.enable_grad(), exact_cuda(self.device):
            total = loss(dict(zip(self.names, self.leaves, strict=True)), buffers, x, y).sum()
            self.grads = torch.autograd.grad(total, self.leaves, create_graph=True)

    def __call__(self, _params: Params, _buffers: Params, v: Params) -> Params:
        """``H v`` for stacked ``v`` ``[M, ...]`` at the weights the graph was built at."""
        with torch.enable_grad(), exact_cuda(self.device):
            out = torch.autograd.grad(
                self.grads, self.leaves, [v[k] for k in self.names], retain_graph=True
            )
        return {k: t.detach() for k, t in zip(self.names, out, strict=True)}

    def shared(self, _params: Params, _buffers: Params, vs: Params) -> Params:
        """``H v_k`` for probes ``vs`` ``[K, ...]`` shared by all models: ``[M, K, ...]``."""
        size = self.leaves[0].shape[0]
        count = next(iter(vs.values())).shape[0]
        outs = [
            self(_params, _buffers, {k: t[j].expand(size, *t.shape[1:]) for k, t in vs.items()})
            for j in range(count)
        ]
        return {k: torch.stack([o[k] for o in outs], 1) for k in self.names}


def _product(
    module: nn.Module,
    data: Data,
    loss_fn: LossFn,
    params: Params,
    buffers: Params,
    vectorize: bool | None,
    hvp: str | None,
    reuse_graph: bool | None,
) -> _HVP | _GraphHVP:
    """The Hessian-vector product of the loss over ``data``: one graph for one batch.

    Raises:
        InvalidOptionError: for ``reuse_graph=True`` with several batches, or a bad ``hvp``.
    """
    asked = vectorize
    vectorize, mode = resolve_plan(module, vectorize, hvp)
    first = next(iter(params.values()))
    batches = as_batches(data, first.device, first.dtype)
    if reuse_graph is None:
        reuse_graph = len(batches) == 1
    if not reuse_graph:
        return _HVP(module, batches, loss_fn, params, vectorize=vectorize, mode=mode)
    if len(batches) != 1:
        raise InvalidOptionError(
            f"reuse_graph=True needs one batch, got {len(batches)}; pass one (inputs, targets) "
            "or reuse_graph=None"
        )
    if asked is None and first.device.type == "cpu" and _convolutional(module):
        # On CPU the batched (grouped) convolutions that vmap makes of a population run slower
        # than one model's after another (docs/landscape.md, Speed); a plain graph loops freely.
        vectorize = False
    return _GraphHVP(module, batches[0], loss_fn, params, buffers, vectorize=vectorize)


def _convolutional(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())


@dataclass(frozen=True)
class TopEigenvalues:
    """Power iteration's answer for each model, with how it stopped.

    Attributes:
        values: ``[M]`` eigenvalues (detached, in the parameters' dtype).
        steps: int64 ``[M]`` Hessian-vector products each model took.
        converged: bool ``[M]``: the relative change fell to ``tol`` within the step budget
            and the relative residual is at most 0.1.
        change: float64 ``[M]`` the last relative change ``|lambda_k - lambda_(k-1)| /
            |lambda_k|`` (NaN after a single step).
        residual: float64 ``[M]`` ``||Hv - lambda v|| / |lambda|`` at the last step.
    """

    values: Tensor
    steps: Tensor
    converged: Tensor
    change: Tensor
    residual: Tensor


@in_eval_mode
def hessian_top_eigenvalue(
    module: nn.Module,
    params: Tensor | np.ndarray | Mapping[str, Tensor],
    data: Data,
    loss_fn: LossFn,
    *,
    layout: Layout | None = None,
    iters: int = DEFAULT_ITERS,
    tol: float = DEFAULT_TOL,
    seed: int = 0,
    which: str = "magnitude",
    vectorize: bool | None = None,
    hvp: str | None = None,
    reuse_graph: bool | None = None,
    warn: bool = True,
) -> Tensor:
    """Top eigenvalue of each model's training-loss Hessian, by power iteration.

    The Hessian is that of the mean of ``loss_fn`` over all samples of ``data`` (batches
    weighted by their size), with respect to the module's parameters (not its buffers).
    Hessian-vector products are forward-over-reverse (``jvp`` of ``grad``); ``hvp="reverse"``
    uses ``vjp`` of ``grad`` instead; on one batch the gradient graph is built once and every
    product differentiates it again (``reuse_graph``). All models iterate together; a model
    stops when its estimate changed by at most ``tol`` relative to the previous one, or after
    ``iters`` products, and keeps its value while the others go on. A ``RuntimeWarning``
    (one line) names the models that did not converge.

    Args:
        module: the architecture.
        params: rows ``[M, P]`` (with ``layout``) or stacked tensors ``{name: [M, ...]}``.
        data: ``(inputs, targets)`` or a sequence of such batches.
        loss_fn: ``loss_fn(outputs, targets)``, the batch mean.
        layout: the rows' layout; by default ``layout_of(module)``.
        iters: most Hessian-vector products per model (the step budget).
        tol: relative change between steps at which a model stops.
        seed: seeds the start vector (the same for every model).
        which: ``"magnitude"``: the eigenvalue of largest absolute value, with its sign (what
            power iteration and PyHessian return); ``"algebraic"``: the largest eigenvalue,
            found by a second power iteration on ``H - lambda I`` for models whose
            largest-magnitude eigenvalue ``lambda`` is negative (twice the products).
        vectorize: ``vmap`` over models (default: yes, except for recurrent modules, and for
            convolutional ones on CPU when the graph is reused, where a loop is faster).
        hvp: ``"forward"``, ``"reverse"`` or ``"auto"`` (the default: forward, and reverse
            where forward-mode AD fails, as for ``F.mse_loss`` and recurrent modules).
        reuse_graph: build the gradient graph once (``create_graph=True``) and take every
            product from it (``None``, the default: when ``data`` is one batch; ``hvp`` then
            does not apply).
        warn: warn about the models that did not converge.

    Returns:
        ``[M]`` eigenvalues (a detached tensor in the parameters' dtype);
        :func:`hessian_top_eigenvalue_details` also says how each model stopped.

    Raises:
        InvalidOptionError: for a bad option; RowWidthError for rows of the wrong width.
    """
    knobs = LandscapeOptions(iters=iters, tol=tol, seed=seed, vectorize=vectorize)
    top = _top_eigenvalues(module, params, data, loss_fn, layout, knobs, which, hvp, reuse_graph)
    if warn:
        warn_unconverged([top], tol, iters, stacklevel=3)  # past in_eval_mode: the caller
    return top.values


@in_eval_mode
def hessian_top_eigenvalue_details(
    module: nn.Module,
    params: Tensor | np.ndarray | Mapping[str, Tensor],
    data: Data,
    loss_fn: LossFn,
    *,
    layout: Layout | None = None,
    options: Knobs = None,
    which: str = "magnitude",
    hvp: str | None = None,
    reuse_graph: bool | None = None,
) -> TopEigenvalues:
    """:func:`hessian_top_eigenvalue` with how each model stopped, and no warning.

    For engines that gather the results of several calls (chunks of models) into one warning
    with :func:`warn_unconverged`, as :func:`~weightzoo.landscape.landscape_metrics` does. The
    arguments are :func:`hessian_top_eigenvalue`'s, the knobs given as one ``options``.

    Args:
        module: the architecture.
        params: the models.
        data: the batches.
        loss_fn: the batch loss.
        layout: the rows' layout.
        options: its ``iters``, ``tol``, ``seed`` and ``vectorize`` (by default
            ``LandscapeOptions()``'s; a mapping changes only its knobs of those); the other knobs
            do not apply.
        which: the eigenvalue sought.
        hvp: the Hessian-vector product's mode.
        reuse_graph: build the gradient graph once.

    Returns:
        A :class:`TopEigenvalues`: values, steps, converged, last change, residual.

    Raises:
        InvalidOptionError: for a bad option; RowWidthError for rows of the wrong width.
    """
    knobs = resolve_options(options, LandscapeOptions())
    return _top_eigenvalues(module, params, data, loss_fn, layout, knobs, which, hvp, reuse_graph)


def _top_eigenvalues(
    module: nn.Module,
    params: Tensor | np.ndarray | Mapping[str, Tensor],
    data: Data,
    loss_fn: LossFn,
    layout: Layout | None,
    knobs: LandscapeOptions,
    which: str,
    hvp: str | None,
    reuse_graph: bool | None,
) -> TopEigenvalues:
    """Power iteration for both public forms (``knobs``: iters, tol, seed, vectorize)."""
    iters, tol, seed = knobs.iters, knobs.tol, knobs.seed
    if which not in ("magnitude", "algebraic"):
        raise InvalidOptionError(f"which must be 'magnitude' or 'algebraic', got {which!r}")
    if iters < 1 or not tol >= 0:
        raise InvalidOptionError(f"iters must be at least 1 and tol >= 0, got {iters} and {tol}")
    p, b, _ = weights_of(module, params, layout)
    product = _product(module, data, loss_fn, p, b, knobs.vectorize, hvp, reuse_graph)
    top = _power(product, p, b, iters, tol, seed, shift=None)
    if which == "algebraic":
        shift = top.values.clamp(max=0)
        if bool((shift < 0).any()):
            # The spectrum of H - shift I lies in [0, lambda_max - shift] when shift is the
            # most negative eigenvalue, so its top-magnitude eigenvalue is lambda_max - shift.
            second = _power(product, p, b, iters, tol, seed, shift)
            top = _merge(top, second, shift < 0, shift)
    return top


def _merge(first: TopEigenvalues, second: TopEigenvalues, use: Tensor, shift: Tensor):
    """Models ``use`` from the shifted run ``second`` (values shifted back, steps added)."""
    return TopEigenvalues(
        values=torch.where(use, second.values + shift, first.values),
        steps=first.steps + torch.where(use, second.steps, 0),
        converged=torch.where(use, first.converged & second.converged, first.converged),
        change=torch.where(use, second.change, first.change),
        residual=torch.where(use, second.residual, first.residual),
    )


def warn_unconverged(results: Sequence[TopEigenvalues], tol: float, iters: int, stacklevel: int):
    """One ``RuntimeWarning`` for the models of ``results`` that did not converge, if any.

    Args:
        results: power-iteration results (e.g. one per chunk of models).
        tol: the tolerance they ran with.
        iters: the step budget they ran with.
        stacklevel: the warning's stack level, counted from the caller of this function.
    """
    bad = torch.cat([r.converged for r in results]).logical_not()
    if not bool(bad.any()):
        return
    change = torch.cat([r.change for r in results])[bad].nan_to_num(nan=float("inf"))
    residual = float(torch.cat([r.residual for r in results])[bad].max())
    advice = f"raise iters above {iters} (or tol above {tol:g})"
    if residual > _RESIDUAL_WARNING:
        advice += (
            "; a residual near 1 means the largest and smallest eigenvalues have nearly the "
            "same magnitude and opposite signs, which power iteration cannot separate"
        )
    warnings.warn(
        f"power iteration did not converge for {int(bad.sum())} of {len(bad)} models (worst "
        f"relative change {float(change.max()):.3g}, tol {tol:g}, {iters} steps; worst "
        f"residual ||Hv - lambda v|| / |lambda| {residual:.3g}): {advice}",
        RuntimeWarning,
        stacklevel=stacklevel + 1,
    )


def _power(
    product: Callable[[Params, Params, Params], Params],
    p: Params,
    b: Params,
    iters: int,
    tol: float,
    seed: int,
    shift: Tensor | None,
) -> TopEigenvalues:
    size = next(iter(p.values())).shape[0]
    generator = torch.Generator().manual_seed(seed)
    start = shared_draw(p, generator, "normal")
    v = _normalize({k: t.expand(size, *t.shape).clone() for k, t in start.items()})
    nan = torch.full((size,), torch.nan, dtype=torch.float64)
    eigen, residual, change = nan, nan, nan
    steps = torch.zeros(size, dtype=torch.int64)
    done = torch.zeros(size, dtype=torch.bool)
    for _ in range(iters):
        hv = product(p, b, v)
        if shift is not None:
            hv = {k: hv[k] - _bcast(shift, hv[k]) * v[k] for k in hv}
        estimate = per_model_dot(v, hv).detach().double().cpu()
        # ||Hv - lambda v|| for a unit v: how far v is from an eigenvector.
        error = (per_model_dot(hv, hv).detach().double().cpu() - estimate**2).clamp_min(0).sqrt()
        moved = (estimate - eigen).abs() / estimate.abs().clamp_min(1e-12)  # NaN on step one
        # A converged model keeps its value, so no model's result depends on the others.
        keep = done.clone()
        eigen = torch.where(keep, eigen, estimate)
        change = torch.where(keep, change, moved)
        residual = torch.where(keep, residual, error / estimate.abs().clamp_min(1e-300))
        steps += (~keep).long()
        done |= moved <= tol
        if bool(done.all()):
            break
        v = _normalize(hv)
    dtype = next(iter(p.values())).dtype
    converged = done & (residual <= _RESIDUAL_WARNING)
    return TopEigenvalues(eigen.to(dtype), steps, converged, change, residual)


def _bcast(values: Tensor, like: Tensor) -> Tensor:
    return values.reshape(-1, *([1] * (like.dim() - 1))).to(like.device, like.dtype)


def _normalize(v: Params) -> Params:
    norm = per_model_dot(v, v).sqrt().clamp_min(1e-30)
    return {k: t / _bcast(norm, t) for k, t in v.items()}


@in_eval_mode
def hessian_trace(
    module: nn.Module,
    params: Tensor | np.ndarray | Mapping[str, Tensor],
    data: Data,
    loss_fn: LossFn,
    *,
    layout: Layout | None = None,
    probes: int = 100,
    probe_batch: int = 10,
    seed: int = 0,
    vectorize: bool | None = None,
    hvp: str | None = None,
    reuse_graph: bool | None = None,
) -> Tensor:
    """Trace of each model's training-loss Hessian, by Hutchinson's estimator.

    ``tr H ~ (1/K) sum_k z_k^T H z_k`` with ``K = probes`` Rademacher vectors ``z_k`` (entries
    +-1), which is unbiased with variance ``2 sum_{i != j} H_ij^2 / K``; it is exact when ``H``
    is diagonal. The Hessian is that of :func:`hessian_top_eigenvalue`. The probes are shared
    by all models and evaluated ``probe_batch`` at a time (``vmap`` over probes inside the
    map over models).

    Args:
        module: the architecture.
        params: rows ``[M, P]`` (with ``layout``) or stacked tensors ``{name: [M, ...]}``.
        data: ``(inputs, targets)`` or a sequence of such batches.
        loss_fn: ``loss_fn(outputs, targets)``, the batch mean.
        layout: the rows' layout; by default ``layout_of(module)``.
        probes: number of probe vectors ``K``.
        probe_batch: probes per Hessian-vector call (memory grows with ``M * probe_batch``).
        seed: seeds the probes.
        vectorize: ``vmap`` over models (default: yes, except for recurrent modules, and for
            convolutional ones on CPU when the graph is reused, where a loop is faster).
        hvp: ``"forward"``, ``"reverse"`` or ``"auto"`` (the default: forward, and reverse
            where forward-mode AD fails, as for ``F.mse_loss`` and recurrent modules).
        reuse_graph: build the gradient graph once and take every product from it (``None``,
            the default: when ``data`` is one batch; probes then go one at a time).

    Returns:
        ``[M]`` trace estimates.

    Raises:
        InvalidOptionError: for a bad option; RowWidthError for rows of the wrong width.
    """
    if probes < 1 or probe_batch < 1:
        raise InvalidOptionError(
            f"probes and probe_batch must be at least 1, got {probes} and {probe_batch}"
        )
    p, b, size = weights_of(module, params, layout)
    product = _product(module, data, loss_fn, p, b, vectorize, hvp, reuse_graph)
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros(size, dtype=next(iter(p.values())).dtype)
    done = 0
    while done < probes:
        k = min(probe_batch, probes - done)
        draws = [shared_draw(p, generator, "rademacher") for _ in range(k)]
        zs = {name: torch.stack([d[name] for d in draws]) for name in p}
        hz = product.shared(p, b, zs)  # [M, k, ...]
        total += sum((hz[n] * zs[n].unsqueeze(0)).flatten(1).sum(1) for n in p).cpu()
        done += k
    return total / probes
