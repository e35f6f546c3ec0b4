"""MLDS networks for the zoo-level landscape driver: a vmappable twin, data and loss per class.

``torch.func.vmap`` has no batching rule for ``nn.GRU`` / ``nn.LSTM``, so the landscape code
would otherwise run MLDS networks one at a time. :class:`VmapTwin` holds the same parameters
under the same names as :class:`~weightzoo.families.mlds.model.MLDSNet` (a stored row loads into
it unchanged) and runs :func:`~weightzoo.families.mlds.model.population_forward` for one network,
which is plain tensor arithmetic that ``vmap`` batches over a population.

Every network is measured on the training sequences of its own machine or automaton, with the
generator's loss: the mean squared error over the output lines of the steps the mask keeps.
The mask travels as the last channel of the targets, so that the loss keeps the
``loss_fn(outputs, targets)`` form of :func:`weightzoo.landscape.landscape_metrics`.
:func:`landscape_parts` hands the driver
(:func:`weightzoo.landscape.zoo_metrics.compute_zoo_landscape`) these parts, with one group of
models per class; a model's sibling is another network of the same class.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from weightzoo.families.mlds.data import class_names, class_sets
from weightzoo.families.mlds.model import MLDSNet, network_inputs, population_forward
from weightzoo.families.mlds.spec import MLDSData, NetConfig, net_config
from weightzoo.features import layout_of
from weightzoo.generate.base import LandscapeParts

__all__ = ["VmapTwin", "bit_accuracy", "class_batches", "landscape_parts", "masked_mse"]


class VmapTwin(nn.Module):
    """An MLDS network whose forward ``vmap`` can batch over stacked parameters.

    Args:
        config: the network's shape.
    """

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        template = MLDSNet(config)
        self._names = layout_of(template).names
        for name, child in template.named_children():  # the same parameter names
            if isinstance(child, nn.RNNBase):  # a plain holder: nothing calls the fused cell
                holder = nn.Module()
                for key, value in child.named_parameters(recurse=False):
                    holder.register_parameter(key, value)
                child = holder
            self.add_module(name, child)

    def forward(self, x: Tensor) -> Tensor:
        """Outputs ``[batch, steps, output]`` of network inputs ``[batch, steps, input]``."""
        params = {name: reduce(getattr, name.split("."), self)[None] for name in self._names}
        return population_forward(self.config, params, x[None])[0]


def masked_mse(outputs: Tensor, targets: Tensor) -> Tensor:
    """Mean squared error over the lines of the kept steps (targets ``[..., lines + 1]``)."""
    lines, mask = targets[..., :-1], targets[..., -1]
    err = ((outputs - lines) ** 2).sum(-1) * mask
    return err.sum() / (mask.sum() * lines.shape[-1]).clamp(min=1)


def bit_accuracy(outputs: Tensor, targets: Tensor) -> Tensor:
    """Share of output lines right after rounding at 0.5, over the kept steps."""
    lines, mask = targets[..., :-1], targets[..., -1]
    right = ((outputs > 0.5) == (lines > 0.5)).to(outputs.dtype).sum(-1) * mask
    return right.sum() / (mask.sum() * lines.shape[-1]).clamp(min=1)


def class_batches(
    data: MLDSData, class_name: str, batches: int, batch_size: int, device: torch.device
) -> list[tuple[Tensor, Tensor]]:
    """The first ``batches`` batches of a class's training sequences, as the network reads them.

    Returns:
        ``[(inputs [b, steps, input], targets [b, steps, lines + 1])]``: the network's inputs
        (:func:`~weightzoo.families.mlds.model.network_inputs`) and the target lines with the
        step mask as the last channel.
    """
    train = class_sets(data, class_name)["train"]
    size = min(batches * batch_size, len(train.inputs))
    x = network_inputs(torch.from_numpy(train.inputs[:size]).float(), data.signed_inputs)
    y = torch.from_numpy(train.outputs[:size]).float()
    mask = torch.from_numpy(train.mask[:size]).float()
    targets = torch.cat([y, mask[..., None]], dim=-1)
    return [
        (x[i : i + batch_size].to(device), targets[i : i + batch_size].to(device))
        for i in range(0, size, batch_size)
    ]


def landscape_parts(
    spec: Mapping[str, Any],
    columns: Mapping[str, np.ndarray],
    batches: int,
    batch_size: int,
    device: torch.device,
) -> LandscapeParts:
    """What the driver measures an MLDS zoo's networks with: one group per class.

    Args:
        spec: the zoo's task spec (its manifest's).
        columns: the selection's model columns (the class column names each network's).
        batches: training batches per class.
        batch_size: sequences per batch.
        device: where the batches go.
    """
    data = MLDSData.from_spec(spec)
    config = net_config(data.subset)
    names = np.asarray(class_names(columns[data.class_column]), dtype=object)
    return LandscapeParts(
        groups=names,
        module=lambda _key: VmapTwin(config),
        data=lambda key: class_batches(data, key, batches, batch_size, device),
        loss=masked_mse,
        accuracy=bit_accuracy,
        # a sibling is another network of the same machine or automaton
        sibling_columns={} if "node" in columns else {"node": names},
    )
