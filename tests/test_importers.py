"""Importers: small source trees in each published layout, imported and read back exactly."""

from __future__ import annotations

import csv
import gzip
import io
import json
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from weightzoo.cli import run
from weightzoo.errors import DataFilesMissingError, UnreadableFileError, UnsafeFileError
from weightzoo.features import layer_statistics_numpy
from weightzoo.importers import import_zoo
from weightzoo.storage.manifest import Manifest
from weightzoo.storage.verify import verify_zoo


class Gadget:
    """Something only full unpickling can rebuild."""

    def __init__(self) -> None:
        self.value = 3


def read_back(zoo: Path) -> tuple[Manifest, dict[int, dict]]:
    """Every stored model by model_id: weights, stats, metrics and columns."""
    manifest = Manifest.load(zoo)
    assert verify_zoo(zoo) == []
    models: dict[int, dict] = {}
    for entry in manifest.shards:
        with h5py.File(zoo / entry.file, "r") as f:
            ids = f["models/model_id"][:]
            for row, model_id in enumerate(ids):
                models[int(model_id)] = {
                    "weights": f["weights"][row],
                    "stats": f["stats"][row],
                    "metrics": {m: f[f"metrics/{m}"][row] for m in manifest.metrics},
                    "columns": {
                        c: (v.decode() if isinstance(v, bytes) else v)
                        for c in manifest.columns
                        for v in [f[f"models/{c}"][row]]
                    },
                    "split": entry.split,
                }
    assert sorted(models) == list(range(manifest.num_models))
    return manifest, models


def check_stats(manifest: Manifest, models: dict[int, dict]) -> None:
    for model in models.values():
        expected = layer_statistics_numpy(model["weights"], manifest.layout)
        np.testing.assert_array_equal(model["stats"], expected)


# -- Model Zoos ---------------------------------------------------------------------------------


def _modelzoo_tree(root: Path, rng: np.random.Generator) -> dict[str, dict]:
    """Six trials; odd ones have dropout (module indices 0, 4 instead of 0, 3)."""
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"model::nlin": "grid_search(['relu','tanh'])"}))
    (root / "dataset.pt").write_bytes(pickle.dumps(Gadget()))  # must never be read
    truth = {}
    for i in (1, 2, 10, 11, 20, 3):  # natural order: 1, 2, 3, 10, 11, 20
        name = f"NN_tune_trainable_{i}_seed={i}"
        trial = root / name
        trial.mkdir()
        dropout = i % 2 == 1
        head = 4 if dropout else 3
        params = {
            "model::type": "CNN",
            "model::dropout": 0.5 if dropout else 0.0,
            "model::o_dim": 4,
            "optim::lr": 1e-3 * i,
            "seed": i,
        }
        (trial / "params.json").write_text(json.dumps(params))
        ckpts = {}
        for epoch in range(3):
            sd = {
                "module_list.0.weight": torch.from_numpy(rng.normal(size=(2, 1, 3, 3))).float(),
                "module_list.0.bias": torch.from_numpy(rng.normal(size=2)).float(),
                f"module_list.{head}.weight": torch.from_numpy(rng.normal(size=(10, 2))).float(),
                f"module_list.{head}.bias": torch.from_numpy(rng.normal(size=10)).float(),
            }
            folder = trial / f"checkpoint_{epoch:06d}"
            folder.mkdir()
            torch.save(sd, folder / "checkpoints")
            torch.save({"state": {}}, folder / "optimizer")
            ckpts[epoch] = sd
        # even trials log every checkpoint, odd ones skip epoch 0 (the off-by-one of the zoos)
        first = 1 if dropout else 0
        lines = [
            {"training_iteration": e, "test_acc": 0.1 * e + i / 100, "train_loss": 2.0 - e}
            for e in range(first, 3)
        ]
        (trial / "result.json").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
        truth[name] = {"params": params, "ckpts": ckpts, "first": first, "i": i}
    return truth


