"""Features of weight vectors: flatten / unflatten through a layout, per-layer statistics, tokens.

Every function here is pure: it reads tensors (or numpy arrays) and a
:class:`~weightzoo.storage.layout.Layout` and returns new tensors. Nothing touches the disk.

* :func:`layout_of`, :func:`flatten`, :func:`flatten_many`, :func:`unflatten` and
  :func:`load_vector` move between ``state_dict``/``nn.Module`` and flat float32 vectors. Tensors
  are always looked up by name, never by position, so checkpoints whose keys come in another
  order (or whose ``module_list`` indices shift with dropout) flatten the same way.
* :func:`module_shapes` finds how a module uses tensors whose stored shape hides it (a
  ``Linear`` that reads a flattened feature map); :func:`layout_of` records them.
* :func:`layer_statistics` computes the per-layer statistics s(w) in one of :data:`PRESETS`.
* :func:`tokenize` / :func:`detokenize` turn vectors into per-neuron tokens (SANE style) and back.

See ``docs/features.md`` for the exact definitions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from weightzoo.errors import InvalidOptionError, LayoutError
from weightzoo.escaping import exception_summary
from weightzoo.storage.layout import Layout, TensorSpec

__all__ = [
    "PRESETS",
    "detokenize",
    "flatten",
    "flatten_many",
    "layer_statistics",
    "layer_statistics_numpy",
    "layout_of",
    "load_vector",
    "module_shapes",
    "statistics_names",
    "tokenize",
    "unflatten",
]


#: Buffers with this leaf name are never part of a layout built by :func:`layout_of`.
_SKIPPED_LEAVES = ("num_batches_tracked",)

#: Upper bound on the number of elements sorted at once by :func:`layer_statistics`.
_CHUNK_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------------------------
# conversions
# --------------------------------------------------------------------------------------------


def _as_tensor(value: Any) -> Tensor:
    """Turn a tensor, numpy array or array-like into a tensor, sharing memory when possible."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray):
        if value.flags.writeable and value.dtype.isnative:
            try:
                return torch.from_numpy(value)
            except (TypeError, ValueError):  # e.g. negative strides
                pass
        return torch.from_numpy(np.array(value, dtype=value.dtype.newbyteorder("=")))
    return torch.as_tensor(value)


def _is_included(name: str, value: Any) -> bool:
    """Whether :func:`layout_of` keeps a ``state_dict`` entry."""
    if not isinstance(value, (Tensor, np.ndarray)):
        return False
    if name.rsplit(".", 1)[-1] in _SKIPPED_LEAVES:
        return False
    if isinstance(value, np.ndarray):
        return bool(np.issubdtype(value.dtype, np.floating))
    return value.is_floating_point()


