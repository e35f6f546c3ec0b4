"""``weightzoo data fetch``: image data downloaded, verified and laid out where the readers look.

Every dataset is published in its real distribution format (gzipped IDX, CIFAR and STL-10
binary tarballs, a MATLAB v5 ``.mat``, LIBSVM ``.bz2``, the Tiny ImageNet zip), small, by the
loopback server of ``source_server.py`` at the path of its canonical address, reached through
``WEIGHTZOO_HTTP_MIRROR``; the fixtures' md5s and sizes are patched into the table. What was
fetched is read back through ``load_image_data``, the reader ``generate`` uses.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import hashlib
import io
import re
import shlex
import shutil
import struct
import tarfile
import types
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.source_server import SourceServer, chunked_answer
from weightzoo.cli import build_parser, run
from weightzoo.errors import DataFilesMissingError, SourceConnectionError
from weightzoo.generate.specs import all_specs, get_spec
from weightzoo.imagesets import readers as imagedata
from weightzoo.imagesets.readers import load_image_data
from weightzoo.sources import datafetch
from weightzoo.sources.datafetch import STAGING, fetch_dataset, spec_datasets
from weightzoo.sources.datasets import IMAGE_DATASETS, canonical

TRAIN, TEST = 20, 10
RNG = np.random.default_rng(7)


# -- fixtures in the published formats ---------------------------------------------------------
def _images(n: int, c: int, side: int) -> np.ndarray:
    return RNG.integers(0, 256, (n, c, side, side), dtype=np.uint8)


def _labels(n: int, classes: int, offset: int = 0) -> np.ndarray:
    return (np.arange(n) + offset) % classes


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return _gz(header + array.astype(np.uint8).tobytes())


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _mnist_like() -> tuple[dict[str, bytes], dict]:
    truth = {
        "train_x": _images(TRAIN, 1, 28),
        "train_y": _labels(TRAIN, 10),
        "test_x": _images(TEST, 1, 28),
        "test_y": _labels(TEST, 10, 3),
    }
    files = {
        "train-images-idx3-ubyte.gz": _idx(truth["train_x"][:, 0]),
        "train-labels-idx1-ubyte.gz": _idx(truth["train_y"]),
        "t10k-images-idx3-ubyte.gz": _idx(truth["test_x"][:, 0]),
        "t10k-labels-idx1-ubyte.gz": _idx(truth["test_y"]),
    }
    return files, truth


def _records(images: np.ndarray, *labels: np.ndarray) -> bytes:
    head = np.stack(labels, axis=1).astype(np.uint8)
    return np.concatenate([head, images.reshape(len(images), -1)], axis=1).tobytes()


def _cifar10() -> tuple[dict[str, bytes], dict]:
    truth = {
        "train_x": _images(TRAIN, 3, 32),
        "train_y": _labels(TRAIN, 10),
        "test_x": _images(TEST, 3, 32),
        "test_y": _labels(TEST, 10, 5),
    }
    members = {"cifar-10-batches-bin/batches.meta.txt": b"airplane\n"}
    for i in range(5):  # five batches of four
        rows = slice(4 * i, 4 * i + 4)
        members[f"cifar-10-batches-bin/data_batch_{i + 1}.bin"] = _records(
            truth["train_x"][rows], truth["train_y"][rows]
        )
    members["cifar-10-batches-bin/test_batch.bin"] = _records(truth["test_x"], truth["test_y"])
    return {"cifar-10-binary.tar.gz": _tar_gz(members)}, truth


def _cifar100() -> tuple[dict[str, bytes], dict]:
    truth = {
        "train_x": _images(TRAIN, 3, 32),
        "train_y": _labels(TRAIN, 100, 40),
        "test_x": _images(TEST, 3, 32),
        "test_y": _labels(TEST, 100, 90),
    }
    members = {
        "cifar-100-binary/train.bin": _records(
            truth["train_x"], truth["train_y"] // 5, truth["train_y"]
        ),
        "cifar-100-binary/test.bin": _records(
            truth["test_x"], truth["test_y"] // 5, truth["test_y"]
        ),
    }
    return {"cifar-100-binary.tar.gz": _tar_gz(members)}, truth


def _svhn() -> tuple[dict[str, bytes], dict]:
    from scipy import io as sio

    truth = {
        "train_x": _images(TRAIN, 3, 32),
        "train_y": _labels(TRAIN, 10),
        "test_x": _images(TEST, 3, 32),
        "test_y": _labels(TEST, 10, 1),
    }
    files = {}
    for split, stem in (("train", "train_32x32.mat"), ("test", "test_32x32.mat")):
        y = truth[f"{split}_y"].copy()
        y[y == 0] = 10  # SVHN writes digit 0 as label 10
        buffer = io.BytesIO()
        x = truth[f"{split}_x"].transpose(2, 3, 1, 0)  # [N, C, H, W] -> [H, W, C, N]
        sio.savemat(buffer, {"X": x, "y": y.reshape(-1, 1).astype(np.uint8)})
        files[stem] = buffer.getvalue()
    return files, truth


def _usps() -> tuple[dict[str, bytes], dict]:
    levels = np.linspace(-1.0, 1.0, 5)
    truth, files = {}, {}
    for split, stem, n in (("train", "usps.bz2", TRAIN), ("test", "usps.t.bz2", TEST)):
        values = levels[RNG.integers(0, 5, (n, 256))]
        y = _labels(n, 10, 2)
        lines = [
            f"{label + 1} " + " ".join(f"{i + 1}:{v:g}" for i, v in enumerate(row))
            for label, row in zip(y, values, strict=True)
        ]
        files[stem] = bz2.compress(("\n".join(lines) + "\n").encode())
        truth[f"{split}_x"] = ((values + 1) / 2).reshape(n, 1, 16, 16)
        truth[f"{split}_y"] = y
    return files, truth


def _stl10() -> tuple[dict[str, bytes], dict]:
    truth = {
        "train_x": _images(4, 3, 96),
        "train_y": _labels(4, 10),
        "test_x": _images(2, 3, 96),
        "test_y": _labels(2, 10, 7),
    }
    members = {}
    for split in ("train", "test"):
        planes = truth[f"{split}_x"].transpose(0, 1, 3, 2)  # stored column-major
        members[f"stl10_binary/{split}_X.bin"] = np.ascontiguousarray(planes).tobytes()
        members[f"stl10_binary/{split}_y.bin"] = (
            (truth[f"{split}_y"] + 1).astype(np.uint8).tobytes()
        )
    return {"stl10_binary.tar.gz": _tar_gz(members)}, truth


def _tiny_imagenet() -> tuple[dict[str, bytes], dict]:
    from PIL import Image

    wnids = ["n01443537", "n01629819"]

    def jpeg(value: int) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), (value, value, value)).save(buffer, "JPEG", quality=95)
        return buffer.getvalue()

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        base = "tiny-imagenet-200/"
        zf.writestr(base + "wnids.txt", "\n".join(wnids) + "\n")
        for k, wnid in enumerate(wnids):
            for j in range(2):
                zf.writestr(f"{base}train/{wnid}/images/{wnid}_{j}.JPEG", jpeg(40 * k + j))
        notes = [f"val_{k}.JPEG\t{wnid}\t0\t0\t63\t63" for k, wnid in enumerate(wnids)]
        zf.writestr(base + "val/val_annotations.txt", "\n".join(notes) + "\n")
        for k in range(len(wnids)):
            zf.writestr(f"{base}val/images/val_{k}.JPEG", jpeg(200 - k))
    truth = {"train_y": np.array([0, 0, 1, 1]), "test_y": np.array([0, 1])}
    return {"tiny-imagenet-200.zip": buffer.getvalue()}, truth


BUILDERS = {
    "mnist": _mnist_like,
    "fashion-mnist": _mnist_like,
    "cifar10": _cifar10,
    "cifar100": _cifar100,
    "svhn": _svhn,
    "usps": _usps,
    "stl10": _stl10,
    "tiny-imagenet": _tiny_imagenet,
}


# -- the server and the table ------------------------------------------------------------------
@pytest.fixture(scope="module")
def _server():
    with SourceServer() as state:
        yield state


@pytest.fixture
def server(_server, monkeypatch, tmp_path):
    """The loopback server, emptied, as the mirror of every plain HTTP address."""
    _server.reset()
    monkeypatch.setenv("WEIGHTZOO_HTTP_MIRROR", _server.url)
    monkeypatch.setenv("WEIGHTZOO_DATA_DIR", str(tmp_path / "default-data"))
    return _server


def _path(url: str) -> str:
    return urlsplit(url).path


def publish(state, monkeypatch, name: str, files: dict[str, bytes], *, mirror: int = 0) -> None:
    """Serve ``files`` at the path of each download's address ``mirror``; patch the table."""
    dataset = IMAGE_DATASETS[name]
    downloads = []
    for download in dataset.downloads:
        content = files[download.file]
        state.objects[_path(download.urls[mirror])] = content
        size = len(content) if download.size is not None else None
        md5 = hashlib.md5(content).hexdigest()
        downloads.append(dataclasses.replace(download, md5=md5, size=size))
    monkeypatch.setitem(
        IMAGE_DATASETS, name, dataclasses.replace(dataset, downloads=tuple(downloads))
    )


