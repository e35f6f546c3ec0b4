"""Every family's ``nn.Module`` s, and :func:`build_model`: a zoo's module from its spec.

A manifest stores the full spec that generated a zoo (``zoo.json``'s ``spec``);
``build_model(spec)`` builds the module whose :func:`weightzoo.features.layout_of` is the zoo's
layout, so that a row runs with ``features.load_vector(build_model(spec), row, layout)`` without
importing the generator. This package imports only torch, :mod:`weightzoo.features` and
:mod:`weightzoo.storage`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from weightzoo.architectures import image, mlds, phase, pinn, property_mlp, tiny_lm, vit
from weightzoo.errors import WeightzooError

__all__ = [
    "UnbuildableSpecError",
    "build_model",
    "image",
    "mlds",
    "phase",
    "pinn",
    "property_mlp",
    "tiny_lm",
    "vit",
]


VIT_FAMILIES = ("vit-pretrain", "vit-finetune")
"""Families whose rows are :class:`~weightzoo.architectures.vit.ViT` s."""


class UnbuildableSpecError(WeightzooError, ValueError):
    """The spec does not say which module its rows belong to."""


def build_model(spec: Mapping[str, Any], columns: Mapping[str, Any] | None = None) -> nn.Module:
    """The (freshly initialised) module of a zoo's rows.

    Args:
        spec: a zoo spec as stored in a manifest (``Manifest.spec``, or ``ZooSpec.to_dict()``).
        columns: the model's own columns where they change the module: ``activation`` and
            ``dropout`` of a hyperparameter-grid zoo (with one activation in the spec it may be
            left out; dropout only matters in training mode).

    Returns:
        The module; load a row into it with :func:`weightzoo.features.load_vector`.

    Raises:
        UnbuildableSpecError: for an imported zoo (its spec names no weightzoo architecture),
            an unknown architecture, or a grid zoo's row without its activation.
    """
    columns = dict(columns or {})
    if spec.get("spec_class") == "SparsifiedTwin" and isinstance(spec.get("source_spec"), Mapping):
        return build_model(spec["source_spec"], columns)
    family = spec.get("family")
    if family == "mlds":
        return mlds.MLDSNet(mlds.net_config(str(spec.get("subset", "ds1"))))
    if family in ("modelzoo", "trajectory") and "architecture" in spec:
        return _image_model(spec, columns)
    if family == "property" and "hidden" in spec:
        return property_mlp.from_spec(spec)
    if family in VIT_FAMILIES:
        return vit.from_spec(spec)
    if family == "pinn":
        return pinn.from_spec(spec)
    if family == "phase" and "architecture" in spec and "width" in spec:
        try:
            return phase.from_spec(spec)
        except ValueError as exc:
            raise UnbuildableSpecError(f"zoo spec {spec.get('name')!r}: {exc}") from None
    if family == "tinylm" and "model_dim" in spec:
        return tiny_lm.from_spec(spec)
    raise UnbuildableSpecError(
        f"zoo spec {spec.get('name')!r} (family {family!r}) names no weightzoo architecture; "
        "imported zoos keep the source's own module: build it yourself and use "
        "weightzoo.features.load_vector(module, row, zoo.layout)"
    )


def _image_model(spec: Mapping[str, Any], columns: Mapping[str, Any]) -> nn.Module:
    activations = list(spec.get("activations", ["relu"]))
    activation = columns.get("activation")
    if activation is None:
        if len(set(activations)) > 1:
            raise UnbuildableSpecError(
                f"zoo spec {spec.get('name')!r} has several activations {activations}; pass the "
                "row's column: build_model(spec, {'activation': ...})"
            )
        activation = activations[0]
    activation = str(activation.decode() if isinstance(activation, bytes) else activation)
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
        f"zoo spec {spec.get('name')!r} has unknown architecture {arch!r}; known: cnn-s, cnn-m, "
        "resnet18, mlp, cnn"
    )