def _state_dict_of(obj: nn.Module | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        return obj
    raise TypeError(f"expected an nn.Module or a state_dict mapping, got {type(obj).__name__}")


def _check_last_dim(tensor: Tensor, layout: Layout, what: str) -> None:
    if tensor.dim() == 0 or tensor.shape[-1] != layout.num_params:
        raise LayoutError(
            f"{what} has shape {tuple(tensor.shape)}, but its last dimension must be the "
            f"layout's {layout.num_params} parameters"
        )


# --------------------------------------------------------------------------------------------
# layout, flatten, unflatten, load
# --------------------------------------------------------------------------------------------


def layout_of(
    module_or_state_dict: nn.Module | Mapping[str, Any],
    *,
    sort: bool = False,
    input_shape: Sequence[int] | None = None,
) -> Layout:
    """The layout of a module's or a ``state_dict``'s tensors: the one rule for what a row holds.

    Every family's layout is ``layout_of`` of its module
    (:func:`weightzoo.architectures.build_model`), so a stored row loads back into that module
    with :func:`load_vector`.

    The layout holds every floating-point entry of the ``state_dict``: all parameters and the
    persistent floating-point buffers (BatchNorm ``running_mean`` and ``running_var``, which
    a ResNet needs to compute the same outputs). Integer and bool buffers are skipped (notably
    BatchNorm's ``num_batches_tracked``, which is also skipped by name), as are non-persistent
    buffers and non-tensor entries. Parameters with ``requires_grad=False`` are kept.

    Args:
        module_or_state_dict: an ``nn.Module`` (its ``state_dict()`` is used) or a mapping of
            names to tensors or numpy arrays.
        sort: order tensors by natural sort of their names (``module_list.3`` before
            ``module_list.11``) instead of ``state_dict`` order. Use it for checkpoints whose
            key order cannot be trusted.
        input_shape: the shape of one input without the batch dimension (``(1, 28, 28)``).
            With a module, the layout also records the :func:`module_shapes` of its tensors
            (found by a forward pass on the ``meta`` device, which allocates nothing).

    Returns:
        The layout, in ``state_dict`` order unless ``sort`` is set.

    Raises:
        InvalidOptionError: for an ``input_shape`` with a ``state_dict`` (it cannot run).
        LayoutError: if the module does not run on ``input_shape``.
    """
    state_dict = _state_dict_of(module_or_state_dict)
    shapes = {
        name: tuple(value.shape) for name, value in state_dict.items() if _is_included(name, value)
    }
    layout = Layout.from_shapes(shapes, sort=sort)
    if input_shape is None:
        return layout
    if not isinstance(module_or_state_dict, nn.Module):
        raise InvalidOptionError(
            "layout_of(input_shape=...) needs an nn.Module to run; a state_dict has no "
            "forward, so pass the module it came from"
        )
    found = module_shapes(module_or_state_dict, input_shape)
    return layout.with_module_shapes({k: v for k, v in found.items() if k in layout})


#: Functions that turn a feature map ``[N, C, *spatial]`` into ``[N, C * prod(spatial)]``.
_FLATTENS = frozenset({torch.flatten, Tensor.flatten, torch.reshape, Tensor.reshape, Tensor.view})


class _FlattenTracker(TorchFunctionMode):
    """Remembers which 2-D tensors of a forward pass are the flatten of a feature map.

    A tensor made by a flatten, or by a one-tensor function (activation, dropout) of such a
    tensor that keeps its shape, maps to the flattened map's ``[C, *spatial]``.
    """

    def __init__(self) -> None:
        super().__init__()
        # id -> (the tensor, kept alive so that its id is not reused; [C, *spatial])
        self.sources: dict[int, tuple[Tensor, tuple[int, ...]]] = {}

    def source(self, tensor: Any) -> tuple[int, ...] | None:
        """``[C, *spatial]`` of the map ``tensor`` is the flatten of (``None``: it is not)."""
        known = self.sources.get(id(tensor))
        return known[1] if known is not None and known[0] is tensor else None

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = [a for a in chain(args, (kwargs or {}).values()) if isinstance(a, Tensor)]
        if isinstance(out, Tensor) and len(inputs) == 1:
            (x,) = inputs
            source = self.source(x)
            if source is not None and out.shape == x.shape:
                self.sources[id(out)] = (out, source)
            elif func in _FLATTENS and x.dim() >= 3 and out.dim() == 2:
                if out.shape[0] == x.shape[0]:
                    self.sources[id(out)] = (out, tuple(x.shape[1:]))
        return out


def module_shapes(module: nn.Module, input_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """How a module uses the tensors whose stored shape does not tell.

    Runs one forward pass on the ``meta`` device (shapes only: nothing is allocated or
    computed, and ``module`` is not changed) and records, for every ``nn.Linear`` whose input
    is the flatten of a feature map ``[C, *spatial]`` with more than one spatial position, its
    weight's module shape ``[out, C, *spatial]``. CNN-s's ``module_list.11.weight``
    ``(20, 36)`` reads the flatten of its last conv's ``4 x 3 x 3`` map: ``(20, 4, 3, 3)``.

    Args:
        module: the module (on any device, ``meta`` included).
        input_shape: the shape of one input, without the batch dimension.

    Returns:
        ``{state_dict name: module shape}``, only for tensors whose module shape differs from
        their stored shape.

    Raises:
        LayoutError: if the module does not run on inputs of ``input_shape``.
    """
    shape = tuple(int(d) for d in input_shape)
    tracker = _FlattenTracker()
    found: dict[str, set[tuple[int, ...]]] = {}

    def record(name: str, layer: nn.Linear, args: tuple[Any, ...]) -> None:
        source = tracker.source(args[0]) if args else None
        if source is not None and len(source) >= 2 and math.prod(source[1:]) > 1:
            found.setdefault(f"{name}.weight", set()).add((layer.out_features, *source))

    hooks = [
        layer.register_forward_pre_hook(lambda m, a, name=name: record(name, m, a))
        for name, layer in module.named_modules()
        if isinstance(layer, nn.Linear)
    ]
    meta = {
        name: torch.empty_like(value, device="meta")
        for name, value in chain(module.named_parameters(), module.named_buffers())
    }
    try:
        with torch.no_grad(), tracker:
            x = torch.empty((2, *shape), device="meta")  # two: batch statistics need a pair
            torch.func.functional_call(module, meta, (x,))
    except Exception as exc:  # whatever the module raises on a wrong input shape
        raise LayoutError(
            f"{type(module).__name__} does not run on inputs of shape {shape} "
            f"({exception_summary(exc, 160)}); pass the shape of one input without the batch "
            "dimension"
        ) from None
    finally:
        for hook in hooks:
            hook.remove()
    # a layer run on differently shaped maps has no one module shape
    return {name: shapes.pop() for name, shapes in found.items() if len(shapes) == 1}


def _checked_tensors(
    state_dict: Mapping[str, Any], layout: Layout, source: str
) -> dict[str, Tensor]:
    """The entries of ``state_dict`` that the layout names, checked against it."""
    relevant = {
        name: _as_tensor(value)
        for name, value in state_dict.items()
        if name in layout or _is_included(name, value)
    }
    layout.check_shapes({name: value.shape for name, value in relevant.items()}, source=source)
    return relevant


def flatten(
    state_dict: Mapping[str, Any] | nn.Module, layout: Layout, *, source: str = ""
) -> Tensor:
    """Flatten a ``state_dict`` into one float32 vector in layout order.

    Tensors are looked up by name, so the order of the mapping does not matter. Entries that
    :func:`layout_of` would skip (``num_batches_tracked``, integer buffers) are ignored unless
    the layout names them.

    Args:
        state_dict: names to tensors (or numpy arrays); an ``nn.Module`` is also accepted.
        layout: the layout that fixes the order.
        source: where the state_dict came from, used in error messages.

    Returns:
        A 1-D float32 tensor of ``layout.num_params`` values, on the device of the tensors.

    Raises:
        LayoutError: naming missing, unexpected or mis-shaped tensors.
    """
    tensors = _checked_tensors(_state_dict_of(state_dict), layout, source)
    device = next(iter(tensors.values())).device if tensors else torch.device("cpu")
    out = torch.empty(layout.num_params, dtype=torch.float32, device=device)
    for spec in layout:
        out[spec.offset : spec.stop] = tensors[spec.name].detach().reshape(-1)
    return out


def flatten_many(state_dicts: Iterable[Mapping[str, Any] | nn.Module], layout: Layout) -> Tensor:
    """Flatten several ``state_dict`` s into a float32 matrix ``[N, P]``.

    Args:
        state_dicts: the state_dicts (or modules), one row each.
        layout: the layout that fixes the column order.

    Returns:
        A float32 tensor of shape ``[N, layout.num_params]``.

    Raises:
        LayoutError: naming the offending row and tensors when one does not match the layout.
    """
    items = list(state_dicts)
    rows = [flatten(item, layout, source=f"state_dict {i}") for i, item in enumerate(items)]
    if not rows:
        return torch.empty(0, layout.num_params, dtype=torch.float32)
    return torch.stack(rows)


def unflatten(vector: Tensor | np.ndarray, layout: Layout) -> dict[str, Tensor]:
    """Split a vector (or a batch of vectors) back into named tensors.

    Args:
        vector: ``[..., P]`` tensor or numpy array, ``P = layout.num_params``.
        layout: the layout of the vector.

    Returns:
        ``{name: tensor}`` in layout order, each of shape ``[..., *shape]``. The tensors are views
        of ``vector`` (numpy arrays are shared, not copied, when they are writable), so writing
        to them writes to the vector; copy them (``{k: v.clone() ...}``) to keep them apart.
        The dtype is the vector's.

    Raises:
        LayoutError: if the last dimension is not ``layout.num_params``.
    """
    vector = _as_tensor(vector)
    _check_last_dim(vector, layout, "vector")
    batch = tuple(vector.shape[:-1])
    return {
        spec.name: vector[..., spec.offset : spec.stop].reshape(*batch, *spec.shape)
        for spec in layout
    }


def load_vector(
    module: nn.Module, vector: Tensor | np.ndarray, layout: Layout, *, strict: bool = True
) -> nn.Module:
    """Write a flat vector into a module's parameters and buffers, in place.

    Args:
        module: the module to overwrite (e.g. a freshly built architecture).
        vector: 1-D tensor or numpy array of ``layout.num_params`` values. Values are cast to
            each parameter's dtype and device.
        layout: the layout of ``vector``.
        strict: require the module's tensors (as chosen by :func:`layout_of`) to be exactly
            the layout's. With ``strict=False`` only the tensors present in both are written;
            a shape mismatch is an error either way.

    Returns:
        ``module`` itself.

    Raises:
        LayoutError: on a wrong vector length, or tensors that do not match the layout.
    """
    vector = _as_tensor(vector)
    if vector.dim() != 1:
        raise LayoutError(
            f"load_vector needs one 1-D vector, got shape {tuple(vector.shape)}; index the batch"
        )
    _check_last_dim(vector, layout, "vector")
    targets = module.state_dict(keep_vars=True)
    source = type(module).__name__
    if strict:
        _checked_tensors(targets, layout, source)
    else:
        for spec in layout:
            if spec.name in targets and tuple(targets[spec.name].shape) != spec.shape:
                raise LayoutError(
                    f"tensor {spec.name!r} in {source} has shape "
                    f"{tuple(targets[spec.name].shape)}, the layout expects {spec.shape}"
                )
    values = unflatten(vector, layout)
    with torch.no_grad():
        for spec in layout:
            target = targets.get(spec.name)
            if isinstance(target, Tensor):
                target.copy_(values[spec.name])
    return module


# --------------------------------------------------------------------------------------------
# per-layer statistics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Preset:
    bias_first: bool
    # (name, kind, argument): kind "mean"; "var"/"std" with ddof; "q" with a fraction in [0, 1].
    stats: tuple[tuple[str, str, float], ...]


def _quantiles(prefix: str, *fractions: float) -> tuple[tuple[str, str, float], ...]:
    """Quantile statistics, each named ``<prefix><percent>`` (``p25`` for 0.25)."""
    return tuple((f"{prefix}{round(q * 100)}", "q", q) for q in fractions)


_PRESET_TABLE: dict[str, _Preset] = {
    "modelzoo": _Preset(
        bias_first=False,
        stats=(
            ("mean", "mean", 0),
            ("var", "var", 0),
            *_quantiles("p", 0.01, 0.25, 0.5, 0.75, 0.99),
        ),
    ),
    "unterthiner": _Preset(
        bias_first=True,
        stats=(*_quantiles("p", 0.0, 0.25, 0.5, 0.75, 1.0), ("std", "std", 0), ("mean", "mean", 0)),
    ),
    "nfn": _Preset(
        bias_first=False,
        stats=(
            ("mean", "mean", 0),
            ("var_unbiased", "var", 1),
            *_quantiles("q", 0.0, 0.25, 0.5, 0.75, 1.0),
        ),
    ),
}

#: Names of the statistics presets accepted by :func:`layer_statistics`.
PRESETS: tuple[str, ...] = tuple(_PRESET_TABLE)


def _preset(preset: str) -> _Preset:
    try:
        return _PRESET_TABLE[preset]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown statistics preset {preset!r}; valid presets are {', '.join(PRESETS)}"
        ) from None


def _statistics_tensors(layout: Layout, preset: _Preset) -> list[TensorSpec]:
    """Tensors in statistics order: per layer, non-bias tensors and bias tensors in turn."""
    ordered: list[TensorSpec] = []
    for tensors in layout.layers().values():
        weights = [t for t in tensors if not t.is_bias]
        biases = [t for t in tensors if t.is_bias]
        ordered.extend(biases + weights if preset.bias_first else weights + biases)
    return ordered


def statistics_names(layout: Layout, preset: str = "modelzoo") -> list[str]:
    """Column names of :func:`layer_statistics`, e.g. ``"module_list.0.weight:mean"``.

    Args:
        layout: the layout of the weight vectors.
        preset: one of :data:`PRESETS`.

    Returns:
        One ``"<tensor>:<statistic>"`` name per output column.

    Raises:
        ValueError: for an unknown preset.
    """
    spec = _preset(preset)
    return [
        f"{tensor.name}:{name}"
        for tensor in _statistics_tensors(layout, spec)
        for name, _, _ in spec.stats
    ]


def _sort_last_dim(x: Tensor) -> Tensor:
    """Sort along the last dimension; on CPU numpy's vectorized sort is much faster."""
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64, torch.float16):
        return torch.from_numpy(np.sort(x.detach().numpy(), axis=-1))
    return torch.sort(x, dim=-1).values