def one_line(capsys, argv: list[str], *needles: str) -> str:
    """Run the CLI: exit 1 with exactly one stderr line holding every needle."""
    assert run(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def backticked(message: str) -> list[list[str]]:
    """The commands a message suggests, as argv lists without the leading ``weightzoo``."""
    commands = [shlex.split(c) for c in re.findall(r"`([^`]+)`", message)]
    assert commands and all(c[0] == "weightzoo" for c in commands), message
    return [c[1:] for c in commands]


# -- fetch lays every dataset out where the readers find it ------------------------------------
@pytest.mark.parametrize("name", list(BUILDERS))
def test_fetch_lays_out_each_dataset_where_the_reader_finds_it(server, monkeypatch, tmp_path, name):
    if name == "tiny-imagenet":
        pytest.importorskip("PIL")  # writes and decodes the JPEG files
    files, truth = BUILDERS[name]()
    publish(server, monkeypatch, name, files)
    data = tmp_path / "data"
    assert run(["data", "fetch", name, "--data-dir", str(data)]) == 0
    assert (data / name).is_dir() and not (data / STAGING).exists()
    kept = {f.name for f in data.rglob("*")}
    assert not kept & set(IMAGE_DATASETS[name].archives)  # an archive goes once extracted
    loaded = load_image_data(name, data)
    assert loaded.train_y.tolist() == truth["train_y"].tolist()
    assert loaded.test_y.tolist() == truth["test_y"].tolist()
    for split in ("train", "test"):
        if f"{split}_x" in truth:  # lossless formats: the very pixels
            expected = truth[f"{split}_x"]
            expected = expected / 255.0 if expected.dtype == np.uint8 else expected
            got = getattr(loaded, f"{split}_x").numpy()
            np.testing.assert_allclose(got, expected, atol=1e-6)
    sent = sum(server.sent(_path(d.urls[0])) for d in IMAGE_DATASETS[name].downloads)
    assert sent == sum(len(c) for c in files.values())


def test_a_second_fetch_downloads_nothing_and_list_shows_present(
    server, monkeypatch, tmp_path, capsys
):
    files, _ = _cifar10()
    publish(server, monkeypatch, "cifar10", files)
    data = tmp_path / "data"
    assert run(["data", "list", "--data-dir", str(data)]) == 0
    row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("cifar10 "))
    assert "no (6 missing)" in row
    assert run(["data", "fetch", "CIFAR-10", "--data-dir", str(data)]) == 0
    assert "md5 verified" in capsys.readouterr().out
    asked = len(server.requests)
    assert run(["data", "fetch", "cifar10", "--data-dir", str(data)]) == 0
    assert "already present" in capsys.readouterr().out and len(server.requests) == asked
    assert run(["data", "list", "--data-dir", str(data)]) == 0
    row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("cifar10 "))
    assert " yes " in row and str(data / "cifar10" / "cifar-10-batches-bin") in row


