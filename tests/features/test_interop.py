"""Per-layer tensors for weight-space learning libraries: ``features=("params",)``, module
shapes in the layout, and the converters of :mod:`weightzoo.interop`, checked against nfn."""

from __future__ import annotations

import json
import shutil
from itertools import pairwise

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from weightzoo import Zoo
from weightzoo.datasets import Trajectories, ZooDataset
from weightzoo.errors import (
    InvalidOptionError,
    LayoutError,
    ManifestError,
    MissingExtraError,
    UnknownColumnError,
)
from weightzoo.features import flatten, layout_of, module_shapes, unflatten
from weightzoo.functional import input_shape
from weightzoo.interop import (
    from_nfn,
    from_weights_biases,
    to_nfn,
    to_weights_biases,
    zoo_module_shapes,
)
from weightzoo.storage.layout import Layout
from weightzoo.storage.manifest import Manifest

nfn_common = pytest.importorskip("nfn.common")
nfn_layers = pytest.importorskip("nfn.layers")

CNN = "modelzoo-digits-cnn-s-seed"
MLP = "trajectory-digits-mlp"
FLATTENED = "module_list.11.weight"  # CNN-s: Linear(36, 20) on the flatten of a 4 x 3 x 3 map


@pytest.fixture(scope="module")
def zoos(tmp_path_factory) -> dict[str, Zoo]:
    """Real small zoos of the generator: CNN-s (3 models) and the trajectory MLP (3 models)."""
    from weightzoo.generate.runner import generate
    from weightzoo.generate.specs import get_spec

    root = tmp_path_factory.mktemp("interop")
    for name, options in ((CNN, {"models": 3, "epochs": 1}), (MLP, {"models": 3, "epochs": 2})):
        generate(get_spec(name).override(**options), root / name, progress=False, workers=1)
    return {name: Zoo(root / name) for name in (CNN, MLP)}


def _cnn_layout(zoo: Zoo) -> Layout:
    """The CNN zoo's layout with its module shapes (recorded, or found for an older manifest)."""
    layout = zoo.layout
    return layout if layout.module_shapes else layout.with_module_shapes(zoo_module_shapes(zoo))


def _batch(zoo: Zoo) -> dict:
    return ZooDataset(zoo, split="all", epochs="all", features=("weights", "params"))[[0, 1, 2]]


# -- the params feature ---------------------------------------------------------------------


@pytest.mark.parametrize("name", [CNN, MLP])
def test_params_are_the_unflattened_rows_in_state_dict_shapes(zoos, name):
    zoo = zoos[name]
    dataset = ZooDataset(zoo, split="all", epochs="all", features=("weights", "params"))
    item = dataset[1]
    expected = unflatten(item["weights"], zoo.layout)
    assert list(item["params"]) == zoo.layout.names
    for key, value in expected.items():
        assert torch.equal(item["params"][key], value)
    # the rows load into the zoo's module by name, as a state_dict
    module = zoo.build_model()
    module.load_state_dict(item["params"])
    assert torch.equal(flatten(module, zoo.layout), item["weights"])

    collated = next(iter(DataLoader(dataset, batch_size=3)))
    whole = dataset[[0, 1, 2]]
    for batch in (collated, whole, next(iter(dataset.loader(batch_size=3)))):
        rows = unflatten(batch["weights"], zoo.layout)
        for key, spec in zip(zoo.layout.names, zoo.layout, strict=True):
            assert batch["params"][key].shape == (3, *spec.shape)
            assert torch.equal(batch["params"][key], rows[key])
    # a copy: writing into one tensor leaves the weights alone
    whole["params"][zoo.layout.names[0]].zero_()
    assert whole["weights"].abs().sum() > 0


def test_params_of_trajectories_keep_the_checkpoint_axis(zoos):
    zoo = zoos[MLP]
    pairs = Trajectories(zoo, split="all", mode="pairs", features=("weights", "params"))
    item = pairs[0]
    for key, value in unflatten(item["weights"], zoo.layout).items():
        assert item["params"][key].shape == (2, *zoo.layout[key].shape)
        assert torch.equal(item["params"][key], value)


