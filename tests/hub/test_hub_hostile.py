"""`fetch` from a hostile hub writes and deletes nothing outside its zoo (loopback hub only).

The hub here lies on purpose: headers that huggingface_hub would turn into file names, a commit
id that is a path, manifests that are huge, not JSON or name files outside the zoo; and the
local side holds what a fetch must not touch: another zoo, a user's file at a shard's path, links
out of the directory. Every test checks a canary file outside the destination (content and
mtime) and, where the fetch is refused, the destination's complete listing before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import toy_family
from helpers.hub_server import _RESOLVE, FakeHub, LoopbackHub, _Handler, point_client_at
from weightzoo import hub as wzhub
from weightzoo.cli import run
from weightzoo.errors import (
    HubError,
    InvalidOptionError,
    ManifestError,
    ShardCorruptError,
    SpecMismatchError,
    UnsafePathError,
    WeightzooError,
)
from weightzoo.generate.runner import generate
from weightzoo.storage.verify import verify_zoo

REPO = "lab/hostile"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class HostileHub(FakeHub):
    """The loopback hub, plus header overrides per served file and a commit id to answer."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: dict[str, dict[str, str]] = {}
        self.sha: str | None = None

    def reset(self) -> None:
        super().reset()
        self.headers.clear()
        self.sha = None


class _HostileHandler(_Handler):
    """Answers a served file with the hub's overrides of its headers (replaced or added)."""

    _sent: frozenset[str] = frozenset()

    def _overrides(self) -> dict[str, str]:
        match = _RESOLVE.match(urlsplit(self.path).path)
        return {} if match is None else self.hub.headers.get(unquote(match["path"]), {})

    def send_header(self, keyword: str, value: str) -> None:
        self._sent = self._sent | {keyword}
        super().send_header(keyword, self._overrides().get(keyword, value))

    def end_headers(self) -> None:
        for keyword, value in self._overrides().items():
            if keyword not in self._sent:
                super().send_header(keyword, value)
        self._sent = frozenset()
        super().end_headers()

    def _send_json(self, status, body, headers=None) -> None:
        if isinstance(body, dict) and "sha" in body and self.hub.sha is not None:
            body = {**body, "sha": self.hub.sha}
        super()._send_json(status, body, headers)


class _HostileLoopback(LoopbackHub):
    def __init__(self) -> None:
        super().__init__()
        url = self.hub.url
        self.hub = HostileHub()
        self.hub.url = url
        self._server.hub = self.hub
        self._server.RequestHandlerClass = _HostileHandler


@pytest.fixture(scope="module")
def _server():
    with _HostileLoopback() as fake:
        yield fake


@pytest.fixture
def hub(_server, monkeypatch, tmp_path) -> HostileHub:
    """The hostile hub, emptied, with the client pointed at it and an empty HF_HOME."""
    _server.reset()
    point_client_at(_server.url, monkeypatch, tmp_path / "hf_home")
    return _server


