"""Loss-landscape metrics of whole populations: Hessian spectrum, CKA, mode connectivity.

The metrics that "Taxonomizing local versus global structure in neural network loss
landscapes" (Yang, Hodgkinson, Theisen, Zou, Gonzalez, Ramchandran, Mahoney;
arXiv:2107.11228) uses to place a model in a phase diagram, and that "A Model Zoo on Phase
Transitions in Neural Networks" (Schürholt, Meynent, Zhou, Lu, Yang, Borth; arXiv:2504.18072)
records for every model:

* :func:`hessian_top_eigenvalue`: power iteration on Hessian-vector products of the training
  loss (local sharpness);
* :func:`hessian_trace`: Hutchinson's estimator with Rademacher probes;
* :func:`cka` / :func:`cka_between`: linear centred kernel alignment (Kornblith, Norouzi, Lee,
  Hinton; arXiv:1905.00414) between activations, and :func:`layer_activations` to get them;
* :func:`mode_connectivity`: loss and error along the linear path and along a trained quadratic
  Bézier curve (Garipov, Izmailov, Podoprikhin, Vetrov, Wilson; arXiv:1802.10026), with the
  barrier height and the signed ``mc`` of the phase diagrams.

Every function takes one module (the architecture; its own weights are never used) and the
weights of ``M`` models, either as rows ``[M, P]`` in the module's layout (as a zoo stores
them; pass ``layout=zoo.layout``) or as a dict of stacked tensors ``{name: [M, ...]}``. All
``M`` models are computed at once with :func:`torch.func.vmap` over
:func:`torch.func.functional_call`. Modules that ``vmap`` cannot batch (``nn.GRU`` /
``nn.LSTM``) run one model at a time through the same code (``vectorize=False``, chosen
automatically). The module is called in eval mode: dropout is off and BatchNorm uses its
running statistics. Random numbers (start vectors, probes, curve times) come from a
generator seeded with ``seed`` and are shared by all models, so a model's result does not
depend on which other models are in the batch.

The definitions are written up in ``docs/landscape.md``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from weightzoo.errors import InvalidOptionError, LayoutError
from weightzoo.features import layout_of, unflatten
from weightzoo.storage.layout import Layout

__all__ = [
    "METRICS",
    "ConnectivityResult",
    "RowWidthError",
    "UnknownLayerError",
    "UnknownMetricError",
    "barrier",
    "cka",
    "cka_between",
    "hessian_top_eigenvalue",
    "hessian_trace",
    "landscape_metrics",
    "layer_activations",
    "mode_connectivity",
    "signed_mc",
    "stack_rows",
]

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

_log = logging.getLogger(__name__)

#: Relative residual above which :func:`hessian_top_eigenvalue` warns. Converged estimates
#: sit near 1e-2 at the default tolerance; two eigenvalues of equal magnitude and opposite sign
#: leave the iteration alternating between them with a residual of order 1.
_RESIDUAL_WARNING = 0.1

Params = dict[str, Tensor]
Batch = tuple[Tensor, Tensor]
#: One batch ``(inputs, targets)`` or a sequence of batches.
Data = Batch | Sequence[Batch]
#: ``loss_fn(outputs, targets) -> scalar`` (the batch mean, as ``F.cross_entropy`` returns).
LossFn = Callable[[Tensor, Tensor], Tensor]


class UnknownMetricError(InvalidOptionError):
    """A metric name that :func:`landscape_metrics` does not know."""


class RowWidthError(InvalidOptionError, LayoutError):
    """Rows whose width is not the layout's number of values."""


class UnknownLayerError(InvalidOptionError):
    """A layer name that the module does not have."""


# --------------------------------------------------------------------------------- weights
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


