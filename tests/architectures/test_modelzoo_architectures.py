"""Parameter counts and shapes of the Model Zoos and trajectory architectures."""

from __future__ import annotations

import pytest
import torch

from weightzoo.architectures.image import (
    INITS,
    RateDropout,
    ResNet18,
    cnn_medium,
    cnn_small,
    init_weights,
    num_params,
    trajectory_cnn,
    trajectory_mlp,
)


def test_cnn_small_counts_match_table_4():
    assert num_params(cnn_small(1)) == 2464
    assert num_params(cnn_small(3)) == 2864


def test_cnn_medium_count_matches_table_4():
    assert num_params(cnn_medium(3)) == 10853


@pytest.mark.parametrize(
    ("classes", "count"), [(10, 11_173_962), (100, 11_220_132), (200, 11_271_432)]
)
def test_resnet18_counts(classes, count):
    n = num_params(ResNet18(3, classes))
    assert n == count
    assert 11.15e6 <= n <= 11.3e6  # "11.2M-11.3M" in the paper, 11.17M rounds to 11.2M


def test_trajectory_counts_and_paper_weight_space_sizes():
    assert num_params(trajectory_mlp()) == 2190
    assert num_params(trajectory_cnn()) == 1410
    # the paper's weight-space sizes (2160, 1376) are the same nets without biases
    assert num_params(trajectory_mlp(bias=False)) == 2160
    assert num_params(trajectory_cnn(bias=False)) == 1376


@pytest.mark.parametrize(
    ("net", "shape"),
    [
        (cnn_small(1), (2, 1, 28, 28)),
        (cnn_small(3), (2, 3, 28, 28)),
        (cnn_medium(3), (2, 3, 32, 32)),
        (trajectory_mlp(), (2, 1, 14, 14)),
        (trajectory_cnn(), (2, 1, 14, 14)),
    ],
)
def test_forward_shapes(net, shape):
    assert net(torch.rand(shape)).shape == (2, 10)


def test_resnet18_forward_small_image():
    net = ResNet18(3, 10).eval()
    assert net(torch.rand(1, 3, 32, 32)).shape == (1, 10)


def test_cnn_small_parameter_names_follow_published_indices():
    names = [n for n, _ in cnn_small(1).named_parameters()]
    indices = sorted({int(n.split(".")[1]) for n in names})
    assert indices == [0, 4, 8, 11, 14]
    assert all(n.startswith("module_list.") for n in names)


@pytest.mark.parametrize("method", INITS)
def test_inits_are_seeded_and_differ(method):
    torch.manual_seed(3)
    a = cnn_small(1)
    init_weights(a, method)
    torch.manual_seed(3)
    b = cnn_small(1)
    init_weights(b, method)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_init_scales():
    net = cnn_small(1)
    init_weights(net, "uniform")
    w = net.module_list[0].weight
    assert w.abs().max() <= 1 / 25**0.5 + 1e-7
    assert torch.count_nonzero(net.module_list[0].bias) == 0
    with pytest.raises(ValueError, match="unknown init"):
        init_weights(net, "xavier")


def test_rate_dropout_identity_at_zero_and_in_eval():
    x = torch.rand(4, 8)
    layer = RateDropout(0.0).train()
    assert torch.equal(layer(x), x)
    layer = RateDropout(0.5).eval()
    assert torch.equal(layer(x), x)
    layer.train()
    out = layer(torch.ones(1000))
    assert set(out.unique().tolist()) <= {0.0, 2.0}
