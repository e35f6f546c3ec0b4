"""The one block writer and the one split rule."""

from __future__ import annotations

from collections import Counter

import h5py
import numpy as np
import pytest

from weightzoo.blocks import ModelRecord, stack_records, stratified_splits, write_block
from weightzoo.features import layer_statistics_numpy, statistics_names
from weightzoo.storage.layout import Layout
from weightzoo.storage.manifest import Manifest
from weightzoo.storage.writer import ZooWriter

LAYOUT = Layout.from_shapes({"fc.weight": (2, 3), "fc.bias": (2,)})


def _writer(path, epochs=(0, 1, 2, 3), models=4):
    return ZooWriter(
        path,
        name="blocks",
        family="toy",
        spec={"name": "blocks"},
        layout=LAYOUT,
        epochs=list(epochs),
        metrics=["loss"],
        stats_names=statistics_names(LAYOUT, "modelzoo"),
        num_models=models,
        diverge_threshold=10.0,
    )


def _records(rng, count=4, checkpoints=4):
    return [
        ModelRecord(
            model_id=10 + i,
            weights=rng.normal(size=(checkpoints, LAYOUT.num_params)).astype(np.float32),
            metrics={"loss": np.arange(checkpoints, dtype=np.float32) + i},
            columns={"epochs": i},
        )
        for i in range(count)
    ]


def test_stratified_splits_spread_every_stratum():
    strata = [f"class{i % 4}" for i in range(80)]
    splits = stratified_splits(list(range(80)), strata, seed=3)
    assert Counter(splits.values()) == {"train": 56, "val": 12, "test": 12}
    for split in ("train", "val", "test"):
        counts = Counter(s for i, s in enumerate(strata) if splits[i] == split)
        assert len(counts) == 4 and max(counts.values()) - min(counts.values()) <= 1
    assert stratified_splits(list(range(80)), strata, seed=3) == splits
    assert stratified_splits(list(range(80)), strata, seed=4) != splits
    with pytest.raises(ValueError, match="strata"):
        stratified_splits([1, 2], ["a"])


def test_stack_records_orders_merges_and_checks_columns(rng):
    records = _records(rng)
    order = [13, 11, 10, 12]
    weights, metrics, table = stack_records(
        records[::-1],
        ["loss"],
        order=order,
        columns={"seed": [3, 1, 0, 2]},
        defaults={"device": "cpu"},
    )
    np.testing.assert_array_equal(weights[0], records[3].weights)
    assert table["model_id"].tolist() == order and table["epochs"].tolist() == [3, 1, 0, 2]
    assert table["device"] == ["cpu"] * 4 and metrics["loss"].shape == (4, 4)
    with pytest.raises(RuntimeError, match=r"no record .* \[99\]"):
        stack_records(records, ["loss"], order=[10, 99])
    with pytest.raises(RuntimeError, match="column 'seed'"):
        stack_records(records, ["loss"], columns={"seed": [1]})


def test_write_block_writes_stats_viability_and_epoch_groups(tmp_path, rng):
    records = _records(rng)
    records[2].weights[3, 0] = 50.0  # beyond the divergence threshold at the last checkpoint
    writer = _writer(tmp_path / "zoo")
    files = write_block(writer, records, split="train", first=0, groups=[[0, 1], [2, 3]])
    manifest = writer.finish()
    assert files == ["shards/train-000000-c000.h5", "shards/train-000000-c001.h5"]
    assert [list(s.epochs) for s in Manifest.load(tmp_path / "zoo").shards] == [[0, 1], [2, 3]]
    with h5py.File(tmp_path / "zoo" / files[1], "r") as f:
        weights = f["weights"][:]
        np.testing.assert_array_equal(weights[1], records[1].weights[2:])
        np.testing.assert_array_equal(f["stats"][:], layer_statistics_numpy(weights, LAYOUT))
        assert f["models/viable"][:].tolist() == [True, True, False, True]
    with h5py.File(tmp_path / "zoo" / files[0], "r") as f:
        # the model is not viable in every shard, though its first checkpoints are fine
        assert f["models/viable"][:].tolist() == [True, True, False, True]
        assert f["models/model_id"][:].tolist() == [10, 11, 12, 13]
    assert manifest.complete
