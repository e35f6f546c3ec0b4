"""The property-inference family: data pools, subsets, generation, determinism, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weightzoo.analysis.data import arrays
from weightzoo.architectures import build_model
from weightzoo.cli import run
from weightzoo.errors import InvalidOptionError
from weightzoo.features import load_vector
from weightzoo.generate.property.family import RATIOS, PropertySpec, family
from weightzoo.generate.property.population import model_subsets
from weightzoo.generate.runner import generate
from weightzoo.generate.specs import get_spec
from weightzoo.tasks.property import load_property_data, training_subset
from weightzoo.zoo import Zoo

ALL = ["train", "val", "test"]


def tiny_spec(**changes) -> PropertySpec:
    base = dict(
        name="property-tiny",
        ratios=(0.0, 0.5, 1.0),
        models_per_ratio=3,
        train_size=200,
        pool_size=800,
        test_size=400,
        epochs=8,
        batch_size=25,
        lr=1e-2,
        shard_models=7,
    )
    return PropertySpec(**(base | changes))


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory) -> Zoo:
    out = tmp_path_factory.mktemp("prop") / "zoo"
    generate(tiny_spec(), out, progress=False)
    return Zoo(out)


@pytest.mark.parametrize("dataset", ["synthetic", "digits"])
def test_pools_and_test_set_are_disjoint(dataset):
    data = load_property_data(dataset, 3, 500, 300, 8)
    victim, adversary = data.pools["victim"].index, data.pools["adversary"].index
    assert len(victim) == len(adversary) == 500 and len(data.test) == 300
    assert not set(victim) & set(adversary)
    assert not (set(victim) | set(adversary)) & set(data.test.index)
    # both kinds of item are in every pool, so every ratio can be drawn
    for pool in data.pools.values():
        assert 0.3 < pool.prop.mean() < 0.7


def test_digits_property_is_even_digit():
    data = load_property_data("digits", 0, 700, 397)
    pool = data.pools["victim"]
    assert np.array_equal(pool.prop, pool.y % 2 == 0)
    assert data.features == 64 and data.classes == 10


@pytest.mark.parametrize("ratio", RATIOS)
def test_subset_realises_the_ratio(ratio):
    pool = load_property_data("synthetic", 7, 1000, 100, 8).pools["adversary"]
    subset = training_subset(pool, ratio, 300, seed=5)
    assert len(np.unique(subset)) == 300
    assert pool.prop[subset].sum() == round(ratio * 300)
    assert np.array_equal(subset, training_subset(pool, ratio, 300, seed=5))
    assert not np.array_equal(subset, training_subset(pool, ratio, 300, seed=6))


def test_subset_too_large_for_the_pool_is_a_named_error():
    pool = load_property_data("digits", 0, 700, 397).pools["victim"]
    with pytest.raises(InvalidOptionError, match="lower train_size"):
        training_subset(pool, 1.0, 600, seed=1)


def test_spec_that_disagrees_with_its_data_is_a_named_error(tmp_path):
    spec = tiny_spec(dataset="digits", pool_size=700, test_size=397)  # still 8 features
    with pytest.raises(InvalidOptionError, match="64 and 10"):
        generate(spec, tmp_path / "bad", progress=False)


def test_plan_is_balanced_over_pools_and_ratios():
    spec = tiny_spec()
    plans = family().plan(spec)
    assert len(plans) == 3 * 2 * 3
    cells = [(p.columns["pool"], p.columns["ratio"]) for p in plans[:6]]
    assert sorted(cells) == sorted(
        (pool, r) for pool in ("victim", "adversary") for r in spec.ratios
    )
    assert len({p.seed for p in plans}) == len(plans)
    first = family().plan(spec.override(models=6))
    assert [(p.columns["pool"], p.columns["ratio"]) for p in first] == cells


def test_generated_zoo_columns_ratios_and_learning(tiny_zoo):
    data = arrays(tiny_zoo, split=ALL, targets=("ratio", "pool", "property_share", "test_acc"))
    assert tiny_zoo.epochs == [0, 8]
    assert len(data["ratio"]) == 18
    # the share of the property in each model's own training subset is its ratio
    assert np.allclose(data["property_share"], data["ratio"])
    assert set(data["pool"]) == {"victim", "adversary"}
    # models learn: balanced-ratio models are well above chance (0.5) on the shared test set
    balanced = data["test_acc"][data["ratio"] == 0.5]
    assert balanced.min() > 0.75


def test_stored_row_runs_in_build_model(tiny_zoo):
    """build_model(spec) builds the zoo's module; a row reproduces its stored test accuracy."""
    spec = tiny_zoo.manifest.spec
    data = arrays(tiny_zoo, split=ALL, targets=("test_acc",))
    test = load_property_data("synthetic", spec["data_seed"], 800, 400, 8).test
    module = load_vector(build_model(spec), data["weights"][0], tiny_zoo.layout)
    with torch.no_grad():
        acc = (module(torch.from_numpy(test.x)).argmax(1).numpy() == test.y).mean()
    assert acc == pytest.approx(float(data["test_acc"][0]), abs=1e-6)


