"""`weightzoo landscape` and side files served by ZooDataset (outputs and landscape targets)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import weightzoo
from helpers.small_splits import cut_image_splits
from weightzoo.cli import EXIT_ERROR, run
from weightzoo.errors import EpochError, SidecarNotFoundError, UnknownColumnError
from weightzoo.functional import evaluate
from weightzoo.generate.runner import generate
from weightzoo.generate.specs import get_spec
from weightzoo.imagesets import splits as image_splits
from weightzoo.landscape import LandscapeOptions, landscape_metrics
from weightzoo.landscape.options import resolve_options
from weightzoo.landscape.zoo_metrics import (
    ZOO_LANDSCAPE,
    UnsupportedZooError,
    compute_zoo_landscape,
    siblings,
)
from weightzoo.storage.sidecar import open_sidecar, read_sidecar

FAST = ["--batches", "1", "--batch-size", "32", "--iters", "4", "--probes", "3"]


@pytest.fixture(scope="module")
def tiny_images():
    """Digits splits cut to 120 training and 40 val/test images."""
    with cut_image_splits(120, 40):
        yield


@pytest.fixture
def mlp_zoo(tiny_images, tmp_path):
    spec = get_spec("trajectory-digits-mlp").override(models=4, epochs=2)
    generate(spec, tmp_path / "mlp", progress=False)
    return weightzoo.Zoo(tmp_path / "mlp")


def test_siblings_pair_models_of_one_node_cyclically():
    node = np.array([5, 5, 7, 9, 9, 9])
    assert siblings({"node": node}, 6).tolist() == [1, 0, -1, 4, 5, 3]
    assert siblings({}, 3).tolist() == [1, 2, 0]
    assert siblings({}, 1).tolist() == [-1]


def test_landscape_command_stores_metrics_that_the_dataset_serves(mlp_zoo, capsys):
    code = run(["landscape", str(mlp_zoo.path), "--epochs", "all", *FAST])
    assert code == 0, capsys.readouterr().err
    assert "hessian_top, hessian_trace" in capsys.readouterr().out
    stored = open_sidecar(mlp_zoo.path, "landscape")
    assert stored.epochs == mlp_zoo.epochs
    # The stored values are landscape_metrics on the zoo's first training batch and own loss.
    reader = mlp_zoo.reader("all", epochs=[2])
    rows = torch.from_numpy(reader.read("weights", np.arange(4), np.zeros(4, dtype=np.int64)))
    (x, y), _, _ = image_splits.load_splits("digits", None, 14, True, 0.15, 42)
    data = [(torch.from_numpy(x[:32]), torch.from_numpy(y[:32]))]

    def loss(out, target):
        return F.mse_loss(out, F.one_hot(target, 10).to(out.dtype))

    direct = landscape_metrics(
        mlp_zoo.build_model(), rows, data, loss, ("hessian_top", "hessian_trace"),
        layout=mlp_zoo.layout, options=LandscapeOptions(iters=4, probes=3, chunk=16),
    )  # fmt: skip
    positions = reader.positions
    np.testing.assert_allclose(
        stored.read("hessian_top", positions, [2] * 4), direct["hessian_top"], rtol=1e-5
    )
    np.testing.assert_allclose(
        stored.read("hessian_trace", positions, [2] * 4), direct["hessian_trace"], rtol=1e-5
    )
    assert (direct["hessian_trace"] != 0).all()
    # ZooDataset serves them per (model, epoch), beside the stored metrics.
    ds = weightzoo.ZooDataset(
        mlp_zoo.path, split="all", epochs="all", targets=("hessian_top", "train_loss"), ids=True
    )
    batch = ds.batch(range(len(ds)))
    expected = stored.read("hessian_top", batch["model"].numpy(), batch["epoch"].numpy())
    np.testing.assert_array_equal(batch["hessian_top"].numpy(), expected)
    assert len(set(batch["hessian_top"].tolist())) == len(ds)  # every checkpoint its own
    assert mlp_zoo.info()["side_files"] == {"landscape": ["hessian_top", "hessian_trace"]}
    assert run(["info", str(mlp_zoo.path)]) == 0
    assert "side file landscape: hessian_top, hessian_trace" in capsys.readouterr().out


def test_pair_metrics_compare_each_model_with_a_sibling(mlp_zoo):
    options = ZOO_LANDSCAPE.replace(batches=1, batch_size=32, steps=5)
    record = compute_zoo_landscape(
        mlp_zoo, metrics=("cka", "linear_barrier"), options=options, progress=False
    )
    stored = open_sidecar(mlp_zoo.path, record.file.split("/")[-1].removesuffix(".h5"))
    positions = mlp_zoo.reader("all").positions
    cka = stored.read("cka", positions, [mlp_zoo.epochs[-1]] * len(positions))
    assert np.isfinite(cka).all() and ((cka > 0) & (cka <= 1 + 1e-9)).all()
    barrier = stored.read("linear_barrier", positions, [mlp_zoo.epochs[-1]] * len(positions))
    assert (barrier >= 0).all()
    assert stored.attrs["bn_update"] is False  # no BatchNorm in the MLP: nothing re-estimated


def test_cli_passes_the_batchnorm_choice_on(mlp_zoo, monkeypatch):
    seen = []
    record = SimpleNamespace(arrays={"mc": {"shape": [4, 1]}}, file="sidecars/x.h5", sha256="0")

    def fake(zoo, **kwargs):
        seen.append(kwargs["options"])
        return record

    monkeypatch.setattr("weightzoo.landscape.zoo_metrics.compute_zoo_landscape", fake)
    for flag, expected in (([], None), (["--no-bn-update"], False)):
        assert run(["landscape", str(mlp_zoo.path), "--metrics", "mc", *flag]) == 0
        # the command's knobs over the engine's defaults, which are the generic ones here
        assert resolve_options(seen.pop(), ZOO_LANDSCAPE) == ZOO_LANDSCAPE.replace(
            bn_update=expected
        )
    assert run(["landscape", str(mlp_zoo.path), "--seed", "3", "--probes", "7"]) == 0
    given = seen.pop()
    assert (given["seed"], given["probes"]) == (3, 7)
    assert "points" not in given  # no option for it: the engine's own stays
    assert resolve_options(given, ZOO_LANDSCAPE) == ZOO_LANDSCAPE.replace(seed=3, probes=7)


def test_dataset_refuses_a_side_file_that_misses_served_checkpoints(mlp_zoo, capsys):
    assert run(["landscape", str(mlp_zoo.path), "--metrics", "hessian_trace", *FAST]) == 0
    ds = weightzoo.ZooDataset(mlp_zoo.path, split="all", targets="hessian_trace")  # last only
    assert len(ds) == 4
    with pytest.raises(EpochError, match="has no epoch"):
        weightzoo.ZooDataset(mlp_zoo.path, split="all", epochs="all", targets="hessian_trace")
    with pytest.raises(UnknownColumnError, match="side files: landscape"):
        weightzoo.ZooDataset(mlp_zoo.path, targets="hessian_top")


def test_outputs_feature_serves_the_behaviour_side_file(mlp_zoo, capsys):
    with pytest.raises(SidecarNotFoundError, match="weightzoo behaviour"):
        weightzoo.ZooDataset(mlp_zoo.path, features=("weights", "outputs"))
    assert run(["behaviour", str(mlp_zoo.path), "--n", "8"]) == 0
    ds = weightzoo.ZooDataset(
        mlp_zoo.path, split="all", epochs="all", features=("weights", "outputs")
    )
    batch = ds.batch(list(range(len(ds))))
    queries = torch.from_numpy(np.array(open_sidecar(mlp_zoo.path, "behaviour")["queries"]))
    result = evaluate(mlp_zoo, batch["weights"], queries)
    assert batch["outputs"].shape == (len(ds), 8, 10)
    torch.testing.assert_close(batch["outputs"], result.outputs, rtol=1e-5, atol=1e-6)
    item = ds[3]
    torch.testing.assert_close(item["outputs"], batch["outputs"][3])


def test_landscape_errors_are_one_line(mlp_zoo, tmp_path, capsys):
    assert run(["landscape", str(mlp_zoo.path), "--metrics", "sharpness"]) == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert "sharpness" in err and "hessian_top" in err and len(err.splitlines()) == 1
    spec = get_spec("property-synthetic").override(models=3, epochs=1)
    generate(spec, tmp_path / "property", progress=False)
    with pytest.raises(UnsupportedZooError, match=r"\(property\).*landscape_metrics"):
        compute_zoo_landscape(tmp_path / "property", progress=False)


def test_mlds_networks_are_measured_on_their_own_machines_sequences(tmp_path):
    from weightzoo.architectures import build_model
    from weightzoo.families.mlds import landscape as mlds
    from weightzoo.families.mlds.spec import MLDSData

    machines = ["EightBitMachine", "SingleDirectMachine"]
    spec = get_spec("mlds-ds1").override(per_class=2, epochs=1, machines=machines)
    generate(spec, tmp_path / "mlds", progress=False)
    zoo = weightzoo.Zoo(tmp_path / "mlds")
    knobs = dict(iters=5, probes=3, steps=5)
    options = ZOO_LANDSCAPE.replace(batches=1, batch_size=16, **knobs)
    metrics = ["hessian_top", "hessian_trace", "cka", "mc"]
    compute_zoo_landscape(zoo, metrics=metrics, options=options, progress=False)
    side = read_sidecar(zoo.path, "landscape")
    row_of = {int(p): k for k, p in enumerate(side["models"])}
    reader = zoo.reader("all", "last")
    machine = [str(m) for m in reader.columns["machine"]]
    rows = reader.read("weights", np.arange(4), np.zeros(4, int))
    # the reference: the plain nn.GRU network, one at a time, on its machine's batch
    data = MLDSData.from_spec(zoo.manifest.spec)
    net = build_model(zoo.manifest.spec)
    for i in range(4):
        partner = next(j for j in range(4) if j != i and machine[j] == machine[i])
        batch = mlds.class_batches(data, machine[i], 1, 16, torch.device("cpu"))
        want = landscape_metrics(
            net, torch.from_numpy(rows[i : i + 1]), batch, mlds.masked_mse, metrics,
            layout=zoo.layout, partners=torch.from_numpy(rows[partner : partner + 1]),
            accuracy_fn=mlds.bit_accuracy, options=LandscapeOptions(**knobs),
        )  # fmt: skip
        for metric in metrics:
            got = side[metric][row_of[int(reader.positions[i])], 0]
            np.testing.assert_allclose(got, want[metric][0], rtol=1e-3, err_msg=metric)