def _stats_last_dim(x: Tensor, stats: Sequence[tuple[str, str, float]]) -> Tensor:
    """Statistics over the last dimension of ``x`` (``[..., n]``) as float64 ``[..., S]``."""
    n = x.shape[-1]
    if n == 0:
        return torch.full((*x.shape[:-1], len(stats)), math.nan, dtype=torch.float64)
    columns: list[Tensor] = []
    xd = x.to(torch.float64)
    mean = xd.mean(dim=-1)
    sum_sq: Tensor | None = None
    sorted_x: Tensor | None = None
    has_nan: Tensor | None = None
    for _, kind, arg in stats:
        if kind == "mean":
            columns.append(mean)
        elif kind in ("var", "std"):
            if sum_sq is None:
                dev = xd - mean.unsqueeze(-1)
                sum_sq = (dev * dev).sum(dim=-1)
            var = sum_sq / (n - arg) if n - arg > 0 else torch.full_like(sum_sq, math.nan)
            columns.append(var if kind == "var" else var.sqrt())
        else:  # quantile, linear interpolation between closest ranks (numpy's default)
            if sorted_x is None:
                sorted_x = _sort_last_dim(x)
                has_nan = torch.isnan(x).any(dim=-1)
            position = arg * (n - 1)
            lo = min(math.floor(position), n - 1)
            hi = min(lo + 1, n - 1)
            frac = position - lo
            a = sorted_x[..., lo].to(torch.float64)
            b = sorted_x[..., hi].to(torch.float64)
            # the same two-sided formula as numpy's lerp, so results agree to the last bit
            value = b - (b - a) * (1.0 - frac) if frac >= 0.5 else a + (b - a) * frac
            columns.append(torch.where(has_nan, math.nan, value))
    return torch.stack(columns, dim=-1)


