"""ZooDataset and the named families over zoos written by the real runner."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import weightzoo
from weightzoo.errors import EpochError, ShardMissingError, UnknownColumnError, UnknownSplitError
from weightzoo.features import layer_statistics
from weightzoo.generate.runner import generate
from weightzoo.storage import ZooReader


def test_items_are_dicts_of_tensors_matching_storage(toy_zoo):
    data = weightzoo.ZooDataset(
        toy_zoo, split="train", epochs="all", targets=("test_acc", "lr"), ids=True
    )
    assert len(data) == 8 * 4
    item = data[5]
    assert set(item) == {"weights", "test_acc", "lr", "model", "epoch"}
    plain = weightzoo.ZooDataset(toy_zoo, split="train", epochs="all", targets=("test_acc", "lr"))
    assert set(plain[5]) == {"weights", "test_acc", "lr"}  # ids are opt-in
    assert item["weights"].dtype == torch.float32 and item["weights"].shape == (12,)
    reader = ZooReader(toy_zoo, split="train")
    np.testing.assert_array_equal(item["weights"], reader.read("weights", [1], [1])[0])
    assert item["epoch"] == 1 and item["test_acc"] == pytest.approx(
        reader.metrics["test_acc"][1, 1]
    )


def test_getitems_equals_getitem(toy_zoo):
    data = weightzoo.ZooDataset(
        toy_zoo, split="all", epochs="all", features=("weights", "stats"), targets="kind"
    )
    indices = [7, 0, 31, 7, 12]
    batch = data.__getitems__(indices)
    for index, item in zip(indices, batch, strict=True):
        single = data[index]
        assert all(torch.equal(item[k], single[k]) for k in single)


def test_string_targets_share_class_indices_across_splits(toy_zoo):
    train = weightzoo.ZooDataset(toy_zoo, split="train", targets="kind", epochs="last", ids=True)
    test = weightzoo.ZooDataset(toy_zoo, split="test", targets="kind", epochs="last", ids=True)
    assert train.classes["kind"] == test.classes["kind"] == ["class0", "class1", "class2"]
    for data in (train, test):
        for item in data:
            model_id = int(
                data.reader.column("model_id")[
                    data.reader.positions.tolist().index(int(item["model"]))
                ]
            )
            assert data.classes["kind"][int(item["kind"])] == f"class{model_id % 3}"


def test_epoch_selection(toy_zoo):
    data = weightzoo.ZooDataset(toy_zoo, split="val", epochs=[3, 1], targets="epoch")
    assert data.epochs == [1, 3] and len(data) == 2 * 2
    assert sorted({int(item["epoch"]) for item in data}) == [1, 3]
    last = weightzoo.ZooDataset(toy_zoo, split="val", epochs="last", targets="epoch")
    assert [int(i["epoch"]) for i in last] == [3, 3]


def test_filter_viable_drops_diverged_models(tmp_path, toy_spec):
    out = tmp_path / "diverging"
    generate(toy_spec.replace(diverge_every=4), out, progress=False)
    kept = weightzoo.ZooDataset(out, split="all", epochs=0)
    everything = weightzoo.ZooDataset(out, split="all", epochs=0, filter_viable=False)
    assert len(everything) == 12 and len(kept) == 9
    ids = {int(everything.reader.column("model_id")[m]) for m in kept.model_indices}
    assert ids.isdisjoint({0, 4, 8})


def test_computed_statistics_presets(toy_zoo):
    data = weightzoo.ZooDataset(toy_zoo, split="test", features=("weights", "stats", "stats:nfn"))
    item = data[0]
    layout = data.zoo.layout
    expected = layer_statistics(item["weights"][None], layout, preset="nfn")[0]
    torch.testing.assert_close(item["stats:nfn"], expected)
    torch.testing.assert_close(item["stats"], layer_statistics(item["weights"][None], layout)[0])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"split": "training"}, UnknownSplitError, "did you mean 'train'"),
        ({"epochs": 7}, EpochError, "epochs 0..3|epochs \\[0, 1, 2, 3\\]"),
        ({"targets": "accuracy"}, UnknownColumnError, "no metric or column 'accuracy'"),
        ({"features": "token"}, UnknownColumnError, "unknown feature"),
        ({"features": "stats:median"}, UnknownColumnError, "preset"),
    ],
)
def test_bad_selections_raise_clear_errors(toy_zoo, kwargs, error, message):
    with pytest.raises(error, match=f"(?i){message}"):
        weightzoo.ZooDataset(toy_zoo, **kwargs)


def test_bad_selection_errors_are_builtin_types(toy_zoo):
    with pytest.raises(ValueError, match="nope"):
        weightzoo.ZooDataset(toy_zoo, split="nope")
    with pytest.raises(KeyError):
        weightzoo.ZooDataset(toy_zoo, targets="nope")


def loader_batches(data, **kwargs):
    loader = DataLoader(data, batch_size=5, shuffle=False, **kwargs)
    return [batch for batch in loader]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_match_single_process(toy_zoo, context):
    data = weightzoo.ZooDataset(
        toy_zoo, split="train", features=("weights", "stats"), targets="kind"
    )
    data[0]  # open maps in the parent first: they must not leak into workers
    single = loader_batches(data)
    multi = loader_batches(data, num_workers=2, multiprocessing_context=context)
    assert len(single) == len(multi)
    for a, b in zip(single, multi, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_trajectories_yield_whole_sequences_pairs_and_windows(toy_zoo):
    sequences = weightzoo.Trajectories(toy_zoo, split="train", targets="test_acc")
    assert len(sequences) == 8
    item = sequences[2]
    assert item["weights"].shape == (4, 12) and item["test_acc"].shape == (4,)
    assert item["epoch"].tolist() == [0, 1, 2, 3] and item["model"].ndim == 0
    pairs = weightzoo.Trajectories(toy_zoo, split="train", mode="pairs")
    assert len(pairs) == 8 * 3
    assert torch.equal(pairs[1]["weights"][0], sequences[0]["weights"][1])
    windows = weightzoo.Trajectories(toy_zoo, split="train", mode="windows", window=3)
    assert len(windows) == 8 * 2 and windows[0]["weights"].shape == (3, 12)
    with pytest.raises(ValueError, match="window 9"):
        weightzoo.Trajectories(toy_zoo, mode="windows", window=9)


def test_partial_zoo_serves_the_splits_it_has(toy_zoo):
    for shard in (toy_zoo / "shards").glob("train-*"):
        shard.unlink()
    assert len(weightzoo.ZooDataset(toy_zoo, split="test", epochs="all")) == 2 * 4
    with pytest.raises(ShardMissingError, match="(?i)fetch it again"):
        weightzoo.ZooDataset(toy_zoo, split="train")


def test_zoo_object(toy_zoo):
    zoo = weightzoo.Zoo(toy_zoo)
    assert len(zoo) == 12 and zoo.epochs == [0, 1, 2, 3]
    table = zoo.metadata()
    assert len(table["model_id"]) == 12 and "final_test_acc" in table
    info = zoo.info()
    assert info["splits"] == {"train": 8, "val": 2, "test": 2} and info["complete"]
    lo, hi = info["range_test_acc"]
    assert 0 < lo <= hi < 1
    row = ZooReader(toy_zoo).read("weights", [0], [0])[0]
    state = zoo.state_dict(row)
    assert state["fc.weight"].shape == (2, 5)
    assert torch.equal(state["fc.bias"], torch.from_numpy(row[10:]))


def test_named_family_finds_zoo_under_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="weightzoo generate mlds-ds1"):
        weightzoo.MLDS(tmp_path, subset="ds1")
    with pytest.raises(ValueError, match="subset"):
        weightzoo.MLDS(tmp_path, subset="ds4")


def test_import_is_light():
    import subprocess
    import sys

    code = (
        "import sys, weightzoo; mods = ('torch', 'weightzoo.generate', 'weightzoo.cli'); "
        "print(*(m in sys.modules for m in mods))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


def test_batch_read_keeps_the_requested_order(toy_zoo):
    data = weightzoo.ZooDataset(
        toy_zoo, split="all", epochs="all", features=("weights", "stats"), targets="kind"
    )
    indices = [40, 3, 17, 3]
    batch = data[indices]
    items = [data[i] for i in indices]
    for key in batch:
        assert torch.equal(batch[key], torch.stack([item[key] for item in items]))


def test_fast_loader_serves_every_item_once_with_workers(toy_zoo):
    data = weightzoo.ZooDataset(toy_zoo, split="train", epochs="all", targets="test_acc", ids=True)
    seen = []
    for batch in data.loader(batch_size=5, shuffle=True, seed=0, num_workers=2):
        assert batch["weights"].shape[1:] == (12,) and len(batch["epoch"]) <= 5
        for weights, model, epoch in zip(
            batch["weights"], batch["model"], batch["epoch"], strict=True
        ):
            local = data.reader.positions.tolist().index(int(model))
            expected = data.reader.read("weights", [local], [int(epoch)])[0]
            assert torch.equal(weights, torch.from_numpy(expected))
            seen.append((int(model), int(epoch)))
    assert len(seen) == len(data) == len(set(seen))


def test_download_uses_a_present_selection_without_the_hub(toy_zoo, monkeypatch):
    from weightzoo import datasets, hub

    calls = []
    monkeypatch.setattr(hub, "fetch", lambda name, **kw: calls.append(name) or kw["local_dir"])
    assert datasets._family_dir(toy_zoo.parent, "toy", True, split="train") == toy_zoo
    assert calls == []  # every train shard is there at full size: no request, no re-hash
    next((toy_zoo / "shards").glob("test-*.h5")).unlink()
    assert datasets._family_dir(toy_zoo.parent, "toy", True, split="train") == toy_zoo
    assert calls == []  # the test split is not needed
    datasets._family_dir(toy_zoo.parent, "toy", True, split="test")
    assert calls == ["toy"]  # a missing shard of the selection goes to the hub