def test_params_take_no_option(zoos):
    with pytest.raises(UnknownColumnError, match="'params'"):
        ZooDataset(zoos[MLP], features=("params:nfn",))


# -- module shapes ----------------------------------------------------------------------------


def test_module_shapes_of_cnn_s_name_its_flattened_map(zoos):
    zoo = zoos[CNN]
    module = zoo.build_model()
    assert input_shape(zoo) == (1, 28, 28)
    assert module_shapes(module, input_shape(zoo)) == {FLATTENED: (20, 4, 3, 3)}
    assert zoo_module_shapes(zoo) == {FLATTENED: (20, 4, 3, 3)}
    assert all(p.device.type == "cpu" for p in module.parameters())  # the module is untouched
    layout = layout_of(module, input_shape=input_shape(zoo))
    assert layout == zoo.layout and layout[FLATTENED].module_shape == (20, 4, 3, 3)
    assert layout["module_list.8.weight"].module_shape is None  # a conv's shape is its own
    # the MLP's first layer reads a flattened 1 x 14 x 14 image
    assert zoo_module_shapes(zoos[MLP]) == {"module_list.1.weight": (10, 1, 14, 14)}
    with pytest.raises(LayoutError, match=r"\(1, 20, 20\)") as info:
        module_shapes(module, (1, 20, 20))
    assert "\n" not in str(info.value)
    with pytest.raises(InvalidOptionError, match="nn.Module"):
        layout_of(module.state_dict(), input_shape=(1, 28, 28))


def test_module_shapes_live_in_the_manifest_and_older_manifests_read(zoos, tmp_path):
    zoo = zoos[CNN]
    copy = tmp_path / "zoo"
    shutil.copytree(zoo.path, copy)
    data = json.loads((copy / "zoo.json").read_text())
    data["layout"] = _cnn_layout(zoo).to_json()
    (copy / "zoo.json").write_text(json.dumps(data))
    recorded = Zoo(copy)
    assert recorded.layout.module_shapes == {FLATTENED: (20, 4, 3, 3)}
    assert recorded.layout == zoo.layout  # the rows are the same
    for row in data["layout"]:
        row.pop("module_shape", None)
    assert Layout.from_json(data["layout"]).module_shapes == {}  # an older manifest
    # the shards are not touched: the same bytes, the same rows
    dataset = ZooDataset(recorded, split="all", epochs="all", features=("weights",))
    assert torch.equal(dataset[[0, 1, 2]]["weights"], _batch(zoo)["weights"])


HOSTILE_MODULE_SHAPES = [
    ([20, 4, 3, 4], "number of elements"),
    ([10, 8, 3, 3], "first dimension"),
    ([20, 36, 1, 0], "at least 1"),
    ([20, -4, -3, 3], "non-negative"),
    ([20, 4, 3.0, 3], "non-negative integers"),
    ([20, True, 36], "non-negative integers"),
    ("20x4x3x3", "non-negative integers"),
    ({"c": 4}, "non-negative integers"),
    ([1] * 33, "at most 32"),
    ([20, 4, 3, 3 + 2**64], "number of elements"),
]


