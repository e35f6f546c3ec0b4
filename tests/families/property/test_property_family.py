"""The property-inference family: data pools, subsets, generation, determinism, learning."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.tiny_specs import tiny_property_spec
from weightzoo.analysis import TABLE_IDS
from weightzoo.analysis.data import arrays
from weightzoo.analysis.property_inference import distinguish_table
from weightzoo.architectures import UnbuildableSpecError, build_model
from weightzoo.cli import run
from weightzoo.errors import InvalidOptionError
from weightzoo.families import family as registered_family
from weightzoo.families.property.data import load_property_data, training_subset
from weightzoo.families.property.family import FAMILY
from weightzoo.families.property.spec import RATIOS, PropertySpec
from weightzoo.families.property.train import model_subsets
from weightzoo.features import load_vector
from weightzoo.generate.runner import generate
from weightzoo.generate.specs import family_for, get_spec
from weightzoo.zoo import Zoo

ALL = ["train", "val", "test"]


def tiny_spec(**changes) -> PropertySpec:
    return tiny_property_spec(**({"shard_models": 7} | changes))


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
    plans = FAMILY.plan(spec)
    assert len(plans) == 3 * 2 * 3
    cells = [(p.columns["pool"], p.columns["ratio"]) for p in plans[:6]]
    assert sorted(cells) == sorted(
        (pool, r) for pool in ("victim", "adversary") for r in spec.ratios
    )
    assert len({p.seed for p in plans}) == len(plans)
    first = FAMILY.plan(spec.override(models=6))
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
    plans = FAMILY.plan(spec)
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


def test_random_queries_of_a_digits_zoo_are_pixels(tmp_path):
    from weightzoo.functional import queries

    spec = get_spec("property-digits-even").replace(
        ratios=(0.5,), models_per_ratio=1, epochs=1, name="digits-queries"
    )
    generate(spec, tmp_path / "digits", progress=False)
    noise = queries(tmp_path / "digits", "random", 32, seed=3)
    assert noise.shape == (32, 64) and 0.0 <= noise.min() and noise.max() <= 1.0
    assert torch.equal(noise, queries(tmp_path / "digits", "random", 32, seed=3))


# ------------------------------------------------------------------- the family's one home
def test_the_registry_hands_out_the_family_and_binds_its_spec_class():
    assert registered_family("property") is FAMILY and FAMILY.spec_class is PropertySpec
    assert family_for(tiny_spec()) is FAMILY
    other = PropertySpec.__mro__[2]  # ZooSpec: a spec of another class under the family's name
    with pytest.raises(InvalidOptionError, match="is a ZooSpec but family 'property' trains"):
        family_for(other(name="stray", family="property"))


@settings(max_examples=25, deadline=None)
@given(
    features=st.integers(2, 40),
    hidden=st.lists(st.integers(1, 40), min_size=0, max_size=4),
    classes=st.integers(2, 12),
    models=st.integers(1, 200),
)
def test_the_torch_free_size_is_the_module_layouts(features, hidden, classes, models):
    spec = tiny_spec(features=features, hidden=tuple(hidden), num_classes=classes, models=models)
    assert spec.num_params() == FAMILY.layout(spec).num_params
    assert spec.estimate() == FAMILY.estimate(spec)  # `weightzoo list` shows the spec's
    assert spec.estimate()["models"] == min(models, 3 * 2 * 3)
    assert spec.estimate()["checkpoints"] == len(FAMILY.checkpoint_epochs(spec)) == 2


def test_a_spec_without_widths_names_no_architecture():
    with pytest.raises(UnbuildableSpecError, match="names no weightzoo architecture"):
        build_model({"name": "stray", "family": "property", "features": 4})


def test_the_report_table_is_the_familys_own():
    tables = FAMILY.tables()
    assert tables == {"property.distinguish": distinguish_table}
    assert set(tables) <= set(TABLE_IDS)


def test_listing_and_sizing_import_no_torch():
    code = (
        "import sys; from weightzoo import catalog, families; "
        "sizes = [s.estimate() for s in families.spec_module('property').specs()]; "
        "names = {e.name: e.family for e in catalog.entries() if e.family == 'property'}; "
        "assert 'torch' not in sys.modules, 'torch'; "
        "print(sorted(names), [s['models'] for s in sizes])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "['property-digits-even',",
        "'property-synthetic']",
        "[1100,",
        "2200]",
    ]


def test_list_shows_the_property_zoos_with_their_sizes(capsys):
    assert run(["list", "--family", "property", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert sorted(rows) == ["property-digits-even", "property-synthetic"]
    digits = rows["property-digits-even"]
    # 11 ratios x 2 pools x 100; a 64-32-10 MLP: 65 * 32 + 33 * 10 weights and biases
    assert (digits["models"], digits["checkpoints"], digits["params"]) == (2200, 2, 2410)
    assert digits["sources"] == [
        {"kind": "generate", "command": "weightzoo generate property-digits-even", "data": []}
    ]


def test_building_and_evaluating_a_row_never_import_training_code(tiny_zoo):
    code = (
        "import sys; from weightzoo.functional import evaluate; from weightzoo.zoo import Zoo; "
        f"zoo = Zoo({str(tiny_zoo.root)!r}); evaluate(zoo, zoo.rows(0, 'last')); "
        "bad = [m for m in sys.modules if m.endswith(('property.train', 'generate.population'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "old",
    [
        "weightzoo.generate.property",
        "weightzoo.architectures.property_mlp",
        "weightzoo.tasks",
    ],
)
def test_the_old_module_paths_are_gone(old):
    parent, _, _ = old.rpartition(".")
    assert importlib.util.find_spec(parent) is not None
    assert importlib.util.find_spec(old) is None