def _tree(zoo: Path) -> dict[str, bytes]:
    return {
        p.relative_to(zoo).as_posix(): p.read_bytes()
        for p in zoo.rglob("*")
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture
def published(hub, toy_zoo) -> HostileHub:
    hub.commit(REPO, _tree(toy_zoo))
    return hub


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder beside every destination, holding a canary file; nothing may change in it."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "canary.txt").write_text("precious")
    os.utime(folder / "canary.txt", ns=(1_000_000_000, 1_000_000_000))
    return folder


def _assert_untouched(outside: Path) -> None:
    canary = outside / "canary.txt"
    assert sorted(p.name for p in outside.rglob("*")) == ["canary.txt"]
    assert canary.read_text() == "precious" and canary.stat().st_mtime_ns == 1_000_000_000


def _listing(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` with its kind, contents (or link target) and mtime."""
    found = {}
    for path in [root, *root.rglob("*")]:
        status = path.lstat()
        if path.is_symlink():
            what = os.readlink(path)
        elif path.is_file():
            what = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            what = "dir"
        found[path.relative_to(root).as_posix()] = (what, status.st_size, status.st_mtime_ns)
    return found


def _fetch(target: Path | None = None, **kwargs) -> Path:
    if target is not None:
        kwargs["local_dir"] = target
    return wzhub.fetch(REPO, progress=False, **kwargs)


def _manifest(hub: HostileHub) -> dict:
    return json.loads(hub.files(REPO)["zoo.json"])


def _shard(hub: HostileHub, split: str) -> str:
    return next(s["file"] for s in _manifest(hub)["shards"] if s["split"] == split)


def _gets(hub: HostileHub, suffix: str) -> int:
    return hub.count("GET", suffix)


def _cli_error(capsys, argv: list[str]) -> str:
    assert run(argv) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("weightzoo: error: "), lines
    return lines[0]


# -- repo ids and revisions: checked before any request or path -------------------------------

BAD_REVISIONS = [
    "../../../../outside",
    "..",
    "refs/../../x",
    "/etc",
    "-rf",
    "a b",
    "v1~1",
    "v1^",
    "a:b",
    "a?",
    "a*",
    "a[1]",
    "a\\b",
    "main@{1}",
    "tab\there",
    "nul\x00",
    "a/.hidden",
    "x.lock",
    "a//b",
    "a/",
    "@",
    "",
]


@pytest.mark.parametrize("revision", BAD_REVISIONS)
def test_a_path_like_revision_is_refused_before_any_request(hub, tmp_path, outside, revision):
    with pytest.raises(InvalidOptionError, match="revision") as info:
        _fetch(revision=revision, cache_dir=tmp_path / "cache")
    assert "\n" not in str(info.value)
    assert hub.requests == []
    assert not (tmp_path / "cache").exists()
    _assert_untouched(outside)


@pytest.mark.parametrize("repo", ["../outside", "lab/../../x", "a/b/c", "lab/", "lab/a b", "x/.."])
def test_an_invalid_repo_id_is_refused_before_any_request(hub, tmp_path, repo):
    with pytest.raises(HubError, match="not a hub dataset repo id"):
        wzhub.fetch(repo, cache_dir=tmp_path / "cache", progress=False)
    assert hub.requests == []
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("revision", ["main", "v1.0", "refs/pr/1", "feature/x-y_z", COMMIT])
def test_branch_tag_and_commit_names_are_accepted(revision):
    assert wzhub.resolve_repo(REPO, revision) == (REPO, revision)


@given(st.text(max_size=30))
def test_an_accepted_revision_is_a_plain_relative_path(revision):
    try:
        wzhub.resolve_repo(REPO, revision)
    except InvalidOptionError:
        return
    parts = PurePosixPath(revision).parts
    assert revision.isprintable() and " " not in revision
    assert parts and not PurePosixPath(revision).is_absolute()
    assert all(not p.startswith(".") for p in parts) and "\\" not in revision
    assert os.path.normpath(os.path.join("refs", revision)).startswith("refs" + os.sep)


def test_the_cli_names_a_bad_revision_in_one_line(hub, tmp_path, capsys):
    line = _cli_error(
        capsys, ["fetch", REPO, "--revision", "../../x", "--local-dir", str(tmp_path / "z")]
    )
    assert "'../../x'" in line and "InvalidOptionError" in line
    assert hub.requests == [] and not (tmp_path / "z").exists()


# -- what the hub answers: commit ids and headers ---------------------------------------------


@pytest.mark.parametrize("sha", ["../../../../outside", "a" * 39 + "/", "HEAD", "A" * 40])
def test_a_commit_that_is_not_40_hex_is_refused(published, tmp_path, outside, sha):
    published.sha = sha
    with pytest.raises(HubError, match="not a 40-hex commit id"):
        _fetch(cache_dir=tmp_path / "cache")
    assert [m for m, _, _ in published.requests] == ["GET"]  # the revision lookup only
    assert not (tmp_path / "cache").exists()
    _assert_untouched(outside)


def _escape(outside: Path) -> str:
    """A value that, joined to any folder of the test, names ``outside/pwned``."""
    return "../" * 40 + str(outside).lstrip("/") + "/pwned"


@pytest.mark.parametrize("mode", ["cache", "local_dir"])
@pytest.mark.parametrize(
    ("header", "file"),
    [
        ("ETag", "zoo.json"),
        ("ETag", "shard"),
        ("X-Linked-Etag", "zoo.json"),
        ("X-Repo-Commit", "zoo.json"),
        ("X-Repo-Commit", "shard"),
    ],
)
def test_headers_that_would_be_file_names_are_refused(
    published, tmp_path, outside, mode, header, file
):
    file = _shard(published, "test") if file == "shard" else file
    value = f'"{_escape(outside)}"' if "Etag" in header or header == "ETag" else _escape(outside)
    published.headers[file] = {header: value}
    target = tmp_path / "zoo" if mode == "local_dir" else None
    with pytest.raises(UnsafePathError, match=header) as info:
        _fetch(target, split="test", cache_dir=tmp_path / "cache")
    assert "\n" not in str(info.value)
    assert _gets(published, file) == 0
    _assert_untouched(outside)
    assert not list(tmp_path.glob("**/pwned*"))


def test_a_missing_file_answered_with_a_path_as_commit_writes_nothing(published, tmp_path, outside):
    """huggingface_hub records a missing file under ``.no_exist/<X-Repo-Commit>/``."""
    shard = _shard(published, "test")
    published.repos[REPO].commits[published.repos[REPO].refs["main"]].pop(shard)
    published.headers[shard] = {"X-Repo-Commit": _escape(outside)}
    with pytest.raises(UnsafePathError, match="X-Repo-Commit"):
        _fetch(split="test", cache_dir=tmp_path / "cache")
    _assert_untouched(outside)
    assert not list(tmp_path.glob("**/pwned*"))


# -- hostile manifests ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["cache", "local_dir"])
def test_a_huge_manifest_is_refused_before_it_is_downloaded(
    published, tmp_path, outside, monkeypatch, mode
):
    monkeypatch.setattr(wzhub, "MAX_MANIFEST_BYTES", 64 << 10)
    manifest = _manifest(published)
    manifest["extra"] = {"padding": "x" * (100 << 10)}
    published.commit(REPO, {"zoo.json": json.dumps(manifest).encode()})
    target = tmp_path / "dest" / "zoo" if mode == "local_dir" else None
    with pytest.raises(ManifestError, match=f"at most {64 << 10}") as info:
        _fetch(target, cache_dir=tmp_path / "dest" / "cache")
    assert "\n" not in str(info.value)
    assert _gets(published, "zoo.json") == 0 and _gets(published, ".h5") == 0
    assert not list((tmp_path / "dest").glob("**/zoo.json"))
    _assert_untouched(outside)


def test_a_manifest_announced_as_huge_by_its_linked_size_is_refused(
    published, tmp_path, monkeypatch
):
    monkeypatch.setattr(wzhub, "MAX_MANIFEST_BYTES", 64 << 10)
    published.headers["zoo.json"] = {"X-Linked-Size": str(10 << 30)}
    with pytest.raises(ManifestError, match=str(10 << 30)):
        _fetch(cache_dir=tmp_path / "cache")
    assert _gets(published, "zoo.json") == 0


def test_a_shard_larger_than_its_manifest_records_is_not_downloaded(published, tmp_path, outside):
    shard = _shard(published, "test")
    published.headers[shard] = {"X-Linked-Size": str(10 << 30)}
    with pytest.raises(ShardCorruptError, match="its manifest records") as info:
        _fetch(tmp_path / "zoo", split="test")
    assert str(10 << 30) in str(info.value) and "\n" not in str(info.value)
    assert _gets(published, shard) == 0
    _assert_untouched(outside)


@pytest.mark.parametrize(
    ("content", "received"),
    [
        (b"[" * 200_000, "RecursionError"),
        (b"\xff\xfe\x00garbage", "UnicodeDecodeError"),
        (b'{"format": "weightzoo", ', "JSONDecodeError"),
        (b"[1, 2, 3]", "not an object"),
    ],
)
def test_a_manifest_that_is_not_json_is_named_and_not_kept(
    published, tmp_path, outside, content, received
):
    published.commit(REPO, {"zoo.json": content})
    with pytest.raises(ManifestError, match=received) as info:
        _fetch(tmp_path / "zoo")
    assert "\n" not in str(info.value)
    assert _gets(published, ".h5") == 0
    assert [p.name for p in (tmp_path / "zoo").iterdir()] == [".cache"]  # zoo.json deleted
    _assert_untouched(outside)


@pytest.mark.parametrize("path", ["../escape", "groups/../../escape", "/tmp/abs", "groups/other"])
def test_a_group_path_escaping_the_zoo_is_refused(hub, grouped_zoo, tmp_path, outside, path):
    files = _tree(grouped_zoo)
    top = json.loads(files["zoo.json"])
    top["groups"][0]["path"] = path
    files["zoo.json"] = json.dumps(top).encode()
    hub.commit(REPO, files)
    with pytest.raises(ManifestError, match="path") as info:
        _fetch(tmp_path / "d" / "zoo")
    assert "\n" not in str(info.value) and repr(path) in str(info.value)
    assert hub.count("GET", "groups/narrow/zoo.json") == 0 and _gets(hub, ".h5") == 0
    assert not (tmp_path / "d" / "escape").exists() and not (tmp_path / "escape").exists()
    _assert_untouched(outside)


# -- the local directory: only an empty one, or one holding the same zoo ------------------------


def _other_zoo(kind: str, target: Path, grouped_zoo: Path) -> None:
    if kind == "grouped":
        shutil.copytree(grouped_zoo, target)
        return
    spec = (
        toy_family.ToySpec(name="other", shard_models=3)
        if kind == "other name"
        else toy_family.ToySpec(shard_models=3, width=4)  # same name, other spec
    )
    generate(spec, target, progress=False)


@pytest.mark.parametrize("kind", ["other name", "other spec", "grouped"])
def test_fetch_into_a_directory_holding_another_zoo_changes_nothing(
    published, grouped_zoo, tmp_path, outside, capsys, kind
):
    target = tmp_path / "zoo"
    _other_zoo(kind, target, grouped_zoo)
    before = _listing(target)
    with pytest.raises(SpecMismatchError) as info:
        _fetch(target)
    message = str(info.value)
    assert str(target) in message and "'toy'" in message and "delete" in message
    line = _cli_error(capsys, ["fetch", REPO, "--local-dir", str(target)])
    assert "SpecMismatchError" in line
    assert _listing(target) == before
    assert _gets(published, ".h5") == 0
    _assert_untouched(outside)


def test_fetch_into_a_directory_of_other_files_changes_nothing(published, tmp_path, outside):
    target = tmp_path / "project"
    (target / "src").mkdir(parents=True)
    (target / "src" / "notes.txt").write_text("mine")
    before = _listing(target)
    with pytest.raises(InvalidOptionError, match="notes.txt"):
        _fetch(target)
    assert _listing(target) == before and published.requests == []
    _assert_untouched(outside)


def test_a_linked_manifest_in_the_directory_is_refused(published, tmp_path, outside):
    target = tmp_path / "zoo"
    target.mkdir()
    (target / "zoo.json").symlink_to(outside / "canary.txt")
    with pytest.raises(UnsafePathError, match="link"):
        _fetch(target)
    assert (target / "zoo.json").is_symlink()
    _assert_untouched(outside)


def test_huggingface_hubs_records_linked_out_of_the_directory_are_refused(
    published, tmp_path, outside
):
    target = tmp_path / "zoo"
    target.mkdir()
    (target / ".cache").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="outside the zoo"):
        _fetch(target)
    _assert_untouched(outside)


def test_the_same_zoo_generated_locally_is_completed_without_rewriting_it(
    published, toy_zoo, tmp_path
):
    """A directory holding the same zoo (no download records): verified, nothing rewritten."""
    target = tmp_path / "zoo"
    shutil.copytree(toy_zoo, target)
    before = _listing(target)
    assert _fetch(target) == target
    assert _gets(published, ".h5") == 0
    after = _listing(target)
    assert {k: v for k, v in after.items() if k in before and k != "."} == {
        k: v for k, v in before.items() if k != "."
    }
    assert verify_zoo(target) == []


# -- files the fetch did not download: never overwritten, never deleted --------------------------


@pytest.mark.parametrize("damage", ["same size", "other size"])
def test_a_file_at_a_shard_path_that_was_there_before_is_kept(published, tmp_path, outside, damage):
    target = tmp_path / "zoo"
    _fetch(target, split="test")
    shard = _shard(published, "val")
    size = len(published.files(REPO)[shard])
    mine = target / shard
    mine.write_bytes(b"m" * (size if damage == "same size" else size + 7))
    before = _listing(target)
    with pytest.raises(ShardCorruptError) as info:
        _fetch(target, split="val")
    message = str(info.value)
    assert str(mine) in message and "before this fetch" in message and "delete" in message
    assert _listing(target) == before  # nothing written, the manifest included
    assert _gets(published, shard) == 0
    _assert_untouched(outside)


@pytest.mark.parametrize("same_bytes", [True, False])
def test_a_manifest_naming_a_users_file_never_replaces_it(published, tmp_path, same_bytes):
    """A later commit of the same zoo names ``conftest.py`` (already in DIR) as a shard."""
    target = tmp_path / "zoo"
    _fetch(target, split="val")
    mine = target / "conftest.py"
    theirs = b"import os  # the publisher's code\n"
    mine.write_bytes(theirs if same_bytes else b"# the user's own conftest, same length!!\n")
    os.utime(mine, ns=(2_000_000_000, 2_000_000_000))
    original = mine.read_bytes()
    manifest = _manifest(published)
    row = next(s for s in manifest["shards"] if s["split"] == "test")
    row.update(file="conftest.py", sha256=hashlib.sha256(theirs).hexdigest(), bytes=len(theirs))
    published.commit(REPO, {"zoo.json": json.dumps(manifest).encode(), "conftest.py": theirs})
    refusal = ""
    try:
        _fetch(target, split="test")
    except WeightzooError as exc:  # refused by the manifest's own rules or by the fetch
        refusal = str(exc)
    assert "\n" not in refusal
    assert mine.read_bytes() == original and mine.stat().st_mtime_ns == 2_000_000_000
    assert _gets(published, "/conftest.py") == 0


def test_a_shard_corrupted_on_the_hub_is_deleted_and_earlier_files_are_kept(
    published, tmp_path, outside
):
    target = tmp_path / "zoo"
    _fetch(target, split="test")
    before = {k: v for k, v in _listing(target).items() if k.startswith("shards/")}
    shard = _shard(published, "val")
    published.corrupt.add(shard)
    with pytest.raises(ShardCorruptError, match="were deleted"):
        _fetch(target, split="val")
    assert _gets(published, shard) == 2  # downloaded, deleted, downloaded once more
    assert not (target / shard).exists()
    kept = {k: v for k, v in _listing(target).items() if k.startswith("shards/")}
    assert {k: v for k, v in kept.items() if k != "shards"} == {
        k: v for k, v in before.items() if k != "shards"
    }
    _assert_untouched(outside)


# -- the hub cache: links must lead to its blobs ------------------------------------------------


@pytest.mark.parametrize("which", ["shard", "zoo.json"])
def test_a_cache_link_leading_out_of_its_blobs_is_refused_and_kept(
    published, tmp_path, outside, which
):
    path = _fetch(split="test", cache_dir=tmp_path / "cache")
    entry = path / (_shard(published, "test") if which == "shard" else "zoo.json")
    original = entry.read_bytes()
    decoy = outside / "decoy"
    decoy.write_bytes(original)  # the same bytes: a match must not make the link acceptable
    entry.unlink()
    entry.symlink_to(decoy)
    with pytest.raises(UnsafePathError, match="outside the cache's blobs") as info:
        _fetch(split="test", cache_dir=tmp_path / "cache")
    assert str(entry) in str(info.value) and "Delete the link" in str(info.value)
    assert entry.is_symlink() and os.readlink(entry) == str(decoy)
    assert decoy.read_bytes() == original


# -- planted in the local directory: links out or to nothing, FIFOs -----------------------------

_RECORDS = ".cache/huggingface"
# The fetch in a child process, so that a fetch blocking on a FIFO fails the test, not hangs it.
_CHILD_FETCH = "import sys; from weightzoo.cli import run; sys.exit(run(sys.argv[1:]))"


def _partial_copy(hub: HostileHub, target: Path) -> str:
    """Write the published zoo into ``target`` but one train shard; return that shard's name."""
    missing = _shard(hub, "train")
    for name, data in hub.files(REPO).items():
        if name != missing:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(data)
    return missing


def _refused_before_any_request(hub: HostileHub, target: Path, error: type, capsys) -> str:
    """Fetch into ``target`` (API, then CLI): refused, one line, nothing there changed."""
    before = _listing(target)
    with pytest.raises(error) as info:
        _fetch(target)
    assert "\n" not in str(info.value)
    assert error.__name__ in _cli_error(capsys, ["fetch", REPO, "--local-dir", str(target)])
    assert _listing(target) == before and hub.requests == []
    return str(info.value)


def test_links_planted_among_huggingface_hubs_records_are_refused_before_any_request(
    published, tmp_path, outside, capsys
):
    """A partial copy of the zoo whose records are dangling links out of it."""
    target = tmp_path / "zoo"
    missing = _partial_copy(published, target)
    records = target / _RECORDS
    (records / "download" / "shards").mkdir(parents=True)
    (records / "download" / f"{missing}.metadata").symlink_to(outside / "metadata")
    (records / ".gitignore").symlink_to(outside / "gitignore")
    (records / "CACHEDIR.TAG").symlink_to(outside / "tag")
    message = _refused_before_any_request(published, target, UnsafePathError, capsys)
    assert "link" in message and str(outside) in message
    _assert_untouched(outside)


@pytest.mark.parametrize(
    ("where", "leads_to"),
    [
        (f"{_RECORDS}/download/zoo.json.metadata", "the canary"),  # read from outside
        (f"{_RECORDS}/download/zoo.json.lock", "a new file outside"),  # created by its lock
        (f"{_RECORDS}/download/zoo.json.metadata", "the zoo's manifest"),  # rewritten in place
        (f"{_RECORDS}/CACHEDIR.TAG", "the zoo's manifest"),
        (_RECORDS, "the outside folder"),
        (".cache", "the outside folder"),
        ("MISSING", "a new file outside"),  # in place of the missing shard
        ("MISSING", "nothing inside"),
        ("notes.txt", "the canary"),
    ],
)
def test_a_link_out_of_the_directory_to_nothing_or_among_the_records_is_refused(
    published, tmp_path, outside, capsys, where, leads_to
):
    target = tmp_path / "zoo"
    missing = _partial_copy(published, target)
    link = target / (missing if where == "MISSING" else where)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(
        {
            "the canary": outside / "canary.txt",
            "a new file outside": outside / "new",
            "the zoo's manifest": target / "zoo.json",
            "the outside folder": outside,
            "nothing inside": target / "absent",
        }[leads_to]
    )
    message = _refused_before_any_request(published, target, UnsafePathError, capsys)
    assert str(link) in message and "Delete the link" in message
    _assert_untouched(outside)


@pytest.mark.parametrize(("leads_to", "error"), [("sub", InvalidOptionError), ("gone", None)])
def test_a_directory_holding_only_links_is_not_empty(
    published, tmp_path, outside, capsys, leads_to, error
):
    target = tmp_path / "zoo"
    (target / "sub").mkdir(parents=True)
    (target / "view").symlink_to(leads_to, target_is_directory=True)
    message = _refused_before_any_request(published, target, error or UnsafePathError, capsys)
    assert str(target / "view") in message
    _assert_untouched(outside)


def test_a_link_to_a_file_inside_in_place_of_a_shard_is_replaced_and_its_target_kept(
    published, tmp_path, outside
):
    target = tmp_path / "zoo"
    _fetch(target, split="test")
    shard = target / _shard(published, "test")
    decoy = target / "decoy.bin"
    decoy.write_bytes(b"\0" * shard.stat().st_size)  # same size, other bytes
    shard.unlink()
    shard.symlink_to(decoy)
    _fetch(target, split="test")
    assert not shard.is_symlink()
    assert shard.read_bytes() == published.files(REPO)[_shard(published, "test")]
    assert decoy.read_bytes() == b"\0" * shard.stat().st_size
    _assert_untouched(outside)


@pytest.mark.parametrize(
    "where", [f"{_RECORDS}/download/zoo.json.metadata", f"{_RECORDS}/.gitignore", "MISSING"]
)
def test_a_fifo_in_the_directory_is_refused_without_opening_it(published, tmp_path, outside, where):
    target = tmp_path / "zoo"
    missing = _partial_copy(published, target)
    fifo = target / (missing if where == "MISSING" else where)
    fifo.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(fifo)
    before = _listing(target)
    argv = [sys.executable, "-c", _CHILD_FETCH, "fetch", REPO, "--local-dir", str(target)]
    try:
        child = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"fetch blocked on the FIFO {fifo}")
    lines = [line for line in child.stderr.splitlines() if line.strip()]
    assert child.returncode == 1 and len(lines) == 1, child.stderr
    assert "UnsafeFileError" in lines[0] and f"{fifo} is a FIFO" in lines[0]
    assert _listing(target) == before and published.requests == []
    _assert_untouched(outside)


def test_records_that_are_fifos_links_or_too_long_are_never_trusted(tmp_path, outside):
    """The check of a download record alone (behind the directory's scan), in a child process."""
    record = tmp_path / _RECORDS / "download" / "zoo.json.metadata"
    record.parent.mkdir(parents=True)
    (tmp_path / "zoo.json").write_text("{}")
    lines = [COMMIT, "etag", str(2**40)]  # a current record: its time is after the file's
    good = tmp_path / "good"
    good.write_text("\n".join(lines))
    long = tmp_path / "long"
    long.write_text("\n".join([*lines, "x" * 5000]))
    code = (
        "import os, sys; from pathlib import Path; from weightzoo import hub\n"
        "record, local = Path(sys.argv[1]), Path(sys.argv[2])\n"
        "def commit(make):\n"
        "    record.unlink(missing_ok=True); make()\n"
        "    return str(hub._recorded_commit(local, 'zoo.json'))\n"
        "print(commit(lambda: record.write_bytes(Path(sys.argv[3]).read_bytes())),\n"
        "      commit(lambda: os.mkfifo(record)), commit(lambda: record.symlink_to(sys.argv[3])),\n"
        "      commit(lambda: record.symlink_to(sys.argv[4])),\n"
        "      commit(lambda: record.write_bytes(Path(sys.argv[4]).read_bytes())))\n"
    )
    argv = [sys.executable, "-c", code, str(record), str(tmp_path), str(good), str(long)]
    try:
        child = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading the record {record} blocked on a FIFO")
    assert child.stdout.split() == [COMMIT, "None", "None", "None", "None"]
    _assert_untouched(outside)


# -- manifests that do not parse as a weightzoo manifest: refused in one line, not kept ---------


def _digits(text: str) -> str:
    return text.replace('"num_models": 12', '"num_models": ' + "1" * 5000, 1)


def _layout_dimension(value: str):
    def edit(text: str) -> str:
        data = json.loads(text)
        data["layout"][0]["shape"] = ["DIM"]
        return json.dumps(data).replace('"DIM"', value)

    return edit


@pytest.mark.parametrize("held", [False, True])
@pytest.mark.parametrize(
    ("edit", "received"),
    [
        (_digits, "digits"),
        (_layout_dimension("Infinity"), "Infinity"),
        (_layout_dimension("NaN"), "NaN"),
        (_layout_dimension("1e999"), "not a finite number"),
    ],
)
def test_a_manifest_with_numbers_json_allows_but_no_manifest_holds_is_not_kept(
    published, tmp_path, outside, capsys, edit, received, held
):
    """Refused in one line; downloaded into a new directory it is deleted, staged, dropped."""
    target = tmp_path / "zoo"
    if held:  # the same zoo is there: a new manifest is staged, and installed only if it checks
        _fetch(target, split="test")
    good = published.files(REPO)["zoo.json"]
    published.commit(REPO, {"zoo.json": edit(good.decode()).encode()})
    before, shards = _listing(target) if held else {}, _gets(published, ".h5")
    with pytest.raises(ManifestError, match=received) as info:
        _fetch(target)
    assert "\n" not in str(info.value)
    if held:
        assert _listing(target) == before
    else:
        assert [p.name for p in target.iterdir()] == [".cache"]  # zoo.json deleted
    assert "ManifestError" in _cli_error(capsys, ["fetch", REPO, "--local-dir", str(target)])
    assert _gets(published, ".h5") == shards
    _assert_untouched(outside)


def test_a_group_manifest_that_does_not_parse_is_not_kept(hub, grouped_zoo, tmp_path, outside):
    files = _tree(grouped_zoo)
    top = json.loads(files["zoo.json"])
    entry = top["groups"][0]
    name = f"{entry['path']}/zoo.json"
    files[name] = _layout_dimension("Infinity")(files[name].decode()).encode()
    entry["manifest_sha256"] = hashlib.sha256(files[name]).hexdigest()
    files["zoo.json"] = json.dumps(top).encode()
    hub.commit(REPO, files)
    target = tmp_path / "zoo"
    with pytest.raises(ManifestError, match="Infinity") as info:
        _fetch(target)
    assert name in str(info.value) and "\n" not in str(info.value)
    assert not (target / name).exists() and (target / "zoo.json").is_file()
    assert _gets(hub, ".h5") == 0
    _assert_untouched(outside)
