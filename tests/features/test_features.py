"""Tests for weightzoo.features: layouts, flatten/unflatten, statistics presets, tokens."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from weightzoo import features
from weightzoo.errors import LayoutError
from weightzoo.escaping import exception_summary
from weightzoo.features import (
    PRESETS,
    detokenize,
    flatten,
    flatten_many,
    layer_statistics,
    layer_statistics_numpy,
    layout_of,
    load_vector,
    statistics_names,
    tokenize,
    unflatten,
)


def small_cnn(dropout: bool) -> nn.Sequential:
    """CNN-s like net: conv/linear indices 0,4,8 with dropout and 0,3,6 without."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(1, 3, 3), nn.Tanh(), nn.MaxPool2d(2)]
    if dropout:
        layers.append(nn.Dropout(0.5))
    layers += [nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten()]
    if dropout:
        layers.append(nn.Dropout(0.5))
    layers.append(nn.Linear(16, 5))
    return nn.Sequential(*layers)


class GRUNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(3, 4, num_layers=2, batch_first=True)
        self.head = nn.Linear(4, 1)  # 1-element bias: unbiased variance is NaN

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def bn_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 4)
    )


def trained_bn_net(seed: int) -> nn.Sequential:
    """A BatchNorm net whose running statistics moved away from their defaults."""
    torch.manual_seed(seed)
    net = bn_net()
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(8, 1, 8, 8) * 3 + 1)
    return net.eval()


# --------------------------------------------------------------------------------------------
# layout_of / flatten / unflatten / load_vector
# --------------------------------------------------------------------------------------------


def test_layout_of_keeps_float_buffers_and_skips_num_batches_tracked():
    net = trained_bn_net(0)
    layout = layout_of(net)
    assert "1.running_mean" in layout and "1.running_var" in layout
    assert "1.num_batches_tracked" not in layout
    assert "1.num_batches_tracked" in net.state_dict()
    assert layout.num_params == sum(p.numel() for p in net.parameters()) + 2 * 3
    assert layout_of(net.state_dict()) == layout


def test_layout_of_sort_orders_indices_naturally():
    net = nn.Sequential(*[nn.Linear(2, 2) for _ in range(12)])
    shuffled = list(net.state_dict().items())
    random.Random(1).shuffle(shuffled)
    names = layout_of(dict(shuffled), sort=True).names
    assert names.index("11.weight") > names.index("3.weight") > names.index("2.weight")
    assert [n.split(".")[0] for n in names[::2]] == [str(i) for i in range(12)]


def test_dropout_index_shift_gives_same_structure():
    with_dropout = layout_of(small_cnn(True), sort=True)
    without = layout_of(small_cnn(False), sort=True)
    assert [t.layer for t in with_dropout] == ["0", "0", "4", "4", "8", "8"]
    assert [t.layer for t in without] == ["0", "0", "3", "3", "6", "6"]
    assert [t.shape for t in with_dropout] == [t.shape for t in without]


@pytest.mark.parametrize("make", [lambda: small_cnn(True), GRUNet])
def test_flatten_unflatten_round_trip(make):
    net = make()
    layout = layout_of(net, sort=True)
    vector = flatten(net.state_dict(), layout)
    assert vector.dtype == torch.float32 and vector.shape == (layout.num_params,)
    back = unflatten(vector, layout)
    assert list(back) == layout.names
    for name, value in net.state_dict().items():
        assert torch.equal(back[name], value), name
    # the vector really is laid out at the layout's offsets
    spec = layout.tensors[-1]
    assert torch.equal(vector[spec.offset : spec.stop], net.state_dict()[spec.name].reshape(-1))


def test_flatten_looks_up_by_name():
    net = GRUNet()
    layout = layout_of(net)
    items = list(net.state_dict().items())
    random.Random(3).shuffle(items)
    assert [k for k, _ in items] != layout.names
    assert torch.equal(flatten(dict(items), layout), flatten(net.state_dict(), layout))


def test_flatten_many_and_numpy_values():
    nets = [small_cnn(False) for _ in range(3)]
    for i, net in enumerate(nets):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(i)
    layout = layout_of(nets[0])
    matrix = flatten_many([n.state_dict() for n in nets], layout)
    assert matrix.shape == (3, layout.num_params)
    assert torch.equal(matrix[2], flatten(nets[2].state_dict(), layout))
    as_numpy = {k: v.numpy() for k, v in nets[1].state_dict().items()}
    assert torch.equal(flatten(as_numpy, layout), matrix[1])
    assert flatten_many([], layout).shape == (0, layout.num_params)