def test_generation_is_deterministic(tmp_path, tiny_zoo):
    generate(tiny_spec(), tmp_path / "again", progress=False)
    again = arrays(Zoo(tmp_path / "again"), split=ALL, epochs=None)
    first = arrays(tiny_zoo, split=ALL, epochs=None)
    assert np.array_equal(first["weights"], again["weights"])


def test_model_subsets_come_from_the_model_pool():
    spec = tiny_spec()
    plans = family().plan(spec)
    data = load_property_data("synthetic", spec.data_seed, 800, 400, 8)
    for plan, subset in zip(plans, model_subsets(spec, plans), strict=True):
        pool = data.pools[plan.columns["pool"]]
        assert pool.prop[subset].mean() == pytest.approx(plan.columns["ratio"])


def test_digits_models_learn(tmp_path):
    spec = get_spec("property-digits-even").replace(
        ratios=(0.5,), models_per_ratio=2, epochs=10, name="digits-tiny"
    )
    generate(spec, tmp_path / "digits", progress=False)
    data = arrays(Zoo(tmp_path / "digits"), split=ALL, targets=("test_acc",))
    assert data["test_acc"].min() > 0.6  # chance is 0.1


def test_cli_lists_and_generates(tmp_path, capsys):
    assert run(["list", "--family", "property"]) == 0
    listed = capsys.readouterr().out
    assert "property-synthetic" in listed and "property-digits-even" in listed
    out = tmp_path / "cli"
    code = run(
        [
            "generate",
            "property-synthetic",
            "--models",
            "22",
            "--epochs",
            "2",
            "--out",
            str(out),
            "--workers",
            "1",
        ]
    )
    assert code == 0
    zoo = Zoo(out)
    assert len(zoo) == 22 and zoo.manifest.family == "property"


def test_evaluate_reproduces_the_stored_test_metrics(tiny_zoo):
    from weightzoo.functional import evaluate, queries

    reader = tiny_zoo.reader(ALL, epochs="all")
    models, checkpoints = reader.num_models, len(reader.epochs)
    assert checkpoints == 2  # the initialisation and the last epoch
    pairs = np.indices((models, checkpoints)).reshape(2, -1)
    result = evaluate(tiny_zoo, reader.read("weights", pairs[0], pairs[1]))
    assert result.split == "test" and result.stored_name("acc") == "test_acc"
    stored = reader.metrics
    np.testing.assert_allclose(result.loss, stored["test_loss"].reshape(-1), rtol=1e-4)
    np.testing.assert_allclose(result.accuracy, stored["test_acc"].reshape(-1), atol=1e-6)
    data = queries(tiny_zoo, "data", 16)
    assert data.shape == (16, tiny_zoo.manifest.spec["features"])
    noise = queries(tiny_zoo, "random", 16)
    assert noise.shape == data.shape and noise.min() < 0  # standard normal, like the features
