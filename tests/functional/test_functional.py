"""Rows -> modules and batch evaluation: every family's stored rows reproduce stored metrics."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import weightzoo
from helpers.small_splits import cut_image_splits
from weightzoo.architectures import UnbuildableSpecError
from weightzoo.errors import (
    DataFilesMissingError,
    DeviceError,
    InputShapeError,
    InvalidOptionError,
    LayoutError,
    WeightzooError,
)
from weightzoo.features import layout_of, load_vector
from weightzoo.functional import evaluate, input_shape, queries
from weightzoo.generate.runner import generate
from weightzoo.generate.specs import get_spec
from weightzoo.imagesets import splits as image_splits

# One network per activation: a hyperparameter grid whose rows need their own module.
GRID = dict(
    activations=("tanh", "relu"),
    dropouts=(0.0,),
    inits=("uniform",),
    optimizers=("adam",),
    lrs=(1e-3,),
    weight_decays=(0.0,),
    seeds_per_node=2,
)


@pytest.fixture(scope="module")
def tiny_images():
    """Digits splits cut to 200 training and 60 val/test images, for generation and evaluation."""
    with cut_image_splits(200, 60):
        yield


def _image_spec(name: str):
    if name == "cnn-s-grid":
        return get_spec("modelzoo-digits-cnn-s-hyp-10-rand").replace(**GRID).override(epochs=1)
    if name == "cnn-m":
        base = get_spec("modelzoo-digits-cnn-s-seed")
        return base.replace(name="digits-cnn-m", architecture="cnn-m", image_size=32).override(
            models=3, epochs=1
        )
    return get_spec(f"trajectory-digits-{name}").override(models=3, epochs=1)


@pytest.fixture(scope="module")
def image_zoos(tiny_images, tmp_path_factory):
    """Small digits zoos: CNN-s grid (tanh + relu), CNN-m, trajectory MLP and CNN."""
    root = tmp_path_factory.mktemp("image-zoos")
    out = {}
    for name in ("cnn-s-grid", "cnn-m", "mlp", "cnn"):
        generate(_image_spec(name), root / name, progress=False)
        out[name] = weightzoo.Zoo(root / name)
    return out


def _mlds_spec(subset: str):
    spec = get_spec(f"mlds-{subset}")
    small = dict(seq_len=8, train_size=32, val_size=16, eval_size=16, shard_models=3)
    if subset == "ds3":
        spec = spec.override(machines=["3", "5"], models=2, epochs=1)
    else:
        spec = spec.override(models=3, epochs=2)
    if subset == "ds2":
        small |= {"trigger_every": 8, "trigger_eval_every": 8}
    return spec.replace(**small)


@pytest.fixture(scope="module")
def mlds_zoos(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlds-zoos")
    out = {}
    for subset in ("ds1", "ds2", "ds3"):
        generate(_mlds_spec(subset), root / subset, progress=False)
        out[subset] = weightzoo.Zoo(root / subset)
    return out


def _stored(zoo, metric):
    """A stored metric of every model at every checkpoint, ``[models, checkpoints]``."""
    return zoo.reader().metrics[metric]


def _every_checkpoint(zoo):
    """All rows of a zoo (model-major) with their model positions."""
    reader = zoo.reader()
    models, checkpoints = reader.num_models, len(reader.epochs)
    pairs = np.indices((models, checkpoints)).reshape(2, -1)
    return reader.read("weights", pairs[0], pairs[1]), reader.positions[pairs[0]], checkpoints


# ------------------------------------------------------------------------ stored metrics
@pytest.mark.parametrize("name", ["cnn-s-grid", "cnn-m", "mlp", "cnn"])
def test_image_rows_reproduce_stored_test_metrics(image_zoos, name):
    zoo = image_zoos[name]
    rows, positions, checkpoints = _every_checkpoint(zoo)
    result = evaluate(zoo, rows, model_columns=positions)
    assert result.split == "test" and result.stored_name("acc") == "test_acc"
    acc = _stored(zoo, "test_acc").reshape(-1)
    loss = _stored(zoo, "test_loss").reshape(-1)
    np.testing.assert_allclose(result.accuracy.numpy(), acc, atol=1e-6)
    np.testing.assert_allclose(result.loss.numpy(), loss, rtol=1e-5)
    assert result.outputs.shape == (len(rows), 60, 10)
    assert checkpoints == 2


def test_image_rows_reproduce_stored_train_and_val_metrics(image_zoos):
    zoo = image_zoos["mlp"]
    rows, _positions, _ = _every_checkpoint(zoo)
    for split in ("train", "val"):
        result = evaluate(zoo, rows, split=split, keep_outputs=False)
        assert result.outputs is None
        np.testing.assert_allclose(
            result.accuracy.numpy(), _stored(zoo, f"{split}_acc").reshape(-1), atol=1e-6
        )


@pytest.mark.parametrize("subset", ["ds1", "ds2", "ds3"])
def test_mlds_rows_reproduce_stored_eval_metrics(mlds_zoos, subset):
    zoo = mlds_zoos[subset]
    rows, positions, _ = _every_checkpoint(zoo)
    sets = ["eval", "val"] + (["trigger"] if subset == "ds2" else [])
    for split in sets:
        result = evaluate(zoo, rows, model_columns=positions, split=split)
        for metric in ("loss", "bit_accuracy", "symbol_accuracy"):
            stored = _stored(zoo, f"{split}_{metric}").reshape(-1)
            tolerance = {"rtol": 1e-5} if metric == "loss" else {"atol": 1e-6}
            np.testing.assert_allclose(result.metrics[metric].numpy(), stored, **tolerance)
    accuracy = "symbol_accuracy" if subset == "ds3" else "bit_accuracy"
    assert torch.equal(result.accuracy, result.metrics[accuracy])


def test_mlds_rows_take_their_class_from_a_mapping(mlds_zoos):
    zoo = mlds_zoos["ds1"]
    machines = zoo.model_columns([0, 1])["machine"]
    rows = zoo.rows([0, 1])
    by_mapping = evaluate(zoo, rows, model_columns={"machine": machines})
    by_position = evaluate(zoo, rows, model_columns=[0, 1])
    assert torch.equal(by_mapping.loss, by_position.loss)
    swapped = evaluate(zoo, rows, model_columns={"machine": machines[::-1]})
    assert not torch.equal(swapped.loss, by_position.loss)  # another machine's sequences


def test_sparsified_twin_rows_reproduce_stored_metrics(image_zoos, tmp_path):
    from weightzoo.families.modelzoo import sparsify as sp

    settings = sp.SparsifySettings(lr=0.03, kl_warmup=0, block_models=4)
    sp.sparsify_zoo(
        image_zoos["cnn-s-grid"].path,
        tmp_path / "twin",
        epochs=1,
        progress=False,
        settings=settings,
    )
    twin = weightzoo.Zoo(tmp_path / "twin")
    rows, positions, _ = _every_checkpoint(twin)
    result = evaluate(twin, rows, model_columns=positions)
    np.testing.assert_allclose(
        result.accuracy.numpy(), _stored(twin, "test_acc").reshape(-1), atol=1e-6
    )
    np.testing.assert_allclose(
        result.loss.numpy(), _stored(twin, "test_loss").reshape(-1), rtol=1e-5
    )
    assert twin.build_model(model=0) is not None


# --------------------------------------------------------------------- modules from rows
def test_zoo_module_matches_a_manual_rebuild_and_evaluate(image_zoos):
    zoo = image_zoos["cnn-s-grid"]
    activations = zoo.model_columns(np.arange(len(zoo)))["activation"]
    relu = int(np.flatnonzero(activations == "relu")[0])
    net = zoo.module((relu, "last"))
    assert isinstance(net.module_list[2], torch.nn.ReLU) and not net.training
    x = queries(zoo, "data", 16)
    with torch.no_grad():
        direct = net(x)
    result = evaluate(zoo, zoo.rows([relu]), x, model_columns=[relu])
    torch.testing.assert_close(result.outputs[0], direct, rtol=1e-5, atol=1e-5)
    same = zoo.module(zoo.rows([relu], epoch=0)[0], model=relu)
    first = zoo.module((relu, 0))
    pairs = zip(same.parameters(), first.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


@pytest.mark.parametrize("name", ["cnn-s-grid", "cnn-m", "mlp", "cnn", "ds1", "ds2", "ds3"])
def test_zoo_module_reproduces_stored_metrics(image_zoos, mlds_zoos, name):
    """One module per model, run plainly (nn.GRU / nn.LSTM for MLDS), gives the stored values."""
    from weightzoo.families.mlds.data import class_sets
    from weightzoo.families.mlds.model import network_inputs
    from weightzoo.families.mlds.spec import MLDSData

    zoo = image_zoos.get(name) or mlds_zoos[name]
    reader = zoo.reader(epochs="last")
    for local, position in enumerate(reader.positions):
        net = zoo.module((int(position), "last"))
        if name.startswith("ds"):
            data = MLDSData.from_spec(zoo.manifest.spec)
            column = "automaton" if name == "ds3" else "machine"
            test = class_sets(data, str(reader.column(column)[local]))["eval"]
            with torch.no_grad():
                out = net(network_inputs(test.inputs, data.signed_inputs))
            target = torch.from_numpy(test.outputs).float()
            loss = float(((out - target) ** 2).mean())
            stored = reader.metrics["eval_loss"][local, 0]
            assert loss == pytest.approx(float(stored), rel=1e-4)
        else:
            spec = zoo.manifest.spec
            _, _, (x, y) = image_splits.load_splits(
                "digits", None, spec["image_size"], True, 0.15, spec["data_seed"]
            )
            with torch.no_grad():
                predicted = net(torch.from_numpy(x)).argmax(1)
            acc = float((predicted == torch.from_numpy(y)).double().mean())
            assert acc == pytest.approx(float(reader.metrics["test_acc"][local, 0]), abs=1e-6)


def test_grid_zoo_without_a_model_is_a_clear_error(image_zoos):
    zoo = image_zoos["cnn-s-grid"]
    with pytest.raises(UnbuildableSpecError, match=r"build_model\(model=POSITION\)"):
        zoo.build_model()
    with pytest.raises(InvalidOptionError, match="model_columns"):
        evaluate(zoo, zoo.rows([0]))
    with pytest.raises(InvalidOptionError, match="activation"):
        evaluate(zoo, zoo.rows([0]), model_columns={"dropout": 0.0})
    assert isinstance(image_zoos["mlp"].build_model(), torch.nn.Module)


def test_imported_zoo_keeps_the_unbuildable_message(image_zoos, tmp_path):
    import json
    import shutil

    shutil.copytree(image_zoos["mlp"].path, tmp_path / "imp")
    manifest = json.loads((tmp_path / "imp" / "zoo.json").read_text())
    manifest["spec"] = {"name": "imp", "family": "cnn-zoo", "importer": "cnn-zoo"}
    (tmp_path / "imp" / "zoo.json").write_text(json.dumps(manifest))
    zoo = weightzoo.Zoo(tmp_path / "imp")
    with pytest.raises(UnbuildableSpecError, match="names no weightzoo architecture"):
        zoo.build_model()
    with pytest.raises(UnbuildableSpecError, match="names no weightzoo architecture"):
        evaluate(zoo, np.zeros((1, zoo.layout.num_params), np.float32))


def test_resnet_rows_run_in_eval_mode_on_their_stored_running_statistics(tmp_path):
    """Random rows (weights and BatchNorm statistics) give the loop's outputs."""
    spec = get_spec("modelzoo-cifar10-resnet18-seed")
    zoo = _fake_zoo(tmp_path, spec.to_dict())
    torch.manual_seed(0)
    rows = torch.randn(2, zoo.layout.num_params) * 0.02
    var = [s for s in zoo.layout if s.name.endswith("running_var")]
    for s in var:
        rows[:, s.offset : s.stop] = rows[:, s.offset : s.stop].abs() + 0.5
    x = torch.rand(3, 3, 32, 32)
    result = evaluate(zoo, rows, x, torch.tensor([0, 1, 2]))
    for i in range(2):
        net = load_vector(zoo.build_model(), rows[i], zoo.layout)
        with torch.no_grad():
            torch.testing.assert_close(result.outputs[i], net(x), rtol=1e-4, atol=1e-4)
    assert result.loss.shape == (2,) and result.accuracy.shape == (2,)