def test_the_mirror_is_used_when_the_canonical_address_refuses(server, monkeypatch, tmp_path):
    files, truth = _mnist_like()
    publish(server, monkeypatch, "mnist", files, mirror=1)  # only the second address serves
    fetched = fetch_dataset("mnist", tmp_path / "data")
    assert len(fetched.files) == 4
    assert load_image_data("mnist", tmp_path / "data").test_y.tolist() == truth["test_y"].tolist()
    first = _path(IMAGE_DATASETS["mnist"].downloads[0].urls[0])
    assert any(r[1] == first for r in server.requests)  # the canonical address was asked first


# -- failures: one line, nothing half-done -----------------------------------------------------
def test_a_checksum_mismatch_is_one_line_and_leaves_nothing(server, monkeypatch, tmp_path, capsys):
    files, _ = _mnist_like()
    publish(server, monkeypatch, "mnist", files)
    dataset = IMAGE_DATASETS["mnist"]
    bad = list(dataset.downloads)
    bad[2] = dataclasses.replace(bad[2], md5="0" * 32)  # two good files come first
    monkeypatch.setitem(IMAGE_DATASETS, "mnist", dataclasses.replace(dataset, downloads=bad))
    data = tmp_path / "data"
    one_line(
        capsys,
        ["data", "fetch", "mnist", "--data-dir", str(data)],
        "SourceChecksumError",
        "t10k-images-idx3-ubyte.gz",
        "0" * 32,
    )
    assert leftovers(data) == []