def _weights(
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


def _resolve(module: nn.Module, vectorize: bool | None, hvp: str | None) -> tuple[bool, str]:
    # vmap has no batching rule for the fused RNN kernels, and their forward-mode AD fails.
    recurrent = _is_recurrent(module)
    vectorize = (not recurrent) if vectorize is None else bool(vectorize)
    hvp = ("reverse" if recurrent else "auto") if hvp is None else hvp
    if hvp not in ("forward", "reverse", "auto"):
        raise InvalidOptionError(f"hvp must be 'forward', 'reverse' or 'auto', got {hvp!r}")
    return vectorize, hvp


def _batches(data: Data, device: torch.device, dtype: torch.dtype) -> list[Batch]:
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        data = [data]
    out = []
    for batch in data:
        x, y = batch
        x = torch.as_tensor(x).to(device)
        out.append((x.to(dtype) if x.is_floating_point() else x, torch.as_tensor(y).to(device)))
    if not out:
        raise InvalidOptionError("data holds no batches; pass (inputs, targets) or a list of them")
    return out


def _batch_weights(batches: Sequence[Batch]) -> list[float]:
    """Each batch's share of the samples: the loss over ``data`` is the sample mean."""
    sizes = [len(x) for x, _ in batches]
    return [n / sum(sizes) for n in sizes]


def _map(fn: Callable[..., Any], vectorize: bool, in_dims: tuple[Any, ...]) -> Callable[..., Any]:
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


def _dot(a: Params, b: Params) -> Tensor:
    """Per-model inner product of stacked dicts: ``[M]``."""
    return sum((a[k] * b[k]).flatten(1).sum(1) for k in a)


def _chunks(size: int, chunk: int | None) -> list[slice]:
    if chunk is None:
        return [slice(0, size)]
    if chunk < 1:
        raise InvalidOptionError(f"chunk must be a positive number of models, got {chunk}")
    return [slice(i, min(i + chunk, size)) for i in range(0, size, chunk)]


def _shared_like(params: Params, generator: torch.Generator, draw: str) -> Params:
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


# ---------------------------------------------------------------------------------- Hessian
def _loss(module: nn.Module, loss_fn: LossFn) -> Callable[..., Tensor]:
    def loss(p: Params, b: Params, x: Tensor, y: Tensor) -> Tensor:
        return loss_fn(functional_call(module, (p, b), (x,)), y)

    return loss


def _hvp_one(module: nn.Module, loss_fn: LossFn, mode: str) -> Callable[..., Params]:
    """``(p, b, v, x, y) -> H v`` for one model, ``H`` the Hessian of the batch loss at ``p``."""
    loss = _loss(module, loss_fn)

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
        self.batches = _batches(data, first.device, first.dtype)
        self.shares = _batch_weights(self.batches)
        self._args = (module, loss_fn, vectorize)
        self.mode = mode
        self._build("forward" if mode == "auto" else mode)

    def _build(self, mode: str) -> None:
        module, loss_fn, vectorize = self._args
        one = _hvp_one(module, loss_fn, mode)
        self.per_model = _map(one, vectorize, (0, 0, 0, None, None))

        def per_probe(p: Params, b: Params, vs: Params, x: Tensor, y: Tensor) -> Params:
            return _map(one, vectorize, (None, None, 0, None, None))(p, b, vs, x, y)

        # Probes are shared by all models: a map over probes inside the map over models.
        self.probes = _map(per_probe, vectorize, (0, 0, None, None, None))

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
        for (x, y), share in zip(self.batches, self.shares, strict=True):
            out = fn(params, buffers, v, x, y)
            out = {k: t.detach() * share for k, t in out.items()}
            total = out if total is None else {k: total[k] + out[k] for k in total}
        assert total is not None
        return total


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
    module = module.eval()
    p, b, _ = _weights(module, params, layout)
    vectorize, mode = _resolve(module, vectorize, hvp)
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
    start = _shared_like(p, generator, "normal")
    v = _normalize({k: t.expand(size, *t.shape).clone() for k, t in start.items()})
    eigen = residual = torch.full((size,), torch.nan, dtype=torch.float64)
    done = torch.zeros(size, dtype=torch.bool)
    for _ in range(iters):
        hv = product(p, b, v)
        if shift is not None:
            hv = {k: hv[k] - _bcast(shift, hv[k]) * v[k] for k in hv}
        estimate = _dot(v, hv).detach().double().cpu()
        # ||Hv - lambda v|| for a unit v: how far v is from an eigenvector.
        error = (_dot(hv, hv).detach().double().cpu() - estimate**2).clamp_min(0).sqrt()
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
            "iters, and expect this where the largest and smallest eigenvalues have nearly the "
            "same magnitude and opposite signs",
            RuntimeWarning,
            stacklevel=3,
        )
    dtype = next(iter(p.values())).dtype
    return eigen.to(dtype)