def layer_statistics(rows: Tensor | np.ndarray, layout: Layout, preset: str = "modelzoo") -> Tensor:
    """Per-layer statistics s(w) of a batch of weight vectors.

    For each layer (in :meth:`Layout.layers` order) and each of its tensors (``modelzoo`` and
    ``nfn``: non-bias tensors then biases; ``unterthiner``: biases then non-bias tensors; layout
    order within each kind) the preset's seven statistics are computed over the tensor's values:

    * ``modelzoo``: mean, variance (ddof=0), p1, p25, p50, p75, p99;
    * ``unterthiner``: p0, p25, p50, p75, p100, standard deviation (ddof=0), mean;
    * ``nfn``: mean, variance (ddof=1), q0, q25, q50, q75, q100.

    Percentiles use linear interpolation between closest ranks (numpy's default). The unbiased
    variance of a one-element tensor is NaN, and every statistic of a tensor holding a NaN is
    NaN. Non-bias tensors include buffers such as BatchNorm running statistics.

    Args:
        rows: ``[..., P]`` tensor or numpy array of weight vectors.
        layout: the layout of the vectors.
        preset: one of :data:`PRESETS`.

    Returns:
        ``[..., S]`` with ``S = 7 * len(layout)``, columns named by :func:`statistics_names`;
        float64 for float64 input, float32 otherwise.

    Raises:
        ValueError: for an unknown preset.
        LayoutError: if the last dimension is not ``layout.num_params``.
    """
    spec = _preset(preset)
    rows = _as_tensor(rows)
    _check_last_dim(rows, layout, "rows")
    if not rows.is_floating_point():
        rows = rows.to(torch.float32)
    out_dtype = torch.float64 if rows.dtype == torch.float64 else torch.float32
    batch = tuple(rows.shape[:-1])
    flat = rows.reshape(-1, layout.num_params)
    n_rows = flat.shape[0]
    n_stats = len(spec.stats)
    ordered = _statistics_tensors(layout, spec)
    out = torch.empty(n_rows, n_stats * len(ordered), dtype=out_dtype, device=rows.device)

    # Tensors of equal size are stacked and reduced together; groups and row blocks are cut so
    # that at most _CHUNK_ELEMENTS values are sorted at once.
    groups: dict[int, list[int]] = {}
    for position, tensor in enumerate(ordered):
        groups.setdefault(tensor.numel, []).append(position)
    stat_offsets = torch.arange(n_stats)
    for numel, positions in groups.items():
        per_group = max(1, _CHUNK_ELEMENTS // max(numel, 1))
        for start in range(0, len(positions), per_group):
            members = positions[start : start + per_group]
            columns = (torch.tensor(members).unsqueeze(1) * n_stats + stat_offsets).reshape(-1)
            columns = columns.to(rows.device)
            per_block = max(1, _CHUNK_ELEMENTS // max(numel * len(members), 1))
            for r0 in range(0, n_rows, per_block):
                block = flat[r0 : r0 + per_block]
                x = torch.stack([block[:, ordered[p].offset : ordered[p].stop] for p in members], 1)
                values = _stats_last_dim(x, spec.stats).to(device=rows.device, dtype=out_dtype)
                out[r0 : r0 + per_block, columns] = values.reshape(block.shape[0], -1)
    return out.reshape(*batch, out.shape[-1])


def layer_statistics_numpy(
    rows: np.ndarray, layout: Layout, preset: str = "modelzoo"
) -> np.ndarray:
    """:func:`layer_statistics` for numpy callers.

    Args:
        rows: ``[..., P]`` array of weight vectors.
        layout: the layout of the vectors.
        preset: one of :data:`PRESETS`.

    Returns:
        float32 array ``[..., S]``.
    """
    result = layer_statistics(np.asarray(rows), layout, preset)
    return result.cpu().numpy().astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# tokens
# --------------------------------------------------------------------------------------------


def _token_index(layout: Layout, chunk: int | None = None) -> tuple[list[Tensor], Tensor]:
    """Per-token parameter indices (one ``[tokens, width]`` block per layer) and positions.

    With ``chunk``, a neuron row longer than ``chunk`` values is cut into consecutive tokens of
    ``chunk`` values, the last one padded with the index ``P`` (one past the last parameter).
    """
    blocks: list[Tensor] = []
    positions: list[Tensor] = []
    pad = layout.num_params
    for layer_index, (layer, tensors) in enumerate(layout.layers().items()):
        ordered = [t for t in tensors if not t.is_bias] + [t for t in tensors if t.is_bias]
        outs = {t.shape[0] if t.shape else 1 for t in ordered}
        if len(outs) != 1:
            detail = ", ".join(f"{t.name} {t.shape}" for t in ordered)
            raise LayoutError(
                f"layer {layer!r} cannot be tokenized: its tensors disagree on the number of "
                f"output neurons (dimension 0): {detail}"
            )
        n_out = outs.pop()
        parts = []
        for t in ordered:
            width = t.numel // n_out if n_out else 0
            rows = torch.arange(n_out).unsqueeze(1) * width
            parts.append(t.offset + rows + torch.arange(width).unsqueeze(0))
        block = torch.cat(parts, dim=1)
        if chunk is not None and block.shape[1] > chunk:
            pieces = -(-block.shape[1] // chunk)  # ceil
            padded = torch.full((n_out, pieces * chunk), pad, dtype=torch.long)
            padded[:, : block.shape[1]] = block
            block = padded.reshape(n_out * pieces, chunk)
        blocks.append(block)
        within = torch.arange(block.shape[0])
        positions.append(torch.stack([within, torch.full_like(within, layer_index), within], 1))
    pos = torch.cat(positions) if positions else torch.empty(0, 3, dtype=torch.long)
    pos[:, 0] = torch.arange(pos.shape[0])
    return blocks, pos


def _padded_index(
    layout: Layout, token_size: int | None, chunk: bool = False
) -> tuple[Tensor, Tensor, int]:
    """``[T, token_size]`` parameter indices (``P`` marks padding), positions and token size."""
    if chunk and (isinstance(token_size, bool) or not isinstance(token_size, int)):
        raise ValueError(f"chunk=True needs an int token_size >= 1, got {token_size!r}")
    if chunk and token_size < 1:
        raise ValueError(f"token_size must be >= 1, got {token_size}")
    blocks, positions = _token_index(layout, token_size if chunk else None)
    needed = max((b.shape[1] for b in blocks), default=0)
    if token_size is None:
        token_size = needed
    elif token_size < needed:
        raise ValueError(
            f"token_size={token_size} is too small: the widest token of this layout needs "
            f"{needed} values; pass chunk=True to cut wide neurons into several tokens"
        )
    pad = layout.num_params
    index = torch.full((positions.shape[0], token_size), pad, dtype=torch.long)
    start = 0
    for block in blocks:
        index[start : start + block.shape[0], : block.shape[1]] = block
        start += block.shape[0]
    return index, positions, token_size


def tokenize(
    rows: Tensor | np.ndarray,
    layout: Layout,
    *,
    token_size: int | None = None,
    chunk: bool = False,
) -> dict[str, Tensor]:
    """Cut weight vectors into one token per output neuron (SANE style).

    Each layer (:meth:`Layout.layers` order) gives one token per index ``i`` of dimension 0 of
    its tensors: ``tensor[i]`` flattened for each non-bias tensor, then for each bias tensor,
    in layout order, zero-padded to ``token_size``. A conv kernel ``[out, in, kh, kw]`` gives
    ``in*kh*kw`` values and then its bias. A PyTorch RNN layer (``weight_ih_l<k>``,
    ``weight_hh_l<k>``, ``bias_ih_l<k>``, ``bias_hh_l<k>``, gates stacked along dimension 0)
    gives one token per gate row ``i``: row ``i`` of ``weight_ih``, row ``i`` of ``weight_hh``,
    ``bias_ih[i]``, ``bias_hh[i]``. A BatchNorm layer gives one token per channel.

    With ``chunk=True`` (as in Schürholt et al., "Towards Scalable and Versatile Weight Space
    Learning", arXiv:2406.09997), a neuron's row longer than ``token_size`` is cut into
    consecutive tokens of ``token_size`` values, so that every token has the same width
    however wide the layer.

    Args:
        rows: ``[..., P]`` tensor or numpy array of weight vectors.
        layout: the layout of the vectors.
        token_size: length of each token; defaults to the widest token the layout needs.
        chunk: cut rows wider than ``token_size`` into several tokens (needs ``token_size``).

    Returns:
        ``tokens`` ``[..., T, token_size]`` (rows' dtype), ``mask`` ``[..., T, token_size]`` bool
        (True on real values, False on padding), ``positions`` ``[T, 3]`` long with the token's
        index, its layer's index and its index within the layer.

    Raises:
        LayoutError: if the last dimension is not ``layout.num_params``, or a layer's tensors
            disagree on dimension 0.
        ValueError: if ``token_size`` is smaller than the widest token (without ``chunk``).
    """
    rows = _as_tensor(rows)
    _check_last_dim(rows, layout, "rows")
    index, positions, token_size = _padded_index(layout, token_size, chunk)
    index = index.to(rows.device)
    padded = torch.cat([rows, rows.new_zeros(*rows.shape[:-1], 1)], dim=-1)
    tokens = padded[..., index]
    mask = (index != layout.num_params).expand(tokens.shape).clone()
    return {"tokens": tokens, "mask": mask, "positions": positions.to(rows.device)}


def detokenize(tokens: Tensor | np.ndarray | Mapping[str, Any], layout: Layout) -> Tensor:
    """Inverse of :func:`tokenize`: rebuild weight vectors from tokens.

    Args:
        tokens: ``[..., T, token_size]`` tensor or numpy array, or the dict :func:`tokenize`
            returns (its ``tokens`` entry is used). Tokens narrower than the widest neuron
            are read as chunked (``tokenize(..., chunk=True)``).
        layout: the layout of the vectors.

    Returns:
        ``[..., P]`` weight vectors in the tokens' dtype.

    Raises:
        LayoutError: if the number of tokens does not match the layout, or tokens are too short.
    """
    if isinstance(tokens, Mapping):
        tokens = tokens["tokens"]
    tokens = _as_tensor(tokens)
    blocks, positions = _token_index(layout)
    needed = max((b.shape[1] for b in blocks), default=0)
    if tokens.dim() < 2:
        raise LayoutError(f"tokens of shape {tuple(tokens.shape)} need at least 2 dimensions")
    width = tokens.shape[-1]
    # Unchunked tokens are at least as wide as the widest neuron; narrower ones are chunked.
    chunk = width < needed
    if chunk:
        _, positions = _token_index(layout, width)
    if tokens.shape[-2] != positions.shape[0] or width < 1:
        raise LayoutError(
            f"tokens of shape {tuple(tokens.shape)} do not fit the layout: it needs "
            f"{positions.shape[0]} tokens of {width} values (or tokens of at least {needed} "
            "values, one per neuron)"
        )
    index, _, token_size = _padded_index(layout, width, chunk)
    flat_index = (torch.arange(index.shape[0]).unsqueeze(1) * token_size).expand_as(index)
    flat_index = (flat_index + torch.arange(token_size)).reshape(-1)
    param = index.reshape(-1)
    real = param != layout.num_params
    inverse = torch.empty(layout.num_params, dtype=torch.long)
    inverse[param[real]] = flat_index[real]
    flat_tokens = tokens.reshape(*tokens.shape[:-2], -1)
    return flat_tokens[..., inverse.to(tokens.device)]