@pytest.mark.parametrize("fault", ["html", "json_error", "missing"])
def test_a_page_or_a_missing_file_is_one_line_and_leaves_nothing(
    server, monkeypatch, tmp_path, capsys, fault
):
    files, _ = _svhn()
    publish(server, monkeypatch, "svhn", files)
    path = _path(IMAGE_DATASETS["svhn"].downloads[1].urls[0])
    if fault == "missing":
        del server.objects[path]
    else:
        getattr(server, fault).add(path)
    data = tmp_path / "data"
    kind = "SourceNotFoundError" if fault == "missing" else "SourceContentError"
    argv = ["data", "fetch", "svhn", "--data-dir", str(data)]
    err = one_line(capsys, argv, kind, "no address served test_32x32.mat", path)
    assert leftovers(data) == [] and "zenodo" not in err.lower()
    publish(server, monkeypatch, "svhn", files)  # the file is back: the suggestion works
    getattr(server, fault, set()).discard(path)
    (suggested,) = backticked(err.split(f" [{kind}")[0])
    assert run(suggested) == 0 and len(load_image_data("svhn", data).test_y) == TEST


def test_a_cut_download_resumes_where_it_stopped(server, monkeypatch, tmp_path, capsys):
    files, truth = _cifar10()
    publish(server, monkeypatch, "cifar10", files)
    path = _path(IMAGE_DATASETS["cifar10"].downloads[0].urls[0])
    size = len(files["cifar-10-binary.tar.gz"])
    server.cut_always[path] = size // 10  # every answer breaks after a tenth of the file
    data = tmp_path / "data"
    err = one_line(
        capsys, ["data", "fetch", "cifar10", "--data-dir", str(data)], "SourceConnectionError"
    )
    assert "rerun the same command to resume" in err
    part = data / STAGING / "cifar10" / "cifar-10-binary.tar.gz.part"
    kept = part.stat().st_size
    assert 0 < kept < size and not (data / "cifar10").exists()
    del server.cut_always[path]
    assert run(["data", "fetch", "cifar10", "--data-dir", str(data)]) == 0
    assert f"bytes={kept}-" in [r[2] for r in server.requests if r[1] == path]
    assert server.sent(path) == size  # no byte was sent twice
    assert load_image_data("cifar10", data).train_y.tolist() == truth["train_y"].tolist()
    assert not (data / STAGING).exists()


def test_files_verified_before_a_cut_are_not_downloaded_again(server, monkeypatch, tmp_path):
    files, truth = _mnist_like()
    publish(server, monkeypatch, "mnist", files)
    paths = [_path(d.urls[0]) for d in IMAGE_DATASETS["mnist"].downloads]
    server.cut_always[paths[2]] = 1000  # the third file never arrives whole
    data = tmp_path / "data"
    with pytest.raises(SourceConnectionError):
        fetch_dataset("mnist", data)
    assert not (data / "mnist").exists()  # nothing visible until every file is verified
    del server.cut_always[paths[2]]
    fetched = fetch_dataset("mnist", data)
    assert len(fetched.files) == 4 and fetched.resumed > 0
    assert [server.sent(p) for p in paths] == [len(c) for c in files.values()]
    assert load_image_data("mnist", data).test_y.tolist() == truth["test_y"].tolist()


