"""Modules from manifests: build_model(spec) + load_vector reproduce what training stored."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from helpers.small_splits import cut_image_splits
from weightzoo.architectures import UnbuildableSpecError, build_model
from weightzoo.families.mlds.data import class_data
from weightzoo.families.mlds.model import network_inputs
from weightzoo.features import layout_of, load_vector
from weightzoo.generate.runner import generate
from weightzoo.generate.specs import family_for, get_spec
from weightzoo.imagesets import splits as image_splits
from weightzoo.storage import Manifest, ZooReader


def _final_rows(zoo):
    """(manifest, reader, final-checkpoint rows [N, P]) of every model of a zoo."""
    manifest = Manifest.load(zoo)
    reader = ZooReader(zoo, split="all")
    count = len(reader.column("model_id"))
    last = len(manifest.epochs) - 1
    rows = reader.read("weights", np.arange(count), np.full(count, last))
    return manifest, reader, rows


def test_mlds_rows_reproduce_their_stored_losses(tmp_path):
    spec = get_spec("mlds-ds1").override(models=3, epochs=2)
    spec = spec.replace(seq_len=8, train_size=32, val_size=16, eval_size=16, shard_models=3)
    generate(spec, tmp_path / "z", progress=False)
    manifest, reader, rows = _final_rows(tmp_path / "z")
    for local, row in enumerate(rows):
        net = load_vector(build_model(manifest.spec).eval(), row, manifest.layout)
        val = class_data(spec, str(reader.column("machine")[local]))["val"]
        with torch.no_grad():
            out = net(network_inputs(val.inputs, manifest.spec["signed_inputs"]))
        err = ((out - torch.from_numpy(val.outputs).float()) ** 2).sum(-1)
        mask = torch.from_numpy(val.mask).float()
        loss = float((err * mask).sum() / (mask.sum() * out.shape[-1]))
        assert loss == pytest.approx(float(reader.metrics["val_loss"][local, -1]), rel=1e-4)


@pytest.fixture
def tiny_digits():
    """Digits splits cut to 200 training and 60 val/test images."""
    with cut_image_splits(200, 60):
        yield


@pytest.mark.parametrize(
    "name", ["modelzoo-digits-cnn-s-hyp-10-rand", "trajectory-digits-mlp", "trajectory-digits-cnn"]
)
def test_image_rows_reproduce_their_stored_accuracy_and_loss(tiny_digits, tmp_path, name):
    spec = get_spec(name).override(models=2, epochs=1).replace(split_fractions=(1.0, 0.0, 0.0))
    generate(spec, tmp_path / "z", progress=False)
    manifest, reader, rows = _final_rows(tmp_path / "z")
    assert manifest.layout == family_for(spec).layout(spec)
    _, _, (test_x, test_y) = image_splits.load_splits(
        spec.dataset, None, spec.image_size, True, spec.val_fraction, spec.data_seed
    )
    x, y = torch.from_numpy(test_x), torch.from_numpy(test_y)
    for local, row in enumerate(rows):
        columns = {"activation": str(reader.column("activation")[local])}
        net = load_vector(build_model(manifest.spec, columns).eval(), row, manifest.layout)
        with torch.no_grad():
            out = net(x)
        acc = float((out.argmax(1) == y).double().mean())
        if spec.loss == "ce":
            loss = float(F.cross_entropy(out, y))
        else:
            loss = float(F.mse_loss(out, F.one_hot(y, 10).float()))
        assert acc == pytest.approx(float(reader.metrics["test_acc"][local, -1]), abs=1e-6)
        assert loss == pytest.approx(float(reader.metrics["test_loss"][local, -1]), rel=1e-4)


def test_every_named_spec_builds_a_module_of_its_layout():
    for name in ("mlds-ds1", "mlds-ds3", "modelzoo-cifar10-cnn-m-seed", "trajectory-mnist-cnn"):
        spec = get_spec(name)
        assert layout_of(spec.build_model()) == family_for(spec).layout(spec)
    resnet = get_spec("modelzoo-cifar100-resnet18-seed")
    module = build_model(resnet.to_dict())
    assert layout_of(module) == family_for(resnet).layout(resnet)
    assert "bn1.running_mean" in layout_of(module).names
    assert not any(n.endswith("num_batches_tracked") for n in layout_of(module).names)


def test_specs_without_an_architecture_are_clear_errors():
    with pytest.raises(UnbuildableSpecError, match="names no weightzoo architecture"):
        build_model({"name": "x", "family": "cnn-zoo", "importer": "cnn-zoo"})
    hyp = get_spec("modelzoo-digits-cnn-s-hyp-10-rand").to_dict()
    with pytest.raises(UnbuildableSpecError, match="several activations"):
        build_model(hyp)
    assert isinstance(build_model(hyp, {"activation": "gelu"}).module_list[2], torch.nn.GELU)
    twin = {"spec_class": "SparsifiedTwin", "source_spec": hyp, "name": "t"}
    assert layout_of(build_model(twin, {"activation": "relu"})) == layout_of(
        build_model(hyp, {"activation": "tanh"})
    )


def test_building_a_row_imports_no_training_code():
    # the family's hooks come with the Family base class, never with the trainers
    code = (
        "import sys, weightzoo.architectures as a; a.build_model({'family': 'mlds'}); "
        "training = ('.population', '.runner', '.workers', '.train'); "
        "bad = [m for m in sys.modules if m.startswith('weightzoo') and m.endswith(training)]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
