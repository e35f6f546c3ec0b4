"""Grouped zoos (format version 2): generate, resume, read per group, verify the hash chain."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import toy_family
from weightzoo.errors import (
    FormatVersionError,
    GroupedZooError,
    GroupManifestError,
    GroupRequiredError,
    InvalidOptionError,
    ManifestError,
    SpecMismatchError,
    UnknownGroupError,
    UnsafePathError,
)
from weightzoo.generate.runner import generate
from weightzoo.storage import Manifest, ZooReader
from weightzoo.storage.groups import GroupedManifest
from weightzoo.storage.hashing import sha256_file
from weightzoo.zoo import Zoo


def shard_hashes(zoo_dir):
    return {p.relative_to(zoo_dir).as_posix(): sha256_file(p) for p in zoo_dir.rglob("*.h5")}


def test_each_group_is_a_version_1_zoo_with_its_own_layout(grouped_zoo, grouped_spec):
    top = json.loads((grouped_zoo / "zoo.json").read_text())
    assert top["format_version"] == 2 and top["finished"] is True
    assert [g["name"] for g in top["groups"]] == ["narrow", "wide"]
    assert [g["path"] for g in top["groups"]] == ["groups/narrow", "groups/wide"]
    for entry in top["groups"]:
        group_manifest = grouped_zoo / entry["path"] / "zoo.json"
        assert entry["manifest_sha256"] == sha256_file(group_manifest)
        assert Manifest.load(group_manifest.parent).finished
    narrow = Manifest.load(grouped_zoo / "groups" / "narrow")
    wide = Manifest.load(grouped_zoo / "groups" / "wide")
    assert (narrow.num_params, wide.num_params) == (2 * 3 + 2, 2 * 6 + 2)
    assert top["spec_fingerprint"] == grouped_spec.fingerprint()


def test_both_manifest_kinds_start_with_the_same_header_and_round_trip(grouped_zoo):
    header = ["format", "format_version", "name", "family", "num_models"]
    top = json.loads((grouped_zoo / "zoo.json").read_text())
    group = json.loads((grouped_zoo / "groups" / "narrow" / "zoo.json").read_text())
    assert list(top)[:5] == header and list(group)[:5] == header
    assert top["format"] == group["format"]
    assert (top["format_version"], group["format_version"]) == (2, 1)
    assert top["num_models"] == sum(g["num_models"] for g in top["groups"])
    # the written JSON is what to_dict gives, key order included (a group's hash depends on it)
    assert GroupedManifest.from_dict(top).to_dict() == top
    assert list(GroupedManifest.from_dict(top).to_dict()) == list(top)
    assert list(Manifest.load(grouped_zoo / "groups" / "narrow").to_dict()) == list(group)


def test_model_ids_are_unique_across_groups(grouped_zoo):
    zoo = Zoo(grouped_zoo)
    ids = [zoo.group(name).metadata("all")["model_id"] for name in zoo.groups]
    assert sorted(ids[0].tolist()) == list(range(6))
    assert sorted(ids[1].tolist()) == list(range(6, 12))
    top = GroupedManifest.load(grouped_zoo)
    assert [g.first_model_id for g in top.groups] == [0, 6]


def test_a_group_stores_what_a_standalone_zoo_of_its_spec_stores(
    tmp_path, grouped_zoo, grouped_spec
):
    (name, spec), _ = grouped_spec.groups()
    alone = tmp_path / "alone"
    generate(spec, alone, progress=False)
    group = ZooReader(grouped_zoo, group=name, split="all", epochs="all")
    single = ZooReader(alone, split="all", epochs="all")
    everything = np.arange(single.num_models)
    checkpoints = np.zeros(len(everything), dtype=np.int64)
    np.testing.assert_array_equal(
        group.read("weights", everything, checkpoints),
        single.read("weights", everything, checkpoints),
    )


def test_reading_needs_a_group_when_there_are_several(grouped_zoo):
    with pytest.raises(GroupRequiredError, match="narrow, wide.*group="):
        ZooReader(grouped_zoo)
    zoo = Zoo(grouped_zoo)
    assert zoo.groups == ["narrow", "wide"] and len(zoo) == 12
    with pytest.raises(GroupRequiredError):
        zoo.reader()
    with pytest.raises(UnknownGroupError, match="no group 'medium'.*narrow, wide"):
        zoo.group("medium")
    wide = Zoo(grouped_zoo, group="wide")
    assert wide.layout.num_params == 14 and wide.group_name == "wide"
    assert ZooReader(grouped_zoo, group="narrow").manifest.num_params == 8


def test_a_version_1_reader_refuses_a_grouped_zoo(grouped_zoo):
    with pytest.raises(GroupedZooError, match="narrow, wide") as caught:
        Manifest.load(grouped_zoo)
    assert isinstance(caught.value, FormatVersionError)


def test_a_one_group_zoo_opens_as_its_group(tmp_path):
    spec = toy_family.ToyGroupedSpec(widths=(4,), group_names=("only",), shard_models=3)
    generate(spec, tmp_path / "one", progress=False)
    assert ZooReader(tmp_path / "one").manifest.num_params == 10
    assert Zoo(tmp_path / "one").group_name == "only"


def test_interrupted_second_group_resumes(tmp_path, grouped_spec, grouped_zoo, monkeypatch):
    out = tmp_path / "interrupted"
    original = toy_family.ToyFamily.train

    def crash_in_wide(self, spec, plans, **kwargs):
        if spec.width == 6 and plans[0].model_id >= 3:
            raise KeyboardInterrupt
        return original(self, spec, plans, **kwargs)

    monkeypatch.setattr(toy_family.ToyFamily, "train", crash_in_wide)
    with pytest.raises(KeyboardInterrupt):
        generate(grouped_spec, out, progress=False)
    top = GroupedManifest.load(out)
    assert not top.finished
    assert [g.manifest_sha256 is not None for g in top.groups] == [True, False]
    monkeypatch.setattr(toy_family.ToyFamily, "train", original)
    toy_family.CALLS.clear()
    generate(grouped_spec, out, progress=False)
    assert sum(toy_family.CALLS) == 3  # only the missing block of the second group
    assert shard_hashes(out) == shard_hashes(grouped_zoo)
    assert GroupedManifest.load(out).finished


def test_another_spec_in_the_same_directory_is_refused(grouped_zoo, grouped_spec):
    with pytest.raises(SpecMismatchError):
        generate(grouped_spec.replace(widths=(3, 7)), grouped_zoo, progress=False)


def test_slices_of_a_grouped_spec_are_refused(tmp_path, grouped_spec):
    with pytest.raises(InvalidOptionError, match="grouped"):
        generate(grouped_spec, tmp_path / "sliced", progress=False, slice=(0, 2))


def test_a_tampered_group_manifest_breaks_the_chain(grouped_zoo):
    path = grouped_zoo / "groups" / "wide" / "zoo.json"
    data = json.loads(path.read_text())
    data["extra"]["note"] = "edited"
    path.write_text(json.dumps(data))
    with pytest.raises(GroupManifestError, match="wide"):
        Zoo(grouped_zoo, group="wide")
    assert Zoo(grouped_zoo, group="narrow").layout.num_params == 8


def test_group_paths_and_names_are_checked(grouped_zoo, tmp_path):
    data = json.loads((grouped_zoo / "zoo.json").read_text())
    data["groups"][0]["path"] = "../elsewhere"
    with pytest.raises(UnsafePathError):
        GroupedManifest.from_dict(data)
    for odd in (".", "groups/wide", "shards"):
        data["groups"][0]["path"] = odd
        with pytest.raises(ManifestError):
            GroupedManifest.from_dict(data)
    data["groups"][0]["path"] = "groups/narrow"
    data["groups"][1]["first_model_id"] = 3
    with pytest.raises(ManifestError, match="share model ids"):
        GroupedManifest.from_dict(data)
    data["groups"][1]["first_model_id"] = 6
    data["groups"][0]["name"] = "Narrow!"
    with pytest.raises(ManifestError, match="not allowed"):
        GroupedManifest.from_dict(data)
    outside = tmp_path / "outside"
    (grouped_zoo / "groups" / "narrow").rename(outside)
    (grouped_zoo / "groups" / "narrow").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside the zoo"):
        Zoo(grouped_zoo, group="narrow")


def test_a_family_taking_root_gets_its_group_directory(tmp_path, grouped_spec, monkeypatch):
    monkeypatch.setattr(toy_family, "family", lambda name: toy_family.RootedToyFamily())
    generate(grouped_spec, tmp_path / "rooted", progress=False)
    for name in ("narrow", "wide"):
        roots = Zoo(tmp_path / "rooted", group=name).metadata("all")["root_name"]
        assert set(roots.tolist()) == {name}


def test_datasets_read_one_group(grouped_zoo):
    from weightzoo.datasets import ZooDataset

    wide = ZooDataset(grouped_zoo, group="wide", split="all", filter_viable=False)
    assert len(wide) == 6 and wide[0]["weights"].shape == (14,)
    with pytest.raises(GroupRequiredError, match="group="):
        ZooDataset(grouped_zoo)
    narrow = ZooDataset(Zoo(grouped_zoo), group="narrow", split="all", filter_viable=False)
    assert narrow[0]["weights"].shape == (8,)


@pytest.mark.parametrize("workers", [0, 1])
def test_grouped_batches_cover_every_model_one_group_per_batch(grouped_zoo, workers):
    from weightzoo.datasets import GroupedBatches

    batches = GroupedBatches(
        grouped_zoo,
        batch_size=4,
        shuffle=True,
        split="all",
        targets=("model",),
        filter_viable=False,
    )
    assert batches.groups == ["narrow", "wide"] and len(batches) == 12
    seen: dict[str, list[int]] = {"narrow": [], "wide": []}
    sizes = []
    for batch in batches.loader(num_workers=workers):
        group = batches.groups[int(batch["group"][0])]
        assert (batch["group"] == batch["group"][0]).all()
        assert batch["weights"].shape[1] == {"narrow": 8, "wide": 14}[group]
        seen[group] += batch["model"].tolist()
        sizes.append(len(batch["model"]))
    assert sorted(seen["narrow"]) == list(range(6)) and sorted(seen["wide"]) == list(range(6))
    assert sorted(sizes) == [2, 2, 4, 4] and len(batches.sampler) == 4


def test_grouped_batches_shuffle_anew_each_pass_and_repeat_by_seed(grouped_zoo):
    from weightzoo.datasets import GroupedBatchSampler

    sampler = GroupedBatchSampler([6, 6], 2, shuffle=True, seed=3)
    first, second = list(sampler), list(sampler)
    assert first != second
    again = GroupedBatchSampler([6, 6], 2, shuffle=True, seed=3)
    assert list(again) == first
    assert all(max(b) < 6 or min(b) >= 6 for b in first)
    assert len(list(GroupedBatchSampler([5, 3], 2, drop_last=True))) == 3


def test_a_bad_engine_is_refused_before_anything_is_written(tmp_path, grouped_spec):
    with pytest.raises(InvalidOptionError, match="--engine"):
        generate(grouped_spec, tmp_path / "never", progress=False, engine="slurm")
    assert not (tmp_path / "never").exists()


def test_a_later_group_reads_an_earlier_one_through_root(tmp_path, grouped_spec, monkeypatch):
    monkeypatch.setattr(toy_family, "family", lambda name: toy_family.FinetuneToyFamily())
    generate(grouped_spec, tmp_path / "tuned", progress=False, workers=2)
    wide = Zoo(tmp_path / "tuned", group="wide").metadata("all")
    assert set(wide["parent_models"].tolist()) == {6}
