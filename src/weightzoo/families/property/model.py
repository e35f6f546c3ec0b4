"""The MLP of property-inference zoos.

A stack of ``nn.Linear`` layers with ReLU between them, held in ``layers`` so that a row's
tensors are ``layers.<k>.weight`` and ``layers.<k>.bias`` in layer order. Training runs a
population of these as batched matrix products over the same tensor names
(:func:`mlp_forward`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["PropertyMLP", "from_spec", "mlp_forward"]


class PropertyMLP(nn.Module):
    """Inputs -> ``hidden`` ReLU layers -> class logits.

    Args:
        in_features: inputs per item.
        hidden: widths of the hidden layers.
        num_classes: outputs.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int) -> None:
        super().__init__()
        widths = [int(in_features), *(int(h) for h in hidden), int(num_classes)]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[..., num_classes]``."""
        for k, layer in enumerate(self.layers):
            x = layer(x)
            if k < len(self.layers) - 1:
                x = F.relu(x)
        return x


def from_spec(spec: Mapping[str, Any]) -> PropertyMLP:
    """The MLP of a property spec (``features``, ``hidden``, ``num_classes`` fields)."""
    return PropertyMLP(int(spec["features"]), list(spec["hidden"]), int(spec["num_classes"]))


def mlp_forward(params: dict[str, Tensor], x: Tensor) -> Tensor:
    """Logits ``[M, B, classes]`` of stacked MLPs on per-model inputs ``x [M, B, features]``.

    Args:
        params: stacked parameters ``{"layers.<k>.weight": [M, out, in], ...}``.
        x: each model's own batch.
    """
    layers = sum(1 for name in params if name.endswith(".weight"))
    h = x
    for k in range(layers):
        weight, bias = params[f"layers.{k}.weight"], params[f"layers.{k}.bias"]
        h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
        if k < layers - 1:
            h = F.relu(h)
    return h
