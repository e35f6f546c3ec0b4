"""The networks of Model Zoos and trajectory zoos, built from a spec dict and a row's columns.

The architectures themselves (CNN-s, CNN-m, ResNet-18, the trajectory MLP and CNN) are
:mod:`weightzoo.architectures.image`'s, shared with the phase zoos; this module picks one for
a spec, with the activation and dropout of a grid zoo's row, and gives its layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from torch import nn

from weightzoo.architectures import UnbuildableSpecError, image
from weightzoo.features import layout_of
from weightzoo.storage.layout import Layout

__all__ = ["ARCHITECTURES", "from_spec", "layout"]

ARCHITECTURES = ("cnn-s", "cnn-m", "resnet18", "mlp", "cnn")
"""The architectures a Model Zoos or trajectory spec names."""

# what a row's layout depends on (not the grid's activations or rates)
_LAYOUT_FIELDS = (
    "architecture",
    "in_channels",
    "num_classes",
    "image_size",
    "hidden",
    "bias",
    "conv_channels",
)


def _activation(spec: Mapping[str, Any], columns: Mapping[str, Any]) -> str:
    """The row's activation: its column, or the spec's only one."""
    activations = list(spec.get("activations", ["relu"]))
    activation = columns.get("activation")
    if activation is None:
        if len(set(activations)) > 1:
            raise UnbuildableSpecError(
                f"zoo spec {spec.get('name')!r} has several activations {activations}; pass the "
                "row's column: build_model(spec, {'activation': ...})"
            )
        activation = activations[0]
    return str(activation.decode() if isinstance(activation, bytes) else activation)


def from_spec(spec: Mapping[str, Any], columns: Mapping[str, Any]) -> nn.Module:
    """The (uninitialised) network of a spec dict, with the row's activation and dropout.

    Args:
        spec: a Model Zoos or trajectory spec as a manifest stores it.
        columns: the row's ``activation`` (needed where the spec has several) and
            ``dropout`` (only matters in training mode).

    Raises:
        UnbuildableSpecError: for an unknown architecture, or a grid zoo's row without its
            activation.
    """
    activation = _activation(spec, columns)
    dropout = float(columns.get("dropout", 0.0))
    arch = spec["architecture"]
    in_channels, classes = int(spec["in_channels"]), int(spec["num_classes"])
    size, bias = int(spec["image_size"]), bool(spec.get("bias", True))
    if arch == "cnn-s":
        return image.cnn_small(in_channels, classes, activation=activation, dropout=dropout)
    if arch == "cnn-m":
        return image.cnn_medium(in_channels, classes, activation=activation, dropout=dropout)
    if arch == "resnet18":
        return image.ResNet18(in_channels, classes)
    if arch == "mlp":
        hidden = int(spec.get("hidden", 10))
        return image.trajectory_mlp(
            in_channels * size**2, hidden, classes, activation=activation, bias=bias
        )
    if arch == "cnn":
        channels = tuple(int(c) for c in spec.get("conv_channels", (16, 8)))
        return image.trajectory_cnn(
            in_channels, channels, classes, size=size, activation=activation, bias=bias
        )
    raise UnbuildableSpecError(
        f"zoo spec {spec.get('name')!r} has unknown architecture {arch!r}; known: "
        f"{', '.join(ARCHITECTURES)}"
    )


def layout(spec: Mapping[str, Any]) -> Layout:
    """Layout of one row: the network's parameters (and ResNet-18's BatchNorm statistics).

    Cached by the fields the layout depends on: a ResNet-18 takes a while to build.
    """
    key = tuple(
        tuple(value) if isinstance(value, list | tuple) else value
        for value in (spec.get(name) for name in _LAYOUT_FIELDS)
    )
    return _layout(key)


@lru_cache(maxsize=64)
def _layout(key: tuple[Any, ...]) -> Layout:
    spec = {
        name: value for name, value in zip(_LAYOUT_FIELDS, key, strict=True) if value is not None
    }
    module = from_spec(spec, {"activation": "relu"})
    if "in_channels" not in spec or "image_size" not in spec:
        return layout_of(module)
    # The input shape lets the layout record each tensor's module shape (CNN-s's flattened
    # conv weights), which the interop converters need.
    size = int(spec["image_size"])
    return layout_of(module, input_shape=(int(spec["in_channels"]), size, size))
