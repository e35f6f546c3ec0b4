"""Hessian top eigenvalue (power iteration) and trace (Hutchinson) of stacked models."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import grad, jvp, vjp

from weightzoo.errors import InvalidOptionError
from weightzoo.landscape._stacking import (
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
from weightzoo.precision import exact_cuda
from weightzoo.storage.layout import Layout

__all__ = ["hessian_top_eigenvalue", "hessian_trace"]

_log = logging.getLogger(__name__)

#: Relative residual above which :func:`hessian_top_eigenvalue` warns. Converged estimates
#: sit near 1e-2 at the default tolerance; two eigenvalues of equal magnitude and opposite sign
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


@in_eval_mode
def hessian_top_eigenvalue(
    module: nn.Module,
    params: Tensor | np.ndarray | Mapping[str, Tensor],
    data: Data,
    loss_fn: LossFn,
    *,
    layout: Layout | None = None,
    iters: int = 20,
    tol: float = 1e-3,
    seed: int = 0,
    which: str = "magnitude",
    vectorize: bool | None = None,
    hvp: str | None = None,
) -> Tensor:
    """Top eigenvalue of each model's training-loss Hessian, by power iteration.

    The Hessian is that of the mean of ``loss_fn`` over all samples of ``data`` (batches
    weighted by their size), with respect to the module's parameters (not its buffers).
    Hessian-vector products are forward-over-reverse (``jvp`` of ``grad``); ``hvp="reverse"``
    uses ``vjp`` of ``grad`` instead. All models iterate together; the loop stops when every
    model's estimate changed by at most ``tol`` relative to the last one, or after ``iters``
    products.

    Args:
        module: the architecture.
        params: rows ``[M, P]`` (with ``layout``) or stacked tensors ``{name: [M, ...]}``.
        data: ``(inputs, targets)`` or a sequence of such batches.
        loss_fn: ``loss_fn(outputs, targets)``, the batch mean.
        layout: the rows' layout; by default ``layout_of(module)``.
        iters: most Hessian-vector products per model.
        tol: relative change at which a model counts as converged.
        seed: seeds the start vector (the same for every model).
        which: ``"magnitude"``: the eigenvalue of largest absolute value, with its sign (what
            power iteration and PyHessian return); ``"algebraic"``: the largest eigenvalue,
            found by a second power iteration on ``H - lambda I`` for models whose
            largest-magnitude eigenvalue ``lambda`` is negative (twice the products).
        vectorize: ``vmap`` over models (default: yes, except for recurrent modules).
        hvp: ``"forward"``, ``"reverse"`` or ``"auto"`` (the default: forward, and reverse
            where forward-mode AD fails, as for ``F.mse_loss`` and recurrent modules).

    Returns:
        ``[M]`` eigenvalues (a detached tensor in the parameters' dtype).

    Raises:
        InvalidOptionError: for a bad option; RowWidthError for rows of the wrong width.
    """
    if which not in ("magnitude", "algebraic"):
        raise InvalidOptionError(f"which must be 'magnitude' or 'algebraic', got {which!r}")
    if iters < 1:
        raise InvalidOptionError(f"iters must be at least 1, got {iters}")
    p, b, _ = weights_of(module, params, layout)
    vectorize, mode = resolve_plan(module, vectorize, hvp)
    product = _HVP(module, data, loss_fn, p, vectorize=vectorize, mode=mode)
    top = _power(product, p, b, iters, tol, seed, shift=None)
    if which == "algebraic":
        shift = top.clamp(max=0)
        if bool((shift < 0).any()):
            # The spectrum of H - shift I lies in [0, lambda_max - shift] when shift is the
            # most negative eigenvalue, so its top-magnitude eigenvalue is lambda_max - shift.
            top = torch.where(
                shift < 0, _power(product, p, b, iters, tol, seed, shift) + shift, top
            )
    return top


def _power(
    product: _HVP, p: Params, b: Params, iters: int, tol: float, seed: int, shift: Tensor | None
) -> Tensor:
    size = next(iter(p.values())).shape[0]
    generator = torch.Generator().manual_seed(seed)
    start = shared_draw(p, generator, "normal")
    v = _normalize({k: t.expand(size, *t.shape).clone() for k, t in start.items()})
    eigen = residual = torch.full((size,), torch.nan, dtype=torch.float64)
    done = torch.zeros(size, dtype=torch.bool)
    for _ in range(iters):
        hv = product(p, b, v)
        if shift is not None:
            hv = {k: hv[k] - _bcast(shift, hv[k]) * v[k] for k in hv}
        estimate = per_model_dot(v, hv).detach().double().cpu()
        # ||Hv - lambda v|| for a unit v: how far v is from an eigenvector.
        error = (per_model_dot(hv, hv).detach().double().cpu() - estimate**2).clamp_min(0).sqrt()
        converged = (estimate - eigen).abs() <= tol * eigen.abs().clamp_min(1e-12)
        # A converged model keeps its value, so no model's result depends on the others.
        eigen = torch.where(done, eigen, estimate)
        residual = torch.where(done, residual, error / estimate.abs().clamp_min(1e-300))
        done |= converged  # NaN on the first step: never converged there
        if bool(done.all()):
            break
        v = _normalize(hv)
    bad = residual > _RESIDUAL_WARNING
    if bool(bad.any()):
        warnings.warn(
            f"power iteration did not converge for {int(bad.sum())} of {size} models (relative "
            f"residual ||Hv - lambda v|| / |lambda| up to {float(residual.max()):.3g}): raise "
            "iters; a residual that stays near 1 means the largest and smallest eigenvalues "
            "have nearly the same magnitude and opposite signs, which power iteration cannot "
            "separate",
            RuntimeWarning,
            stacklevel=4,  # _power, the function, in_eval_mode, the caller
        )
    dtype = next(iter(p.values())).dtype
    return eigen.to(dtype)


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
        vectorize: ``vmap`` over models (default: yes, except for recurrent modules).
        hvp: ``"forward"``, ``"reverse"`` or ``"auto"`` (the default: forward, and reverse
            where forward-mode AD fails, as for ``F.mse_loss`` and recurrent modules).

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
    vectorize, mode = resolve_plan(module, vectorize, hvp)
    product = _HVP(module, data, loss_fn, p, vectorize=vectorize, mode=mode)
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