def _bcast(values: Tensor, like: Tensor) -> Tensor:
    return values.reshape(-1, *([1] * (like.dim() - 1))).to(like.device, like.dtype)


def _normalize(v: Params) -> Params:
    norm = _dot(v, v).sqrt().clamp_min(1e-30)
    return {k: t / _bcast(norm, t) for k, t in v.items()}


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
    module = module.eval()
    p, b, size = _weights(module, params, layout)
    vectorize, mode = _resolve(module, vectorize, hvp)
    product = _HVP(module, data, loss_fn, p, vectorize=vectorize, mode=mode)
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros(size, dtype=next(iter(p.values())).dtype)
    done = 0
    while done < probes:
        k = min(probe_batch, probes - done)
        draws = [_shared_like(p, generator, "rademacher") for _ in range(k)]
        zs = {name: torch.stack([d[name] for d in draws]) for name in p}
        hz = product.shared(p, b, zs)  # [M, k, ...]
        total += sum((hz[n] * zs[n].unsqueeze(0)).flatten(1).sum(1) for n in p).cpu()
        done += k
    return total / probes


# ---------------------------------------------------------------------------------- CKA
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
    module = module.eval()
    p, b, _ = _weights(module, params, layout)
    vectorize, _ = _resolve(module, vectorize, None)
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
            return _map(one, vectorize, (0, 0, None))(p, b, inputs)
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
    acts_a = layer_activations(
        module, params_a, inputs, layer=layer, layout=layout, vectorize=vectorize
    )
    acts_b = layer_activations(
        module, params_b, inputs, layer=layer, layout=layout, vectorize=vectorize
    )
    if acts_a.shape[0] != acts_b.shape[0]:
        raise InvalidOptionError(
            f"cka_between needs as many partners as models, got {acts_a.shape[0]} and "
            f"{acts_b.shape[0]}"
        )
    return cka(acts_a, acts_b)


