"""Grouped zoos under attack: edited, swapped, linked or interrupted zoos fail loudly.

Each test builds a broken copy of the toy grouped zoo (groups ``narrow``, ids 0..5, and
``wide``, ids 6..11) and checks that the readers, ``verify``, ``info`` and the generator refuse
it with a named error instead of serving the wrong models or writing outside the zoo.
"""

from __future__ import annotations

import json
import shutil

import h5py
import pytest

from helpers import toy_family
from helpers.hub_server import LoopbackHub, point_client_at
from weightzoo import hub as wzhub
from weightzoo.cli import run
from weightzoo.datasets import GroupedBatches
from weightzoo.errors import (
    GroupManifestError,
    InvalidOptionError,
    ManifestError,
    ShardCorruptError,
    UnknownGroupError,
    UnsafePathError,
    ZooNotFoundError,
)
from weightzoo.generate.runner import generate
from weightzoo.lineage import locate_models
from weightzoo.storage import ZooReader
from weightzoo.storage.groups import GroupedManifest, verify_grouped_zoo
from weightzoo.storage.hashing import sha256_file
from weightzoo.zoo import Zoo


def shard_hashes(zoo_dir):
    return {p.relative_to(zoo_dir).as_posix(): sha256_file(p) for p in zoo_dir.rglob("*.h5")}


def edit_top(zoo_dir, change):
    """Rewrite the top ``zoo.json`` with ``change(data)`` applied."""
    path = zoo_dir / "zoo.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def unfinished(data):
    """The top manifest of a run interrupted before any group's hash was recorded."""
    data["finished"] = False
    for entry in data["groups"]:
        entry["manifest_sha256"] = None


def test_a_top_manifest_with_shifted_model_ids_is_refused(grouped_zoo):
    # the wide group stores ids 6..11; a top manifest edited to claim 100..105 must not pass
    edit_top(grouped_zoo, lambda d: d["groups"][1].update(first_model_id=100))
    with pytest.raises(GroupManifestError, match="first_model_id"):
        Zoo(grouped_zoo, group="wide")
    with pytest.raises(GroupManifestError, match="first_model_id"):
        verify_grouped_zoo(grouped_zoo)
    assert Zoo(grouped_zoo, group="narrow").layout.num_params == 8


def test_a_top_manifest_with_another_model_count_is_refused(grouped_zoo):
    edit_top(grouped_zoo, lambda d: d["groups"][1].update(num_models=3))
    with pytest.raises(GroupManifestError, match="models"):
        ZooReader(grouped_zoo, group="wide")


def test_swapped_group_directories_of_an_unfinished_zoo_are_refused(grouped_zoo):
    # without recorded hashes, only the group's own manifest can tell the groups apart
    edit_top(grouped_zoo, unfinished)
    groups = grouped_zoo / "groups"
    (groups / "narrow").rename(groups / "tmp")
    (groups / "wide").rename(groups / "narrow")
    (groups / "tmp").rename(groups / "wide")
    for name in ("narrow", "wide"):
        with pytest.raises(GroupManifestError, match="first_model_id"):
            Zoo(grouped_zoo, group=name)
    with pytest.raises(GroupManifestError):
        GroupedBatches(grouped_zoo, batch_size=2, split="all", filter_viable=False)


def test_a_group_linked_to_another_group_inside_the_zoo_is_refused(grouped_zoo):
    edit_top(grouped_zoo, unfinished)
    wide = grouped_zoo / "groups" / "wide"
    shutil.rmtree(wide)
    wide.symlink_to(grouped_zoo / "groups" / "narrow")
    with pytest.raises(GroupManifestError):
        Zoo(grouped_zoo, group="wide")