def test_a_hostile_archive_writes_nothing(server, monkeypatch, tmp_path, capsys):
    archive = _tar_gz(
        {
            "cifar-10-batches-bin/test_batch.bin": b"x" * 3073,
            "cifar-10-batches-bin/../../evil": b"!",
        }
    )
    publish(server, monkeypatch, "cifar10", {"cifar-10-binary.tar.gz": archive})
    data = tmp_path / "data"
    one_line(capsys, ["data", "fetch", "cifar10", "--data-dir", str(data)], "UnsafeArchiveError")
    assert leftovers(data) == [] and not (tmp_path / "evil").exists()


def test_an_archive_without_the_expected_files_is_refused(server, monkeypatch, tmp_path, capsys):
    archive = _tar_gz({"cifar-10-batches-bin/test_batch.bin": b"x" * 3073})
    publish(server, monkeypatch, "cifar10", {"cifar-10-binary.tar.gz": archive})
    data = tmp_path / "data"
    one_line(
        capsys,
        ["data", "fetch", "cifar10", "--data-dir", str(data)],
        "SourceContentError",
        "data_batch_1.bin",
    )
    assert leftovers(data) == []


def test_a_full_disk_is_refused_before_any_request(server, monkeypatch, tmp_path, capsys):
    files, _ = _cifar100()
    publish(server, monkeypatch, "cifar100", files)
    full = types.SimpleNamespace(total=10**9, used=10**9 - 10, free=10)
    monkeypatch.setattr(datafetch.shutil, "disk_usage", lambda _: full)
    one_line(
        capsys,
        ["data", "fetch", "cifar100", "--data-dir", str(tmp_path / "d")],
        "StorageWriteError",
        "weightzoo data fetch cifar100",
    )
    assert server.requests == [] and leftovers(tmp_path / "d") == []


def test_an_incomplete_folder_in_the_way_is_named_not_merged(server, monkeypatch, tmp_path, capsys):
    files, _ = _cifar10()
    publish(server, monkeypatch, "cifar10", files)
    data = tmp_path / "data"
    home = data / "cifar10" / "cifar-10-batches-bin"
    home.mkdir(parents=True)
    (home / "mine.txt").write_text("kept")
    argv = ["data", "fetch", "cifar10", "--data-dir", str(data)]
    err = one_line(capsys, argv, str(home), "StorageWriteError", "remove it")
    assert (home / "mine.txt").read_text() == "kept" and not (data / STAGING).exists()
    assert server.requests == []  # refused before downloading
    (home / "mine.txt").unlink()
    home.rmdir()
    for argv in backticked(err):
        assert run(argv) == 0
    assert len(load_image_data("cifar10", data).test_y) == TEST


def _victim(tmp_path: Path) -> Path:
    """A folder outside the data directory, holding a ``mnist`` folder with a file."""
    victim = tmp_path / "victim"
    (victim / "mnist").mkdir(parents=True)
    (victim / "mnist" / "precious.txt").write_text("kept")
    return victim


@pytest.mark.parametrize("link", [STAGING, f"{STAGING}/mnist", "mnist"])
def test_a_link_in_the_data_dir_is_refused_before_any_request(
    server, monkeypatch, tmp_path, capsys, link
):
    files, _ = _mnist_like()
    publish(server, monkeypatch, "mnist", files)
    victim = _victim(tmp_path)
    data = tmp_path / "data"
    (data / link).parent.mkdir(parents=True, exist_ok=True)
    (data / link).symlink_to(victim, target_is_directory=True)
    argv = ["data", "fetch", "mnist", "--data-dir", str(data)]
    one_line(capsys, argv, "UnsafePathError", f"{data / link} is a link")
    assert leftovers(victim) == ["mnist", "mnist/precious.txt"] and server.requests == []
    assert (data / link).is_symlink()  # left for its owner to remove