def test_modelzoo_round_trip(tmp_path, rng):
    truth = _modelzoo_tree(tmp_path / "cnn_mnist_seed", rng)
    dest = import_zoo("modelzoo", tmp_path / "cnn_mnist_seed", tmp_path / "out")
    manifest, models = read_back(dest)
    assert manifest.family == "modelzoo" and manifest.epochs == [0, 1, 2]
    assert manifest.split_counts == {"train": 4, "val": 1, "test": 1}
    assert manifest.layout.names == ["layer0.bias", "layer0.weight", "layer1.bias", "layer1.weight"]
    assert manifest.spec["renamed"] is True
    trials = [models[m]["columns"]["trial"] for m in range(6)]
    assert [t.split("_")[3] for t in trials] == ["1", "2", "3", "10", "11", "20"]
    for model in models.values():
        info = truth[model["columns"]["trial"]]
        keys = json.loads(model["columns"]["state_dict_keys"])
        assert model["columns"]["param:model.dropout"] == info["params"]["model::dropout"]
        assert model["columns"]["seed"] == info["i"]
        for epoch in range(3):
            sd = info["ckpts"][epoch]
            expected = np.concatenate([sd[k].numpy().reshape(-1) for k in keys])
            np.testing.assert_array_equal(model["weights"][epoch], expected)
        acc = model["metrics"]["test_acc"]
        if info["first"] == 1:
            assert np.isnan(acc[0])
        np.testing.assert_allclose(acc[1:], [0.1 + info["i"] / 100, 0.2 + info["i"] / 100], 1e-6)
    check_stats(manifest, models)


def test_modelzoo_without_trials_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFilesMissingError, match="params.json"):
        import_zoo("modelzoo", tmp_path / "empty", tmp_path / "out")


# -- Small CNN Zoo ------------------------------------------------------------------------------

_VARIABLES = [
    ("sequential/conv2d/kernel:0", (3, 3, 1, 2)),
    ("sequential/conv2d/bias:0", (2,)),
    ("sequential/dense/kernel:0", (2, 3)),
    ("sequential/dense/bias:0", (3,)),
]


def _cnn_zoo_tree(root: Path, rng: np.random.Generator) -> np.ndarray:
    root.mkdir()
    with open(root / "layout.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["varname", "start_idx", "end_idx", "shape"])
        offset = 0
        for name, shape in _VARIABLES:
            size = int(np.prod(shape))
            writer.writerow([name, offset, offset + size, str(shape)])
            offset += size
    order = [(m, s) for s in (0, 100) for m in ("b", "a", "c", "d")]  # rows not grouped by model
    weights = rng.normal(size=(len(order), offset)).astype(np.float32)
    np.save(root / "weights.npy", weights)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["modeldir", "step", "test_accuracy", "train_loss", "config.learning_rate"])
    for row, (model, step) in enumerate(order):
        writer.writerow([f"run/{model}", step, row / 10, 1.0 - row / 10, ord(model) / 1000])
    with gzip.open(root / "metrics.csv.gz", "wt") as handle:
        handle.write(text.getvalue())
    return weights


def test_cnn_zoo_transposes_tf_kernels(tmp_path, rng):
    weights = _cnn_zoo_tree(tmp_path / "mnist", rng)
    manifest, models = read_back(import_zoo("cnn-zoo", tmp_path / "mnist", tmp_path / "out"))
    assert manifest.epochs == [0, 100] and manifest.num_models == 4
    layout = manifest.layout
    assert layout["conv2d.weight"].shape == (2, 1, 3, 3)
    assert layout["dense.weight"].shape == (3, 2)
    order = [(m, s) for s in (0, 100) for m in ("b", "a", "c", "d")]
    for model in models.values():
        name = model["columns"]["modeldir"]
        assert model["columns"]["config.learning_rate"] == ord(name[-1]) / 1000
        for column, step in enumerate((0, 100)):
            row = order.index((name[-1], step))
            raw, got = weights[row], model["weights"][column]
            kernel = raw[0:18].reshape(3, 3, 1, 2)
            conv = got[layout["conv2d.weight"].offset : layout["conv2d.weight"].stop]
            for o, i, h, w in np.ndindex(2, 1, 3, 3):
                assert conv.reshape(2, 1, 3, 3)[o, i, h, w] == kernel[h, w, i, o]
            dense = got[layout["dense.weight"].offset : layout["dense.weight"].stop]
            np.testing.assert_array_equal(dense.reshape(3, 2), raw[20:26].reshape(2, 3).T)
            np.testing.assert_array_equal(
                got[layout["dense.bias"].offset : layout["dense.bias"].stop], raw[26:29]
            )
            assert model["metrics"]["test_accuracy"][column] == np.float32(row / 10)
    assert sorted(m["columns"]["modeldir"] for m in models.values()) == [
        "run/a",
        "run/b",
        "run/c",
        "run/d",
    ]
    check_stats(manifest, models)


def test_cnn_zoo_refuses_object_arrays(tmp_path, rng):
    _cnn_zoo_tree(tmp_path / "mnist", rng)
    np.save(tmp_path / "mnist" / "weights.npy", np.array([Gadget()], dtype=object))
    with pytest.raises(UnsafeFileError, match="weights.npy"):
        import_zoo("cnn-zoo", tmp_path / "mnist", tmp_path / "out")