def test_info_of_a_finished_group_without_manifest_is_an_error(grouped_zoo, capsys):
    # a finished group (hash recorded) that lost its zoo.json is damage, not "not generated yet"
    (grouped_zoo / "groups" / "wide" / "zoo.json").unlink()
    with pytest.raises(ZooNotFoundError):
        Zoo(grouped_zoo).info()
    assert run(["info", str(grouped_zoo)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "groups/wide/zoo.json" in err


def test_a_crash_before_the_top_records_a_finished_group_loses_nothing(
    tmp_path, grouped_spec, grouped_zoo, monkeypatch
):
    out = tmp_path / "interrupted"
    save = GroupedManifest.save
    calls = []

    def crash_on_second_save(self, zoo_dir):
        calls.append(1)
        if len(calls) == 2:  # narrow is finished, its hash not yet in the top manifest
            raise KeyboardInterrupt
        save(self, zoo_dir)

    monkeypatch.setattr(GroupedManifest, "save", crash_on_second_save)
    with pytest.raises(KeyboardInterrupt):
        generate(grouped_spec, out, progress=False)
    monkeypatch.setattr(GroupedManifest, "save", save)
    assert [g.manifest_sha256 for g in GroupedManifest.load(out).groups] == [None, None]
    assert Zoo(out, group="narrow").info()["complete"]
    toy_family.CALLS.clear()
    generate(grouped_spec, out, progress=False)
    assert sum(toy_family.CALLS) == 6  # the wide group only: narrow was kept
    assert shard_hashes(out) == shard_hashes(grouped_zoo)
    assert verify_grouped_zoo(out) == []


def test_a_rerun_does_not_bless_a_tampered_finished_group(grouped_zoo, grouped_spec):
    path = grouped_zoo / "groups" / "wide" / "zoo.json"
    data = json.loads(path.read_text())
    data["shards"][0]["sha256"] = "0" * 64
    path.write_text(json.dumps(data))
    recorded = GroupedManifest.load(grouped_zoo).groups[1].manifest_sha256
    with pytest.raises(GroupManifestError, match="wide"):
        generate(grouped_spec, grouped_zoo, progress=False)
    assert GroupedManifest.load(grouped_zoo).groups[1].manifest_sha256 == recorded


@pytest.mark.parametrize("link", ["groups", "groups/wide"])
def test_generate_never_writes_through_a_link_out_of_the_zoo(tmp_path, grouped_spec, link):
    out, outside = tmp_path / "zoo", tmp_path / "outside"
    outside.mkdir()
    (out / link).parent.mkdir(parents=True, exist_ok=True)
    (out / link).symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside the zoo"):
        generate(grouped_spec, out, progress=False)
    assert list(outside.iterdir()) == []


# -- fetch from the loopback hub ---------------------------------------------------------------

REPO = "lab/grouped-adversarial"


@pytest.fixture(scope="module")
def _server():
    with LoopbackHub() as fake:
        yield fake


@pytest.fixture
def published(_server, monkeypatch, tmp_path, grouped_zoo):
    """The toy grouped zoo on the loopback hub, with the client pointed at it."""
    _server.reset()
    point_client_at(_server.url, monkeypatch, tmp_path / "hf_home")
    files = {
        p.relative_to(grouped_zoo).as_posix(): p.read_bytes()
        for p in grouped_zoo.rglob("*")
        if p.is_file() and p.name != ".lock"
    }
    _server.commit(REPO, files)
    return _server


@pytest.mark.parametrize("link", ["groups", "groups/wide", "groups/wide/shards"])
def test_fetch_never_writes_through_a_local_group_link(published, tmp_path, link):
    target, outside = tmp_path / "zoo", tmp_path / "outside"
    outside.mkdir()
    (target / link).parent.mkdir(parents=True, exist_ok=True)
    (target / link).symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside the zoo"):
        wzhub.fetch(REPO, local_dir=target, progress=False)
    assert list(outside.rglob("*")) == []


# -- GroupedBatches ----------------------------------------------------------------------------


@pytest.mark.parametrize("groups", [["wide", "wide"], []])
def test_grouped_batches_refuse_a_repeated_or_empty_group_list(grouped_zoo, groups):
    # a repeated group would serve each of its models twice a pass, under two group indices
    with pytest.raises(InvalidOptionError, match="groups"):
        GroupedBatches(grouped_zoo, batch_size=2, split="all", filter_viable=False, groups=groups)


def test_grouped_batches_refuse_groups_on_a_version_1_zoo(grouped_zoo):
    with pytest.raises(UnknownGroupError, match="without groups"):
        GroupedBatches(grouped_zoo / "groups" / "wide", batch_size=2, groups=["narrow"])


# -- lineage -----------------------------------------------------------------------------------


def test_model_ids_changed_in_the_shards_are_not_located_silently(grouped_zoo):
    # same-size in-place edit: readers check sizes, not hashes; verify and lineage must notice
    for shard in (grouped_zoo / "groups" / "wide" / "shards").glob("*.h5"):
        with h5py.File(shard, "r+") as f:
            f["models/model_id"][...] = f["models/model_id"][:] - 6  # narrow's ids
    assert len(verify_grouped_zoo(grouped_zoo)) == 4
    with pytest.raises(ManifestError, match="outside its group's ids 6..11"):
        locate_models(Zoo(grouped_zoo))


# -- the command line --------------------------------------------------------------------------


def test_verify_does_not_claim_unhashed_groups_match(grouped_zoo, capsys):
    edit_top(
        grouped_zoo,
        lambda d: (d.update(finished=False), d["groups"][1].update(manifest_sha256=None)),
    )
    assert run(["verify", str(grouped_zoo)]) == 0
    out = capsys.readouterr().out
    assert "ok: 1 group manifests" in out and "not finished: groups wide" in out


@pytest.mark.parametrize("command", ["info", "verify", "report", "card"])
@pytest.mark.parametrize(
    "damage",
    ["tampered group manifest", "truncated top manifest", "group linked out", "groups not a list"],
)
def test_the_cli_names_the_error_of_a_broken_grouped_zoo(
    grouped_zoo, tmp_path, capsys, command, damage
):
    wide = grouped_zoo / "groups" / "wide"
    if damage == "tampered group manifest":
        (wide / "zoo.json").write_text((wide / "zoo.json").read_text().replace("wide", "w1de"))
    elif damage == "truncated top manifest":
        top = grouped_zoo / "zoo.json"
        top.write_text(top.read_text()[:100])
    elif damage == "group linked out":
        wide.rename(tmp_path / "elsewhere")
        wide.symlink_to(tmp_path / "elsewhere")
    else:
        edit_top(grouped_zoo, lambda d: d.update(groups={"wide": 1}))
    assert run([command, str(grouped_zoo)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("verify:")]  # progress
    assert len(lines) == 1 and lines[0].startswith("weightzoo: error: "), lines
    assert "Error;" in lines[0]  # the named error, e.g. [GroupManifestError; ...]


def test_fetch_refuses_a_corrupt_shard_or_group_manifest_served_by_the_hub(published, tmp_path):
    wide = json.loads(published.files(REPO)["groups/wide/zoo.json"])
    shard = f"groups/wide/{wide['shards'][0]['file']}"
    published.corrupt.add(shard)
    with pytest.raises(ShardCorruptError, match=shard):
        wzhub.fetch(REPO, local_dir=tmp_path / "a", progress=False)
    assert not (tmp_path / "a" / shard).exists()
    published.corrupt.clear()
    published.html.add("groups/wide/zoo.json")  # a login page instead of the manifest
    with pytest.raises(ManifestError):
        wzhub.fetch(REPO, local_dir=tmp_path / "b", progress=False)
    assert not list((tmp_path / "b").rglob("*.h5"))


def test_push_refuses_a_tampered_group_manifest(published, grouped_zoo):
    path = grouped_zoo / "groups" / "wide" / "zoo.json"
    path.write_text(path.read_text().replace('"finished": true', '"finished": false'))
    with pytest.raises(GroupManifestError):
        wzhub.push(grouped_zoo, "alice/tampered", plots=False)
    assert "alice/tampered" not in published.repos
