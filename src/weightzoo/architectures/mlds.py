"""MLDS networks: a stacked GRU/LSTM, linear layers without activations, an output layer.

:class:`MLDSNet` is the plain ``nn.Module`` (parameter names as ``nn.GRU`` / ``nn.LSTM`` give
them, e.g. ``rnn.weight_ih_l0``), used to initialise each network and to rebuild a stored row.
A 4-layer GRU of width 12 on 9 input lines, 4 linear 12->12 layers and a 12->8 output has the
published 4,364 parameters of a DS1/DS2 network.

:func:`population_forward` runs ``M`` networks at once on stacked parameters ``[M, ...]`` with
batched matmuls (``torch.bmm`` / ``torch.baddbmm``): a hand-written cell, since ``torch.func.vmap``
has no batching rule for ``nn.GRU`` / ``nn.LSTM``. The generator trains with it and
:func:`weightzoo.evaluate` runs stored rows with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from weightzoo.architectures import gru_bptt, wavefront
from weightzoo.features import layout_of
from weightzoo.storage.layout import Layout


@dataclass(frozen=True)
class NetConfig:
    """Shape of an MLDS network.

    Attributes:
        cell: ``"gru"`` or ``"lstm"``.
        input_size: input lines per step.
        hidden: width of every recurrent and linear layer.
        layers: stacked recurrent layers.
        linear_layers: ``hidden -> hidden`` linear layers after the recurrent stack.
        output_size: output lines per step (the final ``hidden -> output`` layer).
    """

    cell: str = "gru"
    input_size: int = 9
    hidden: int = 12
    layers: int = 4
    linear_layers: int = 4
    output_size: int = 8

    @property
    def gates(self) -> int:
        """Gate blocks per recurrent layer (3 for GRU, 4 for LSTM)."""
        return {"gru": 3, "lstm": 4}[self.cell]


DS1_NET = NetConfig()  # 4,364 parameters
DS3_NET = NetConfig(cell="lstm", input_size=4, hidden=64, layers=4, linear_layers=2, output_size=14)


def net_config(subset: str) -> NetConfig:
    """The network shape of an MLDS subset (``"ds1"``, ``"ds2"``: GRU; ``"ds3"``: LSTM)."""
    return DS3_NET if subset == "ds3" else DS1_NET


class MLDSNet(nn.Module):
    """The network as a plain module: ``rnn`` (nn.GRU/nn.LSTM), ``linears``, ``out``.

    Args:
        config: the network's shape.
    """

    def __init__(self, config: NetConfig = DS1_NET) -> None:
        super().__init__()
        if config.cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', got {config.cell!r}")
        rnn = nn.GRU if config.cell == "gru" else nn.LSTM
        self.config = config
        self.rnn = rnn(config.input_size, config.hidden, config.layers, batch_first=True)
        self.linears = nn.Sequential(
            *[nn.Linear(config.hidden, config.hidden) for _ in range(config.linear_layers)]
        )
        self.out = nn.Linear(config.hidden, config.output_size)

    def forward(self, x: Tensor) -> Tensor:
        """Outputs ``[batch, steps, output_size]`` for inputs ``[batch, steps, input_size]``."""
        hidden, _ = self.rnn(x)
        return self.out(self.linears(hidden))


def network_inputs(bits: Tensor, signed: bool = True) -> Tensor:
    """What an MLDS network reads for input lines ``bits`` (0/1, any shape): float32.

    Zoos whose spec has ``signed_inputs`` (DS1 and DS2) drive a line at -1 (low) or +1 (high);
    the others (DS3's one-hot symbols) at 0 or 1. Feed a rebuilt network through this.
    """
    x = torch.as_tensor(bits).float()
    return x * 2 - 1 if signed else x


INITS = ("default", "orthogonal")


def initialise_(net: MLDSNet, scheme: str = "orthogonal") -> MLDSNet:
    """Re-initialise ``net`` in place by ``scheme`` (from the global torch random state).

    ``"default"`` keeps PyTorch's initialisation. ``"orthogonal"`` (weightzoo's choice; the MLDS
    paper names none) draws an orthogonal matrix for every ``hidden x hidden`` block: each gate
    block of the recurrent weights, each gate block of the input weights of layers 1 and up,
    and each linear layer of the stack (with zero bias). The input weights of layer 0 and the
    output layer keep PyTorch's initialisation. With PyTorch's initialisation the four linear
    layers without activations shrink the signal about fourfold each way and most machines
    stall; with orthogonal blocks signals and gradients keep their scale through the stack.

    Raises:
        ValueError: for an unknown scheme.
    """
    if scheme not in INITS:
        raise ValueError(f"MLDS init must be one of {', '.join(INITS)}; got {scheme!r}")
    if scheme == "default":
        return net
    h = net.config.hidden
    with torch.no_grad():
        for name, tensor in net.named_parameters():
            if name.startswith("linears.") and name.endswith(".weight"):
                nn.init.orthogonal_(tensor)
            elif name.startswith("linears.") and name.endswith(".bias"):
                tensor.zero_()
            elif "weight_hh" in name or ("weight_ih" in name and not name.endswith("_l0")):
                for block in tensor.split(h, dim=0):
                    nn.init.orthogonal_(block)
    return net


def _lstm_layer(x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> Tensor:
    # Layer by layer: at DS3's width (64) the wavefront's per-step input products cost more
    # than its fewer steps save (docs/mlds.md). Input projections of all steps in one bmm.
    m, b, steps, width = x.shape
    h_size = w_hh.shape[2]
    bias = (b_ih + b_hh)[:, None]
    gi = torch.baddbmm(bias, x.reshape(m, b * steps, width), w_ih.transpose(1, 2))
    # Unbind once: indexing ``gi[:, :, t]`` in the loop would make autograd write a zero
    # tensor of the whole ``gi`` per step (quadratic in the steps).
    gi = gi.reshape(m, b, steps, 4 * h_size).unbind(2)
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


def _recurrent(config: NetConfig, params: dict[str, Tensor], x: Tensor, bptt: bool) -> Tensor:
    layers = [
        tuple(
            params[f"rnn.{kind}_l{layer}"]
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )
        for layer in range(config.layers)
    ]
    if config.cell == "lstm":
        hidden = x
        for layer in layers:
            hidden = _lstm_layer(hidden, *layer)
        return hidden
    weight, bias = wavefront.pack_gru(layers, max(config.input_size, config.hidden))
    stack = gru_bptt.gru_stack_bptt if bptt else wavefront.gru_stack
    return stack(x, weight, bias, config.hidden)


def population_forward(
    config: NetConfig, params: dict[str, Tensor], x: Tensor, *, bptt: bool = False
) -> Tensor:
    """Run ``M`` networks at once.

    A GRU stack runs by wavefronts (:mod:`weightzoo.architectures.wavefront`): all cells with
    ``layer + step = k`` in one batched step, ``layers + steps - 1`` steps in all. An LSTM
    stack runs layer by layer, one batched step per time step.

    Args:
        config: the networks' shape.
        params: stacked parameters ``{name: [M, ...]}`` named as in :func:`layout`.
        x: inputs ``[M, batch, steps, input_size]`` (each network its own batch).
        bptt: run a GRU stack with the hand-written backward pass
            (:func:`~weightzoo.architectures.gru_bptt.gru_stack_bptt`): the same values and
            gradients, faster to train, but first-order only and not under ``torch.func``
            transforms. False: plain autograd arithmetic (any transform, any order).

    Returns:
        Outputs ``[M, batch, steps, output_size]``.
    """
    hidden = _recurrent(config, params, x, bptt)
    m, b, steps, h_size = hidden.shape
    flat = hidden.reshape(m, b * steps, h_size)
    for index in range(config.linear_layers):
        weight, bias = params[f"linears.{index}.weight"], params[f"linears.{index}.bias"]
        flat = torch.baddbmm(bias[:, None], flat, weight.transpose(1, 2))
    out = torch.baddbmm(params["out.bias"][:, None], flat, params["out.weight"].transpose(1, 2))
    return out.reshape(m, b, steps, config.output_size)


def layout(config: NetConfig) -> Layout:
    """Layout of a flattened network (:func:`weightzoo.features.layout_of` of an MLDSNet)."""
    return layout_of(MLDSNet(config))


def num_params(config: NetConfig) -> int:
    """Trainable parameters of a network."""
    return layout(config).num_params
