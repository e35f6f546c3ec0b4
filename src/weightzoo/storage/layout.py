"""The layer layout: which tensor sits where in a flattened weight vector.

A layout is an ordered table of ``(name, shape, offset, numel)``, one row per tensor of a
``state_dict``. It is stored in every manifest so that any row of ``weights`` can be turned back
into a ``state_dict``. A row may also carry a ``module_shape``: how the module uses the tensor
where the stored shape cannot tell (a ``Linear`` weight ``(20, 36)`` that reads the flatten of a
``4 x 3 x 3`` feature map has module shape ``(20, 4, 3, 3)``). This module is pure Python +
numpy so that the storage layer never needs torch.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from weightzoo.errors import LayoutError

_RNN_LAYER_SUFFIX = re.compile(r"_l(\d+)(_reverse)?$")
_DIGITS = re.compile(r"(\d+)")
#: Most dimensions a shape read from a manifest may have (torch's own limit is 64).
MAX_DIMS = 32


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a layout.

    Attributes:
        name: ``state_dict`` key, e.g. ``"module_list.0.weight"``.
        shape: the tensor's shape.
        offset: index of the tensor's first element in the flattened vector.
        module_shape: how the module uses the tensor, where that differs from ``shape``: a
            ``Linear`` weight ``[out, C*H*W]`` that reads the flatten of a ``[C, H, W]`` feature
            map is ``[out, C, H, W]``. ``None``: the stored shape is the module shape, or the
            layout does not know (layouts built from a ``state_dict``, older manifests).
    """

    name: str
    shape: tuple[int, ...]
    offset: int
    module_shape: tuple[int, ...] | None = None

    @property
    def numel(self) -> int:
        """Number of elements of the tensor."""
        return math.prod(self.shape)

    @property
    def stop(self) -> int:
        """One past the tensor's last element in the flattened vector."""
        return self.offset + self.numel

    @property
    def is_bias(self) -> bool:
        """Whether the tensor is a bias (its leaf name starts with ``bias``)."""
        return self.name.rsplit(".", 1)[-1].startswith("bias")

    @property
    def layer(self) -> str:
        """The layer the tensor belongs to.

        For ``a.b.weight`` this is ``a.b``. PyTorch RNN modules keep all layers in one module
        (``gru.weight_ih_l0``, ``gru.bias_hh_l1``), so their ``_l<k>`` suffix names the layer:
        ``gru.l0``.
        """
        prefix, _, leaf = self.name.rpartition(".")
        match = _RNN_LAYER_SUFFIX.search(leaf)
        if match:
            layer = "l" + match.group(1) + (match.group(2) or "")
            return f"{prefix}.{layer}" if prefix else layer
        return prefix


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders digit runs numerically (``layer.2`` before ``layer.10``)."""
    return tuple(int(part) if part.isdigit() else part for part in _DIGITS.split(name))


class Layout:
    """Ordered tensor layout of a flattened weight vector.

    Args:
        entries: ``(name, shape)`` pairs in the order of the flattened vector.
        module_shapes: ``{name: module shape}`` for tensors the module uses in another shape
            than the stored one (see :attr:`TensorSpec.module_shape`); one equal to the stored
            shape is dropped.

    Raises:
        LayoutError: if a name repeats, a shape has a negative dimension, or a module shape
            names no tensor or does not hold the tensor's elements.
    """

    def __init__(
        self,
        entries: Iterable[tuple[str, Sequence[int]]],
        module_shapes: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        tensors: list[TensorSpec] = []
        offset = 0
        seen: set[str] = set()
        views = dict(module_shapes or {})
        for name, shape in entries:
            if name in seen:
                raise LayoutError(f"tensor name {name!r} appears twice in the layout")
            shape = tuple(int(d) for d in shape)
            if any(d < 0 for d in shape):
                raise LayoutError(f"tensor {name!r} has a negative dimension in shape {shape}")
            seen.add(name)
            view = _module_shape(name, shape, views.pop(name)) if name in views else None
            spec = TensorSpec(name, shape, offset, view)
            tensors.append(spec)
            offset = spec.stop
        if views:
            raise LayoutError(
                f"module shapes name tensors the layout does not have: {', '.join(views)}"
            )
        self.tensors: tuple[TensorSpec, ...] = tuple(tensors)
        self.num_params: int = offset
        self._by_name = {t.name: t for t in self.tensors}

    @classmethod
    def from_shapes(cls, shapes: Mapping[str, Sequence[int]], *, sort: bool = False) -> Layout:
        """Build a layout from a ``{name: shape}`` mapping (e.g. a ``state_dict``'s shapes).

        Args:
            shapes: tensor names and shapes, in the mapping's order.
            sort: order tensors by :func:`natural_key` of their name instead of the mapping's
                order. Use it for checkpoints whose key order cannot be trusted; layers named
                ``module_list.0`` ... ``module_list.11`` come out in numeric order.
        """
        names = sorted(shapes, key=natural_key) if sort else list(shapes)
        return cls((name, shapes[name]) for name in names)

    @classmethod
    def from_json(cls, rows: Sequence[Mapping[str, Any]]) -> Layout:
        """Rebuild a layout from its manifest form and check the stored offsets.

        The rows are outside data: names must be strings, shapes and module shapes lists of
        at most :data:`MAX_DIMS` JSON integers, and a module shape must hold exactly the
        tensor's elements. ``module_shape`` is optional (older manifests have none).

        Raises:
            LayoutError: if a row lacks a field, a field has the wrong type, or its
                offset/numel/module shape contradict the shape.
        """
        if not isinstance(rows, list) or not all(isinstance(row, Mapping) for row in rows):
            raise LayoutError(f"the layout must be a list of objects, got {_brief(rows)}")
        try:
            entries = [(_json_name(row["name"]), _json_dims(row, "shape")) for row in rows]
        except KeyError as exc:
            raise LayoutError(f"layout rows need 'name' and 'shape' fields: {exc}") from exc
        views = {
            name: _json_dims(row, "module_shape")
            for (name, _), row in zip(entries, rows, strict=True)
            if row.get("module_shape") is not None
        }
        layout = cls(entries, views)
        for row, tensor in zip(rows, layout.tensors, strict=True):
            if "offset" in row and not _same_int(row["offset"], tensor.offset):
                raise LayoutError(
                    f"layout row {tensor.name!r} says offset {_brief(row['offset'])}, but the "
                    f"shapes before it add up to {tensor.offset}"
                )
            if "numel" in row and not _same_int(row["numel"], tensor.numel):
                raise LayoutError(
                    f"layout row {tensor.name!r} says numel {_brief(row['numel'])}, but shape "
                    f"{tensor.shape} has {tensor.numel}"
                )
        return layout

    def to_json(self) -> list[dict[str, Any]]:
        """The manifest form: one ``{name, shape, offset, numel}`` dict per tensor.

        A tensor with a :attr:`TensorSpec.module_shape` also has ``module_shape``.
        """
        rows = []
        for t in self.tensors:
            row: dict[str, Any] = {
                "name": t.name,
                "shape": list(t.shape),
                "offset": t.offset,
                "numel": t.numel,
            }
            if t.module_shape is not None:
                row["module_shape"] = list(t.module_shape)
            rows.append(row)
        return rows

    @property
    def module_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{name: module shape}`` of the tensors that have one (see :class:`TensorSpec`)."""
        return {t.name: t.module_shape for t in self.tensors if t.module_shape is not None}

    def with_module_shapes(self, module_shapes: Mapping[str, Sequence[int]]) -> Layout:
        """This layout with ``module_shapes`` added to (or replacing) the recorded ones.

        Args:
            module_shapes: ``{name: module shape}``, e.g. from
                :func:`weightzoo.features.module_shapes`.

        Raises:
            LayoutError: for a name the layout lacks or a shape of another number of elements.
        """
        merged = self.module_shapes | dict(module_shapes)
        return Layout(((t.name, t.shape) for t in self.tensors), merged)

    def __getitem__(self, name: str) -> TensorSpec:
        """The tensor called ``name``.

        Raises:
            LayoutError: if the layout has no such tensor.
        """
        try:
            return self._by_name[name]
        except KeyError:
            raise LayoutError(
                f"the layout has no tensor {name!r}; it has {', '.join(self.names)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self):
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def __eq__(self, other: object) -> bool:
        # Module shapes describe the rows, they do not change them: a zoo written before they
        # were recorded holds the same rows.
        if not isinstance(other, Layout):
            return NotImplemented
        return [(t.name, t.shape) for t in self] == [(t.name, t.shape) for t in other]

    def __repr__(self) -> str:
        return f"Layout({len(self)} tensors, {self.num_params} params)"

    @property
    def names(self) -> list[str]:
        """Tensor names in vector order."""
        return [t.name for t in self.tensors]

    def layers(self) -> dict[str, list[TensorSpec]]:
        """Tensors grouped by :attr:`TensorSpec.layer`, layers in order of first appearance."""
        groups: dict[str, list[TensorSpec]] = {}
        for tensor in self.tensors:
            groups.setdefault(tensor.layer, []).append(tensor)
        return groups

    def check_shapes(self, shapes: Mapping[str, Sequence[int]], *, source: str = "") -> None:
        """Check that ``shapes`` has exactly this layout's tensors with the same shapes.

        Args:
            shapes: ``{name: shape}`` of a state_dict.
            source: where the shapes came from, for the error message.

        Raises:
            LayoutError: naming missing, unexpected or mis-shaped tensors.
        """
        where = f" in {source}" if source else ""
        missing = [n for n in self.names if n not in shapes]
        extra = [n for n in shapes if n not in self._by_name]
        if missing or extra:
            raise LayoutError(
                f"state_dict{where} does not match the layout: missing {missing or 'none'}, "
                f"unexpected {extra or 'none'}"
            )
        for tensor in self.tensors:
            got = tuple(int(d) for d in shapes[tensor.name])
            if got != tensor.shape:
                raise LayoutError(
                    f"tensor {tensor.name!r}{where} has shape {got}, the layout expects "
                    f"{tensor.shape}"
                )


def _brief(value: Any) -> str:
    """A short repr of a value from outside data, for a one-line message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _same_int(value: Any, expected: int) -> bool:
    """Whether a manifest value is the JSON integer ``expected`` (not a bool, float or string)."""
    return isinstance(value, int) and not isinstance(value, bool) and value == expected


def _json_name(value: Any) -> str:
    if not isinstance(value, str):
        raise LayoutError(f"a layout row's name must be a string, got {_brief(value)}")
    return value


def _json_dims(row: Mapping[str, Any], key: str) -> tuple[int, ...]:
    """``row[key]`` as a shape: a list of at most :data:`MAX_DIMS` non-negative JSON integers."""
    value = row[key]
    if (
        not isinstance(value, list)
        or len(value) > MAX_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value)
    ):
        raise LayoutError(
            f"layout row {_brief(row.get('name'))}: {key} must be a list of at most {MAX_DIMS} "
            f"non-negative integers, got {_brief(value)}"
        )
    return tuple(value)


def _module_shape(name: str, shape: tuple[int, ...], view: Sequence[int]) -> tuple[int, ...] | None:
    """A checked module shape of tensor ``name`` (``None`` when it equals the stored shape)."""
    try:
        dims = tuple(operator.index(d) for d in view)
    except TypeError:
        raise LayoutError(
            f"tensor {name!r}: module shape {_brief(view)} must be a sequence of integers"
        ) from None
    if not 1 <= len(dims) <= MAX_DIMS or any(d < 1 for d in dims):
        raise LayoutError(
            f"tensor {name!r}: module shape {dims} must have 1 to {MAX_DIMS} dimensions of "
            "at least 1"
        )
    if math.prod(dims) != math.prod(shape) or not shape or dims[0] != shape[0]:
        raise LayoutError(
            f"tensor {name!r} of shape {shape} cannot have module shape {dims}: a module shape "
            "keeps the first dimension and the number of elements"
        )
    return None if dims == shape else dims