@pytest.mark.parametrize(("value", "reason"), HOSTILE_MODULE_SHAPES)
def test_a_hostile_module_shape_is_refused_in_one_line(zoos, tmp_path, value, reason):
    copy = tmp_path / "zoo"
    shutil.copytree(zoos[CNN].path, copy)
    data = json.loads((copy / "zoo.json").read_text())
    next(row for row in data["layout"] if row["name"] == FLATTENED)["module_shape"] = value
    (copy / "zoo.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError) as info:
        Manifest.load(copy)
    message = str(info.value)
    assert "\n" not in message and str(copy / "zoo.json") in message
    assert "module_list.11" in message and reason in message


class _ViewNet(nn.Module):
    """A CNN written the common way: ``x.view(x.size(0), -1)`` and an activation before the
    linear layer, on a non-square map."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3)
        self.fc = nn.Linear(5 * 4 * 6, 7)
        self.out = nn.Linear(7, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        x = torch.tanh(x.view(x.size(0), -1))
        return self.out(torch.relu(self.fc(x)))


def test_module_shapes_follow_view_and_activations_on_a_non_square_map():
    module = _ViewNet()
    assert module_shapes(module, (3, 6, 8)) == {"fc.weight": (7, 5, 4, 6)}
    layout = layout_of(module, input_shape=(3, 6, 8))
    rows = flatten(module, layout).unsqueeze(0)
    features = to_nfn(rows, layout)
    assert [tuple(w.shape) for w in features.weights] == [
        (1, 1, 5, 3, 3, 3),
        (1, 1, 7, 5, 4, 6),
        (1, 1, 2, 7),
    ]
    # the kernel holds the flatten's columns channel by channel: column c * 24 + h * 6 + w
    assert torch.equal(features.weights[1][0, 0, :, 2, 1, 3], module.fc.weight[:, 2 * 24 + 9])


def test_a_layer_run_on_maps_of_two_shapes_has_no_module_shape():
    shared = nn.Linear(12, 2)

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = shared

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = self.fc(x.flatten(1))  # [3, 2, 2]
            b = self.fc(x.reshape(x.shape[0], 3, 4, 1).flatten(1))  # [3, 4, 1]
            return a + b

    assert module_shapes(Twice(), (3, 2, 2)) == {}


def test_a_module_shape_given_in_python_is_checked(zoos):
    # the layout as an older manifest holds it: stored shapes only
    layout = Layout.from_shapes({spec.name: spec.shape for spec in zoos[CNN].layout})
    with pytest.raises(LayoutError, match="no_such.weight"):
        layout.with_module_shapes({"no_such.weight": (1,)})
    with pytest.raises(LayoutError, match="number of elements"):
        layout.with_module_shapes({FLATTENED: (20, 4, 3, 2)})
    same = layout.with_module_shapes({FLATTENED: (20, 36)})  # the stored shape: nothing to add
    assert same.module_shapes == {} and same.to_json() == layout.to_json()


# -- nfn ----------------------------------------------------------------------------------------


def _by_hand(zoo: Zoo, rows: torch.Tensor) -> tuple[list, list]:
    """nfn's own WeightSpaceFeatures tensors of the modules' state_dicts, batched by hand."""
    per_model = []
    for row in rows:
        state = zoo.module(row.numpy()).state_dict()
        per_model.append(nfn_common.state_dict_to_tensors(state))
    # state_dict_to_tensors adds the channel axis; a batch stacks models, as nfn's loaders do
    weights = [torch.stack(ws) for ws in zip(*(w for w, _ in per_model), strict=True)]
    biases = [torch.stack(bs) for bs in zip(*(b for _, b in per_model), strict=True)]
    return weights, biases


@pytest.mark.parametrize("name", [CNN, MLP])
def test_to_nfn_equals_nfn_built_from_the_state_dicts(zoos, name):
    zoo = zoos[name]
    batch = _batch(zoo)
    layout = _cnn_layout(zoo) if name == CNN else zoo.layout
    features = to_nfn(batch["params"], layout)
    assert isinstance(features, nfn_common.WeightSpaceFeatures)
    weights, biases = _by_hand(zoo, batch["weights"])
    if name == CNN:  # by hand: the linear layer on the flattened 4 x 3 x 3 map, as nfn needs it
        weights[3] = weights[3].reshape(3, 1, 20, 4, 3, 3)
    for got, want in zip(features.weights + features.biases, weights + biases, strict=True):
        assert got.shape == want.shape and torch.equal(got, want)
    # rows work as well as params, and nfn layers take the features
    from_rows = to_nfn(batch["weights"], layout)
    got, want = from_rows.weights + from_rows.biases, features.weights + features.biases
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    spec = nfn_common.network_spec_from_wsfeat(features)
    out = nfn_layers.NPLinear(spec, in_channels=1, out_channels=3)(features)
    assert [w.shape[1] for w in out.weights] == [3] * len(layout.layers())
    back = from_nfn(features, layout)
    assert all(torch.equal(back[k], batch["params"][k]) for k in layout.names)


def _permuted_cnn(state: dict, perms: list[torch.Tensor]) -> dict:
    """CNN-s with its hidden channels/units permuted: the same function, other weights."""
    out = dict(state)
    convs = ["module_list.0", "module_list.4", "module_list.8"]
    previous = None
    for layer, perm in zip([*convs, "module_list.11"], perms, strict=True):
        weight = out[f"{layer}.weight"]
        if previous is not None and layer != "module_list.11":
            weight = weight[:, previous]
        if layer == "module_list.11":  # columns c*9 + s of the flatten move with channel c
            columns = (previous[:, None] * 9 + torch.arange(9)).reshape(-1)
            weight = weight[:, columns]
        out[f"{layer}.weight"], out[f"{layer}.bias"] = weight[perm], out[f"{layer}.bias"][perm]
        previous = perm
    out["module_list.14.weight"] = out["module_list.14.weight"][:, previous]
    return out


def test_nfn_layers_are_equivariant_on_converted_features(zoos):
    """Permuting a real CNN's neurons permutes nfn's output: the flatten is split right."""
    zoo = zoos[CNN]
    layout = _cnn_layout(zoo)
    row = _batch(zoo)["weights"][:1]
    module = zoo.module(row[0].numpy())
    generator = torch.Generator().manual_seed(0)
    perms = [torch.randperm(n, generator=generator) for n in (8, 6, 4, 20)]
    permuted = zoo.build_model()
    permuted.load_state_dict(_permuted_cnn(module.state_dict(), perms))
    x = torch.rand(16, 1, 28, 28, generator=generator)
    with torch.no_grad():  # a symmetry of the network: it computes the same function
        torch.testing.assert_close(permuted(x), module(x), rtol=1e-5, atol=1e-6)

    torch.manual_seed(0)
    features = to_nfn(row, layout)
    moved = to_nfn(flatten(permuted, layout).unsqueeze(0), layout)
    spec = nfn_common.network_spec_from_wsfeat(features)
    layer = nfn_layers.NPLinear(spec, in_channels=1, out_channels=2)
    out, out_moved = layer(features), layer(moved)
    rows_in = [None, *perms]
    for i, (w, w_moved) in enumerate(zip(out.weights, out_moved.weights, strict=True)):
        expected = w[:, :, perms[i]] if i < len(perms) else w
        expected = expected[:, :, :, rows_in[i]] if rows_in[i] is not None else expected
        torch.testing.assert_close(w_moved, expected, rtol=1e-4, atol=1e-5)
    pooled = nfn_layers.NPPool(spec)
    torch.testing.assert_close(pooled(out_moved), pooled(out), rtol=1e-4, atol=1e-5)


def test_an_older_cnn_layout_needs_its_module_shapes_and_says_so(zoos):
    zoo = zoos[CNN]
    params = _batch(zoo)["params"]
    bare = Layout((t.name, t.shape) for t in zoo.layout)
    with pytest.raises(LayoutError) as info:
        to_nfn(params, bare)
    message = str(info.value)
    assert "\n" not in message and FLATTENED in message and "module_shapes=" in message
    features = to_nfn(params, bare, module_shapes={FLATTENED: (20, 4, 3, 3)})
    assert features.weights[3].shape == (3, 1, 20, 4, 3, 3)
    with pytest.raises(LayoutError, match="module_shapes="):
        to_weights_biases(params, bare)


def test_without_nfn_the_error_names_the_install(zoos, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "nfn.common", None)
    with pytest.raises(MissingExtraError, match="pip install nfn") as info:
        to_nfn(_batch(zoos[MLP])["params"], zoos[MLP].layout)
    assert "\n" not in str(info.value)


# -- DWSNets and neural graphs -----------------------------------------------------------------


def test_weights_biases_follow_dwsnets_for_an_mlp(zoos):
    zoo = zoos[MLP]
    batch = _batch(zoo)
    weights, biases = to_weights_biases(batch["params"], zoo.layout)
    for b, row in enumerate(batch["weights"]):
        state = zoo.module(row.numpy()).state_dict()
        # DWSNets' INRDataset: v.permute(1, 0) of each weight, then unsqueeze(-1); biases too
        want_w = [v.permute(1, 0).unsqueeze(-1) for k, v in state.items() if "weight" in k]
        want_b = [v.unsqueeze(-1) for k, v in state.items() if "bias" in k]
        for got, want in zip(weights + biases, want_w + want_b, strict=True):
            assert torch.equal(got[b], want)
    assert [w.shape for w in weights] == [(3, 196, 10, 1), (3, 10, 10, 1), (3, 10, 10, 1)]
    back = from_weights_biases(weights, biases, zoo.layout)
    assert all(torch.equal(back[k], batch["params"][k]) for k in zoo.layout.names)


def test_weights_biases_of_a_cnn_flatten_kernels_as_neural_graphs(zoos):
    zoo = zoos[CNN]
    layout = _cnn_layout(zoo)
    batch = _batch(zoo)
    weights, biases = to_weights_biases(batch["params"], layout, max_kernel_size=(5, 5))
    assert [tuple(w.shape) for w in weights] == [
        (3, 1, 8, 25),
        (3, 8, 6, 25),
        (3, 6, 4, 25),
        (3, 4, 20, 25),
        (3, 20, 10, 1),
    ]
    conv = batch["params"]["module_list.8.weight"]  # 2 x 2 kernels, centred in 5 x 5
    padded = weights[2].reshape(3, 6, 4, 5, 5)
    assert torch.equal(padded[..., 1:3, 1:3], conv.transpose(1, 2))
    outside = padded.clone()
    outside[..., 1:3, 1:3] = 0
    assert not outside.any()  # the padding is zeros
    assert [tuple(b.shape) for b in biases] == [(3, n, 1) for n in (8, 6, 4, 20, 10)]
    for size in ((5, 5), None):
        pair = to_weights_biases(batch["weights"], layout, max_kernel_size=size)
        back = from_weights_biases(*pair, layout, max_kernel_size=size)
        assert all(torch.equal(back[k], batch["params"][k]) for k in layout.names)
    with pytest.raises(LayoutError, match="module_list.0.weight"):
        to_weights_biases(batch["params"], layout, max_kernel_size=(3, 3))


def _neural_graphs_by_hand(state: dict, size: tuple[int, int]) -> tuple[list, list]:
    """Neural graphs' CNNDataset steps for one state_dict: transpose in/out, pad kernels
    centred to ``size`` and flatten them into features, add a feature axis elsewhere."""
    weights, biases = [], []
    for key, value in state.items():
        if key.endswith("bias"):
            biases.append(value.unsqueeze(-1))
        elif value.dim() == 4:
            dh, dw = size[0] - value.shape[2], size[1] - value.shape[3]
            padded = F.pad(value, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
            weights.append(padded.transpose(0, 1).flatten(2))
        else:
            weights.append(value.transpose(0, 1).unsqueeze(-1))
    return weights, biases


def test_weights_biases_of_a_cnn_as_neural_graphs_cnn_dataset_reads_them(zoos):
    zoo = zoos[CNN]
    batch = _batch(zoo)
    bare = Layout((t.name, t.shape) for t in zoo.layout)  # no module shapes needed
    pair = to_weights_biases(batch["params"], bare, max_kernel_size=(5, 5), flatten_as_kernel=False)
    assert tuple(pair[0][3].shape) == (3, 36, 20, 1)  # the flatten's 36 inputs, as stored
    for b, row in enumerate(batch["weights"]):
        want = _neural_graphs_by_hand(zoo.module(row.numpy()).state_dict(), (5, 5))
        for got, expected in zip(pair[0] + pair[1], want[0] + want[1], strict=True):
            assert torch.equal(got[b], expected)
    back = from_weights_biases(*pair, bare, max_kernel_size=(5, 5), flatten_as_kernel=False)
    assert all(torch.equal(back[k], batch["params"][k]) for k in bare.names)


# -- layouts the converters cannot take --------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "tensor"),
    [
        (nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)), "1.running_mean"),
        (nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2)), "0.weight"),
        (nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(4, 2)), "0.weight"),
        (nn.Sequential(nn.Linear(3, 4), nn.Linear(5, 2)), "1.weight"),
        (nn.GRU(3, 4), "gru"),
    ],
)
def test_a_layout_that_is_not_a_chain_is_refused_naming_the_tensor(module, tensor):
    layout = layout_of(module)
    rows = torch.zeros(1, layout.num_params)
    for convert in (to_nfn, to_weights_biases):
        with pytest.raises(LayoutError) as info:
            convert(rows, layout)
        message = str(info.value)
        assert "\n" not in message
        assert tensor in message or (tensor == "gru" and "weight_ih_l0" in message)


def test_params_that_do_not_match_the_layout_are_refused(zoos):
    zoo = zoos[MLP]
    params = _batch(zoo)["params"]
    one = {k: v[0] for k, v in params.items()}
    with pytest.raises(LayoutError, match=r"unsqueeze\(0\)"):
        to_nfn(one, zoo.layout)
    with pytest.raises(LayoutError, match="module_list.5.bias"):
        to_nfn({k: v for k, v in params.items() if k != "module_list.5.bias"}, zoo.layout)
    with pytest.raises(LayoutError, match="different sizes"):
        to_weights_biases(
            {**params, "module_list.1.bias": params["module_list.1.bias"][:2]}, zoo.layout
        )


# -- any MLP ---------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    widths=st.lists(st.integers(1, 6), min_size=2, max_size=6),
    batch=st.integers(1, 3),
    seed=st.integers(0, 2**31 - 1),
)
def test_any_mlp_layout_round_trips(widths, batch, seed):
    entries = []
    for i, (n_in, n_out) in enumerate(pairwise(widths)):
        entries += [(f"layers.{i}.weight", (n_out, n_in)), (f"layers.{i}.bias", (n_out,))]
    layout = Layout.from_json(Layout(entries).to_json())
    rows = torch.from_numpy(np.random.default_rng(seed).standard_normal((batch, layout.num_params)))
    params = unflatten(rows, layout)

    features = to_nfn(rows, layout)
    assert [tuple(w.shape) for w in features.weights] == [
        (batch, 1, n_out, n_in) for n_in, n_out in pairwise(widths)
    ]
    assert nfn_common.network_spec_from_wsfeat(features).get_io() == (widths[0], widths[-1])
    weights, biases = to_weights_biases(params, layout)
    for back in (from_nfn(features, layout), from_weights_biases(weights, biases, layout)):
        assert torch.equal(flatten_rows(back, layout), rows)


def flatten_rows(params: dict, layout: Layout) -> torch.Tensor:
    """``[B, P]`` rows of a params batch (the inverse of unflatten)."""
    return torch.cat([params[name].flatten(1) for name in layout.names], dim=1)


def test_the_generator_records_the_module_shapes_of_a_cnn(zoos):
    shapes = zoos[CNN].layout.module_shapes
    assert shapes[FLATTENED] == (20, 4, 3, 3)
    # a tensor whose stored shape is already its module shape records nothing extra
    assert all(zoos[CNN].layout[name].shape != shape for name, shape in shapes.items())
