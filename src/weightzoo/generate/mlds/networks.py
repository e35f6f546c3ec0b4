"""MLDS populations: stacked initialisation and the batched forward of ``M`` networks.

The network itself, :class:`~weightzoo.architectures.mlds.MLDSNet`, and
:func:`~weightzoo.architectures.mlds.population_forward`, which runs ``M`` such networks at once
on stacked parameters ``[M, ...]``, live in :mod:`weightzoo.architectures.mlds` (re-exported
here), where evaluation finds them without the generator.
"""

from __future__ import annotations

import torch
from torch import Tensor

from weightzoo.architectures.mlds import (  # re-exported for the generator's callers
    DS1_NET,
    DS3_NET,
    INITS,
    MLDSNet,
    NetConfig,
    initialise_,
    layout,
    net_config,
    num_params,
    population_forward,
)

__all__ = [
    "DS1_NET",
    "DS3_NET",
    "INITS",
    "MLDSNet",
    "NetConfig",
    "init_population",
    "layout",
    "net_config",
    "num_params",
    "population_forward",
]


def init_population(
    config: NetConfig, seeds: list[int], device: str = "cpu", init: str = "default"
) -> dict[str, Tensor]:
    """Stacked initial parameters ``{name: [M, ...]}``.

    Network ``m`` is built as ``MLDSNet`` under ``torch.manual_seed(seeds[m])`` and initialised
    by :func:`~weightzoo.architectures.mlds.initialise_` with ``init``, without touching the
    global random state.
    """
    nets = []
    with torch.random.fork_rng(devices=[]):
        for seed in seeds:
            torch.manual_seed(seed)
            nets.append(initialise_(MLDSNet(config), init).state_dict())
    return {
        name: torch.stack([net[name] for net in nets]).to(device).contiguous()
        for name in layout(config).names
    }
