"""MLDS networks for the zoo-level landscape driver: a vmappable twin, data and loss per class.

``torch.func.vmap`` has no batching rule for ``nn.GRU`` / ``nn.LSTM``, so the landscape code
would otherwise run MLDS networks one at a time. :class:`VmapTwin` holds the same parameters
under the same names as :class:`~weightzoo.architectures.mlds.MLDSNet` (a stored row loads into
it unchanged) and runs :func:`~weightzoo.architectures.mlds.population_forward` for one network,
which is plain tensor arithmetic that ``vmap`` batches over a population.

Every network is measured on the training sequences of its own machine or automaton, with the
generator's loss: the mean squared error over the output lines of the steps the mask keeps.
The mask travels as the last channel of the targets, so that the loss keeps the
``loss_fn(outputs, targets)`` form of :func:`weightzoo.landscape.landscape_metrics`.
"""

from __future__ import annotations

from functools import reduce

import torch
from torch import Tensor, nn

from weightzoo.architectures.mlds import MLDSNet, NetConfig, network_inputs, population_forward
from weightzoo.features import layout_of
from weightzoo.tasks.mlds import MLDSData, class_sets

__all__ = ["VmapTwin", "bit_accuracy", "class_batches", "masked_mse"]


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
        (:func:`~weightzoo.architectures.mlds.network_inputs`) and the target lines with the
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
