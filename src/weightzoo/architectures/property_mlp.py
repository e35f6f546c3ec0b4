"""The MLP of property-inference zoos.

A stack of ``nn.Linear`` layers with ReLU between them, held in ``layers`` so that a row's
tensors are ``layers.<k>.weight`` and ``layers.<k>.bias`` in layer order. The generator runs a
population of these as batched matrix products over the same tensor names.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


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
