"""weightzoo.stacked: many sequential image nets at once give each net's own outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from weightzoo import stacked
from weightzoo.architectures.image import (
    ResNet18,
    cnn_medium,
    cnn_small,
    trajectory_cnn,
    trajectory_mlp,
)
from weightzoo.features import flatten, layout_of, unflatten

ARCHS = {
    "cnn-s": (lambda: cnn_small(1, 10, activation="tanh"), (1, 28, 28)),
    "cnn-s relu rgb": (lambda: cnn_small(3, 10, activation="relu"), (3, 28, 28)),
    "cnn-m": (lambda: cnn_medium(3, 10, activation="gelu"), (3, 32, 32)),
    # stride-2 padded convs and max-pools on odd sizes (7 -> 3), no biases
    "trajectory cnn": (lambda: trajectory_cnn(1, (16, 8), 10, size=14, bias=False), (1, 14, 14)),
    "trajectory mlp": (lambda: trajectory_mlp(196, 10, 10, activation="sigmoid"), (1, 14, 14)),
}


def _population(make, models: int):
    nets = []
    for seed in range(models):
        torch.manual_seed(seed)
        nets.append(make().eval())
    layout = layout_of(nets[0])
    rows = torch.stack([flatten(net, layout) for net in nets])
    return nets, unflatten(rows, layout)


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("shared", [True, False], ids=["shared inputs", "own inputs"])
def test_each_model_gets_its_own_outputs(name, shared):
    make, shape = ARCHS[name]
    nets, params = _population(make, 3)
    assert stacked.supports(nets[0])
    torch.manual_seed(99)
    x = torch.rand(5, *shape) if shared else torch.rand(3, 5, *shape)
    with torch.no_grad():
        out = stacked.forward(nets[0], params, x)
        alone = torch.stack([net(x if shared else x[m]) for m, net in enumerate(nets)])
    assert out.shape == alone.shape == (3, 5, 10)
    torch.testing.assert_close(out, alone, rtol=1e-5, atol=1e-6)


def test_only_eval_mode_sequential_nets_are_taken():
    assert not stacked.supports(ResNet18(3, 10).eval())  # BatchNorm, residuals: vmap's job
    assert not stacked.supports(cnn_small().train())  # dropout would draw random numbers
    odd = cnn_small().eval()
    odd.module_list[0].padding_mode = "reflect"
    assert not stacked.supports(odd)
    assert not stacked.supports(nn.Sequential(nn.Linear(2, 2)).eval())  # not a SeqNet