# ---------------------------------------------------------------------- mode connectivity
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
    points: int = 11,
    steps: int = 200,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
    vectorize: bool | None = None,
) -> ConnectivityResult:
    """Connect model ``i`` of ``params_a`` with model ``i`` of ``params_b``, all pairs at once.

    The quadratic Bézier curve ``phi(t) = (1 - t)^2 a + 2 t (1 - t) c + t^2 b`` of Garipov et
    al. (arXiv:1802.10026) starts with its control point ``c`` at the midpoint ``(a + b) / 2``
    (the linear path) and trains ``c`` by ``steps`` steps of SGD with momentum on
    ``loss(phi(t))``, with ``t ~ U(0, 1)`` drawn anew each step (one ``t`` for all pairs) and
    the batches of ``data`` in turn. The endpoints stay fixed. Buffers (BatchNorm running
    statistics) follow the straight line between the endpoints' on both paths; they are not
    re-estimated at each ``t`` as Garipov et al. do, so prefer models without BatchNorm.
    Both paths are then evaluated at ``points`` evenly spaced times on ``eval_data``
    (default: ``data``, the training data, as the phase diagrams use).

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
        points: path times ``k`` (at least 3: both endpoints and a midpoint).
        steps: SGD steps on the control point (0: the curve is the linear path).
        lr: learning rate.
        momentum: SGD momentum.
        weight_decay: L2 penalty on the control point.
        seed: seeds the times ``t`` drawn during training.
        vectorize: ``vmap`` over pairs (default: yes, except for recurrent modules).

    Returns:
        A :class:`ConnectivityResult` (barrier heights and ``mc`` are its properties).

    Raises:
        InvalidOptionError: for a bad option or a different number of partners.
    """
    if points < 3 or steps < 0:
        raise InvalidOptionError(
            f"points must be at least 3 and steps at least 0, got {points} and {steps}"
        )
    module = module.eval()
    pa, ba, size = _weights(module, params_a, layout)
    pb, bb, size_b = _weights(module, params_b, layout)
    if size != size_b:
        raise InvalidOptionError(
            f"mode_connectivity needs one partner per model, got {size} and {size_b} models"
        )
    vectorize, _ = _resolve(module, vectorize, None)
    first = next(iter(pa.values()))
    train = _batches(data, first.device, first.dtype)
    evaluate = train if eval_data is None else _batches(eval_data, first.device, first.dtype)
    loss = _loss(module, loss_fn)

    def curve_loss(c: Params, a: Params, b: Params, u: Params, w: Params, t: Tensor, x, y):
        return loss(_bezier(t, a, c, b), _lerp(t, u, w), x, y)

    step = _map(grad(curve_loss), vectorize, (0, 0, 0, 0, 0, None, None, None))
    control = {k: (pa[k] + pb[k]) / 2 for k in pa}
    velocity = {k: torch.zeros_like(v) for k, v in control.items()}
    generator = torch.Generator().manual_seed(seed)
    for i in range(steps):
        x, y = train[i % len(train)]
        t = torch.rand((), generator=generator, dtype=first.dtype).to(first.device)
        grads = step(control, pa, pb, ba, bb, t, x, y)
        for k in control:
            velocity[k] = momentum * velocity[k] + grads[k] + weight_decay * control[k]
            control[k] = control[k] - lr * velocity[k]

    times = np.linspace(0.0, 1.0, points)
    shares = _batch_weights(evaluate)

    def measure(q: Params, c: Params, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        out = functional_call(module, (q, c), (x,))
        acc = accuracy_fn(out, y) if accuracy_fn is not None else out.new_zeros(())
        return loss_fn(out, y), acc

    run = _map(measure, vectorize, (0, 0, None, None))
    curves = {name: np.zeros((size, points)) for name in ("ll", "cl", "la", "ca")}
    with torch.no_grad():
        for j, t in enumerate(times.tolist()):
            paths = {
                "l": (_lerp(t, pa, pb), _lerp(t, ba, bb)),
                "c": (_bezier(t, pa, control, pb), _lerp(t, ba, bb)),
            }
            for key, (q, c) in paths.items():
                for (x, y), share in zip(evaluate, shares, strict=True):
                    value, acc = run(q, c, x, y)
                    curves[key + "l"][:, j] += share * value.double().cpu().numpy()
                    curves[key + "a"][:, j] += share * acc.double().cpu().numpy()
    errors = accuracy_fn is not None
    return ConnectivityResult(
        t=times,
        linear_loss=curves["ll"],
        curve_loss=curves["cl"],
        linear_error=1 - curves["la"] if errors else None,
        curve_error=1 - curves["ca"] if errors else None,
        control={k: v.detach() for k, v in control.items()},
    )


# ---------------------------------------------------------------------------- all at once
def _slice_weights(weights: Any, part: slice) -> Any:
    if isinstance(weights, Mapping):
        return {k: torch.as_tensor(v)[part] for k, v in weights.items()}
    return weights[part]


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
    chunk: int | None = None,
    seed: int = 0,
    iters: int = 20,
    tol: float = 1e-3,
    probes: int = 100,
    points: int = 11,
    steps: int = 200,
    lr: float = 0.05,
    vectorize: bool | None = None,
) -> dict[str, np.ndarray]:
    """Several landscape metrics of ``M`` models, ``chunk`` models at a time.

    Metric names (:data:`METRICS`): ``hessian_top`` (:func:`hessian_top_eigenvalue`, largest
    magnitude), ``hessian_trace`` (:func:`hessian_trace`), and, comparing model ``i`` with
    ``partners[i]`` (e.g. the same configuration from another seed): ``cka``
    (:func:`cka_between` on ``cka_inputs``, default the inputs of the first batch of
    ``data``), ``mc`` and ``mc_error`` (:func:`signed_mc` of the loss / error on the trained
    curve; ``mc_error`` needs ``accuracy_fn``), ``linear_barrier`` and ``curve_barrier``
    (:func:`barrier` of the loss). The connectivity metrics share one curve per pair.

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
        chunk: models per call, to bound memory (results do not depend on it).
        seed: seeds every random draw.
        iters: power-iteration steps (``hessian_top``).
        tol: power-iteration tolerance (``hessian_top``).
        probes: Hutchinson probes (``hessian_trace``).
        points: path times (connectivity).
        steps: curve-training steps (connectivity).
        lr: curve-training learning rate (connectivity).
        vectorize: ``vmap`` over models (default: yes, except for recurrent modules).

    Returns:
        ``{metric: float64 array [M]}`` in the order asked for.

    Raises:
        UnknownMetricError: for a name not in :data:`METRICS`.
        RowWidthError: for rows (or partners) of the wrong width.
        InvalidOptionError: for a pair metric without ``partners``, or ``mc_error`` without
            ``accuracy_fn``.
    """
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
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
    if "mc_error" in wanted and accuracy_fn is None:
        raise InvalidOptionError("metric 'mc_error' needs accuracy_fn(outputs, targets)")
    size = _rows_count(module, rows, layout)
    if partners is not None and size != _rows_count(module, partners, layout):
        raise InvalidOptionError(
            f"partners must hold one model per row: {size} rows, "
            f"{_rows_count(module, partners, layout)} partners"
        )
    if cka_inputs is None and "cka" in wanted:
        cka_inputs = _batches(data, torch.device("cpu"), torch.float32)[0][0]
    out: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    for part in _chunks(size, chunk):
        mine = _slice_weights(rows, part)
        theirs = None if partners is None else _slice_weights(partners, part)
        common = {"layout": layout, "vectorize": vectorize}
        if "hessian_top" in wanted:
            top = hessian_top_eigenvalue(
                module, mine, data, loss_fn, iters=iters, tol=tol, seed=seed, **common
            )
            out["hessian_top"].append(top.double().cpu().numpy())
        if "hessian_trace" in wanted:
            trace = hessian_trace(module, mine, data, loss_fn, probes=probes, seed=seed, **common)
            out["hessian_trace"].append(trace.double().cpu().numpy())
        if "cka" in wanted:
            similarity = cka_between(module, mine, theirs, cka_inputs, layer=cka_layer, **common)
            out["cka"].append(similarity.cpu().numpy())
        if wanted & _CONNECTIVITY_METRICS:
            result = mode_connectivity(
                module,
                mine,
                theirs,
                data,
                loss_fn,
                accuracy_fn=accuracy_fn,
                points=points,
                steps=steps,
                lr=lr,
                seed=seed,
                **common,
            )
            for name in wanted & _CONNECTIVITY_METRICS:
                out[name].append(np.asarray(getattr(result, name), dtype=np.float64))
    return {m: np.concatenate(v) if v else np.zeros(0) for m, v in out.items()}


def _rows_count(module: nn.Module, weights: Any, layout: Layout | None) -> int:
    """The number of models, after checking the rows' width (without copying them)."""
    if isinstance(weights, Mapping):
        return _weights(module, weights, layout)[2]
    shape = tuple(np.shape(weights))
    _check_width(module, shape if len(shape) != 1 else (1, *shape), layout)
    return shape[0] if len(shape) == 2 else 1
