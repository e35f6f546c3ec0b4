"""The wavefront GRU stack and its hand-written backward against nn.GRU and a layer-wise cell."""

import pytest
import torch
from torch import nn

from weightzoo.families.mlds import gru_bptt, wavefront
from weightzoo.families.mlds.model import MLDSNet, init_population, population_forward
from weightzoo.families.mlds.spec import DS1_NET, NetConfig

WIDE_INPUT = NetConfig(input_size=7, hidden=5, layers=3, linear_layers=1, output_size=3)


def layerwise_gru(config: NetConfig, params: dict, x: torch.Tensor) -> torch.Tensor:
    """The population cell one layer and one step at a time, as nn.GRU's equations read."""
    hidden = x
    for layer in range(config.layers):
        w_ih, w_hh, b_ih, b_hh = (
            params[f"rnn.{kind}_l{layer}"]
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )
        h = x.new_zeros(x.shape[0], x.shape[1], config.hidden)
        outs = []
        for t in range(x.shape[2]):
            gi = torch.baddbmm(b_ih[:, None], hidden[:, :, t], w_ih.transpose(1, 2))
            gh = torch.baddbmm(b_hh[:, None], h, w_hh.transpose(1, 2))
            i_r, i_z, i_n = gi.chunk(3, dim=-1)
            h_r, h_z, h_n = gh.chunk(3, dim=-1)
            r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
            n = torch.tanh(i_n + r * h_n)
            h = (1 - z) * n + z * h
            outs.append(h)
        hidden = torch.stack(outs, dim=2)
    m, b, steps, width = hidden.shape
    flat = hidden.reshape(m, b * steps, width)
    for index in range(config.linear_layers):
        w, bias = params[f"linears.{index}.weight"], params[f"linears.{index}.bias"]
        flat = torch.baddbmm(bias[:, None], flat, w.transpose(1, 2))
    out = torch.baddbmm(params["out.bias"][:, None], flat, params["out.weight"].transpose(1, 2))
    return out.reshape(m, b, steps, config.output_size)


def _grads(forward, params: dict, x: torch.Tensor, y: torch.Tensor):
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    out = forward(leaves, x)
    ((out - y) ** 2).mean(dim=(1, 2, 3)).sum().backward()
    return out.detach(), {k: v.grad for k, v in leaves.items()}


@pytest.mark.parametrize("config", [DS1_NET, WIDE_INPUT], ids=["ds1", "input-wider-than-hidden"])
@pytest.mark.parametrize("steps", [1, 2, 9])
def test_values_and_gradients_equal_the_layerwise_cell(config, steps):
    torch.manual_seed(0)
    params = init_population(config, [5, 6, 7], init="orthogonal")
    x = torch.randn(3, 4, steps, config.input_size)
    y = torch.rand(3, 4, steps, config.output_size)
    ref_out, ref = _grads(lambda p, x: layerwise_gru(config, p, x), params, x, y)
    for bptt in (False, True):
        forward = lambda p, x, bptt=bptt: population_forward(config, p, x, bptt=bptt)  # noqa: E731
        out, got = _grads(forward, params, x, y)
        torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)
        for name in ref:
            torch.testing.assert_close(got[name], ref[name], atol=1e-6, rtol=1e-4, msg=name)


def test_bptt_gradients_equal_nn_gru_per_network():
    seeds = [11, 12]
    params = init_population(DS1_NET, seeds)
    x = torch.randn(2, 3, 6, DS1_NET.input_size)
    _, got = _grads(lambda p, x: population_forward(DS1_NET, p, x, bptt=True), params, x, 0.0)
    for m, seed in enumerate(seeds):
        torch.manual_seed(seed)
        net = MLDSNet(DS1_NET)
        assert isinstance(net.rnn, nn.GRU)
        ((net(x[m]) - 0.0) ** 2).mean().backward()
        for name, tensor in net.named_parameters():
            torch.testing.assert_close(got[name][m], tensor.grad, atol=1e-6, rtol=1e-4, msg=name)


@pytest.mark.parametrize(
    ("layers", "steps", "size", "hidden", "fast"), [(2, 3, 3, 2, False), (3, 2, 4, 3, True)]
)
def test_hand_written_backward_passes_gradcheck(layers, steps, size, hidden, fast):
    gen = torch.Generator().manual_seed(1)
    m = 2

    def draw(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    stack = [
        (
            draw(m, 3 * hidden, size if i == 0 else hidden),
            draw(m, 3 * hidden, hidden),
            draw(m, 3 * hidden),
            draw(m, 3 * hidden),
        )
        for i in range(layers)
    ]
    weight, bias = wavefront.pack_gru(stack, max(size, hidden))
    x = draw(m, 2, steps, size).requires_grad_(True)
    weight.requires_grad_(True)
    bias.requires_grad_(True)

    def run(x, weight, bias):
        return gru_bptt.gru_stack_bptt(x, weight, bias, hidden)

    # fast mode (random projections of the Jacobian) for the larger stack: fewer steps than layers
    assert torch.autograd.gradcheck(run, (x, weight, bias), fast_mode=fast)
    torch.testing.assert_close(run(x, weight, bias), wavefront.gru_stack(x, weight, bias, hidden))


def test_bptt_is_first_order_and_saves_nothing_without_gradients():
    params = {k: v.requires_grad_(True) for k, v in init_population(DS1_NET, [1]).items()}
    x = torch.randn(1, 2, 3, DS1_NET.input_size)
    with torch.no_grad():
        out = population_forward(DS1_NET, params, x, bptt=True)
    assert out.grad_fn is None
    loss = population_forward(DS1_NET, params, x, bptt=True).square().sum()
    (grad,) = torch.autograd.grad(loss, params["rnn.weight_hh_l0"], create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad.sum().backward()


def test_autograd_wavefront_composes_with_torch_func():
    params = init_population(DS1_NET, [3])
    one = {k: v[0] for k, v in params.items()}
    x = torch.randn(2, 4, DS1_NET.input_size)

    def loss(p):
        batched = {k: v[None] for k, v in p.items()}
        return population_forward(DS1_NET, batched, x[None]).square().mean()

    # forward-over-reverse Hessian-vector product, as the landscape code takes it
    tangent = {k: torch.ones_like(v) for k, v in one.items()}
    _, hvp = torch.func.jvp(torch.func.grad(loss), (one,), (tangent,))
    assert all(torch.isfinite(v).all() for v in hvp.values())
