"""Fetching published zoos: Zenodo records, resumable verified HTTP, remote zips, hostile archives.

Everything runs against tests/helpers/source_server.py on 127.0.0.1, which speaks Zenodo's records
API and plain object serving (with and without range support) over real HTTP/1.1.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import posixpath
import shutil
import stat
import subprocess
import sys
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.importer_fixtures import modelzoo_tree, one_line_error, read_back
from helpers.source_server import SourceServer
from weightzoo.cli import run
from weightzoo.errors import (
    SourceChecksumError,
    SourceConnectionError,
    SourceContentError,
    SourceNotFoundError,
    UnreadableFileError,
    UnsafeArchiveError,
)
from weightzoo.sources.archive import (
    MAX_RATIO,
    RATIO_FLOOR,
    extract_tar,
    extract_zip,
    member_path,
    total_limit,
)
from weightzoo.sources.fetch import fetch_zenodo, select_members
from weightzoo.sources.http import download
from weightzoo.sources.zenodo import Record, get_record

ZIP = "cifar10_cnn_sample.zip"


@pytest.fixture(scope="module")
def _server():
    with SourceServer() as state:
        yield state


@pytest.fixture
def zenodo(_server, monkeypatch):
    """The loopback server, emptied, as the Zenodo endpoint."""
    _server.reset()
    monkeypatch.setenv("WEIGHTZOO_ZENODO_ENDPOINT", _server.url)
    monkeypatch.delenv("WEIGHTZOO_HTTP_MIRROR", raising=False)
    return _server


# -- fixtures in the published layout ---------------------------------------------------------


def population(root: Path, rng: np.random.Generator, trials: int = 6, epochs: int = 12) -> dict:
    """Model Zoos trial directories as published: checkpoints, optimizer states, result lines.

    Result lines start at epoch 1 (checkpoint 0 is taken before training, the zoos' off-by-one).
    """
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model::type": "CNN", "seed": [0, 1]}))
    (root / "dataset.pt").write_bytes(rng.bytes(64_000))  # never read
    truth = {}
    for i in range(trials):
        name = f"NN_tune_trainable_{i:05x}_{i}_seed={i}"
        trial = root / name
        trial.mkdir()
        params = {"model::type": "CNN", "optim::lr": 1e-3 * (i + 1), "seed": i}
        (trial / "params.json").write_text(json.dumps(params))
        checkpoints = {}
        for epoch in range(epochs):
            sd = {
                "module_list.0.weight": torch.from_numpy(rng.normal(size=(8, 1, 5, 5))).float(),
                "module_list.0.bias": torch.from_numpy(rng.normal(size=8)).float(),
                "module_list.3.weight": torch.from_numpy(rng.normal(size=(10, 200))).float(),
                "module_list.3.bias": torch.from_numpy(rng.normal(size=10)).float(),
            }
            folder = trial / f"checkpoint_{epoch:06d}"
            folder.mkdir()
            torch.save(sd, folder / "checkpoints")
            moments = {k: torch.from_numpy(rng.normal(size=(2, *v.shape))) for k, v in sd.items()}
            torch.save({"state": moments}, folder / "optimizer")  # never read
            checkpoints[epoch] = sd
        lines = [
            {"training_iteration": e, "test_acc": e / 100 + i / 1000, "train_loss": 2.0 - e / 10}
            for e in range(1, epochs)
        ]
        (trial / "result.json").write_text("".join(json.dumps(x) + "\n" for x in lines))
        truth[name] = {"params": params, "checkpoints": checkpoints, "lines": lines}
    return truth


def zip_tree(root: Path) -> bytes:
    """``root`` zipped as the published zips are: one top folder, with folder entries."""
    base = shutil.make_archive(str(root.parent / f"{root.name}-zip"), "zip", root.parent, root.name)
    return Path(base).read_bytes()


def zip_entries(entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore")  # duplicate names are the point of some tests
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def _state_dict_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"fc.weight": torch.ones(2, 2)}, buffer)
    return buffer.getvalue()


def valid_trial() -> list[tuple[str | zipfile.ZipInfo, bytes]]:
    return [
        ("root/t1/params.json", b'{"seed": 1}'),
        ("root/t1/result.json", b'{"test_acc": 0.5}\n'),
        ("root/t1/checkpoint_000001/checkpoints", _state_dict_bytes()),
    ]


def expected_row(sd: dict[str, torch.Tensor], manifest) -> np.ndarray:
    return np.concatenate([sd[t.name].numpy().reshape(-1) for t in manifest.layout])


def no_leftovers(parent: Path, *allowed: str) -> None:
    assert sorted(p.name for p in parent.iterdir()) == sorted(allowed)


# -- the records API --------------------------------------------------------------------------


def test_a_concept_id_lists_its_latest_version_and_a_version_id_stays_pinned(zenodo, capsys):
    zenodo.add_record("100", {"old.zip": b"PK\x05\x06" + bytes(18)}, concept="99")
    zenodo.add_record("101", {ZIP: b"PK\x05\x06" + bytes(18), "README.md": b"hello"}, concept="99")
    latest = get_record("99")
    assert (latest.id, latest.requested, latest.concept_id) == ("101", "99", "99")
    assert [(f.key, f.size) for f in latest.files] == [(ZIP, 22), ("README.md", 5)]
    assert str(latest.files[1].checksum) == "md5:" + hashlib.md5(b"hello").hexdigest()
    assert latest.license == "cc-by-4.0" and latest.doi == "10.5281/zenodo.101"
    assert get_record("100").id == "100"
    routes = [path for method, path, _, _ in zenodo.requests if method == "GET"]
    assert routes[:2] == ["/api/records/99", "/api/records/99/versions/latest"]

    assert run(["fetch", "zenodo:99"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("zenodo:101 (the latest version of 99): 'Model Zoos sample'")
    assert ZIP in out[1] and "22 B" in out[1] and out[1].endswith("converts (modelzoo)")
    assert "README.md" in out[2] and out[2].endswith("  -")
    assert (
        out[3]
        == "convert one with: weightzoo fetch zenodo:101/FILE --out DIR [--epochs E] [--models N]"
    )


def test_the_invenio_form_of_a_listing_is_read_too():
    data = {
        "id": "82kn8-3nk04",
        "parent": {"id": "7x2m1-aa000"},
        "pids": {"doi": {"identifier": "10.1234/abc"}},
        "metadata": {"title": "t", "rights": [{"id": "cc-by-4.0"}]},
        "files": {
            "enabled": True,
            "entries": {
                "a.zip": {
                    "key": "a.zip",
                    "size": 3,
                    "checksum": "md5:" + "ab" * 16,
                    "links": {
                        "self": "https://x/api/records/82kn8-3nk04/files/a.zip",
                        "content": "https://x/api/records/82kn8-3nk04/files/a.zip/content",
                    },
                }
            },
        },
    }
    record = Record.from_json(
        data, requested="7x2m1-aa000", url="https://x/api/records/82kn8-3nk04"
    )
    assert (record.id, record.concept_id, record.doi, record.license) == (
        "82kn8-3nk04",
        "7x2m1-aa000",
        "10.1234/abc",
        "cc-by-4.0",
    )
    assert record.file("a.zip").url.endswith("/files/a.zip/content")
    with pytest.raises(SourceNotFoundError, match="has no file 'b.zip'; its files are: a.zip"):
        record.file("b.zip")


# -- Model Zoos zips into zoos ----------------------------------------------------------------


def test_a_one_epoch_fetch_reads_under_a_tenth_of_the_zip_and_converts_it(
    zenodo, tmp_path, rng, capsys
):
    truth = population(tmp_path / "src" / "cifar10_cnn_sample", rng)
    data = zip_tree(tmp_path / "src" / "cifar10_cnn_sample")
    zenodo.add_record("200", {ZIP: data}, concept="199")
    out = tmp_path / "zoos" / "sample"
    assert run(["fetch", f"zenodo:199/{ZIP}", "--out", str(out), "--epochs", "5"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert "6 models x 1 checkpoints (epochs 5)" in captured.err

    sent = zenodo.sent(zenodo.file_path("200", ZIP))
    assert 0 < sent < 0.1 * len(data), (sent, len(data))
    ranged = [(r, i) for m, p, r, i in zenodo.requests if m == "GET" and p.endswith("/content")]
    assert ranged and all(r and i for r, i in ranged)  # every read a range, guarded by If-Range

    manifest, models = read_back(out)
    assert manifest.epochs == [5] and manifest.num_models == 6
    for model in models.values():
        info = truth[model["columns"]["trial"]]
        np.testing.assert_array_equal(
            model["weights"][0], expected_row(info["checkpoints"][5], manifest)
        )
        # result lines start at epoch 1: epoch 5's metrics are the fifth line
        assert model["metrics"]["test_acc"][0] == pytest.approx(info["lines"][4]["test_acc"])

    source = json.loads((out / "source.json").read_text())
    assert source["partial"] is True and source["record"] == "200" and source["requested"] == "199"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        crcs = {i.filename: f"{i.CRC:08x}" for i in archive.infolist()}
    read = {m["name"]: m["crc32"] for m in source["members"]}
    trials = [f"cifar10_cnn_sample/{name}" for name in truth]
    assert set(read) == {"cifar10_cnn_sample/config.json"} | {
        f"{t}/{f}"
        for t in trials
        for f in ("params.json", "result.json", "checkpoint_000005/checkpoints")
    }
    assert all(crcs[name] == crc for name, crc in read.items())
    no_leftovers(out.parent, "sample")

    # the first N models, last epoch, into a second zoo
    two = tmp_path / "zoos" / "two"
    assert (
        run(["fetch", f"zenodo:200/{ZIP}", "--out", str(two), "--models", "2", "--epochs", "last"])
        == 0
    )
    manifest, models = read_back(two)
    assert manifest.epochs == [11] and manifest.num_models == 2
    assert sorted(m["columns"]["trial"] for m in models.values()) == sorted(truth)[:2]


def test_without_range_support_the_whole_zip_is_downloaded_verified_and_converted(
    zenodo, tmp_path, rng
):
    (tmp_path / "src").mkdir()
    truth = modelzoo_tree(tmp_path / "src" / "cnn_mnist_seed", rng)
    data = zip_tree(tmp_path / "src" / "cnn_mnist_seed")
    zenodo.add_record("300", {"cnn_mnist_seed.zip": data}, concept="299")
    zenodo.ranges = False
    out = tmp_path / "zoos" / "mnist"
    fetched = fetch_zenodo("zenodo:300/cnn_mnist_seed.zip", out)
    assert not fetched.partial and fetched.bytes_read == len(data)
    assert zenodo.sent(zenodo.file_path("300", "cnn_mnist_seed.zip")) == len(data)
    manifest, models = read_back(out)
    assert manifest.epochs == [0, 1, 2] and manifest.num_models == 6
    for model in models.values():
        info = truth[model["columns"]["trial"]]
        keys = json.loads(model["columns"]["state_dict_keys"])  # dropout shifts module indices
        for epoch in range(3):
            sd = info["ckpts"][epoch]
            expected = np.concatenate([sd[k].numpy().reshape(-1) for k in keys])
            np.testing.assert_array_equal(model["weights"][epoch], expected)
    source = json.loads((out / "source.json").read_text())
    assert source["verified"] == "the md5 of the whole file"
    no_leftovers(out.parent, "mnist")


def test_a_range_read_cut_mid_way_is_retried(zenodo, tmp_path, rng):
    population(tmp_path / "src" / "cifar10_cnn_sample", rng, trials=2, epochs=3)
    data = zip_tree(tmp_path / "src" / "cifar10_cnn_sample")
    zenodo.add_record("210", {ZIP: data}, concept="209")
    zenodo.cut_after[zenodo.file_path("210", ZIP)] = 10  # the first range read breaks
    fetched = fetch_zenodo(f"zenodo:210/{ZIP}", tmp_path / "z", epochs=2)
    assert fetched.partial and read_back(tmp_path / "z")[0].epochs == [2]


# -- resumable, verified downloads ------------------------------------------------------------


def _object(zenodo, path: str, size: int = 300_000, seed: int = 0) -> bytes:
    content = lzma.compress(np.random.default_rng(seed).bytes(size), preset=0)
    zenodo.objects[path] = content
    return content


def test_a_cut_connection_resumes_from_the_bytes_on_disk_and_verifies(zenodo, tmp_path):
    path = "/bucket/zoo.tar.xz"
    content = _object(zenodo, path)
    zenodo.cut_after[path] = 100_000
    dest = tmp_path / "dl" / "zoo.tar.xz"
    with pytest.raises(SourceConnectionError, match="rerun the same command to resume") as info:
        download(zenodo.url + path, dest, retries=0)
    assert "\n" not in str(info.value) and not dest.exists()
    assert dest.with_name("zoo.tar.xz.part").stat().st_size == 100_000

    got = download(zenodo.url + path, dest, retries=0)
    assert dest.read_bytes() == content and got.resumed_from == 100_000 and got.restarts == 0
    assert str(got.checksum) == "md5:" + hashlib.md5(content).hexdigest()  # from x-goog-hash
    etag = f'"{hashlib.md5(content).hexdigest()}"'
    assert zenodo.requests[-1] == ("GET", path, "bytes=100000-", etag)
    assert zenodo.sent(path) == len(content)  # nothing sent twice
    no_leftovers(dest.parent, "zoo.tar.xz")

    # within one call, a cut is resumed at once
    zenodo.cut_after[path] = 5_000
    again = download(zenodo.url + path, tmp_path / "dl2" / "zoo.tar.xz")
    assert again.path.read_bytes() == content and again.resumed_from == 0


def test_content_changed_between_requests_restarts_cleanly(zenodo, tmp_path):
    path = "/bucket/zoo.tar.xz"
    _object(zenodo, path)
    new = _object(zenodo, "/other", seed=1)
    zenodo.cut_after[path] = 100_000
    zenodo.change_after[path] = new
    dest = tmp_path / "zoo.tar.xz"
    with pytest.raises(SourceConnectionError):
        download(zenodo.url + path, dest, retries=0)
    got = download(zenodo.url + path, dest, retries=0)
    assert dest.read_bytes() == new and got.restarts == 1 and got.resumed_from == 100_000
    assert str(got.checksum) == "md5:" + hashlib.md5(new).hexdigest()


def test_a_server_without_ranges_restarts_a_resumed_download(zenodo, tmp_path):
    path = "/bucket/zoo.tar.xz"
    content = _object(zenodo, path)
    zenodo.ranges = False
    zenodo.cut_after[path] = 50_000
    dest = tmp_path / "zoo.tar.xz"
    with pytest.raises(SourceConnectionError):
        download(zenodo.url + path, dest, retries=0)
    got = download(zenodo.url + path, dest, retries=0)
    assert dest.read_bytes() == content and got.restarts == 1


def test_a_cache_that_mixes_two_versions_fails_the_checksum_and_keeps_nothing(zenodo, tmp_path):
    path = "/bucket/zoo.tar.xz"
    _object(zenodo, path)
    zenodo.cut_after[path] = 100_000
    zenodo.change_after[path] = _object(zenodo, "/other", seed=1)
    zenodo.ignore_if_range = True  # serves the new file's tail after the old file's head
    dest = tmp_path / "zoo.tar.xz"
    with pytest.raises(SourceConnectionError):
        download(zenodo.url + path, dest, retries=0)
    with pytest.raises(
        SourceChecksumError, match=r"has md5 [0-9a-f]{32}, but its source publishes"
    ):
        download(zenodo.url + path, dest, retries=0)
    no_leftovers(tmp_path)


def test_a_response_larger_than_the_listing_is_refused(zenodo, tmp_path):
    path = "/bucket/zoo.tar.xz"
    content = _object(zenodo, path)
    with pytest.raises(SourceContentError, match=f"but its listing promised {len(content) - 1}"):
        download(zenodo.url + path, tmp_path / "zoo.tar.xz", size=len(content) - 1)
    no_leftovers(tmp_path)


@pytest.mark.parametrize("fault", ["html", "json_error"])
def test_a_page_or_error_json_instead_of_the_file_is_refused_and_nothing_kept(
    zenodo, tmp_path, fault
):
    path = "/bucket/zoo.tar.xz"
    _object(zenodo, path)
    getattr(zenodo, fault).add(path)
    with pytest.raises(SourceContentError, match="instead of the file zoo.tar.xz"):
        download(zenodo.url + path, tmp_path / "zoo.tar.xz")
    no_leftovers(tmp_path)


def test_the_mirror_replaces_scheme_and_host_of_plain_sources(zenodo, tmp_path, monkeypatch):
    members = tmp_path / "tree" / "small-cnn-zoo"
    members.mkdir(parents=True)
    (members / "layout.csv").write_text("varname,start_idx,end_idx,shape\n")
    (members / "weights.npy").write_bytes(b"\x93NUMPY" + bytes(100))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        tar.add(members, arcname="small-cnn-zoo")
    zenodo.objects["/gresearch/smallcnnzoo-dataset/mnist.tar.xz"] = buffer.getvalue()
    monkeypatch.setenv("WEIGHTZOO_HTTP_MIRROR", zenodo.url)
    got = download(
        "https://storage.googleapis.com/gresearch/smallcnnzoo-dataset/mnist.tar.xz",
        tmp_path / "mnist.tar.xz",
    )
    extracted = extract_tar(got.path, tmp_path / "mnist")
    assert sorted(m.name for m in extracted) == [
        "small-cnn-zoo/layout.csv",
        "small-cnn-zoo/weights.npy",
    ]
    assert (tmp_path / "mnist" / "small-cnn-zoo" / "weights.npy").read_bytes()[:6] == b"\x93NUMPY"


# -- hostile archives and sources: one line, nothing written outside, no partial zoo ----------


def _hostile(kind: str, canary: Path) -> list[tuple[str | zipfile.ZipInfo, bytes]]:
    evil = b"overwritten"
    if kind == "symlink":
        link = zipfile.ZipInfo("root/t1/link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        return [(link, str(canary).encode())]
    return {
        "zip slip": [("root/" + "../" * 40 + str(canary).lstrip("/"), evil)],
        "absolute": [(str(canary), evil)],
        "drive letter": [("C:/Users/x/canary.txt", evil)],
        "backslash": [("root\\..\\..\\canary.txt", evil)],
        "duplicate": [("root/t1/params.json", b'{"seed": 2}')],
        "zip bomb": [("root/t1/blob.bin", bytes(20_000_000))],
        "file as folder": [("root/t1/params.json/x", evil)],
    }[kind]


HOSTILE = {
    "zip slip": "a '..' component",
    "absolute": "an absolute path",
    "drive letter": "a drive letter",
    "backslash": "a backslash",
    "symlink": "a symbolic link",
    "duplicate": "appears twice",
    "zip bomb": "a zip bomb",
    "file as folder": "which is a file",
}


@pytest.mark.parametrize("ranges", [True, False], ids=["ranges", "whole"])
@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_zips_are_one_line_errors_that_write_nothing(
    zenodo, tmp_path, capsys, kind, ranges
):
    canary = tmp_path / "canary.txt"
    canary.write_bytes(b"canary")
    zenodo.add_record(
        "400", {"evil.zip": zip_entries(valid_trial() + _hostile(kind, canary))}, concept="399"
    )
    zenodo.ranges = ranges
    out = tmp_path / "zoos" / "z"
    one_line_error(
        capsys,
        ["fetch", "zenodo:400/evil.zip", "--out", str(out)],
        "UnsafeArchiveError",
        HOSTILE[kind],
    )
    assert canary.read_bytes() == b"canary"
    assert {p.name for p in tmp_path.iterdir()} <= {"canary.txt", "zoos"}
    if (tmp_path / "zoos").exists():
        no_leftovers(tmp_path / "zoos")


def _lying_size() -> bytes:
    """A zip whose params.json declares fewer bytes than it holds (fails its CRC-32 on read)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in valid_trial():
            archive.writestr(name, data)
    data = bytearray(buffer.getvalue())
    # the first member is root/t1/params.json ({"seed": 1}, 11 bytes): declare 5
    assert data[:4] == b"PK\x03\x04" and int.from_bytes(data[22:26], "little") == 11
    data[22:26] = (5).to_bytes(4, "little")
    central = data.index(b"PK\x01\x02")
    data[central + 24 : central + 28] = (5).to_bytes(4, "little")
    return bytes(data)


@pytest.mark.parametrize(
    ("case", "error", "words"),
    [
        ("html", "SourceContentError", "served an HTML page"),
        ("error json", "SourceContentError", "served a JSON document ('Files are restricted.')"),
        ("404", "SourceNotFoundError", "does not exist"),
        ("410", "SourceNotFoundError", "withdrawn (410 Gone"),
        ("missing file", "SourceNotFoundError", "has no file 'evil.zip'; its files are: other.zip"),
        ("md5 mismatch", "SourceChecksumError", "but its source publishes " + "0" * 32),
        ("lying size", "UnreadableFileError", "Bad CRC-32"),
        ("not a zoo", "DataFilesMissingError", "holds no Model Zoos trial directories"),
    ],
)
def test_broken_sources_are_one_line_errors_that_leave_nothing(
    zenodo, tmp_path, capsys, case, error, words
):
    canary = tmp_path / "canary.txt"
    canary.write_bytes(b"canary")
    record, key = "500", "evil.zip"
    files = {key: zip_entries(valid_trial())}
    if case == "lying size":
        files[key] = _lying_size()
    if case == "not a zoo":
        files[key] = zip_entries([("readme.txt", b"hello")])
    if case == "missing file":
        files = {"other.zip": files[key]}
    zenodo.add_record(record, files, concept="499")
    path = zenodo.file_path(record, key)
    zenodo.ranges = case in ("html", "lying size")
    if case == "html":
        zenodo.html.add(path)
    if case == "error json":
        zenodo.json_error.add(path)
    if case == "404":
        record = "12345"
    if case == "410":
        zenodo.withdrawn.add(record)
    if case == "md5 mismatch":
        zenodo.records[record].checksums[key] = "md5:" + "0" * 32
    out = tmp_path / "zoos" / "z"
    one_line_error(capsys, ["fetch", f"zenodo:{record}/{key}", "--out", str(out)], error, words)
    assert canary.read_bytes() == b"canary" and not out.exists()
    if (tmp_path / "zoos").exists():
        no_leftovers(tmp_path / "zoos")


def test_a_cut_download_keeps_its_bytes_for_the_rerun_and_nothing_else(zenodo, tmp_path, capsys):
    population(
        tmp_path / "src" / "cifar10_cnn_sample", np.random.default_rng(3), trials=2, epochs=2
    )
    data = zip_tree(tmp_path / "src" / "cifar10_cnn_sample")
    zenodo.add_record("600", {ZIP: data}, concept="599")
    zenodo.ranges = False
    path = zenodo.file_path("600", ZIP)
    out = tmp_path / "zoos" / "z"
    zenodo.cut_always[path] = 1000  # the first try and each resume break after 1000 bytes
    one_line_error(
        capsys, ["fetch", f"zenodo:600/{ZIP}", "--out", str(out)], "SourceConnectionError", "rerun"
    )
    zenodo.cut_always.clear()
    work = tmp_path / "zoos" / ".z.fetch"
    assert not out.exists() and (work / "download" / f"{ZIP}.part").stat().st_size == 1000
    assert run(["fetch", f"zenodo:600/{ZIP}", "--out", str(out)]) == 0
    assert read_back(out)[0].num_models == 2
    no_leftovers(tmp_path / "zoos", "z")


def test_hub_options_do_not_mix_with_zenodo_fetches(zenodo, tmp_path, capsys):
    one_line_error(
        capsys, ["fetch", "zenodo:1/x.zip", "--split", "train"], "InvalidOptionError", "--split"
    )
    one_line_error(
        capsys, ["fetch", "owner/zoo", "--out", str(tmp_path)], "InvalidOptionError", "--out"
    )
    one_line_error(capsys, ["fetch", "zenodo:1/../x"], "InvalidOptionError", "not zenodo:RECORD")
    one_line_error(capsys, ["fetch", "zenodo:a b"], "InvalidOptionError", "not a Zenodo record id")


# -- member selection, member names and tar archives ------------------------------------------


def test_selection_takes_the_first_models_in_natural_order_and_the_chosen_epochs():
    names = ["z/config.json", "z/dataset.pt"]
    for trial in ("t_10", "t_2", "t_1"):
        names += [f"z/{trial}/params.json", f"z/{trial}/result.json"]
        names += [
            f"z/{trial}/checkpoint_{e:06d}/{f}"
            for e in (0, 5, 10)
            for f in ("checkpoints", "optimizer")
        ]
    chosen = select_members(names, epochs=[5, 10], models=2, source="s")
    assert chosen.trials == ("z/t_1", "z/t_2") and chosen.epochs == (5, 10)
    assert chosen.members == {"z/config.json"} | {
        f"z/{t}/{f}"
        for t in ("t_1", "t_2")
        for f in (
            "params.json",
            "result.json",
            "checkpoint_000005/checkpoints",
            "checkpoint_000010/checkpoints",
        )
    }
    with pytest.raises(Exception, match=r"no checkpoint for epoch\(s\) 7; it has 0, 5, 10"):
        select_members(names, epochs=7, source="s")


_SEGMENTS = st.sampled_from(["a", "b.json", "..", ".", "", "C:", "x\\y", "checkpoint_000001"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_SEGMENTS | st.text(min_size=1, max_size=4), min_size=1, max_size=6), st.booleans())
def test_a_member_name_is_refused_or_stays_inside(parts, leading_slash):
    name = ("/" if leading_slash else "") + "/".join(parts)
    try:
        path = member_path(name, "archive.zip")
    except UnsafeArchiveError as exc:
        message = str(exc)
        path = None
    else:
        message = ""
    if message:
        assert "\n" not in message and "archive.zip" in message
        return
    assert ".." not in name.split("/") and not name.startswith("/") and "\\" not in name
    if path is not None:
        root = "/dest"
        joined = posixpath.normpath(posixpath.join(root, *path.parts))
        assert joined.startswith(root + "/") and ".." not in path.parts


def _tar(entries: list[tarfile.TarInfo], payload: bytes = b"x") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        for info in entries:
            tar.addfile(info, io.BytesIO(payload) if info.isfile() else None)
    return buffer.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (_info("zoo/link", tarfile.SYMTYPE, "/etc/passwd"), "a symbolic link"),
        (_info("zoo/hard", tarfile.LNKTYPE, "zoo/a"), "a hard link"),
        (_info("zoo/dev", tarfile.CHRTYPE), "a device file"),
        (_info("zoo/fifo", tarfile.FIFOTYPE), "a FIFO"),
        (_info("zoo/../../canary.txt"), "a '..' component"),
        (_info("zoo/a"), "appears twice"),
    ],
)
def test_hostile_tar_members_are_refused_and_nothing_is_kept(tmp_path, entry, words):
    canary = tmp_path / "canary.txt"
    canary.write_bytes(b"canary")
    archive = tmp_path / "in" / "zoo.tar.xz"
    archive.parent.mkdir()
    archive.write_bytes(_tar([_info("zoo/a"), entry]))
    with pytest.raises(UnsafeArchiveError, match=words) as info:
        extract_tar(archive, tmp_path / "out" / "zoo")
    assert "\n" not in str(info.value) and canary.read_bytes() == b"canary"
    no_leftovers(tmp_path / "out")