def test_unflatten_batches_and_returns_views():
    layout = layout_of(small_cnn(True))
    rows = torch.randn(2, 3, layout.num_params)
    parts = unflatten(rows, layout)
    assert parts["4.weight"].shape == (2, 3, 4, 3, 3, 3)
    rows[1, 2, layout["4.weight"].offset] = 123.0
    assert parts["4.weight"][1, 2, 0, 0, 0, 0] == 123.0
    array = np.random.default_rng(0).standard_normal((4, layout.num_params)).astype(np.float32)
    from_numpy = unflatten(array, layout)
    array[3, layout["8.bias"].offset] = -7.0
    assert from_numpy["8.bias"][3, 0] == -7.0
    with pytest.raises(LayoutError, match=str(layout.num_params)):
        unflatten(torch.zeros(layout.num_params + 1), layout)


@pytest.mark.parametrize(
    ("make", "inputs"),
    [
        (lambda: small_cnn(True).eval(), lambda: torch.randn(5, 1, 10, 10)),
        (GRUNet, lambda: torch.randn(5, 6, 3)),
        (lambda: trained_bn_net(1), lambda: torch.randn(5, 1, 8, 8)),
    ],
)
def test_load_vector_reproduces_outputs(make, inputs):
    original = make()
    layout = layout_of(original, sort=True)
    vector = flatten(original.state_dict(), layout)
    fresh = make()
    with torch.no_grad():  # make sure the fresh module starts out different
        for t in fresh.state_dict().values():
            if t.is_floating_point():
                t.normal_()
    fresh.eval()
    x = inputs()
    assert not torch.equal(fresh(x), original(x))
    assert load_vector(fresh, vector.numpy(), layout) is fresh
    assert torch.equal(fresh(x), original(x))


def test_load_vector_errors_and_non_strict():
    net = small_cnn(False)
    layout = layout_of(net)
    vector = flatten(net.state_dict(), layout)
    bigger = nn.Sequential(*small_cnn(False), nn.Linear(5, 2))
    with pytest.raises(LayoutError, match="7.weight"):
        load_vector(bigger, vector, layout)
    load_vector(bigger, vector, layout, strict=False)
    assert torch.equal(bigger[6].weight, net[6].weight)
    with pytest.raises(LayoutError, match="1-D"):
        load_vector(net, vector.unsqueeze(0), layout)


def test_flatten_errors_name_the_tensor():
    net = small_cnn(False)
    layout = layout_of(net)
    state = dict(net.state_dict())
    missing = {k: v for k, v in state.items() if k != "3.bias"}
    with pytest.raises(LayoutError, match="missing.*3.bias"):
        flatten(missing, layout)
    extra = {**state, "9.weight": torch.zeros(2)}
    with pytest.raises(LayoutError, match="unexpected.*9.weight"):
        flatten(extra, layout)
    wrong = {**state, "6.weight": torch.zeros(5, 17)}
    with pytest.raises(LayoutError, match=r"6\.weight.*\(5, 17\)"):
        flatten(wrong, layout)
    with pytest.raises(ValueError, match="missing"):  # LayoutError is also a ValueError
        flatten(missing, layout)


# --------------------------------------------------------------------------------------------
# statistics presets against numpy
# --------------------------------------------------------------------------------------------

CNN_WEIGHT_FIRST = ["0.weight", "0.bias", "4.weight", "4.bias", "8.weight", "8.bias"]
CNN_BIAS_FIRST = ["0.bias", "0.weight", "4.bias", "4.weight", "8.bias", "8.weight"]
GRU_WEIGHT_FIRST = [
    f"rnn.{k}_l{i}" for i in range(2) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
] + ["head.weight", "head.bias"]
GRU_BIAS_FIRST = [
    f"rnn.{k}_l{i}" for i in range(2) for k in ("bias_ih", "bias_hh", "weight_ih", "weight_hh")
] + ["head.bias", "head.weight"]