# -- MLDS ---------------------------------------------------------------------------------------


def _mlds_tree(root: Path, rng: np.random.Generator) -> dict[str, dict]:
    (root / "sub").mkdir(parents=True)
    truth = {}
    for i in range(6):
        sd = {
            "gru.weight_ih_l0": rng.normal(size=(6, 3)).astype(np.float32),
            "gru.bias_ih_l0": rng.normal(size=6).astype(np.float32),
            "fc.weight": rng.normal(size=(2, 2)).astype(np.float32),
        }
        meta = {"machine": f"m{i % 2}", "seed": 100 + i, "final_loss": 0.5 / (i + 1)}
        if i < 3:
            path = root / f"net{i}.pt"
            torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, path)
            (root / f"net{i}.json").write_text(json.dumps(meta))
        else:
            path = root / "sub" / f"net{i}.json"
            path.write_text(
                json.dumps({"state_dict": {k: v.tolist() for k, v in sd.items()}, **meta})
            )
        truth[path.relative_to(root).as_posix()] = {"sd": sd, "meta": meta}
    return truth


def test_mlds_round_trip(tmp_path, rng):
    truth = _mlds_tree(tmp_path / "ds1", rng)
    manifest, models = read_back(import_zoo("mlds", tmp_path / "ds1", tmp_path / "out"))
    assert manifest.num_models == 6 and manifest.metrics == ["final_loss"]
    for model in models.values():
        info = truth[model["columns"]["file"]]
        for tensor in manifest.layout:
            got = model["weights"][0, tensor.offset : tensor.stop].reshape(tensor.shape)
            np.testing.assert_array_equal(got, info["sd"][tensor.name])
        assert model["columns"]["meta:machine"] == info["meta"]["machine"]
        assert model["columns"]["seed"] == info["meta"]["seed"]
        assert model["metrics"]["final_loss"][0] == np.float32(info["meta"]["final_loss"])
    check_stats(manifest, models)


def test_pickled_objects_are_refused(tmp_path, capsys):
    src = tmp_path / "ds1"
    src.mkdir()
    torch.save({"gru.weight": torch.zeros(2), "extra": Gadget()}, src / "net0.pt")
    with pytest.raises(UnsafeFileError, match=r"net0\.pt.*weights_only=True"):
        import_zoo("mlds", src, tmp_path / "out")
    assert run(["import", "mlds", str(src), str(tmp_path / "out2")]) == 1
    assert "weights_only" in capsys.readouterr().err


