"""weightzoo.stacked: many sequential image nets at once give each net's own outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from weightzoo import stacked
from weightzoo.architectures.image import (
    ResNet18,
    SeqNet,
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
    # a first conv with a bias and no pool right after it: activation, then the pool
    "conv act pool": (
        lambda: SeqNet(
            nn.Conv2d(2, 3, 3, padding=1),
            nn.LeakyReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(3 * 4 * 4, 10),
        ),
        (2, 8, 8),
    ),
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


def _ties(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Values of mixed magnitudes with many exact ties, where an order change would show."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen) * 10.0 ** torch.randint(-4, 5, shape, generator=gen)
    return torch.where(torch.rand(shape, generator=gen) < 0.3, x.round(), x)


@pytest.mark.parametrize("seed", range(5))
def test_bias_after_the_pool_is_bit_for_bit_the_bias_before(seed):
    # The stacked first layer adds its bias after the 2x2 max-pool: rounding x + b is monotone
    # in x, so the pool picks the same value either way.
    x = _ties((4, 6, 10, 10), seed)
    bias = _ties((6,), seed + 100)[:, None, None]
    before = F.max_pool2d(x + bias, 2)
    after = F.max_pool2d(x, 2) + bias
    assert torch.equal(before, after)


@pytest.mark.parametrize(
    "activation", [nn.Tanh(), nn.Sigmoid(), nn.ReLU(), nn.LeakyReLU(), nn.Identity()]
)
def test_pool_then_monotone_activation_is_activation_then_pool(activation):
    # The CNNs pool before their activation, so that it runs on a quarter of the values: for
    # a monotone activation that is the other order exactly.
    x = _ties((4, 6, 10, 10), 0)
    assert torch.equal(activation(F.max_pool2d(x, 2)), F.max_pool2d(activation(x), 2))


def test_gelu_is_not_monotone_and_does_not_commute_with_the_pool():
    x = torch.tensor([[[[-1.0, -0.5], [-3.0, -2.0]]]])  # GELU(-3) ~ -0.004 > GELU(-0.5) ~ -0.15
    assert not torch.equal(F.gelu(F.max_pool2d(x, 2)), F.max_pool2d(F.gelu(x), 2))


def test_the_inputs_are_never_written_to():
    # An activation straight on the inputs runs out of place; later ones run in place.
    net = SeqNet(nn.Flatten(), nn.Tanh(), nn.Linear(16, 3), nn.Tanh(), nn.Linear(3, 2)).eval()
    _, params = _population(lambda: net, 2)
    x = torch.rand(5, 1, 4, 4)
    kept = x.clone()
    with torch.no_grad():
        out = stacked.forward(net, params, x)
        torch.testing.assert_close(out[0], net(x))
    assert torch.equal(x, kept)
