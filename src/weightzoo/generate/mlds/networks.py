"""MLDS populations: stacked initialisation and the batched forward of ``M`` networks.

The network itself, :class:`~weightzoo.architectures.mlds.MLDSNet`, lives in
:mod:`weightzoo.architectures.mlds` (re-exported here). :func:`population_forward` runs ``M``
such networks at once on stacked parameters ``[M, ...]`` with batched matmuls (``torch.bmm`` /
``torch.baddbmm``): a hand-written cell, since ``vmap`` has no batching rule for ``nn.GRU``.
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


def _gru_layer(x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> Tensor:
    # Input projections of all steps in one bmm; only the hidden product is sequential.
    m, b, steps, width = x.shape
    h_size = w_hh.shape[2]
    gi = torch.baddbmm(b_ih[:, None], x.reshape(m, b * steps, width), w_ih.transpose(1, 2))
    gi = gi.reshape(m, b, steps, 3 * h_size)
    # Split and unbind once: indexing ``gi[:, :, t]`` in the loop would make autograd write a
    # zero tensor of the whole ``gi`` per step (quadratic in the steps; most of a step's time).
    gi_rz, gi_n = gi.split([2 * h_size, h_size], dim=-1)
    gi_rz, gi_n = gi_rz.unbind(2), gi_n.unbind(2)
    w_hh_t = w_hh.transpose(1, 2)
    h = x.new_zeros(m, b, h_size)
    outs = []
    for t in range(steps):
        gh_rz, gh_n = torch.baddbmm(b_hh[:, None], h, w_hh_t).split([2 * h_size, h_size], dim=-1)
        r, z = torch.sigmoid(gi_rz[t] + gh_rz).chunk(2, dim=-1)
        n = torch.tanh(gi_n[t] + r * gh_n)
        h = n + z * (h - n)  # (1 - z) * n + z * h
        outs.append(h)
    return torch.stack(outs, dim=2)


def _lstm_layer(x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> Tensor:
    m, b, steps, width = x.shape
    h_size = w_hh.shape[2]
    bias = (b_ih + b_hh)[:, None]
    gi = torch.baddbmm(bias, x.reshape(m, b * steps, width), w_ih.transpose(1, 2))
    gi = gi.reshape(m, b, steps, 4 * h_size).unbind(2)  # once, as in _gru_layer
    w_hh_t = w_hh.transpose(1, 2)
    h = x.new_zeros(m, b, h_size)
    c = x.new_zeros(m, b, h_size)
    outs = []
    for t in range(steps):
        gates = torch.baddbmm(gi[t], h, w_hh_t)
        i, f, _, o = torch.sigmoid(gates).chunk(4, dim=-1)  # PyTorch's order: i, f, g, o
        c = f * c + i * torch.tanh(gates.chunk(4, dim=-1)[2])
        h = o * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, dim=2)


def population_forward(config: NetConfig, params: dict[str, Tensor], x: Tensor) -> Tensor:
    """Run ``M`` networks at once.

    Args:
        config: the networks' shape.
        params: stacked parameters ``{name: [M, ...]}`` named as in :func:`layout`.
        x: inputs ``[M, batch, steps, input_size]`` (each network its own batch).

    Returns:
        Outputs ``[M, batch, steps, output_size]``.
    """
    layer_fn = _gru_layer if config.cell == "gru" else _lstm_layer
    hidden = x
    for layer in range(config.layers):
        hidden = layer_fn(
            hidden,
            params[f"rnn.weight_ih_l{layer}"],
            params[f"rnn.weight_hh_l{layer}"],
            params[f"rnn.bias_ih_l{layer}"],
            params[f"rnn.bias_hh_l{layer}"],
        )
    m, b, steps, h_size = hidden.shape
    flat = hidden.reshape(m, b * steps, h_size)
    for index in range(config.linear_layers):
        weight, bias = params[f"linears.{index}.weight"], params[f"linears.{index}.bias"]
        flat = torch.baddbmm(bias[:, None], flat, weight.transpose(1, 2))
    out = torch.baddbmm(params["out.bias"][:, None], flat, params["out.weight"].transpose(1, 2))
    return out.reshape(m, b, steps, config.output_size)