def test_cli_import_then_resume(tmp_path, rng, capsys):
    _mlds_tree(tmp_path / "ds1", rng)
    out = tmp_path / "zoo"
    assert run(["import", "mlds", str(tmp_path / "ds1"), str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    first = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    assert run(["import", "mlds", str(tmp_path / "ds1"), str(out)]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()} == first


def test_importers_split_like_the_runner_stratified_by_class(tmp_path, rng):
    """Two machines x 10 networks: every split holds both machines, by the runner's rule."""
    from weightzoo.blocks import stratified_splits

    src = tmp_path / "ds1"
    src.mkdir()
    machines = []
    for i in range(20):
        machines.append(f"m{i // 10}")  # a class-sorted source: a plain shuffle could skew
        sd = {"fc.weight": rng.normal(size=(2, 2)).tolist()}
        (src / f"net{i:02d}.json").write_text(
            json.dumps({"state_dict": sd, "machine": machines[-1]})
        )
    manifest, models = read_back(import_zoo("mlds", src, tmp_path / "out"))
    assert manifest.split_counts == {"train": 14, "val": 3, "test": 3}
    want = stratified_splits(list(range(20)), [f"machine={m}" for m in machines], seed=42)
    for model_id, model in models.items():
        assert model["split"] == want[model_id]
    for split in ("train", "val", "test"):
        held = [
            model["columns"]["meta:machine"] for model in models.values() if model["split"] == split
        ]
        assert set(held) == {"m0", "m1"} and abs(held.count("m0") - held.count("m1")) <= 1


# -- bad inputs: one-line named errors that name the file -------------------------------------


def _one_line_error(capsys, argv, *needles):
    assert run(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def test_empty_and_truncated_torch_files_are_named_errors(tmp_path, capsys):
    src = tmp_path / "ds1"
    src.mkdir()
    (src / "net0.pt").write_bytes(b"")
    err = _one_line_error(capsys, ["import", "mlds", str(src), str(tmp_path / "a")], "net0.pt")
    assert "UnreadableFileError" in err and "empty" in err
    buffer = io.BytesIO()
    torch.save({"fc.weight": torch.ones(8, 8)}, buffer, _use_new_zipfile_serialization=False)
    (src / "net0.pt").write_bytes(buffer.getvalue()[:100])  # a truncated legacy-format file
    err = _one_line_error(capsys, ["import", "mlds", str(src), str(tmp_path / "b")], "net0.pt")
    assert "UnreadableFileError" in err
    # a complete legacy-format file is a plain state_dict and imports
    (src / "net0.pt").write_bytes(buffer.getvalue())
    manifest, models = read_back(import_zoo("mlds", src, tmp_path / "c"))
    assert manifest.layout.names == ["fc.weight"] and (models[0]["weights"] == 1).all()


def test_empty_weights_npy_is_a_named_error(tmp_path, rng, capsys):
    _cnn_zoo_tree(tmp_path / "mnist", rng)
    weights = tmp_path / "mnist" / "weights.npy"
    weights.write_bytes(b"")
    argv = ["import", "cnn-zoo", str(tmp_path / "mnist"), str(tmp_path / "out")]
    assert "UnreadableFileError" in _one_line_error(capsys, argv, "weights.npy")
    np.save(weights, np.zeros((0, 4970), dtype=np.float32))
    assert "no rows" in _one_line_error(capsys, argv, "weights.npy")


def test_dest_inside_src_is_refused(tmp_path, rng, capsys):
    _mlds_tree(tmp_path / "ds1", rng)
    for dest in (tmp_path / "ds1" / "zoo", tmp_path / "ds1"):
        argv = ["import", "mlds", str(tmp_path / "ds1"), str(dest)]
        assert "SourcePathError" in _one_line_error(capsys, argv, "inside SRC")
    assert not (tmp_path / "ds1" / "zoo").exists()


@pytest.mark.parametrize("kind", ["mlds", "cnn-zoo", "modelzoo"])
def test_links_out_of_src_are_refused(tmp_path, rng, capsys, kind):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    src = tmp_path / "src"
    if kind == "mlds":
        _mlds_tree(src, rng)
        victim = src / "net1.pt"
    elif kind == "cnn-zoo":
        _cnn_zoo_tree(src, rng)
        victim = src / "weights.npy"
    else:
        _modelzoo_tree(src, rng)
        victim = next(src.glob("*/checkpoint_000001/checkpoints"))
    target = outside / victim.name
    victim.rename(target)
    victim.symlink_to(target)
    err = _one_line_error(capsys, ["import", kind, str(src), str(tmp_path / "out")], victim.name)
    assert "SourcePathError" in err and "outside the source directory" in err


def test_a_failed_import_frees_the_zoo_at_once(tmp_path, rng, monkeypatch):
    from weightzoo.importers import _common

    _mlds_tree(tmp_path / "ds1", rng)
    real = _common.write_block

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_common, "write_block", full_disk)
    try:
        import_zoo("mlds", tmp_path / "ds1", tmp_path / "out")
    except OSError:
        # the traceback still holds the importer's frames: the lock must be released anyway
        monkeypatch.setattr(_common, "write_block", real)
        import_zoo("mlds", tmp_path / "ds1", tmp_path / "out")
    assert Manifest.load(tmp_path / "out").finished


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("net0.json", "{not json", "not readable JSON"),
        ("net0.json", "[1, 2]", "expected a JSON object"),
        ("net0.json", '{"seed": 1}', "no 'state_dict' or 'weights'"),
    ],
)
def test_broken_mlds_source_files_are_one_line_errors(tmp_path, capsys, name, text, words):
    src = tmp_path / "ds1"
    src.mkdir()
    (src / name).write_text(text)
    with pytest.raises(UnreadableFileError, match=words):
        import_zoo("mlds", src, tmp_path / "out")
    assert run(["import", "mlds", str(src), str(tmp_path / "out2")]) == 1
    err = capsys.readouterr().err
    assert str(src / name) in err and "Traceback" not in err


def test_state_dicts_without_float_tensors_are_one_line_errors(tmp_path, capsys):
    src = tmp_path / "ds1"
    src.mkdir()
    torch.save({"steps": torch.arange(3)}, src / "net0.pt")
    with pytest.raises(UnreadableFileError, match="no floating-point tensors"):
        import_zoo("mlds", src, tmp_path / "out")
    assert run(["import", "mlds", str(src), str(tmp_path / "out2")]) == 1