def test_a_damaged_tar_is_a_named_error(tmp_path):
    archive = tmp_path / "zoo.tar.xz"
    archive.write_bytes(_tar([_info("zoo/a")])[:40])
    with pytest.raises(UnreadableFileError, match="not a readable tar archive"):
        extract_tar(archive, tmp_path / "out")
    no_leftovers(tmp_path, "zoo.tar.xz")


def test_zip_extraction_records_each_members_crc(tmp_path):
    data = zip_entries(valid_trial())
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = extract_zip(
            archive, tmp_path / "x", source="mem.zip", select=lambda n: "json" in n
        )
        assert [(m.name, m.crc32) for m in members] == [
            (i.filename, i.CRC) for i in archive.infolist() if "json" in i.filename
        ]
    assert (tmp_path / "x" / "root" / "t1" / "params.json").read_bytes() == b'{"seed": 1}'
    assert not (tmp_path / "x" / "root" / "t1" / "checkpoint_000001").exists()


def test_sources_import_neither_torch_nor_eagerly():
    code = (
        "import sys, weightzoo; assert 'weightzoo.sources' not in sys.modules; "
        "import weightzoo.sources.fetch, weightzoo.sources.http, weightzoo.sources.zenodo, "
        "weightzoo.sources.archive, weightzoo.sources.remotezip; "
        "assert 'torch' not in sys.modules, 'torch'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}
    )
    assert result.returncode == 0, result.stderr