def test_a_link_left_in_the_staging_folder_is_refused_and_nothing_outside_is_removed(
    server, monkeypatch, tmp_path, capsys
):
    files, _ = _cifar10()
    publish(server, monkeypatch, "cifar10", files)
    victim = _victim(tmp_path)
    data = tmp_path / "data"
    stage = data / STAGING / "cifar10"
    stage.mkdir(parents=True)
    (stage / "cifar-10-binary.tar.gz.unpacked").symlink_to(victim, target_is_directory=True)
    argv = ["data", "fetch", "cifar10", "--data-dir", str(data)]
    one_line(capsys, argv, "UnsafePathError", "cifar-10-binary.tar.gz.unpacked is a link")
    assert leftovers(victim) == ["mnist", "mnist/precious.txt"]
    assert leftovers(data) == []  # the fetch's own staging folder went, with the link in it


def test_a_file_of_unknown_size_is_bounded_by_its_max_bytes(server, monkeypatch, tmp_path, capsys):
    files, _ = _usps()
    publish(server, monkeypatch, "usps", files)
    dataset = IMAGE_DATASETS["usps"]
    first = dataclasses.replace(dataset.downloads[0], max_bytes=1 << 16)
    downloads = (first, *dataset.downloads[1:])
    monkeypatch.setitem(IMAGE_DATASETS, "usps", dataclasses.replace(dataset, downloads=downloads))
    endless = b"BZh9" + bytes(1 << 22)  # no size announced: only the bound stops it
    server.custom[_path(first.urls[0])] = chunked_answer(endless)
    data = tmp_path / "data"
    argv = ["data", "fetch", "usps", "--data-dir", str(data)]
    one_line(capsys, argv, "SourceContentError", "usps.bz2", str(1 << 16))
    assert leftovers(data) == []


# -- the missing-files error: one line, and its commands work ---------------------------------
def test_missing_data_names_the_folder_and_a_command_that_works(server, monkeypatch, tmp_path):
    files, truth = _mnist_like()
    publish(server, monkeypatch, "fashion-mnist", files)
    data = tmp_path / "my data"  # a space: the command must quote it
    with pytest.raises(DataFilesMissingError) as info:
        load_image_data("fashion-mnist", data)
    message = str(info.value)
    assert "\n" not in message and str(data / "fashion-mnist") in message
    assert "zalandoresearch/fashion-mnist" in message
    (argv,) = backticked(message)
    assert argv[:3] == ["data", "fetch", "fashion-mnist"]
    assert run(argv) == 0
    assert load_image_data("fashion-mnist", data).train_y.tolist() == truth["train_y"].tolist()


def test_the_default_data_dir_needs_no_option(server, monkeypatch, tmp_path):
    files, _ = _usps()
    publish(server, monkeypatch, "usps", files)
    with pytest.raises(DataFilesMissingError) as info:
        load_image_data("usps")
    (argv,) = backticked(str(info.value))
    assert argv == ["data", "fetch", "usps"]
    assert run(argv) == 0
    assert (tmp_path / "default-data" / "usps" / "usps.t.bz2").is_file()
    assert len(load_image_data("usps").test_y) == TEST


def test_an_incomplete_tiny_imagenet_copy_says_remove_then_fetch(server, monkeypatch, tmp_path):
    pytest.importorskip("PIL")
    files, truth = _tiny_imagenet()
    publish(server, monkeypatch, "tiny-imagenet", files)
    data = tmp_path / "data"
    fetch_dataset("tiny-imagenet", data)
    base = data / "tiny-imagenet" / "tiny-imagenet-200"
    (base / "val" / "images" / "val_1.JPEG").unlink()
    with pytest.raises(DataFilesMissingError) as info:
        load_image_data("tiny-imagenet", data)
    message = str(info.value)
    assert "\n" not in message and "remove it and run" in message and str(base) in message
    shutil.rmtree(base)
    for argv in backticked(message):
        assert run(argv) == 0
    assert load_image_data("tiny-imagenet", data).test_y.tolist() == truth["test_y"].tolist()


