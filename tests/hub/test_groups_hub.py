"""Grouped zoos through the loopback hub: fetch every group (or one), push, the hash chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.hub_server import LoopbackHub, point_client_at
from weightzoo import hub as wzhub
from weightzoo.cli import run
from weightzoo.errors import GroupManifestError, UnknownGroupError
from weightzoo.storage.verify import verify_zoo
from weightzoo.zoo import Zoo

REPO = "lab/grouped"


def _tree(zoo: Path) -> dict[str, bytes]:
    return {
        p.relative_to(zoo).as_posix(): p.read_bytes()
        for p in zoo.rglob("*")
        if p.is_file()
        and p.name not in ("README.md", ".lock")
        and ".cache" not in p.relative_to(zoo).parts  # huggingface_hub's local_dir metadata
    }


@pytest.fixture(scope="module")
def _server():
    with LoopbackHub() as fake:
        yield fake


@pytest.fixture
def hub(_server, monkeypatch, tmp_path):
    """The loopback hub, emptied, with the client pointed at it (as in test_hub.py)."""
    _server.reset()
    point_client_at(_server.url, monkeypatch, tmp_path / "hf_home")
    return _server


@pytest.fixture
def published(hub, grouped_zoo):
    hub.commit(REPO, _tree(grouped_zoo))
    return hub


@pytest.mark.parametrize("mode", ["cache", "local_dir"])
def test_fetch_downloads_every_group_and_verifies(published, grouped_zoo, tmp_path, mode):
    kwargs = {"local_dir": tmp_path / "zoo"} if mode == "local_dir" else {}
    path = wzhub.fetch(REPO, cache_dir=tmp_path / "cache", progress=False, **kwargs)
    assert _tree(path) == _tree(grouped_zoo)
    assert verify_zoo(path) == []
    assert Zoo(path).groups == ["narrow", "wide"]
    assert Zoo(path, group="wide").layout.num_params == 14


def test_fetch_of_one_group_and_split_downloads_only_its_shards(published, tmp_path, capsys):
    target = tmp_path / "zoo"
    assert (
        run(["fetch", REPO, "--group", "wide", "--split", "test", "--local-dir", str(target)]) == 0
    )
    assert capsys.readouterr().out.strip() == str(target)
    shards = sorted(p.relative_to(target).as_posix() for p in target.rglob("*.h5"))
    assert len(shards) == 1 and shards[0].startswith("groups/wide/shards/test-")
    assert not (target / "groups" / "narrow").exists()
    with pytest.raises(UnknownGroupError, match="narrow, wide"):
        wzhub.fetch(REPO, local_dir=target, group="medium", progress=False)


def test_a_group_manifest_changed_on_the_hub_is_refused(published, grouped_zoo, tmp_path):
    manifest = (grouped_zoo / "groups" / "narrow" / "zoo.json").read_text()
    edited = manifest.replace('"finished": true', '"finished": false').encode()
    published.commit(REPO, {"groups/narrow/zoo.json": edited})
    with pytest.raises(GroupManifestError, match="groups/narrow/zoo.json"):
        wzhub.fetch(REPO, local_dir=tmp_path / "zoo", progress=False)
    assert not list((tmp_path / "zoo").rglob("*.h5"))
    assert not (tmp_path / "zoo" / "groups" / "narrow" / "zoo.json").exists()


def test_push_then_fetch_round_trip(hub, grouped_zoo, tmp_path):
    wzhub.push(grouped_zoo, "alice/grouped", plots=False)
    files = hub.files("alice/grouped")
    assert {"zoo.json", "groups/narrow/zoo.json", "groups/wide/zoo.json", "README.md"} <= set(files)
    assert sum(f.endswith(".h5") for f in files) == 8
    first = next(
        commit
        for sha, commit in hub.repos["alice/grouped"].commits.items()
        if sha != hub.repos["alice/grouped"].refs["main"]
    )
    assert not any(f.endswith("zoo.json") for f in first)  # manifests come last
    path = wzhub.fetch("alice/grouped", cache_dir=tmp_path / "elsewhere", progress=False)
    assert _tree(path) == _tree(grouped_zoo)
