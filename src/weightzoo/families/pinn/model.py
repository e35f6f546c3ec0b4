"""The PINN multilayer perceptron of the convection zoos.

``(x, t) -> u``: ``len(hidden)`` tanh layers and a linear output, held in ``layers`` so that a
row's tensors are ``layers.<k>.weight`` / ``layers.<k>.bias`` in layer order. The default
widths ``(50, 50, 50, 50)`` are a reading of Krishnapriyan, Gholami, Zhe, Kirby, Mahoney,
"Characterizing possible failure modes in physics-informed neural networks"
(arXiv:2109.01050), whose convection experiments use a fully connected tanh network of four
hidden layers of 50 units; "A Model Zoo on Phase Transitions in Neural Networks"
(arXiv:2504.18072) builds its PINN zoo on that benchmark.

The module returns ``u`` with the trailing unit axis dropped (``[..., 2] -> [...]``), so that
it is a pointwise function of its inputs, as :func:`weightzoo.families.pinn.data.residual`
needs. Weights are initialised with Glorot (Xavier) normal draws and zero biases, the usual
start of tanh PINNs.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["PINN", "from_spec"]


class PINN(nn.Module):
    """``(x, t) -> u`` with tanh hidden layers.

    Args:
        hidden: widths of the hidden layers.
        in_features: input coordinates (2: ``x`` and ``t``).
    """

    def __init__(self, hidden: Sequence[int] = (50, 50, 50, 50), in_features: int = 2) -> None:
        super().__init__()
        widths = [int(in_features), *(int(h) for h in hidden), 1]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.act = nn.Tanh()  # one module, so a hook on it sees every hidden layer
        with torch.no_grad():
            for layer in self.layers:
                nn.init.xavier_normal_(layer.weight)
                layer.bias.zero_()

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations ``[..., hidden[-1]]``."""
        for layer in self.layers[:-1]:
            x = self.act(layer(x))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``u`` at points ``x [..., 2]``: ``[...]``."""
        return self.layers[-1](self.hidden(x)).squeeze(-1)


def from_spec(spec: Mapping[str, Any]) -> PINN:
    """The PINN of a spec (its ``hidden`` widths)."""
    return PINN(tuple(int(h) for h in spec.get("hidden", (50, 50, 50, 50))))
