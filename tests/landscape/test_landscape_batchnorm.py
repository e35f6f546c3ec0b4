"""BatchNorm statistics re-estimated along mode-connectivity paths, against update_bn."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F
from torch.optim.swa_utils import update_bn

from weightzoo import landscape
from weightzoo.landscape.batchnorm import batch_statistics, reestimate_bn

M = 3


def bn_net() -> nn.Module:
    """A conv + BatchNorm2d layer and a linear + BatchNorm1d layer, in float64."""
    return nn.Sequential(
        nn.Conv2d(2, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 6),
        nn.BatchNorm1d(6),
        nn.Tanh(),
        nn.Linear(6, 3),
    ).double()


def stacked(nets: list[nn.Module]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([n.state_dict()[k] for n in nets]) for k in nets[0].state_dict()}


def model(state: dict[str, torch.Tensor], i: int) -> nn.Module:
    net = bn_net()
    net.load_state_dict({k: v[i] for k, v in state.items()})
    return net.eval()


@pytest.fixture
def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20, 2, 6, 6, generator=gen, dtype=torch.float64) * 2 + 0.5
    y = torch.randint(0, 3, (20,), generator=gen)
    return [(x[:12], y[:12]), (x[12:], y[12:])]  # unequal sizes: update_bn averages per batch


def endpoints(seed: int) -> dict[str, torch.Tensor]:
    """``M`` random networks whose stored running statistics are arbitrary (not their own)."""
    nets = []
    for i in range(M):
        torch.manual_seed(seed + i)
        net = bn_net()
        for layer in net.modules():
            if isinstance(layer, nn.BatchNorm2d | nn.BatchNorm1d):
                layer.running_mean.uniform_(-1, 1)
                layer.running_var.uniform_(0.5, 2)
                layer.weight.data.uniform_(0.5, 1.5)
                layer.bias.data.uniform_(-0.5, 0.5)
        nets.append(net)
    return stacked(nets)


def updated(net: nn.Module, batches) -> nn.Module:
    """torch's own re-estimation: update_bn on a copy, then eval mode."""
    net = copy.deepcopy(net)
    update_bn([x for x, _ in batches], net)
    return net.eval()


@pytest.mark.parametrize("vectorize", [True, False], ids=["vmap", "loop"])
def test_reestimated_statistics_are_update_bns(batches, vectorize):
    state = endpoints(0)
    module = bn_net().eval()
    params = {k: v for k, v in state.items() if k in dict(module.named_parameters())}
    buffers = {k: v for k, v in state.items() if k not in params}
    out = reestimate_bn(module, params, buffers, batches, vectorize=vectorize)
    for i in range(M):
        expected = updated(model(state, i), batches).state_dict()
        for name in buffers:
            torch.testing.assert_close(out[name][i], expected[name], rtol=1e-10, atol=1e-12)
        assert not torch.equal(out["1.running_var"][i], state["1.running_var"][i])
    # The input dict is left alone and the module's flags come back.
    assert torch.equal(buffers["1.running_mean"], state["1.running_mean"])
    assert all(not m.training for m in module.modules())
    assert module[1].track_running_stats and module[5].track_running_stats


def test_batch_statistics_restores_each_layers_mode():
    net = bn_net().train()
    with batch_statistics(net) as layers:
        assert [name for name, _ in layers] == ["1", "5"]
        assert not net[1].track_running_stats and net[1].training
    assert net[1].training and net[5].training and net[1].track_running_stats


def path_loss(state_a, state_b, t: float, i: int, batches) -> float:
    """Loss of the plain module at ``(1 - t) a + t b``, statistics re-estimated by update_bn."""
    net = bn_net()
    mixed = {}
    for k in state_a:
        if k.endswith("num_batches_tracked"):
            mixed[k] = state_a[k][i]
        else:
            mixed[k] = (1 - t) * state_a[k][i] + t * state_b[k][i]
    net.load_state_dict(mixed)
    net = updated(net, batches)
    with torch.no_grad():
        losses = [F.cross_entropy(net(x), y, reduction="sum") for x, y in batches]
    return float(sum(losses) / sum(len(x) for x, _ in batches))


def test_linear_path_is_update_bn_at_every_t_including_the_endpoints(batches):
    a, b = endpoints(0), endpoints(10)
    module = bn_net()
    options = landscape.LandscapeOptions(points=5, steps=0)
    result = landscape.mode_connectivity(module, a, b, batches, F.cross_entropy, options=options)
    for j, t in enumerate(result.t):
        for i in range(M):
            expected = path_loss(a, b, float(t), i, batches)
            np.testing.assert_allclose(result.linear_loss[i, j], expected, rtol=1e-10)
    # steps=0: the curve is the linear path, statistics and all.
    np.testing.assert_allclose(result.curve_loss, result.linear_loss, rtol=1e-12)
    # The endpoints are the models with re-estimated statistics, not with the stored ones.
    stored = bn_net()
    stored.load_state_dict({k: v[0] for k, v in a.items()})
    with torch.no_grad():
        x, y = torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])
        stored_loss = F.cross_entropy(stored.eval()(x), y).item()
    assert abs(result.linear_loss[0, 0] - stored_loss) > 1e-3
    off = landscape.mode_connectivity(
        bn_net(), a, b, batches, F.cross_entropy,
        options=landscape.LandscapeOptions(points=5, steps=0, bn_update=False),
    )  # fmt: skip
    np.testing.assert_allclose(off.linear_loss[0, 0], stored_loss, rtol=1e-10)


