"""Importers: small source trees in each published layout, imported and read back exactly."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from helpers.importer_fixtures import (
    Gadget,
    check_stats,
    cnn_zoo_tree,
    mlds_tree,
    modelzoo_tree,
    one_line_error,
    read_back,
)
from weightzoo.cli import run
from weightzoo.errors import DataFilesMissingError, UnreadableFileError, UnsafeFileError
from weightzoo.importers import import_zoo
from weightzoo.storage.manifest import Manifest

# -- Model Zoos ---------------------------------------------------------------------------------


def test_modelzoo_round_trip(tmp_path, rng):
    truth = modelzoo_tree(tmp_path / "cnn_mnist_seed", rng)
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


def test_cnn_zoo_transposes_tf_kernels(tmp_path, rng):
    weights = cnn_zoo_tree(tmp_path / "mnist", rng)
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
    cnn_zoo_tree(tmp_path / "mnist", rng)
    np.save(tmp_path / "mnist" / "weights.npy", np.array([Gadget()], dtype=object))
    with pytest.raises(UnsafeFileError, match="weights.npy"):
        import_zoo("cnn-zoo", tmp_path / "mnist", tmp_path / "out")


# -- MLDS ---------------------------------------------------------------------------------------


def test_mlds_round_trip(tmp_path, rng):
    truth = mlds_tree(tmp_path / "ds1", rng)
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
    mlds_tree(tmp_path / "ds1", rng)
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


def test_empty_and_truncated_torch_files_are_named_errors(tmp_path, capsys):
    src = tmp_path / "ds1"
    src.mkdir()
    (src / "net0.pt").write_bytes(b"")
    err = one_line_error(capsys, ["import", "mlds", str(src), str(tmp_path / "a")], "net0.pt")
    assert "UnreadableFileError" in err and "empty" in err
    buffer = io.BytesIO()
    torch.save({"fc.weight": torch.ones(8, 8)}, buffer, _use_new_zipfile_serialization=False)
    (src / "net0.pt").write_bytes(buffer.getvalue()[:100])  # a truncated legacy-format file
    err = one_line_error(capsys, ["import", "mlds", str(src), str(tmp_path / "b")], "net0.pt")
    assert "UnreadableFileError" in err
    # a complete legacy-format file is a plain state_dict and imports
    (src / "net0.pt").write_bytes(buffer.getvalue())
    manifest, models = read_back(import_zoo("mlds", src, tmp_path / "c"))
    assert manifest.layout.names == ["fc.weight"] and (models[0]["weights"] == 1).all()


def test_empty_weights_npy_is_a_named_error(tmp_path, rng, capsys):
    cnn_zoo_tree(tmp_path / "mnist", rng)
    weights = tmp_path / "mnist" / "weights.npy"
    weights.write_bytes(b"")
    argv = ["import", "cnn-zoo", str(tmp_path / "mnist"), str(tmp_path / "out")]
    assert "UnreadableFileError" in one_line_error(capsys, argv, "weights.npy")
    np.save(weights, np.zeros((0, 4970), dtype=np.float32))
    assert "no rows" in one_line_error(capsys, argv, "weights.npy")


def test_dest_inside_src_is_refused(tmp_path, rng, capsys):
    mlds_tree(tmp_path / "ds1", rng)
    for dest in (tmp_path / "ds1" / "zoo", tmp_path / "ds1"):
        argv = ["import", "mlds", str(tmp_path / "ds1"), str(dest)]
        assert "SourcePathError" in one_line_error(capsys, argv, "inside SRC")
    assert not (tmp_path / "ds1" / "zoo").exists()


@pytest.mark.parametrize("kind", ["mlds", "cnn-zoo", "modelzoo"])
def test_links_out_of_src_are_refused(tmp_path, rng, capsys, kind):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    src = tmp_path / "src"
    if kind == "mlds":
        mlds_tree(src, rng)
        victim = src / "net1.pt"
    elif kind == "cnn-zoo":
        cnn_zoo_tree(src, rng)
        victim = src / "weights.npy"
    else:
        modelzoo_tree(src, rng)
        victim = next(src.glob("*/checkpoint_000001/checkpoints"))
    target = outside / victim.name
    victim.rename(target)
    victim.symlink_to(target)
    err = one_line_error(capsys, ["import", kind, str(src), str(tmp_path / "out")], victim.name)
    assert "SourcePathError" in err and "outside the source directory" in err


def test_a_failed_import_frees_the_zoo_at_once(tmp_path, rng, monkeypatch):
    from weightzoo.importers import _common

    mlds_tree(tmp_path / "ds1", rng)
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
