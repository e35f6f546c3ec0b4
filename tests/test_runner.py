"""The generator runner: splits, shards, determinism, resume after interruption."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import toy_family
from weightzoo.errors import SpecMismatchError
from weightzoo.features import layer_statistics
from weightzoo.generate import runner
from weightzoo.generate.runner import assign_splits, generate, plan_blocks
from weightzoo.storage import Manifest, ZooReader


def shard_hashes(path):
    return {s.file: s.sha256 for s in Manifest.load(path).shards}


def test_splits_are_70_15_15_by_model_and_stratified(toy_spec):
    spec = toy_spec.replace(num_models=60)
    plans = toy_family.ToyFamily().plan(spec)
    splits = assign_splits(plans, spec)
    assert Counter(splits.values()) == {"train": 42, "val": 9, "test": 9}
    for split in ("train", "val", "test"):
        strata = Counter(p.stratum for p in plans if splits[p.model_id] == split)
        assert len(strata) == 3 and max(strata.values()) - min(strata.values()) <= 1
    assert assign_splits(plans, spec) == splits
    assert assign_splits(plans, spec.replace(split_seed=1)) != splits


def test_small_zoos_still_fill_every_split(toy_spec):
    spec = toy_spec.replace(num_models=7)
    splits = assign_splits(toy_family.ToyFamily().plan(spec), spec)
    assert set(splits.values()) == {"train", "val", "test"}


def test_blocks_follow_split_then_model_order(toy_spec):
    blocks = plan_blocks(toy_family.ToyFamily().plan(toy_spec), toy_spec)
    positions = [b.first for b in blocks]
    assert positions == sorted(positions) and all(len(b.plans) <= 3 for b in blocks)
    order = ["train", "val", "test"]
    assert [order.index(b.split) for b in blocks] == sorted(order.index(b.split) for b in blocks)


def test_generated_zoo_stores_what_the_family_produced(toy_zoo, toy_spec):
    manifest = Manifest.load(toy_zoo)
    assert manifest.complete and manifest.num_models == 12
    assert manifest.split_counts == {"train": 8, "val": 2, "test": 2}
    reader = ZooReader(toy_zoo, split="all")
    family = toy_family.ToyFamily()
    plans = {p.model_id: p for p in family.plan(toy_spec)}
    for local, model_id in enumerate(reader.column("model_id")):
        record = family.train(toy_spec, [plans[int(model_id)]], device="cpu")[0]
        stored = reader.read("weights", [local] * 4, np.arange(4))
        np.testing.assert_array_equal(stored, record.weights)
        np.testing.assert_allclose(
            reader.metrics["train_loss"][local], record.metrics["train_loss"]
        )
        assert reader.column("seed")[local] == 1000 + model_id
        assert reader.column("kind")[local] == f"class{model_id % 3}"
    stats = reader.read("stats", [0], [3])
    expected = layer_statistics(reader.read("weights", [0], [3]), manifest.layout)
    np.testing.assert_allclose(stats, expected.numpy(), rtol=1e-6)


def test_same_spec_gives_the_same_zoo(tmp_path, toy_spec, toy_zoo):
    generate(toy_spec, tmp_path / "again", progress=False)
    assert shard_hashes(tmp_path / "again") == shard_hashes(toy_zoo)


def test_interrupted_run_resumes_without_loss_or_duplicates(
    tmp_path, toy_spec, toy_zoo, monkeypatch
):
    out = tmp_path / "interrupted"
    original = toy_family.ToyFamily.train
    calls = {"n": 0}

    def crash_on_third(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C half way
        return original(self, *args, **kwargs)

    monkeypatch.setattr(toy_family.ToyFamily, "train", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        generate(toy_spec, out, progress=False)
    assert len(Manifest.load(out).shards) == 2
    monkeypatch.setattr(toy_family.ToyFamily, "train", original)
    toy_family.CALLS.clear()
    generate(toy_spec, out, progress=False)
    assert sum(toy_family.CALLS) == 12 - 6  # only the missing blocks were trained
    assert shard_hashes(out) == shard_hashes(toy_zoo)


def test_other_spec_in_same_directory_is_refused(toy_zoo, toy_spec):
    with pytest.raises(SpecMismatchError, match="num_epochs"):
        generate(toy_spec.replace(num_epochs=5), toy_zoo, progress=False)


def test_epoch_groups_make_separate_shards(tmp_path, toy_spec):
    spec = toy_spec.replace(epochs_per_shard=2)
    out = tmp_path / "grouped"
    manifest = generate(spec, out, progress=False)
    assert {s.epochs for s in manifest.shards} == {(0, 1), (2, 3)}
    assert len(manifest.shards_for("test", [3])) == 1
    whole = ZooReader(out, split="all")
    assert whole.complete.all()
    np.testing.assert_array_equal(
        whole.read("weights", [0, 0], [0, 3]),
        np.stack(
            [
                ZooReader(out, epochs=[0]).read("weights", [0], [0])[0],
                ZooReader(out, epochs=[3]).read("weights", [0], [0])[0],
            ]
        ),
    )


def test_parallel_workers_write_the_same_zoo(tmp_path, toy_spec, toy_zoo):
    generate(toy_spec, tmp_path / "parallel", workers=2, progress=False)
    assert shard_hashes(tmp_path / "parallel") == shard_hashes(toy_zoo)


def test_automatic_workers_write_the_same_zoo(tmp_path, toy_spec, toy_zoo, monkeypatch):
    monkeypatch.setattr(runner, "usable_cpus", lambda: 3)  # as on a 3-core machine
    generate(toy_spec, tmp_path / "auto", workers=None, progress=False)
    assert shard_hashes(tmp_path / "auto") == shard_hashes(toy_zoo)
