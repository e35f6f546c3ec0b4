"""The on-disk format: layout, manifest, atomic writer, memmap reader, verification."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from weightzoo.errors import (
    FormatVersionError,
    LayoutError,
    ManifestError,
    ShardCorruptError,
    ShardMissingError,
    SpecMismatchError,
    UnsafePathError,
    ZooNotFoundError,
)
from weightzoo.storage import Layout, Manifest, ZooReader, ZooWriter, shard_file_name, verify_zoo
from weightzoo.storage import writer as writer_module

LAYOUT = Layout.from_shapes({"conv.weight": (2, 1, 3, 3), "conv.bias": (2,), "fc.weight": (3, 2)})


def make_writer(path, **changes):
    options = dict(
        name="unit",
        family="test",
        spec={"a": 1},
        layout=LAYOUT,
        epochs=[0, 5, 10],
        metrics=["test_acc"],
        stats_names=["s0", "s1"],
        num_models=6,
    )
    options.update(changes)
    return ZooWriter(path, **options)


def write_block(writer, split, first, last, weights, epochs=(0, 5, 10)):
    n = last - first
    return writer.write_shard(
        shard_file_name(split, first),
        split=split,
        models=(first, last),
        epochs=list(epochs),
        weights=weights[first:last],
        stats=np.full((n, len(epochs), 2), first, np.float32),
        metrics={"test_acc": np.full((n, len(epochs)), 0.5)},
        columns={"model_id": np.arange(first, last) + 100, "tag": [f"t{i}" for i in range(n)]},
    )


@pytest.fixture
def weights(rng):
    return rng.normal(size=(6, 3, LAYOUT.num_params)).astype(np.float32)


@pytest.fixture
def unit_zoo(tmp_path, weights):
    writer = make_writer(tmp_path / "zoo")
    write_block(writer, "train", 0, 4, weights)
    write_block(writer, "test", 4, 6, weights)
    writer.finish()
    return tmp_path / "zoo"


def test_layout_offsets_and_json_round_trip():
    assert [t.offset for t in LAYOUT] == [0, 18, 20]
    assert LAYOUT.num_params == 26
    assert Layout.from_json(LAYOUT.to_json()) == LAYOUT
    bad = LAYOUT.to_json()
    bad[1]["offset"] = 17
    with pytest.raises(LayoutError, match="offset 17"):
        Layout.from_json(bad)


def test_layout_natural_sort_and_rnn_layers():
    shapes = {"m.11.weight": (1,), "m.3.weight": (1,), "m.0.weight": (1,)}
    assert Layout.from_shapes(shapes, sort=True).names == [
        "m.0.weight",
        "m.3.weight",
        "m.11.weight",
    ]
    rnn = Layout.from_shapes({"gru.weight_ih_l0": (3, 2), "gru.bias_hh_l1": (3,), "fc.bias": (1,)})
    assert list(rnn.layers()) == ["gru.l0", "gru.l1", "fc"]
    assert rnn["gru.bias_hh_l1"].is_bias and not rnn["gru.weight_ih_l0"].is_bias


def test_layout_check_shapes_names_the_tensor():
    with pytest.raises(LayoutError, match="conv.bias"):
        LAYOUT.check_shapes({"conv.weight": (2, 1, 3, 3), "conv.bias": (3,), "fc.weight": (3, 2)})


def test_round_trip_through_memmap(unit_zoo, weights):
    reader = ZooReader(unit_zoo, split="all")
    assert all(shard.locations["weights"] is not None for shard in reader.shards)
    models = np.array([5, 0, 3, 0])
    ckpts = np.array([2, 0, 1, 2])
    np.testing.assert_array_equal(reader.read("weights", models, ckpts), weights[models, ckpts])
    np.testing.assert_array_equal(reader.read("stats", [4], [1]), [[4, 4]])
    assert list(reader.column("model_id")) == list(range(100, 106))
    assert list(reader.column("split")) == ["train"] * 4 + ["test"] * 2
    assert reader.column("tag")[1] == "t1"


def test_reader_selects_split_and_epochs(unit_zoo, weights):
    reader = ZooReader(unit_zoo, split="test", epochs=[10, 0])
    assert reader.epochs == [0, 10]  # zoo order, not request order
    assert list(reader.positions) == [4, 5]
    np.testing.assert_array_equal(reader.read("weights", [1], [1]), weights[[5], [2]])


def test_fallback_reader_for_other_chunk_shapes(tmp_path, weights):
    """A shard chunked another way (not one chunk per row) still reads correctly via h5py."""
    zoo = tmp_path / "zoo"
    writer = make_writer(zoo, num_models=4)
    original = writer_module._create_row_dataset

    def other_chunks(group, name, data):
        group.create_dataset(name, data=data, chunks=(2, 1, data.shape[2]))

    writer_module._create_row_dataset = other_chunks
    try:
        write_block(writer, "train", 0, 4, weights)
    finally:
        writer_module._create_row_dataset = original
    reader = ZooReader(zoo, split="train")
    assert reader.shards[0].locations["weights"] is None
    np.testing.assert_array_equal(reader.read("weights", [3, 1], [0, 2]), weights[[3, 1], [0, 2]])


def test_viability_is_computed_from_weights(tmp_path, weights):
    weights = weights.copy()
    weights[1, 2, 3] = np.nan
    weights[2, 0, 0] = 5e3  # beyond the default threshold of 1e3
    writer = make_writer(tmp_path / "zoo", num_models=4)
    write_block(writer, "train", 0, 4, weights)
    reader = ZooReader(tmp_path / "zoo", split="train")
    assert list(reader.column("viable")) == [True, False, False, True]
    assert reader.checkpoint_viable[1].tolist() == [True, True, False]


def test_interrupted_write_leaves_nothing(tmp_path, weights, monkeypatch):
    zoo = tmp_path / "zoo"
    writer = make_writer(zoo)
    write_block(writer, "train", 0, 4, weights)

    def crash(path, content):
        open(path, "wb").write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(writer_module, "write_shard_file", crash)
    with pytest.raises(KeyboardInterrupt):
        write_block(writer, "test", 4, 6, weights)
    assert sorted(p.name for p in (zoo / "shards").iterdir()) == ["train-000000-c000.h5"]
    assert [s.file for s in Manifest.load(zoo).shards] == ["shards/train-000000-c000.h5"]


def test_resume_keeps_complete_shards_and_refuses_other_specs(unit_zoo):
    (unit_zoo / "shards" / "stale.h5.tmp").write_bytes(b"x")
    resumed = make_writer(unit_zoo)
    assert resumed.has_shard("shards/train-000000-c000.h5")
    assert not (unit_zoo / "shards" / "stale.h5.tmp").exists()
    resumed.close()  # one writer per zoo at a time
    with pytest.raises(SpecMismatchError, match="differing fields: a"):
        make_writer(unit_zoo, spec={"a": 2})


def test_writer_rejects_bad_shapes(tmp_path, weights):
    writer = make_writer(tmp_path / "zoo")
    with pytest.raises(ValueError, match=r"\[models, checkpoints, params\]"):
        writer.write_shard(
            "shards/train-000000-c000.h5",
            split="train",
            models=(0, 2),
            epochs=[0, 5, 10],
            weights=weights[:3],
            stats=np.zeros((2, 3, 2)),
            metrics={"test_acc": np.zeros((2, 3))},
            columns={"model_id": [0, 1]},
        )


def test_missing_and_truncated_shards(unit_zoo):
    shard = unit_zoo / "shards" / "test-000004-c000.h5"
    data = shard.read_bytes()
    shard.write_bytes(data[:-10])
    with pytest.raises(ShardCorruptError, match="truncated"):
        ZooReader(unit_zoo, split="test")
    shard.unlink()
    with pytest.raises(ShardMissingError, match="test-000004") as info:
        ZooReader(unit_zoo, split="test")
    assert isinstance(info.value, FileNotFoundError)
    # Other splits stay readable: a partial download is a usable zoo.
    assert ZooReader(unit_zoo, split="train").num_models == 4


def test_verify_names_the_corrupt_shard(unit_zoo):
    assert verify_zoo(unit_zoo) == []
    shard = unit_zoo / "shards" / "train-000000-c000.h5"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    failures = verify_zoo(unit_zoo)
    assert [entry.file for entry, _ in failures] == ["shards/train-000000-c000.h5"]
    assert "expected" in str(failures[0][1])


def edit_manifest(zoo, change):
    path = zoo / "zoo.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_newer_format_version_is_refused(unit_zoo):
    edit_manifest(unit_zoo, lambda d: d.update(format_version=99))
    with pytest.raises(FormatVersionError, match="version 99") as info:
        Manifest.load(unit_zoo)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("path", ["../evil.h5", "/etc/passwd", "shards/../../x.h5", "C:/x.h5"])
def test_manifest_paths_may_not_escape(unit_zoo, path):
    edit_manifest(unit_zoo, lambda d: d["shards"][0].update(file=path))
    with pytest.raises(ManifestError, match="escapes"):
        Manifest.load(unit_zoo)


@pytest.mark.parametrize(
    ("edit", "words", "error"),
    [
        (lambda d: d["shards"][0].update(file="../evil.h5"), "escapes", UnsafePathError),
        (lambda d: d["shards"][0].pop("sha256"), "malformed shard entry", ManifestError),
        (lambda d: d.update(finished="yes"), "'finished' must be", ManifestError),
    ],
)
def test_manifest_errors_name_the_manifest_file(unit_zoo, edit, words, error):
    edit_manifest(unit_zoo, edit)
    with pytest.raises(error, match=words) as info:
        Manifest.load(unit_zoo)
    assert str(unit_zoo / "zoo.json") in str(info.value)


def test_missing_zoo(tmp_path):
    with pytest.raises(ZooNotFoundError, match="weightzoo generate") as info:
        Manifest.load(tmp_path / "nothing")
    assert isinstance(info.value, FileNotFoundError)


def test_shard_file_layout_is_documented_contract(unit_zoo):
    """docs/format.md promises these names, dtypes and chunk shapes."""
    with h5py.File(unit_zoo / "shards" / "train-000000-c000.h5") as handle:
        assert handle.attrs["format_version"] == 1
        assert handle["weights"].dtype == np.float32
        assert handle["weights"].chunks == (1, 1, LAYOUT.num_params)
        assert handle["weights"].compression is None
        assert handle["metrics/test_acc"].shape == (4, 3)
        assert handle["models/viable"].dtype == bool
        assert list(handle.attrs["epochs"]) == [0, 5, 10]