def test_generate_offers_download_and_download_fetches_then_trains(
    server, monkeypatch, tmp_path, capsys
):
    files, _ = _mnist_like()
    publish(server, monkeypatch, "mnist", files)
    data, out = tmp_path / "data", tmp_path / "zoo"
    argv = ["generate", "modelzoo-mnist-cnn-s-seed", "--models", "2", "--train-epochs", "1"]
    argv += ["--workers", "1", "--out", str(out), "--data-dir", str(data)]
    assert run(argv) == 1
    err = capsys.readouterr().err
    err = err[err.index("weightzoo: error") :].strip()  # after the progress bar
    assert len(err.splitlines()) == 1 and "DataFilesMissingError" in err
    fetch, generate = backticked(err.split(" [DataFilesMissingError")[0])
    assert fetch[:3] == ["data", "fetch", "mnist"]
    parse = build_parser().parse_args
    assert vars(parse(generate)) == vars(parse([*argv, "--download"]))
    assert run(generate) == 0
    printed = capsys.readouterr().out
    assert "mnist: fetched" in printed and "wrote modelzoo-mnist-cnn-s-seed" in printed
    assert (out / "zoo.json").is_file() and (data / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file()


# -- the table agrees with the readers and the specs -------------------------------------------
def test_the_table_lists_what_each_reader_reads(monkeypatch, tmp_path):
    asked = {}

    def record(name, root, wanted):
        asked[name] = tuple(tuple(a) for a in wanted)
        raise DataFilesMissingError("recorded")

    monkeypatch.setattr(imagedata, "_locate", record)
    readable = [n for n in imagedata.DATASETS if n != "digits"]
    assert sorted(readable) == sorted(IMAGE_DATASETS)
    for name in readable:
        with pytest.raises(DataFilesMissingError):
            load_image_data(name, tmp_path)
        assert asked[name] == IMAGE_DATASETS[name].needs, name
    for dataset in IMAGE_DATASETS.values():
        for download in dataset.downloads:
            assert re.fullmatch(r"[0-9a-f]{32}", download.md5)
            assert all(urlsplit(u).scheme in ("http", "https") for u in download.urls)
            assert all(u.endswith("/" + download.file) for u in download.urls)
            assert download.size is not None or download.max_bytes is not None  # bounded
            if download.kind == "file":  # stored under its own name
                assert download.provides == ((download.file, *download.provides[0][1:]),)
            else:
                assert dataset.home and download.file in dataset.archives


def test_spec_datasets_names_what_download_fetches():
    assert spec_datasets(get_spec("modelzoo-mnist-cnn-s-seed").to_dict()) == ["mnist"]
    assert spec_datasets(get_spec("modelzoo-digits-cnn-s-seed").to_dict()) == []
    for name, spec in all_specs().items():
        for dataset in spec_datasets(spec.to_dict()):
            assert dataset in IMAGE_DATASETS, name
    with pytest.raises(ValueError, match="did you mean 'stl10'"):
        canonical("stl11")


@pytest.mark.parametrize("argv", [["data", "list"], ["data", "fetch", "mnist"]])
def test_verbose_works_after_the_data_commands(argv):
    assert build_parser().parse_args([*argv, "-v"]).verbose is True
    assert build_parser().parse_args(["-v", *argv]).verbose is True


@settings(max_examples=40, deadline=None)
@given(
    models=st.none() | st.integers(1, 99),
    epochs=st.none() | st.integers(1, 9),
    data_dir=st.none() | st.text("ab '\"$;*", min_size=1, max_size=8),
    device=st.sampled_from(["cpu", "cuda"]),
    workers=st.none() | st.integers(1, 4),
    slice_=st.none() | st.tuples(st.integers(0, 2), st.just(3)),
)
def test_the_offered_generate_command_repeats_every_option(
    models, epochs, data_dir, device, workers, slice_
):
    from weightzoo.cli.generation import _generate_command

    argv = ["generate", "modelzoo-mnist-cnn-s-seed", "--device", device]
    for flag, value in (("--models", models), ("--train-epochs", epochs), ("--workers", workers)):
        argv += [flag, str(value)] if value is not None else []
    argv += ["--data-dir", data_dir] if data_dir is not None else []
    argv += ["--slice", f"{slice_[0]}/{slice_[1]}"] if slice_ is not None else []
    args = build_parser().parse_args(argv)
    again = build_parser().parse_args(shlex.split(_generate_command(args, "--download"))[1:])
    assert again.download and not args.download
    assert {k: v for k, v in vars(again).items() if k != "download"} == {
        k: v for k, v in vars(args).items() if k != "download"
    }
