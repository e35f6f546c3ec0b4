"""The sine MLP, and its forward pass over a whole stacked population."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["from_spec", "population_forward"]


def from_spec(spec: Mapping[str, Any], columns: Mapping[str, Any] | None = None) -> nn.Module:
    """``1 -> width -> 1`` with a tanh between; ``width`` is the row's column, else the spec's."""
    width = int((columns or {}).get("width", spec["widths"][0]))
    return nn.Sequential(nn.Linear(1, width), nn.Tanh(), nn.Linear(width, 1))


def population_forward(params: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """Outputs ``[M, N]`` of ``M`` stacked models on points ``x``: ``[N]`` shared, or ``[M, N]``."""
    x = x.expand(params["0.bias"].shape[0], -1)
    hidden = torch.tanh(
        x[..., None] * params["0.weight"][:, None, :, 0] + params["0.bias"][:, None]
    )
    return torch.einsum("mnh,mh->mn", hidden, params["2.weight"][:, 0]) + params["2.bias"]
