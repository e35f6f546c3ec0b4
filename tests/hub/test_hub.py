"""fetch and push driven through the real huggingface_hub client against a loopback hub."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import weightzoo
from helpers import toy_family
from helpers.hub_server import LoopbackHub, point_client_at
from weightzoo import hub as wzhub
from weightzoo.card import read_card_metadata
from weightzoo.cli import run
from weightzoo.errors import (
    HubError,
    ManifestError,
    ShardCorruptError,
    ShardMissingError,
    UnknownZooError,
    UnsafeFileError,
    UnsafePathError,
)
from weightzoo.storage.manifest import Manifest
from weightzoo.storage.verify import verify_zoo

REPO = "lab/toy-zoo"


@pytest.fixture(scope="module")
def source_zoo(tmp_path_factory) -> Path:
    """A toy zoo with 5 blocks of models x 2 epoch groups = 10 shards."""
    from weightzoo.generate import specs as spec_registry
    from weightzoo.generate.runner import generate

    spec_registry._FAMILY_MODULES["toy"] = "helpers.toy_family"
    out = tmp_path_factory.mktemp("src") / "toy"
    generate(toy_family.ToySpec(shard_models=3, epochs_per_shard=2), out, progress=False)
    return out


def _tree(zoo: Path) -> dict[str, bytes]:
    return {
        p.relative_to(zoo).as_posix(): p.read_bytes()
        for p in zoo.rglob("*")
        if p.is_file() and p.name not in ("README.md", ".lock")
    }


@pytest.fixture(scope="module")
def _server():
    with LoopbackHub() as fake:
        yield fake


@pytest.fixture
def hub(_server, monkeypatch, tmp_path):
    """The loopback hub, emptied, with the client pointed at it and an empty HF_HOME.

    huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE into ``constants`` at import; weightzoo
    reads both again at call time (and passes ``endpoint=`` explicitly), so setting the
    environment here is enough; the constant is patched too so that the client's own offline
    switch starts off.
    """
    _server.reset()
    point_client_at(_server.url, monkeypatch, tmp_path / "hf_home")
    return _server


@pytest.fixture
def published(hub, source_zoo):
    hub.commit(REPO, _tree(source_zoo))
    return hub


def _fetch(tmp_path, **kwargs) -> Path:
    kwargs.setdefault("cache_dir", tmp_path / "cache")
    return wzhub.fetch(REPO, progress=False, **kwargs)


def _shard_gets(hub) -> list[str]:
    return [p for m, p, _ in hub.requests if m == "GET" and "/resolve/" in p and "/shards/" in p]


def test_full_fetch_is_byte_identical_and_verified(published, source_zoo, tmp_path):
    path = _fetch(tmp_path)
    assert verify_zoo(path) == []
    assert Manifest.load(path).name == "toy"
    assert _tree(path) == _tree(source_zoo)
    assert len(_shard_gets(published)) == 10


def test_partial_fetch_downloads_only_the_selected_shards(published, tmp_path):
    path = _fetch(tmp_path, local_dir=tmp_path / "zoo", split="test", epochs=[3])
    assert path == tmp_path / "zoo"
    assert sorted(p.name for p in (path / "shards").iterdir()) == ["test-000010-c001.h5"]
    assert _shard_gets(published) == [
        f"/datasets/{REPO}/resolve/{_sha(published)}/shards/test-000010-c001.h5"
    ]
    path = _fetch(tmp_path, local_dir=tmp_path / "zoo", split="val", epochs="last")
    assert sorted(p.name for p in (path / "shards").iterdir()) == [
        "test-000010-c001.h5",
        "val-000008-c001.h5",
    ]
    assert len(_shard_gets(published)) == 2


def _sha(hub) -> str:
    return hub.repos[REPO].refs["main"]


@pytest.mark.parametrize("mode", ["cache", "local_dir"])
def test_second_fetch_downloads_nothing(published, tmp_path, mode):
    kwargs = {"local_dir": tmp_path / "zoo"} if mode == "local_dir" else {}
    first = _fetch(tmp_path, split="train", **kwargs)
    before = len(published.requests)
    assert _fetch(tmp_path, split="train", **kwargs) == first
    again = published.requests[before:]
    assert [r for r in again if "/resolve/" in r[1]] == []
    assert [m for m, _, _ in again] == ["GET"]  # only the revision -> commit lookup


def test_offline_uses_the_cache_and_names_what_is_missing(published, tmp_path, monkeypatch):
    path = _fetch(tmp_path, split="test")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(published.requests)
    assert _fetch(tmp_path, split="test", epochs="last") == path
    with pytest.raises(ShardMissingError) as info:
        _fetch(tmp_path, split="val")
    assert len(published.requests) == before
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message and "shards/val-000008-c000.h5" in message
    with pytest.raises(HubError, match="holds no zoo.json"):
        _fetch(tmp_path, cache_dir=tmp_path / "empty-cache")


def test_unreachable_hub_falls_back_to_the_cache(published, tmp_path, monkeypatch):
    path = _fetch(tmp_path, split="val")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    assert _fetch(tmp_path, split="val") == path
    with pytest.raises(ShardMissingError, match="cannot be reached"):
        _fetch(tmp_path, split="test")


def test_corrupt_shard_on_the_hub_is_refused_and_not_kept(published, tmp_path):
    bad = "shards/test-000010-c000.h5"
    published.corrupt.add(bad)
    with pytest.raises(ShardCorruptError) as info:
        _fetch(tmp_path, split="test")
    message = str(info.value)
    good_sha = hashlib.sha256(published.files(REPO)[bad]).hexdigest()
    assert bad in message and f"expected {good_sha}" in message
    assert _shard_gets(published).count(f"/datasets/{REPO}/resolve/{_sha(published)}/{bad}") == 2
    leftovers = [
        p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.stat().st_size > 5000
    ]
    hashes = {hashlib.sha256(p.read_bytes()).hexdigest() for p in leftovers}
    corrupt = bytearray(published.files(REPO)[bad])
    corrupt[0] ^= 0xFF
    assert hashlib.sha256(corrupt).hexdigest() not in hashes
    published.corrupt.clear()
    path = _fetch(tmp_path, split="test")
    assert verify_zoo(path) == [] or all("test" not in e.file for e, _ in verify_zoo(path))
    assert hashlib.sha256((path / bad).read_bytes()).hexdigest() == good_sha


def test_interrupted_download_is_resumed_cleanly(published, tmp_path):
    shard = "shards/val-000008-c001.h5"
    published.drop_once.add(shard)
    path = _fetch(tmp_path, local_dir=tmp_path / "zoo", split="val")
    gets = [(p, r) for m, p, r in published.requests if m == "GET" and p.endswith(shard)]
    # the client retries in the same call (from where it stopped, or from the start)
    assert len(gets) == 2 and gets[0][1] is None
    assert (path / shard).read_bytes() == published.files(REPO)[shard]
    assert not list(path.rglob("*.incomplete"))


@pytest.mark.parametrize("bad", ["../escape.h5", "/tmp/abs.h5", "shards/../../up.h5"])
def test_manifest_path_escaping_the_directory_is_refused(published, source_zoo, tmp_path, bad):
    manifest = json.loads((source_zoo / "zoo.json").read_text())
    manifest["shards"][0]["file"] = bad
    published.commit(REPO, {"zoo.json": json.dumps(manifest).encode()})
    with pytest.raises(UnsafeFileError) as info:
        _fetch(tmp_path, local_dir=tmp_path / "d" / "zoo")
    assert isinstance(info.value, ManifestError) and repr(bad) in str(info.value)
    assert _shard_gets(published) == []
    assert sorted(p.name for p in (tmp_path / "d").rglob("*.h5")) == []


@pytest.mark.parametrize("mode", ["cache", "local_dir"])
def test_html_page_instead_of_the_manifest_is_a_manifest_error(published, tmp_path, mode):
    """A proxy answering the download with a login page (shorter than the manifest)."""
    published.html.add("zoo.json")
    kwargs = {"local_dir": tmp_path / "zoo"} if mode == "local_dir" else {}
    with pytest.raises(ManifestError, match="did not arrive as a manifest.*size"):
        _fetch(tmp_path, **kwargs)
    assert _shard_gets(published) == []


def test_html_committed_as_the_manifest_names_what_was_received(published, tmp_path):
    page = b"<!DOCTYPE html><html><body>Sign in</body></html>"
    published.commit(REPO, {"zoo.json": page})
    with pytest.raises(ManifestError, match="an HTML page of 48 bytes starting '<!DOCTYPE"):
        _fetch(tmp_path, local_dir=tmp_path / "zoo")


def test_a_shard_linked_out_of_local_dir_is_refused_and_kept(published, tmp_path):
    """A shard path that links out of the directory is not a download: never read or delete it."""
    path = _fetch(tmp_path, local_dir=tmp_path / "zoo", split="test")
    shard = next(p for p in sorted((path / "shards").glob("test-*.h5")))
    outside = tmp_path / "precious.bin"
    outside.write_bytes(b"\0" * shard.stat().st_size)  # same size, other bytes
    shard.unlink()
    shard.symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside the zoo directory"):
        _fetch(tmp_path, local_dir=tmp_path / "zoo", split="test")
    assert shard.is_symlink()
    assert outside.read_bytes() == b"\0" * len(outside.read_bytes())  # target untouched


def test_push_then_fetch_round_trip(hub, source_zoo, tmp_path):
    url = wzhub.push(source_zoo, "alice/toy", private=True)
    sha = hub.repos["alice/toy"].refs["main"]
    assert url.endswith(sha) and hub.repos["alice/toy"].private
    files = hub.files("alice/toy")
    manifest = Manifest.load(source_zoo)
    figures = {f for f in files if f.startswith("figures/")}
    assert set(files) == {"zoo.json", "README.md", *(s.file for s in manifest.shards), *figures}
    assert len(figures) == 5 and all(files[f].startswith(b"\x89PNG") for f in figures)
    assert all(f"]({f})" in files["README.md"].decode() for f in figures)  # the card shows them
    # the manifest arrives in the last commit, after every shard
    assert len(hub.repos["alice/toy"].commits) == 2
    first = next(c for s, c in hub.repos["alice/toy"].commits.items() if s != sha)
    assert "zoo.json" not in first and len(first) == len(manifest.shards)
    assert figures <= set(hub.repos["alice/toy"].commits[sha])  # with the manifest
    meta = read_card_metadata(files["README.md"].decode())
    assert meta["license"] == "cc-by-4.0" and "weightzoo" in meta["tags"]
    block = meta["weightzoo"]
    assert block["spec"] == manifest.spec and block["split_counts"] == manifest.split_counts
    assert set(block["accuracy"]["test_acc"]) == {"train", "val", "test"}
    assert block["accuracy"]["test_acc"]["train"]["models"] == 8
    path = weightzoo.fetch("alice/toy", cache_dir=tmp_path / "elsewhere", progress=False)
    assert _tree(path) == _tree(source_zoo)


def test_push_refuses_a_zoo_that_does_not_verify(hub, source_zoo, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(source_zoo, copy)
    shard = next((copy / "shards").glob("val-*"))
    data = bytearray(shard.read_bytes())
    data[-10] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardCorruptError, match=shard.name):
        wzhub.push(copy, "alice/broken")
    assert hub.requests == []


def test_push_without_write_token_is_a_hub_error(hub, source_zoo, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(HubError, match="write token"):
        wzhub.push(source_zoo, "alice/toy")


def test_names_resolve_through_the_catalog(hub):
    with pytest.raises(HubError, match="weightzoo generate mlds-ds1"):
        weightzoo.fetch("mlds-ds1")
    with pytest.raises(UnknownZooError, match="mlds-ds1"):
        weightzoo.fetch("mlds-ds9")
    with pytest.raises(HubError, match="not found"):
        weightzoo.fetch("nobody/nothing", progress=False)
    assert hub.requests[-1][1] == "/api/datasets/nobody/nothing/revision/main"


def test_cli_fetch_prints_the_zoo_path(published, tmp_path, capsys):
    target = tmp_path / "cli-zoo"
    assert (
        run(["fetch", REPO, "--split", "test", "--epochs", "last", "--local-dir", str(target)]) == 0
    )
    assert capsys.readouterr().out.strip() == str(target)
    assert sorted(p.name for p in (target / "shards").iterdir()) == ["test-000010-c001.h5"]