def _fake_zoo(tmp_path, spec):
    """A manifest-only zoo of a spec (no shards): enough to build and evaluate rows."""
    import json

    from weightzoo.architectures import build_model
    from weightzoo.storage import Manifest

    layout = layout_of(build_model(spec))
    manifest = Manifest(
        name=spec["name"],
        family=spec["family"],
        spec=spec,
        spec_fingerprint="0" * 64,
        layout=layout,
        epochs=[0],
        metrics=["test_acc"],
        columns={"model_id": "int64"},
        stats_preset="modelzoo",
        stats_names=[],
        num_models=1,
        split_counts={"train": 1},
    )
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "zoo.json").write_text(json.dumps(manifest.to_dict()))
    return weightzoo.Zoo(tmp_path / "zoo")


# ------------------------------------------------------------------------------ chunking
def test_chunked_rows_and_inputs_give_the_same_result(image_zoos, mlds_zoos):
    zoo = image_zoos["cnn"]
    rows, positions, _ = _every_checkpoint(zoo)
    whole = evaluate(zoo, rows)
    pieces = evaluate(zoo, rows, batch_size=7, rows_per_chunk=2)
    torch.testing.assert_close(pieces.outputs, whole.outputs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pieces.loss, whole.loss, rtol=1e-6, atol=0)
    zoo = mlds_zoos["ds1"]
    rows, positions, _ = _every_checkpoint(zoo)
    whole = evaluate(zoo, rows, model_columns=positions)
    pieces = evaluate(zoo, rows, model_columns=positions, batch_size=3, rows_per_chunk=4)
    torch.testing.assert_close(pieces.loss, whole.loss, rtol=1e-6, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(image_zoos, mlds_zoos):
    for zoo in (image_zoos["cnn-m"], mlds_zoos["ds1"]):
        rows, positions, _ = _every_checkpoint(zoo)
        cpu = evaluate(zoo, rows, model_columns=positions)
        gpu = evaluate(zoo, rows, model_columns=positions, device="cuda")
        # Full float32 on both (evaluate switches TF32 off): outputs agree to float rounding.
        torch.testing.assert_close(gpu.outputs, cpu.outputs, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(gpu.loss, cpu.loss, rtol=1e-4, atol=1e-5)
        # Rounding may still flip an exact near tie: at most one input's worth of accuracy.
        one_input = 1 / gpu.outputs.shape[1]
        torch.testing.assert_close(gpu.accuracy, cpu.accuracy, rtol=0, atol=one_input + 1e-9)


# ------------------------------------------------------------------------------- queries
def test_queries_are_deterministic_and_at_the_input_shape(image_zoos, mlds_zoos):
    zoo = image_zoos["cnn-m"]
    assert input_shape(zoo) == (1, 32, 32)
    for kind in ("random", "data", "union"):
        first = queries(zoo, kind, n=9, seed=3)
        assert first.shape == (9, 1, 32, 32) and first.dtype == torch.float32
        assert torch.equal(first, queries(zoo, kind, n=9, seed=3))
        assert not torch.equal(first, queries(zoo, kind, n=9, seed=4))
    union = queries(zoo, "union", n=9, seed=3)
    assert torch.equal(union[:4], queries(zoo, "random", n=4, seed=3))
    assert torch.equal(union[4:], queries(zoo, "data", n=5, seed=3))
    test_x = image_splits.load_splits("digits", None, 32, True, 0.15, 42)[2][0]
    data = queries(zoo, "data", n=5).numpy()
    assert all(any(np.array_equal(q, t) for t in test_x) for q in data)  # held-out images
    ds2 = mlds_zoos["ds2"]
    for kind in ("random", "data"):
        bits = queries(ds2, kind, n=6)
        assert bits.shape == (6, 8, 9) and set(bits.unique().tolist()) <= {0.0, 1.0}
    ds3 = queries(mlds_zoos["ds3"], "data", n=4)
    assert ds3.shape == (4, 8, 4) and torch.equal(ds3.sum(-1), torch.ones(4, 8))


def test_queries_run_through_evaluate(mlds_zoos):
    zoo = mlds_zoos["ds1"]
    rows = zoo.rows()
    result = evaluate(zoo, rows, queries(zoo, "random", 5))
    assert result.outputs.shape == (len(rows), 5, 8, 8)
    assert result.loss is None and result.split is None


# ------------------------------------------------------------------------------ behaviour
@pytest.mark.parametrize("subset", ["ds1", "ds3"])
def test_behaviour_command_stores_every_checkpoints_outputs(mlds_zoos, subset, capsys):
    from weightzoo.cli import run
    from weightzoo.storage.sidecar import open_sidecar

    zoo = mlds_zoos[subset]
    assert run(["behaviour", str(zoo.path), "--queries", "union", "--n", "5", "--seed", "2"]) == 0
    assert "sidecars/behaviour.h5" in capsys.readouterr().out
    side = open_sidecar(zoo.path, "behaviour")
    x = queries(zoo, "union", 5, seed=2)
    assert side.attrs["kind"] == "union" and np.array_equal(side["queries"], x.numpy())
    models = len(zoo)
    width = 8 if subset == "ds1" else 14
    assert side["outputs"].shape == (models, 2, 5, 8, width)
    for epoch in zoo.epochs:
        direct = evaluate(zoo, zoo.rows(epoch=epoch), x).outputs.numpy()
        stored = side.read("outputs", np.arange(models), np.full(models, epoch))
        np.testing.assert_array_equal(stored, direct)
    side.close()


def test_behaviour_command_errors_are_one_line(mlds_zoos, capsys):
    from weightzoo.cli import run

    path = str(mlds_zoos["ds1"].path)
    assert run(["behaviour", path, "--epochs", "7"]) == 1
    assert run(["behaviour", path, "--device", "tpu"]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "no checkpoint for epoch" in errors[0] and "tpu" in errors[1]


# -------------------------------------------------------------------------------- errors
def test_bad_input_is_a_named_one_line_error(image_zoos, mlds_zoos):
    zoo, ds1 = image_zoos["mlp"], mlds_zoos["ds1"]
    rows = zoo.rows()
    cases = [
        (LayoutError, lambda: evaluate(zoo, rows[:, :-1])),
        (InputShapeError, lambda: evaluate(zoo, rows, torch.zeros(4, 1, 28, 28))),
        (InputShapeError, lambda: evaluate(zoo, rows, torch.zeros(4, 1, 14, 14), [1, 2])),
        (InputShapeError, lambda: evaluate(ds1, ds1.rows(), torch.zeros(2, 8, 4))),
        (InvalidOptionError, lambda: queries(zoo, "noise")),
        (InvalidOptionError, lambda: queries(zoo, "data", n=0)),
        (InvalidOptionError, lambda: evaluate(zoo, rows, split="eval")),
        (InvalidOptionError, lambda: evaluate(zoo, rows, targets=[1])),
        (DeviceError, lambda: evaluate(zoo, rows, device="tpu")),
    ]
    for error, call in cases:
        with pytest.raises(error) as info:
            call()
        assert isinstance(info.value, WeightzooError)
        assert "\n" not in str(info.value), str(info.value)


def test_missing_evaluation_data_names_the_files(tmp_path):
    spec = get_spec("trajectory-mnist-mlp").to_dict()
    zoo = _fake_zoo(tmp_path, spec)
    with pytest.raises(DataFilesMissingError) as info:
        evaluate(zoo, np.zeros((1, zoo.layout.num_params), np.float32), data_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "t10k-images-idx3-ubyte.gz" in message and "MNIST" in message
    assert str(tmp_path) in message and "data_dir" in message
    with pytest.raises(DataFilesMissingError):
        queries(zoo, "data", data_dir=tmp_path)
    assert queries(zoo, "random", 2).shape == (2, 1, 14, 14)  # noise needs no files


def test_functional_does_not_import_the_generator():
    code = (
        "import sys, weightzoo, weightzoo.functional; "
        "bad = [m for m in sys.modules if m.startswith('weightzoo.generate')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
