"""MLDS networks: a stacked GRU/LSTM, linear layers without activations, an output layer.

:class:`MLDSNet` is the plain ``nn.Module`` (parameter names as ``nn.GRU`` / ``nn.LSTM`` give
them, e.g. ``rnn.weight_ih_l0``), used to initialise each network and to rebuild a stored row.
A 4-layer GRU of width 12 on 9 input lines, 4 linear 12->12 layers and a 12->8 output has the
published 4,364 parameters of a DS1/DS2 network.

:func:`population_forward` runs ``M`` networks at once on stacked parameters ``[M, ...]`` with
batched matmuls (``torch.bmm`` / ``torch.baddbmm``): a hand-written cell, since ``torch.func.vmap``
has no batching rule for ``nn.GRU`` / ``nn.LSTM``. The generator trains with it and
:func:`weightzoo.evaluate` runs stored rows with it, both measuring with :func:`masked_mse` and
:func:`masked_bit_hits`. The shapes (:class:`~weightzoo.families.mlds.spec.NetConfig`) and
their parameter count live in the torch-free :mod:`.spec`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from weightzoo.families.mlds import gru_bptt, wavefront
from weightzoo.families.mlds.spec import DS1_NET, NetConfig
from weightzoo.features import layout_of
from weightzoo.storage.layout import Layout

__all__ = [
    "INITS",
    "MLDSNet",
    "init_population",
    "initialise_",
    "layout",
    "masked_bit_hits",
    "masked_mse",
    "network_inputs",
    "population_forward",
]


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

    A GRU stack runs by wavefronts (:mod:`weightzoo.families.mlds.wavefront`): all cells with
    ``layer + step = k`` in one batched step, ``layers + steps - 1`` steps in all. An LSTM
    stack runs layer by layer, one batched step per time step.

    Args:
        config: the networks' shape.
        params: stacked parameters ``{name: [M, ...]}`` named as in :func:`layout`.
        x: inputs ``[M, batch, steps, input_size]`` (each network its own batch).
        bptt: run a GRU stack with the hand-written backward pass
            (:func:`~weightzoo.families.mlds.gru_bptt.gru_stack_bptt`): the same values and
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


def init_population(
    config: NetConfig, seeds: list[int], device: str = "cpu", init: str = "default"
) -> dict[str, Tensor]:
    """Stacked initial parameters ``{name: [M, ...]}``.

    Network ``m`` is built as ``MLDSNet`` under ``torch.manual_seed(seeds[m])`` and initialised
    by :func:`initialise_` with ``init``, without touching the global random state.
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


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-network sum of masked squared errors and the count of terms, each ``[M]``.

    ``pred`` and ``target`` are ``[M, B, steps, lines]``, ``mask`` ``[M, B, steps]``: the loss
    of training and of every stored metric (each network's mean squared error is the ratio).
    """
    err = ((pred - target) ** 2).sum(dim=-1) * mask
    return err.sum(dim=(1, 2)), mask.sum(dim=(1, 2)) * pred.shape[-1]


def masked_bit_hits(pred: Tensor, target: Tensor, mask: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
    """Per-network ``(hits, count)`` of the rounded outputs, each ``[M]``.

    ``bit_accuracy``: output lines that, rounded at 0.5, equal the target bit.
    ``symbol_accuracy``: steps whose rounded output vector equals the target vector whole (for
    DS3: the emitted symbol, or silence, is right).
    """
    right = (pred > 0.5) == (target > 0.5)
    lines = (right.float().sum(dim=-1) * mask).sum(dim=(1, 2))
    steps = (right.all(dim=-1).float() * mask).sum(dim=(1, 2))
    terms = mask.sum(dim=(1, 2))
    return {"bit_accuracy": (lines, terms * pred.shape[-1]), "symbol_accuracy": (steps, terms)}