# -- the total a zip extracts to is bounded like a tar's --------------------------------------


def _many_small_bombs(count: int) -> bytes:
    """``count`` trials whose members are each 1 MiB of blanks: each under the ratio floor."""
    entries = list(valid_trial())
    for i in range(count):
        entries.append((f"root/t{i + 2}/params.json", b"{}" + b" " * (RATIO_FLOOR - 2)))
        entries.append((f"root/t{i + 2}/result.json", b"\n" * RATIO_FLOOR))
    return zip_entries(entries)


@pytest.mark.parametrize("ranges", [True, False], ids=["ranges", "whole"])
def test_members_each_under_the_floor_are_refused_together(zenodo, tmp_path, capsys, ranges):
    data = _many_small_bombs(40)  # ~80 KB that expand to 80 MiB, a ratio near 1000
    assert len(data) * MAX_RATIO < 40 * 2 * RATIO_FLOOR
    zenodo.add_record("400", {"evil.zip": data}, concept="399")
    zenodo.ranges = ranges
    out = tmp_path / "zoos" / "z"
    err = one_line_error(
        capsys,
        ["fetch", "zenodo:400/evil.zip", "--out", str(out)],
        "UnsafeArchiveError",
        f"past {total_limit(len(data))} extracted bytes: a zip bomb",
    )
    assert "zenodo:400/evil.zip" in err
    if (tmp_path / "zoos").exists():
        no_leftovers(tmp_path / "zoos")


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(0, RATIO_FLOOR), min_size=1, max_size=6),
    random_bytes=st.integers(0, 4096),
    ratio=st.sampled_from([2.0, 20.0, MAX_RATIO]),
)
def test_a_zip_extracts_only_within_its_total_bound(tmp_path_factory, sizes, random_bytes, ratio):
    entries = [(f"z/m{i}", bytes(size)) for i, size in enumerate(sizes)]
    entries.append(("z/noise", np.random.default_rng(0).bytes(random_bytes)))
    data = zip_entries(entries)
    total = sum(sizes) + random_bytes
    dest = tmp_path_factory.mktemp("zip") / "out"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        if total <= total_limit(len(data), ratio):
            members = extract_zip(archive, dest, source="t.zip", max_ratio=ratio)
            on_disk = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
            assert on_disk == total == sum(m.size for m in members)
            return
        with pytest.raises(UnsafeArchiveError, match="a zip bomb") as info:
            extract_zip(archive, dest, source="t.zip", max_ratio=ratio)
    assert "\n" not in str(info.value) and "t.zip" in str(info.value)
    assert not dest.exists() and not list(dest.parent.iterdir())


def test_extraction_counts_the_bytes_it_writes_against_the_total(tmp_path, monkeypatch):
    """Declared sizes pass; the written bytes still may not exceed the archive's bound."""
    import weightzoo.sources.archive as archive_module

    data = zip_entries([(f"z/m{i}", bytes(RATIO_FLOOR)) for i in range(3)])
    monkeypatch.setattr(archive_module, "check_zip", lambda archive, *a, **k: archive.infolist())
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        with pytest.raises(UnsafeArchiveError, match=f"past {RATIO_FLOOR} extracted bytes") as info:
            extract_zip(archive, tmp_path / "out", source="t.zip")
    assert "'z/m1'" in str(info.value)  # the second member takes it past the floor
    assert not list(tmp_path.iterdir())