def scaled_twin(state: dict[str, torch.Tensor], factor: float) -> dict[str, torch.Tensor]:
    """The same functions: the conv before BatchNorm and its statistics scaled by ``factor``."""
    twin = {k: v.clone() for k, v in state.items()}
    twin["0.weight"] *= factor
    twin["0.bias"] *= factor
    twin["1.running_mean"] *= factor
    twin["1.running_var"] *= factor**2
    return twin


def test_interpolated_statistics_move_a_flat_path_and_reestimation_keeps_it_flat(batches):
    # b is a with its first layer scaled by 10: BatchNorm makes it the same function, and so is
    # every point of the linear path, whose first layer is a's scaled by 1 + 9t. Its batch
    # variance grows as (1 + 9t)^2; the straight line between the stored variances as 1 + 99t.
    a = endpoints(0)
    module = bn_net().eval()
    for i in range(M):  # a's own statistics, so that both endpoints are right
        fitted = updated(model(a, i), batches).state_dict()
        for k in ("1.running_mean", "1.running_var", "5.running_mean", "5.running_var"):
            a[k][i] = fitted[k]
    a["7.weight"] *= 4  # confident outputs: a change of scale shows in the loss
    b = scaled_twin(a, 10.0)
    x = torch.cat([x for x, _ in batches])
    with torch.no_grad():
        same = [functional_call(module, {k: v[i] for k, v in s.items()}, (x,)) for s in (a, b)]
    torch.testing.assert_close(same[0], same[1], rtol=1e-3, atol=1e-4)  # BatchNorm's eps

    linear = landscape.LandscapeOptions(steps=0)
    on = landscape.mode_connectivity(module, a, b, batches, F.cross_entropy, options=linear)
    off = landscape.mode_connectivity(
        module, a, b, batches, F.cross_entropy, options=linear.replace(bn_update=False)
    )
    flat = np.abs(on.linear_loss - on.linear_loss[:, :1])
    assert flat.max() < 1e-4, flat.max()
    assert (on.linear_barrier < 1e-4).all()
    # Interpolated statistics shrink the normalised activations between the endpoints: the
    # loss moves (up or down, depending on the model) although the function does not.
    moved = np.abs(off.linear_loss - off.linear_loss[:, :1]).max(1)
    assert (moved > 1e-2).all(), moved
    # Both agree at the endpoints, where the stored statistics are the re-estimated ones.
    np.testing.assert_allclose(off.linear_loss[:, [0, -1]], on.linear_loss[:, [0, -1]], rtol=1e-4)


def test_the_curve_trains_on_batch_statistics_under_vmap_and_in_a_loop(batches):
    a, b = endpoints(0), endpoints(10)
    module = bn_net().train()
    options = landscape.LandscapeOptions(points=3, steps=5, lr=0.05)
    results = [
        landscape.mode_connectivity(
            module, a, b, batches, F.cross_entropy, options=options.replace(vectorize=v)
        )
        for v in (True, False)
    ]
    for result in results:
        assert np.isfinite(result.curve_loss).all()
        assert not np.allclose(result.curve_loss[:, 1], result.linear_loss[:, 1])
    np.testing.assert_allclose(results[0].curve_loss, results[1].curve_loss, rtol=1e-8)
    for k in results[0].control:
        torch.testing.assert_close(results[0].control[k], results[1].control[k])
    # The caller's modes and flags are back.
    assert all(m.training for m in module.modules())
    assert module[1].track_running_stats and module[5].track_running_stats


def test_auto_turns_reestimation_on_for_batchnorm_only(batches):
    a, b = endpoints(0), endpoints(10)
    options = landscape.LandscapeOptions(points=3, steps=0)
    auto = landscape.mode_connectivity(bn_net(), a, b, batches, F.cross_entropy, options=options)
    on = landscape.mode_connectivity(
        bn_net(), a, b, batches, F.cross_entropy, options=options.replace(bn_update=True)
    )
    np.testing.assert_array_equal(auto.linear_loss, on.linear_loss)
    metrics = landscape.landscape_metrics(
        bn_net(), a, batches, F.cross_entropy, ["linear_barrier"], partners=b, options=options
    )
    np.testing.assert_allclose(metrics["linear_barrier"], auto.linear_barrier, rtol=1e-12)
    off = landscape.landscape_metrics(
        bn_net(),
        a,
        batches,
        F.cross_entropy,
        ["linear_barrier"],
        partners=b,
        options=options.replace(bn_update=False),
    )
    assert not np.allclose(off["linear_barrier"], auto.linear_barrier)
