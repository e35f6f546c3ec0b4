"""The named Model Zoos / trajectory specs: names, grids, seeds, override, estimate."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightzoo import cli
from weightzoo.families import family
from weightzoo.families.modelzoo.spec import ModelZooSpec, TrajectorySpec, specs

TABLE_1 = [
    f"modelzoo-{ds}-{arch}-{cfg}"
    for ds, arch in [
        ("mnist", "cnn-s"),
        ("fashion-mnist", "cnn-s"),
        ("svhn", "cnn-s"),
        ("usps", "cnn-s"),
        ("cifar10", "cnn-s"),
        ("cifar10", "cnn-m"),
        ("stl10", "cnn-s"),
        ("stl10", "cnn-m"),
    ]
    for cfg in ("seed", "hyp-10-rand", "hyp-10-fix")
] + [
    "modelzoo-cifar10-resnet18-seed",
    "modelzoo-cifar100-resnet18-seed",
    "modelzoo-tiny-imagenet-resnet18-seed",
]
EXTRA = [
    "trajectory-mnist-mlp",
    "trajectory-mnist-cnn",
    "modelzoo-digits-cnn-s-seed",
    "modelzoo-digits-cnn-s-hyp-10-rand",
    "trajectory-digits-mlp",
    "trajectory-digits-cnn",
]


@pytest.fixture(scope="module")
def by_name():
    return {s.name: s for s in specs()}


def test_every_table_1_zoo_and_extra_spec_exists(by_name):
    assert len(TABLE_1) == 27
    missing = [n for n in TABLE_1 + EXTRA if n not in by_name]
    assert not missing
    assert len(by_name) == len(TABLE_1) + len(EXTRA)


def test_registry_sees_both_families():
    from weightzoo.generate.specs import family_for, get_spec

    spec = get_spec("trajectory-mnist-cnn")
    assert isinstance(spec, TrajectorySpec)
    assert family_for(spec).layout(spec).num_params == 1410
    assert isinstance(get_spec("modelzoo-mnist-cnn-s-seed"), ModelZooSpec)


@pytest.mark.parametrize(
    ("name", "nodes"),
    [
        ("modelzoo-mnist-cnn-s-hyp-10-rand", 4 * 2 * 4 * 2 * 2 * 2),
        ("modelzoo-fashion-mnist-cnn-s-hyp-10-fix", 4 * 2 * 4 * 2 * 2 * 2),
        ("modelzoo-svhn-cnn-s-hyp-10-fix", 4 * 3 * 4 * 2 * 2 * 3),
        ("modelzoo-usps-cnn-s-hyp-10-rand", 256),
        ("modelzoo-cifar10-cnn-s-hyp-10-rand", 128),
        ("modelzoo-cifar10-cnn-m-hyp-10-fix", 128),
        ("modelzoo-stl10-cnn-m-hyp-10-rand", 256),
    ],
)
def test_hyp_grid_sizes(by_name, name, nodes):
    spec = by_name[name]
    assert len(spec.nodes()) == nodes
    assert spec.num_models() == nodes * 10
    assert set(spec.activations) == {"tanh", "relu", "sigmoid", "gelu"}
    assert set(spec.inits) == {"uniform", "normal", "kaiming_uniform", "kaiming_normal"}
    assert set(spec.optimizers) == {"adam", "sgd"}


def test_seed_rules(by_name):
    seed = by_name["modelzoo-mnist-cnn-s-seed"]
    assert seed.num_models() == 1000
    assert seed.seed_table().ravel().tolist() == list(range(1, 1001))
    fix = by_name["modelzoo-mnist-cnn-s-hyp-10-fix"].seed_table()
    assert (fix == np.arange(1, 11)).all()
    rand = by_name["modelzoo-mnist-cnn-s-hyp-10-rand"].seed_table()
    assert rand.shape == (256, 10)
    assert len(np.unique(rand)) == rand.size
    assert rand.min() >= 0 and rand.max() < 1_000_000
    again = by_name["modelzoo-mnist-cnn-s-hyp-10-rand"].seed_table()
    assert np.array_equal(rand, again)
    other = by_name["modelzoo-fashion-mnist-cnn-s-hyp-10-rand"].seed_table()
    assert not np.array_equal(rand, other)
    traj = by_name["trajectory-mnist-mlp"]
    assert traj.seed_table().ravel().tolist() == list(range(1, 251))


def test_epochs_and_resnet_settings(by_name):
    assert by_name["modelzoo-cifar10-resnet18-seed"].epochs == 50
    assert by_name["modelzoo-cifar10-resnet18-seed"].batch_size == 256
    for ds in ("cifar100", "tiny-imagenet"):
        spec = by_name[f"modelzoo-{ds}-resnet18-seed"]
        assert (spec.epochs, spec.batch_size, spec.lr_schedule) == (60, 128, "onecycle")
        assert family(spec.family).checkpoint_epochs(spec) == list(range(61))
    spec = by_name["modelzoo-mnist-cnn-s-seed"]
    assert family("modelzoo").checkpoint_epochs(spec) == list(range(51))


def test_plan_seeds_hyperparameters_and_strata(by_name):
    spec = by_name["modelzoo-svhn-cnn-s-hyp-10-fix"]
    plans = family("modelzoo").plan(spec)
    assert [p.model_id for p in plans] == list(range(len(plans)))
    assert [p.seed for p in plans[:12]] == [*range(1, 11), 1, 2]
    assert plans[0].columns == {
        "activation": "tanh",
        "dropout": 0.0,
        "init": "uniform",
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 1e-3,
        "node": 0,
    }
    assert plans[10].columns["weight_decay"] == 1e-4
    assert plans[0].stratum == plans[9].stratum != plans[10].stratum
    assert len({p.stratum for p in plans}) == len(spec.nodes())
    seed_plans = family("modelzoo").plan(by_name["modelzoo-usps-cnn-s-seed"])
    assert {p.stratum for p in seed_plans} == {""}
    assert seed_plans[0].columns["weight_decay"] == 1e-3


def test_override_models_is_a_prefix_and_epochs(by_name):
    spec = by_name["modelzoo-mnist-cnn-s-hyp-10-rand"]
    small = spec.override(models=25, epochs=2)
    fam = family("modelzoo")
    assert fam.plan(small) == fam.plan(spec)[:25]
    assert fam.checkpoint_epochs(small) == [0, 1, 2]
    assert small.estimate()["models"] == 25
    assert small.estimate()["checkpoints"] == 3
    assert small.fingerprint() != spec.fingerprint()
    assert spec.override() is spec
    with pytest.raises(ValueError, match="does not accept"):
        spec.override(per_class=3)
    with pytest.raises(ValueError, match="at least 1, got 0"):
        spec.override(models=0)


def test_data_dir_is_not_part_of_the_identity(by_name):
    spec = by_name["modelzoo-digits-cnn-s-seed"]
    moved = spec.override(data_dir="/somewhere/else")
    assert moved.data_dir == "/somewhere/else"
    assert moved.fingerprint() == spec.fingerprint()
    assert moved == spec
    assert "data_dir" not in moved.to_dict()


def test_estimate(by_name):
    est = by_name["modelzoo-cifar10-cnn-m-seed"].estimate()
    assert est == {
        "models": 1000,
        "checkpoints": 51,
        "params": 10853,
        "bytes": 1000 * 51 * 10853 * 4,
    }
    resnet = by_name["modelzoo-cifar10-resnet18-seed"].estimate()
    # parameters plus BatchNorm running means and variances
    assert resnet["params"] == 11_173_962 + 9600


def test_specs_serialise(by_name):
    import json

    for spec in by_name.values():
        data = spec.to_dict()
        assert json.loads(json.dumps(data)) == data
        assert data["family"] in ("modelzoo", "trajectory")


def test_the_torch_free_row_length_is_the_built_layouts(by_name):
    from weightzoo.families.modelzoo import model

    for spec in by_name.values():  # one ResNet-18 build per input shape (the layout is cached)
        assert spec.num_params() == model.layout(spec.to_dict()).num_params, spec.name
        assert spec.estimate() == family(spec.family).estimate(spec)


@settings(max_examples=25, deadline=None)
@given(
    architecture=st.sampled_from(["mlp", "cnn", "cnn-s", "cnn-m"]),
    size=st.integers(14, 33),
    channels=st.sampled_from([1, 3]),
    classes=st.integers(2, 12),
    hidden=st.integers(1, 24),
    conv=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    bias=st.booleans(),
)
def test_num_params_counts_the_network_it_describes(
    architecture, size, channels, classes, hidden, conv, bias
):
    from weightzoo.families.modelzoo import model

    if architecture in ("cnn-s", "cnn-m"):  # their first linear layer fixes the image size
        size, bias = {"cnn-s": 28, "cnn-m": 32}[architecture], True
    spec = TrajectorySpec(
        name="probe",
        architecture=architecture,
        image_size=size,
        in_channels=channels,
        num_classes=classes,
        hidden=hidden,
        conv_channels=conv,
        bias=bias,
    )
    assert spec.num_params() == model.layout(spec.to_dict()).num_params


def test_listing_and_sizing_import_no_torch():
    code = (
        "import sys; from weightzoo import catalog, families; "
        "sizes = [s.estimate() for s in families.spec_module('modelzoo').specs()]; "
        "found = [e.family for e in catalog.entries() if e.family in ('modelzoo', 'trajectory')]; "
        "assert 'torch' not in sys.modules, 'torch'; "
        "print(found.count('modelzoo'), found.count('trajectory'), sizes[-1]['params'])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # 27 of Table 1, 2 on digits and 3 published-only (sparsified twins, a sample); 4 trajectory
    assert result.stdout.split() == ["32", "4", "1410"]


@pytest.mark.parametrize("name", ["modelzoo", "trajectory"])
def test_list_shows_each_family_with_its_sizes(capsys, name):
    assert cli.run(["list", "--family", name, "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    named = {s.name: s for s in specs() if s.family == name}
    assert set(named) <= set(rows) and {row["family"] for row in rows.values()} == {name}
    for spec_name, spec in named.items():
        size = spec.estimate()
        assert (rows[spec_name]["models"], rows[spec_name]["params"]) == (
            size["models"],
            size["params"],
        )
