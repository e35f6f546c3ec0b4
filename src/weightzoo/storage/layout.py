"""The layer layout: which tensor sits where in a flattened weight vector.

A layout is an ordered table of ``(name, shape, offset, numel)``, one row per tensor of a
``state_dict``. It is stored in every manifest so that any row of ``weights`` can be turned back
into a ``state_dict``. This module is pure Python + numpy so that the storage layer never needs
torch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from weightzoo.errors import LayoutError

_RNN_LAYER_SUFFIX = re.compile(r"_l(\d+)(_reverse)?$")
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a layout.

    Attributes:
        name: ``state_dict`` key, e.g. ``"module_list.0.weight"``.
        shape: the tensor's shape.
        offset: index of the tensor's first element in the flattened vector.
    """

    name: str
    shape: tuple[int, ...]
    offset: int

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

    Raises:
        LayoutError: if a name repeats or a shape has a negative dimension.
    """

    def __init__(self, entries: Iterable[tuple[str, Sequence[int]]]) -> None:
        tensors: list[TensorSpec] = []
        offset = 0
        seen: set[str] = set()
        for name, shape in entries:
            if name in seen:
                raise LayoutError(f"tensor name {name!r} appears twice in the layout")
            shape = tuple(int(d) for d in shape)
            if any(d < 0 for d in shape):
                raise LayoutError(f"tensor {name!r} has a negative dimension in shape {shape}")
            seen.add(name)
            spec = TensorSpec(name, shape, offset)
            tensors.append(spec)
            offset = spec.stop
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

        Raises:
            LayoutError: if a row lacks a field or its offset/numel contradict the shapes.
        """
        try:
            layout = cls((row["name"], row["shape"]) for row in rows)
        except (KeyError, TypeError) as exc:
            raise LayoutError(f"layout rows need 'name' and 'shape' fields: {exc}") from exc
        for row, tensor in zip(rows, layout.tensors, strict=True):
            if "offset" in row and int(row["offset"]) != tensor.offset:
                raise LayoutError(
                    f"layout row {tensor.name!r} says offset {row['offset']}, but the shapes "
                    f"before it add up to {tensor.offset}"
                )
            if "numel" in row and int(row["numel"]) != tensor.numel:
                raise LayoutError(
                    f"layout row {tensor.name!r} says numel {row['numel']}, but shape "
                    f"{tensor.shape} has {tensor.numel}"
                )
        return layout

    def to_json(self) -> list[dict[str, Any]]:
        """The manifest form: one ``{name, shape, offset, numel}`` dict per tensor."""
        return [
            {"name": t.name, "shape": list(t.shape), "offset": t.offset, "numel": t.numel}
            for t in self.tensors
        ]

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