def numpy_stats(values: np.ndarray, preset: str) -> list[float]:
    pct = np.percentile
    if preset == "modelzoo":
        return [values.mean(), np.var(values), *pct(values, [1, 25, 50, 75, 99])]
    if preset == "unterthiner":
        return [*pct(values, [0, 25, 50, 75, 100]), np.std(values), values.mean()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # ddof=1 of one element
        return [values.mean(), np.var(values, ddof=1), *pct(values, [0, 25, 50, 75, 100])]


def reference(rows: np.ndarray, layout, order: list[str], preset: str) -> np.ndarray:
    out = []
    for row in rows.reshape(-1, rows.shape[-1]).astype(np.float64):
        cols = []
        for name in order:
            spec = layout[name]
            cols.extend(numpy_stats(row[spec.offset : spec.stop], preset))
        out.append(cols)
    return np.asarray(out).reshape(*rows.shape[:-1], -1)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize(
    ("make", "sort", "weight_first", "bias_first"),
    [
        # sorted: biases come before weights in the vector, stats still put weights first
        (lambda: small_cnn(True), True, CNN_WEIGHT_FIRST, CNN_BIAS_FIRST),
        (GRUNet, False, GRU_WEIGHT_FIRST, GRU_BIAS_FIRST),
    ],
)
def test_presets_match_numpy(preset, make, sort, weight_first, bias_first):
    layout = layout_of(make(), sort=sort)
    order = bias_first if preset == "unterthiner" else weight_first
    rng = np.random.default_rng(7)
    rows = (rng.standard_normal((2, 3, layout.num_params)) * rng.uniform(0.1, 3)).astype(np.float32)
    got = layer_statistics(torch.from_numpy(rows), layout, preset)
    expected = reference(rows, layout, order, preset)
    assert got.shape == expected.shape == (2, 3, 7 * len(layout))
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)
    names = statistics_names(layout, preset)
    assert len(names) == got.shape[-1]
    assert names[0].split(":")[0] == order[0]
    if preset == "nfn" and make is GRUNet:
        column = names.index("head.bias:var_unbiased")
        assert np.isnan(got[..., column].numpy()).all()
    # float64 rows keep float64 and match tightly; numpy entry point gives float32
    got64 = layer_statistics(torch.from_numpy(rows.astype(np.float64)), layout, preset)
    assert got64.dtype == torch.float64
    np.testing.assert_allclose(got64.numpy(), expected, rtol=1e-12, atol=1e-12)
    via_numpy = layer_statistics_numpy(rows, layout, preset)
    assert via_numpy.dtype == np.float32
    np.testing.assert_array_equal(via_numpy, got.numpy())


def test_statistics_names_format():
    layout = layout_of(small_cnn(False))
    assert statistics_names(layout)[:7] == [
        f"0.weight:{s}" for s in ("mean", "var", "p1", "p25", "p50", "p75", "p99")
    ]
    assert statistics_names(layout, "unterthiner")[0] == "0.bias:p0"
    assert statistics_names(layout, "nfn")[1] == "0.weight:var_unbiased"
    # every preset's names, in order: manifests store them, so they must not move
    assert statistics_names(layout, "unterthiner")[7:14] == [
        f"0.weight:{s}" for s in ("p0", "p25", "p50", "p75", "p100", "std", "mean")
    ]
    assert statistics_names(layout, "nfn")[:7] == [
        f"0.weight:{s}" for s in ("mean", "var_unbiased", "q0", "q25", "q50", "q75", "q100")
    ]


@given(message=st.text(max_size=300), limit=st.integers(0, 200))
def test_exception_summary_is_the_type_and_the_first_line_cut(message, limit):
    summary = exception_summary(ValueError(message), limit)
    kind, _, reason = summary.partition(": ")
    assert kind == "ValueError"
    assert len(reason) <= limit
    first = (message.strip().splitlines() or [""])[0]
    assert first.startswith(reason)
    assert len(reason.splitlines()) <= 1  # one line, whatever breaks the message holds


def test_statistics_chunking_matches_unchunked(monkeypatch):
    layout = layout_of(small_cnn(True))
    rows = torch.randn(9, layout.num_params)
    whole = layer_statistics(rows, layout, "modelzoo")
    monkeypatch.setattr(features, "_CHUNK_ELEMENTS", 50)  # smaller than the largest tensor
    chunked = layer_statistics(rows, layout, "modelzoo")
    assert torch.equal(whole, chunked)


def test_statistics_nan_and_errors():
    layout = layout_of(small_cnn(False))
    rows = torch.randn(2, layout.num_params)
    rows[1, layout["3.weight"].offset] = float("nan")
    stats = layer_statistics(rows, layout)
    names = statistics_names(layout)
    cols = [i for i, n in enumerate(names) if n.startswith("3.weight:")]
    assert torch.isnan(stats[1, cols]).all() and not torch.isnan(stats[0]).any()
    assert not torch.isnan(stats[1, names.index("0.weight:p99")])
    with pytest.raises(ValueError, match="modelzoo, unterthiner, nfn"):
        layer_statistics(rows, layout, "quintiles")
    with pytest.raises(ValueError, match="valid presets"):
        statistics_names(layout, "bogus")
    with pytest.raises(LayoutError):
        layer_statistics(rows[:, :-1], layout)


# --------------------------------------------------------------------------------------------
# tokens
# --------------------------------------------------------------------------------------------


