"""Property-inference meta-classifiers and the "0.5 vs X" table."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers.tiny_specs import tiny_property_spec
from weightzoo.analysis import report
from weightzoo.analysis.property_inference import (
    METHODS,
    dense_layers,
    distinguish_table,
    neuron_sets,
    sort_neurons,
)
from weightzoo.analysis.tables import UnsupportedTableError
from weightzoo.architectures.image import cnn_small
from weightzoo.cli import run
from weightzoo.families.property.model import PropertyMLP
from weightzoo.features import layout_of, load_vector
from weightzoo.generate.runner import generate
from weightzoo.storage.layout import Layout
from weightzoo.zoo import Zoo


def _mlp_rows(count: int, seed: int = 0) -> tuple[np.ndarray, Layout]:
    torch.manual_seed(seed)
    models = [PropertyMLP(5, (6, 4), 3) for _ in range(count)]
    layout = layout_of(models[0])
    rows = np.stack(
        [torch.cat([p.detach().reshape(-1) for p in m.parameters()]).numpy() for m in models]
    )
    return rows, layout


def _permute_hidden(row: np.ndarray, layout: Layout, layer: int, perm: np.ndarray) -> np.ndarray:
    """The same network with hidden layer ``layer``'s neurons in order ``perm``."""
    module = load_vector(PropertyMLP(5, (6, 4), 3), row, layout)
    with torch.no_grad():
        lin, nxt = module.layers[layer], module.layers[layer + 1]
        lin.weight.copy_(lin.weight[perm])
        lin.bias.copy_(lin.bias[perm])
        nxt.weight.copy_(nxt.weight[:, perm])
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()]).numpy()


def test_sorting_neurons_is_permutation_invariant_and_keeps_the_function():
    rows, layout = _mlp_rows(3)
    rng = np.random.default_rng(0)
    permuted = _permute_hidden(rows[0], layout, 0, rng.permutation(6))
    permuted = _permute_hidden(permuted, layout, 1, rng.permutation(4))
    assert not np.allclose(permuted, rows[0])
    canon = sort_neurons(np.stack([rows[0], permuted]), layout)
    assert np.allclose(canon[0], canon[1])
    # the sorted row is the same network: same outputs on random inputs
    x = torch.randn(10, 5)
    before = load_vector(PropertyMLP(5, (6, 4), 3), rows[0], layout)(x)
    after = load_vector(PropertyMLP(5, (6, 4), 3), canon[0], layout)(x)
    assert torch.allclose(before, after, atol=1e-6)
    # incoming-weight norms of the first hidden layer come out descending
    w = canon[0][: 6 * 5].reshape(6, 5)
    b = canon[0][30:36]
    norms = np.sqrt((w**2).sum(1) + b**2)
    assert np.all(np.diff(norms) <= 0)


def test_neuron_sets_permute_with_the_neurons():
    rows, layout = _mlp_rows(1)
    perm = np.array([3, 1, 0, 5, 2, 4])
    permuted = _permute_hidden(rows[0], layout, 0, perm)
    sets = neuron_sets(np.stack([rows[0], permuted]), layout)
    assert [s.shape for s in sets] == [(2, 6, 5 + 1 + 4), (2, 4, 6 + 1 + 3)]
    assert np.allclose(sets[0][1], sets[0][0][perm])


def test_non_mlp_rows_are_refused():
    with pytest.raises(UnsupportedTableError, match="dense layers"):
        dense_layers(layout_of(cnn_small()))


@pytest.fixture(scope="module")
def property_zoo(tmp_path_factory) -> Zoo:
    spec = tiny_property_spec(models_per_ratio=16)
    out = tmp_path_factory.mktemp("prop") / "zoo"
    generate(spec, out, progress=False)
    return Zoo(out)


def test_distinguish_table_shape_and_extreme_ratios(property_zoo):
    table = distinguish_table(property_zoo)
    assert [row.label for row in table.rows] == ["0.5 vs 0.0", "0.5 vs 1.0"]
    assert table.columns == [*METHODS, "adversary models", "victim models"]
    for row in table.rows:
        assert row.ours["adversary models"] == row.ours["victim models"] == 32
        assert all(0.0 <= row.ours[m] <= 1.0 for m in METHODS)
        # the extreme ratios are told apart from 0.5 well above chance by some method
        assert max(row.ours[m] for m in METHODS) >= 0.8
    assert distinguish_table(property_zoo).to_dict() == table.to_dict()  # deterministic


def test_report_detects_a_property_zoo(property_zoo, capsys):
    result = report(property_zoo, tables=["property.distinguish"])
    assert result.table("property.distinguish").zoo == "property-tiny (zoo)"
    assert run(["report", str(property_zoo.path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    ids = [t["id"] for t in data["tables"]]
    assert "property.distinguish" in ids


def test_report_skips_other_zoos_with_the_reason(toy_zoo):
    result = report(toy_zoo, tables=["property.distinguish"])
    assert not result.tables
    assert "not a property-inference zoo" in result.skipped[0].reason