def test_tokenize_cnn_content_mask_positions():
    net = small_cnn(True)
    layout = layout_of(net, sort=True)
    vector = flatten(net.state_dict(), layout)
    out = tokenize(vector, layout)
    tokens, mask, positions = out["tokens"], out["mask"], out["positions"]
    assert tokens.shape == mask.shape == (3 + 4 + 5, 3 * 9 + 1)
    assert mask.dtype == torch.bool and positions.dtype == torch.long
    # neuron 2 of layer "4": its 27 incoming weights, then its bias, then padding
    token = tokens[3 + 2]
    assert torch.equal(token[:27], net[4].weight[2].detach().reshape(-1))
    assert token[27] == net[4].bias[2]
    # first layer: 9 weights + bias, the rest is zero padding masked out
    assert mask[0].sum() == 10 and not mask[0, 10:].any()
    assert (tokens[0, 10:] == 0).all()
    assert torch.equal(mask.sum(-1), torch.tensor([10] * 3 + [28] * 4 + [17] * 5))
    assert positions[5].tolist() == [5, 1, 2]
    assert positions[:, 1].tolist() == [0] * 3 + [1] * 4 + [2] * 5
    assert mask.sum() == layout.num_params


def test_tokenize_rnn_layer():
    net = GRUNet()
    layout = layout_of(net)
    vector = flatten(net.state_dict(), layout)
    out = tokenize(vector, layout)
    tokens = out["tokens"]
    # GRU layer l0: 3 gates x 4 hidden = 12 tokens of 3 + 4 + 1 + 1 values
    assert tokens.shape[0] == 12 + 12 + 1
    assert tokens.shape[1] == 4 + 4 + 2  # layer l1 reads 4 inputs
    i = 7
    expected = torch.cat(
        [
            net.rnn.weight_ih_l0[i],
            net.rnn.weight_hh_l0[i],
            net.rnn.bias_ih_l0[i : i + 1],
            net.rnn.bias_hh_l0[i : i + 1],
        ]
    ).detach()
    assert torch.equal(tokens[i, :9], expected)
    assert not out["mask"][i, 9:].any()


@pytest.mark.parametrize(
    "make",
    [
        lambda: small_cnn(True),
        GRUNet,
        lambda: trained_bn_net(2),
        lambda: nn.LSTM(3, 4, num_layers=2, bidirectional=True),
    ],
)
def test_tokenize_round_trip_batched_and_numpy(make):
    layout = layout_of(make(), sort=True)
    rows = np.random.default_rng(3).standard_normal((2, 5, layout.num_params)).astype(np.float32)
    width = tokenize(rows[0, 0], layout)["tokens"].shape[-1]
    out = tokenize(rows, layout, token_size=width + 3)
    assert out["tokens"].shape[:2] == (2, 5) and out["tokens"].shape[-1] == width + 3
    assert out["mask"].shape == out["tokens"].shape
    assert (out["tokens"][~out["mask"]] == 0).all()
    np.testing.assert_array_equal(detokenize(out["tokens"], layout).numpy(), rows)
    np.testing.assert_array_equal(detokenize(out, layout).numpy(), rows)


def test_tokenize_errors():
    layout = layout_of(small_cnn(False))
    rows = torch.randn(layout.num_params)
    with pytest.raises(ValueError, match="token_size=5"):
        tokenize(rows, layout, token_size=5)
    tokens = tokenize(rows, layout)["tokens"]
    with pytest.raises(LayoutError):
        detokenize(tokens[:-1], layout)
    odd = layout_of({"a.weight": torch.zeros(3, 2), "a.bias": torch.zeros(4)})
    with pytest.raises(LayoutError, match="'a'"):
        tokenize(torch.zeros(odd.num_params), odd)
    transposed = layout_of(nn.Sequential(nn.ConvTranspose2d(2, 3, 3)))
    with pytest.raises(LayoutError, match="'0'.*dimension 0"):
        tokenize(torch.zeros(transposed.num_params), transposed)


def test_chunked_tokens_split_wide_neurons_and_round_trip():
    net = small_cnn(True)
    layout = layout_of(net, sort=True)
    vector = flatten(net.state_dict(), layout)
    out = tokenize(vector, layout, token_size=8, chunk=True)
    # rows of 10, 28 and 17 values: 2, 4 and 3 tokens of 8 per neuron
    assert out["tokens"].shape == (3 * 2 + 4 * 4 + 5 * 3, 8)
    assert out["mask"].sum() == layout.num_params
    first = 3 * 2  # the first token of neuron 0 of layer "4"
    assert torch.equal(out["tokens"][first], net[4].weight[0].detach().reshape(-1)[:8])
    assert out["positions"][:, 1].tolist() == [0] * 6 + [1] * 16 + [2] * 15
    assert out["positions"][first + 3].tolist() == [first + 3, 1, 3]
    assert torch.equal(detokenize(out, layout), vector)
    assert torch.equal(
        detokenize(tokenize(vector, layout, token_size=1, chunk=True), layout), vector
    )
    with pytest.raises(ValueError, match="token_size"):
        tokenize(vector, layout, chunk=True)
