"""The Small CNN Zoo streamed from its bucket: converted as it arrives, verified, split, confined.

Fixtures are built in the published layout (one folder holding ``weights.npy`` [rows, 4970] in
TensorFlow's HWIO layout, ``layout.csv``, ``metrics.csv.gz``, packed as a ``tar.xz``) and the
neural-functional papers' split CSV (no header, one row number per line), and served by
tests/helpers/source_server.py on 127.0.0.1 with ``x-goog-hash``, as the bucket serves them.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import importlib.util
import io
import json
import lzma
import random
import socket
import tarfile
import tracemalloc
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.importer_fixtures import read_back
from helpers.source_server import (
    SourceServer,
    chunked_answer,
    plain_answer,
    redirect_to_itself,
    reset_answer,
)
from weightzoo.errors import (
    DataFilesMissingError,
    InvalidOptionError,
    LayoutError,
    SourceChecksumError,
    SourceConnectionError,
    SourceContentError,
    SourceNotFoundError,
    UnreadableFileError,
    UnsafeArchiveError,
)
from weightzoo.importers import cnn_zoo
from weightzoo.importers.cnn_zoo import import_cnn_zoo, metrics_index
from weightzoo.sources import smallcnn
from weightzoo.sources.archive import extract_tar
from weightzoo.sources.smallcnn import fetch_small_cnn_zoo, nfn_splits, read_split_csv

URL = "https://storage.googleapis.com/gresearch/smallcnnzoo-dataset/cifar10.tar.xz"
OBJECT = "/gresearch/smallcnnzoo-dataset/cifar10.tar.xz"
SPLIT_URL = (
    "https://raw.githubusercontent.com/AllanYangZhou/nfn/main/experiments/"
    "predict_gen_data_splits/cifar10_split.csv"
)
SPLIT_OBJECT = "/AllanYangZhou/nfn/main/experiments/predict_gen_data_splits/cifar10_split.csv"

# The published network: three 3x3 convolutions of 16 filters and a dense layer, 4970 weights.
VARIABLES = [
    ("sequential/conv2d/kernel:0", (3, 3, 1, 16)),
    ("sequential/conv2d/bias:0", (16,)),
    ("sequential/conv2d_1/kernel:0", (3, 3, 16, 16)),
    ("sequential/conv2d_1/bias:0", (16,)),
    ("sequential/conv2d_2/kernel:0", (3, 3, 16, 16)),
    ("sequential/conv2d_2/bias:0", (16,)),
    ("sequential/dense/kernel:0", (16, 10)),
    ("sequential/dense/bias:0", (10,)),
]
STEPS = (0, 20, 86)
NETWORKS = 12
DIVERGED = 5  # this network has no checkpoint at step 86


@dataclass
class Published:
    """One dataset of the zoo as published, and the facts a test compares with."""

    weights: np.ndarray
    rows: list[tuple[str, int]]  # (modeldir, step) per row of weights.npy
    files: dict[str, bytes]
    order: list[int]  # the split CSV's row numbers

    def tar(self, order: tuple[str, ...] = ("layout.csv", "metrics.csv.gz", "weights.npy")):
        """The archive, with its three files in ``order`` after the folder entry."""
        entries = [_dir("cifar10")] + [(f"cifar10/{n}", self.files[n]) for n in order]
        return pack(entries)

    def split_csv(self) -> bytes:
        """As published: pandas' header line ``0`` above the permutation."""
        return "".join(f"{row}\n" for row in [0, *self.order]).encode()


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info


def pack(entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz", preset=0) as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry, io.BytesIO(b"x" * entry.size) if entry.isfile() else None)
                continue
            name, data = entry
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def publish(rng: np.random.Generator) -> Published:
    rows = [
        (f"smallcnnzoo/cifar10/run_{net:05d}", step)
        for net in range(NETWORKS)
        for step in STEPS
        if not (net == DIVERGED and step == 86)
    ]
    width = sum(int(np.prod(shape)) for _, shape in VARIABLES)
    weights = rng.normal(scale=0.1, size=(len(rows), width)).astype(np.float32)
    layout = io.StringIO()
    writer = csv.writer(layout)
    writer.writerow(["varname", "start_idx", "end_idx", "shape"])
    offset = 0
    for name, shape in VARIABLES:
        size = int(np.prod(shape))
        writer.writerow([name, offset, offset + size, str(shape)])
        offset += size
    metrics = io.StringIO()
    writer = csv.writer(metrics)
    writer.writerow(
        ["modeldir", "step", "test_accuracy", "train_loss", "config.optimizer", "config.dropout"]
    )
    for number, (modeldir, step) in enumerate(rows):
        net = int(modeldir[-5:])
        writer.writerow([modeldir, step, number / 100, 2 - number / 100, "adam", net / 100])
    npy = io.BytesIO()
    np.save(npy, weights)
    files = {
        "layout.csv": layout.getvalue().encode(),
        "metrics.csv.gz": gzip.compress(metrics.getvalue().encode(), mtime=0),
        "weights.npy": npy.getvalue(),
    }
    order = [int(i) for i in rng.permutation(len(rows))]
    return Published(weights, rows, files, order)


@pytest.fixture(scope="module")
def published() -> Published:
    return publish(np.random.default_rng(22))


@pytest.fixture(scope="module")
def _server():
    with SourceServer() as state:
        yield state


@pytest.fixture
def bucket(_server, monkeypatch):
    """The loopback server, emptied, standing in for the bucket and GitHub through the mirror."""
    _server.reset()
    _server.quiet_resets = True  # a fetch that has the rows it needs closes the stream
    monkeypatch.setenv("WEIGHTZOO_HTTP_MIRROR", _server.url)
    return _server


def nothing_left(root: Path, *keep: str) -> None:
    """Only ``keep`` under ``root``: no zoo, no hidden work or staging folder."""
    assert sorted(p.name for p in root.iterdir()) == sorted(keep)


def torch_rows(published: Published, row: int) -> dict[str, np.ndarray]:
    """Row ``row`` of the fixture as PyTorch tensors: OIHW kernels, [out, in] dense."""
    raw, offset, tensors = published.weights[row], 0, {}
    for name, shape in VARIABLES:
        size = int(np.prod(shape))
        value = raw[offset : offset + size].reshape(shape)
        offset += size
        layer, leaf = name.split("/")[1], name.split("/")[2].split(":")[0]
        if leaf == "kernel" and len(shape) == 4:
            value = value.transpose(3, 2, 0, 1)  # [H, W, in, out] -> [out, in, H, W]
        elif leaf == "kernel":
            value = value.T
        tensors[f"{layer}.{'weight' if leaf == 'kernel' else 'bias'}"] = value
    return tensors


def check_rows(zoo: Path, published: Published, networks: int) -> dict[str, str]:
    """Every stored checkpoint equals the fixture's row in PyTorch layout; modeldir -> split."""
    manifest, models = read_back(zoo)
    assert manifest.num_models == networks and manifest.epochs == list(STEPS)
    where = {key: row for row, key in enumerate(published.rows)}
    splits = {}
    for model in models.values():
        modeldir = model["columns"]["modeldir"]
        splits[modeldir] = model["split"]
        for column, step in enumerate(STEPS):
            got = model["weights"][column]
            if (modeldir, step) not in where:
                assert np.isnan(got).all()
                continue
            row = where[(modeldir, step)]
            for name, expected in torch_rows(published, row).items():
                tensor = manifest.layout[name]
                stored = got[tensor.offset : tensor.stop].reshape(tensor.shape)
                np.testing.assert_array_equal(stored, expected)
            assert model["metrics"]["test_accuracy"][column] == np.float32(row / 100)
    return splits


def provenance(zoo: Path) -> dict:
    return json.loads((zoo / "source.json").read_text())


# -- whole fetches ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "order",
    [
        ("layout.csv", "metrics.csv.gz", "weights.npy"),
        ("weights.npy", "metrics.csv.gz", "layout.csv"),
    ],
    ids=["metrics-first", "weights-first"],
)
def test_a_whole_fetch_streams_verifies_and_converts_to_pytorch_layout(
    bucket, published, tmp_path, order
):
    data = published.tar(order)
    bucket.objects[OBJECT] = data
    out = fetch_small_cnn_zoo(URL, tmp_path / "zoos" / "cifar10", progress=False)
    splits = check_rows(out, published, NETWORKS)
    record = provenance(out)
    assert record["checksum_checked"] and record["complete"]
    assert record["checksum"] == f"md5:{hashlib.md5(data).hexdigest()}"
    assert record["bytes_read"] == len(data) == bucket.sent(OBJECT)
    assert record["url"] == URL and record["fetched_from"] == bucket.url + OBJECT
    assert record["rows_total"] == record["rows_read"] == len(published.rows)
    assert record["split"]["rule"] == "weightzoo"
    nothing_left(tmp_path / "zoos", "cifar10")
    # without a split CSV the importer's rule: the same splits as importing the extracted copy
    (tmp_path / "archive.tar.xz").write_bytes(data)
    extract_tar(tmp_path / "archive.tar.xz", tmp_path / "extracted")
    import_cnn_zoo(tmp_path / "extracted" / "cifar10", tmp_path / "imported")
    assert check_rows(tmp_path / "imported", published, NETWORKS) == splits


def test_the_split_csv_becomes_the_split_column(bucket, published, tmp_path):
    bucket.objects[OBJECT] = published.tar()
    bucket.objects[SPLIT_OBJECT] = published.split_csv()
    out = fetch_small_cnn_zoo(URL, tmp_path / "z", split_csv_url=SPLIT_URL, progress=False)
    splits = check_rows(out, published, NETWORKS)
    # the papers' data loader, transcribed: order the rows by the CSV read without a header
    # (its header 0 becomes row 0), keep step 86, test is the second half, and
    # random.Random(0) shuffles the first half into 80 % train, 20 % val
    shuffled = [0, *published.order]
    steps = np.asarray([step for _, step in published.rows])[shuffled]
    final = np.asarray(shuffled)[steps == 86]
    half = int(0.5 * len(final))
    positions = list(range(half))
    random.Random(0).shuffle(positions)
    expected = {published.rows[r][0]: "test" for r in final[half:]}
    expected |= {published.rows[final[p]][0]: "train" for p in positions[: int(0.8 * half)]}
    expected |= {published.rows[final[p]][0]: "val" for p in positions[int(0.8 * half) :]}
    diverged = f"smallcnnzoo/cifar10/run_{DIVERGED:05d}"
    assert diverged not in expected  # the papers leave it out; weightzoo keeps it in train
    assert splits == expected | {diverged: "train"}
    record = provenance(out)["split"]
    assert record["networks_without_final_step"] == 1 and record["final_step"] == 86
    assert record["csv_sha256"] == hashlib.sha256(published.split_csv()).hexdigest()
    assert record["csv_header_read_as_row_0"] and record["final_rows_listed_twice"] == 0
    assert record["counts"] == {s: list(splits.values()).count(s) for s in ("train", "val", "test")}


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_the_papers_rule_splits_exactly_the_final_rows(data):
    rows = data.draw(st.integers(1, 60))
    order = [0, *data.draw(st.permutations(range(rows)))]  # as published: row 0 twice
    steps = data.draw(st.lists(st.sampled_from([0, 1, 86]), min_size=rows, max_size=rows))
    splits = nfn_splits(order, steps)
    final = [r for r in order if steps[r] == 86]
    assert set(splits) == set(final)
    half = int(0.5 * len(final))
    assert {r for r, s in splits.items() if s == "test"} == set(final[half:])
    positions = list(range(half))
    random.Random(0).shuffle(positions)
    val = {final[p] for p in positions[int(0.8 * half) :]}
    assert {r for r, s in splits.items() if s == "val"} == val - set(final[half:])
    train = {final[p] for p in positions[: int(0.8 * half)]}
    assert {r for r, s in splits.items() if s == "train"} == train - val - set(final[half:])


# -- partial fetches --------------------------------------------------------------------------


def test_models_closes_the_stream_after_the_rows_needed_and_says_the_checksum_was_not_checked(
    bucket, published, tmp_path
):
    data = published.tar()  # layout and metrics first: the rows needed are known in time
    bucket.objects[OBJECT] = data
    out = fetch_small_cnn_zoo(URL, tmp_path / "z", models=2, progress=False)
    check_rows(out, published, 2)
    record = provenance(out)
    assert not record["checksum_checked"] and not record["complete"]
    assert "could not be checked" in record["verified"]
    assert record["rows_read"] == 2 * len(STEPS) < record["rows_total"]
    assert record["bytes_read"] < 0.5 * len(data) and record["networks"] == 2


def test_models_with_weights_first_reads_and_checks_the_whole_stream(bucket, published, tmp_path):
    bucket.objects[OBJECT] = published.tar(("weights.npy", "layout.csv", "metrics.csv.gz"))
    bucket.objects[SPLIT_OBJECT] = published.split_csv()
    out = fetch_small_cnn_zoo(
        URL, tmp_path / "z", models=3, split_csv_url=SPLIT_URL, progress=False
    )
    splits = check_rows(out, published, 3)
    assert sorted(splits) == [f"smallcnnzoo/cifar10/run_{n:05d}" for n in range(3)]
    record = provenance(out)
    assert record["checksum_checked"] and record["complete"] and record["models"] == 3


# -- failures: one line, nothing left ---------------------------------------------------------


def test_an_md5_mismatch_is_one_line_and_leaves_nothing(bucket, published, tmp_path):
    data = published.tar()
    bucket.objects[OBJECT] = data
    bucket.goog_hash_of[OBJECT] = data[:-1] + b"!"
    with pytest.raises(SourceChecksumError, match="x-goog-hash") as info:
        fetch_small_cnn_zoo(URL, tmp_path / "z", progress=False)
    assert "\n" not in str(info.value) and "cifar10.tar.xz" in str(info.value)
    nothing_left(tmp_path)


def test_a_cut_stream_restarts_from_the_start(bucket, published, tmp_path):
    data = published.tar()
    bucket.objects[OBJECT] = data
    bucket.cut_after[OBJECT] = len(data) // 2
    out = fetch_small_cnn_zoo(URL, tmp_path / "z", progress=False)
    assert provenance(out)["restarts"] == 1 and provenance(out)["checksum_checked"]
    assert bucket.sent(OBJECT) == len(data) // 2 + len(data)
    check_rows(out, published, NETWORKS)


def test_a_stream_cut_every_time_is_one_line_and_the_rerun_succeeds(bucket, published, tmp_path):
    data = published.tar()
    bucket.objects[OBJECT] = data
    bucket.cut_always[OBJECT] = len(data) // 3
    with pytest.raises(SourceConnectionError, match="rerun the same command") as info:
        fetch_small_cnn_zoo(URL, tmp_path / "z", progress=False)
    assert "\n" not in str(info.value) and "cifar10.tar.xz" in str(info.value)
    nothing_left(tmp_path)
    bucket.cut_always.clear()
    check_rows(fetch_small_cnn_zoo(URL, tmp_path / "z", progress=False), published, NETWORKS)


@pytest.mark.parametrize(
    ("setup", "error", "words"),
    [
        (lambda s: s.objects.pop(OBJECT), SourceNotFoundError, r"not found \(404\); check the URL"),
        (lambda s: s.html.add(OBJECT), SourceContentError, "an HTML page"),
        (lambda s: s.json_error.add(OBJECT), SourceContentError, "a JSON document"),
        (
            lambda s: s.objects.update({OBJECT: b"\xfd7zXZ\x00" + bytes(600)}),
            UnreadableFileError,
            "is not a readable tar.xz archive",
        ),
    ],
    ids=["404", "html", "error-json", "damaged"],
)
def test_broken_sources_are_one_line_errors_that_leave_nothing(
    bucket, published, tmp_path, setup, error, words
):
    bucket.objects[OBJECT] = published.tar()
    setup(bucket)
    with pytest.raises(error, match=words) as info:
        fetch_small_cnn_zoo(URL, tmp_path / "z", progress=False)
    assert "\n" not in str(info.value)
    nothing_left(tmp_path)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (lambda p: "".join(f"{r}\n" for r in [0, *p.order[:-1]]), "not each of the"),
        (lambda p: "".join(f"{r}\n" for r in [*p.order[:-1], p.order[0]]), "not each of the"),
        (lambda p: "".join(f"{r}\n" for r in [1, *p.order]), "not each of the"),
        (lambda p: "index\n" + "".join(f"{r}\n" for r in p.order), "not one row number"),
    ],
    ids=["short", "duplicate", "other-header", "text-header"],
)
def test_a_split_csv_of_another_dataset_is_refused(bucket, published, tmp_path, body, words):
    bucket.objects[OBJECT] = published.tar()
    bucket.objects[SPLIT_OBJECT] = body(published).encode()
    with pytest.raises(SourceContentError, match=words) as info:
        fetch_small_cnn_zoo(URL, tmp_path / "z", split_csv_url=SPLIT_URL, progress=False)
    assert "\n" not in str(info.value)
    nothing_left(tmp_path)


def _member(name: str, kind: bytes, link: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, size
    return info


HOSTILE = {
    "symlink": (_member("cifar10/weights.npy", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
    "hard link": (_member("cifar10/x", tarfile.LNKTYPE, "cifar10/layout.csv"), "hard link"),
    "device": (_member("cifar10/dev", tarfile.CHRTYPE), "a device file"),
    "fifo": (_member("cifar10/fifo", tarfile.FIFOTYPE), "a FIFO"),
    "zip slip": (("cifar10/../../canary.txt", b"evil"), "a '..' component"),
    "absolute": (("/tmp/canary.txt", b"evil"), "an absolute path"),
    "duplicate": (("cifar10/layout.csv", b"varname\n"), "appears twice"),
    "second copy": (("other/layout.csv", b"varname\n"), "a second copy of layout.csv"),
    "bomb": (("cifar10/zeros.bin", bytes(30_000_000)), "a tar bomb"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_members_are_refused_and_nothing_is_written(bucket, published, tmp_path, kind):
    canary = tmp_path / "canary.txt"
    canary.write_bytes(b"canary")
    entry, words = HOSTILE[kind]
    first = [_dir("cifar10"), ("cifar10/layout.csv", published.files["layout.csv"])]
    rest = [(f"cifar10/{n}", published.files[n]) for n in ("metrics.csv.gz", "weights.npy")]
    bucket.objects[OBJECT] = pack([*first, entry, *rest])
    with pytest.raises(UnsafeArchiveError, match=words) as info:
        fetch_small_cnn_zoo(URL, tmp_path / "zoos" / "z", progress=False)
    assert "\n" not in str(info.value)
    assert canary.read_bytes() == b"canary"
    nothing_left(tmp_path / "zoos")


def test_an_archive_without_the_zoos_files_is_a_named_error(bucket, tmp_path):
    bucket.objects[OBJECT] = pack([_dir("cifar10"), ("cifar10/README", b"hello")])
    with pytest.raises(DataFilesMissingError, match="weights.npy, layout.csv, metrics.csv.gz"):
        fetch_small_cnn_zoo(URL, tmp_path / "z", progress=False)
    nothing_left(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"url": "https://storage.googleapis.com/b/cifar10.zip"}, "does not name a .tar.xz"),
        ({"models": 0}, "takes no network"),
        ({"models": True}, "not a whole number"),
    ],
)
def test_bad_arguments_are_refused_before_any_request(bucket, tmp_path, kwargs, words):
    with pytest.raises(InvalidOptionError, match=words):
        fetch_small_cnn_zoo(**{"url": URL, "out": tmp_path / "z", **kwargs})
    assert bucket.requests == []


def test_an_occupied_output_is_refused(bucket, published, tmp_path):
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "mine.txt").write_text("keep")
    bucket.objects[OBJECT] = published.tar()
    with pytest.raises(InvalidOptionError, match="not empty"):
        fetch_small_cnn_zoo(URL, tmp_path / "z", progress=False)
    assert (tmp_path / "z" / "mine.txt").read_text() == "keep"


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("weights", "words"),
    [
        (lambda p: _npy(np.array([{"x": 1}], dtype=object)), "not numbers"),
        (lambda p: p.files["weights.npy"][: -4970 * 4], "its .npy header promises"),
        (lambda p: _npy(p.weights.reshape(-1)), "not rows of weights"),
        (lambda p: _npy(np.asfortranarray(p.weights)), "Fortran-ordered"),
        # a version-2 header declaring 4 GiB of text: refused before any of it is read
        (lambda p: b"\x93NUMPY\x02\x00" + b"\xf0\xff\xff\xff" + bytes(99), "over 10000"),
    ],
    ids=["pickled", "short", "one-dimensional", "fortran", "huge-header"],
)
def test_a_weights_member_that_is_not_rows_of_numbers_is_refused(
    bucket, published, tmp_path, weights, words
):
    files = {**published.files, "weights.npy": weights(published)}
    entries = [(f"cifar10/{name}", data) for name, data in files.items()]
    bucket.objects[OBJECT] = pack([_dir("cifar10"), *entries])
    with pytest.raises(UnreadableFileError, match=words) as info:
        fetch_small_cnn_zoo(URL, tmp_path / "z", progress=False)
    assert "\n" not in str(info.value)
    nothing_left(tmp_path)


def test_progress_shows_bytes_then_models(bucket, published, tmp_path, capsys):
    bucket.objects[OBJECT] = published.tar()
    fetch_small_cnn_zoo(URL, tmp_path / "z", models=4)
    err = capsys.readouterr().err
    assert "cifar10.tar.xz" in err and "B/s" in err
    assert err.index("cifar10.tar.xz") < err.index("4/4") and "model" in err


def test_the_importer_takes_the_first_networks_and_given_splits(published, tmp_path):
    data = published.tar()
    (tmp_path / "a.tar.xz").write_bytes(data)
    extract_tar(tmp_path / "a.tar.xz", tmp_path / "x")
    src = tmp_path / "x" / "cifar10"
    keys = [f"smallcnnzoo/cifar10/run_{n:05d}" for n in range(NETWORKS)]
    given = {key: ("train", "val", "test")[n % 3] for n, key in enumerate(keys)}
    manifest = import_cnn_zoo(src, tmp_path / "z", models=5, splits=given)
    assert manifest.num_models == 5 and manifest.spec["models"] == 5
    assert "given" in manifest.spec["split"]
    assert check_rows(tmp_path / "z", published, 5) == {k: given[k] for k in keys[:5]}
    with pytest.raises(InvalidOptionError, match="'holdout' is not one of train, val, test"):
        import_cnn_zoo(src, tmp_path / "y", splits=dict.fromkeys(keys, "holdout"))
    with pytest.raises(LayoutError, match="has no split in the splits given"):
        import_cnn_zoo(src, tmp_path / "w", splits={keys[0]: "train"})


def test_a_server_without_x_goog_hash_is_refused_unless_verify_is_off(bucket, published, tmp_path):
    bucket.objects[OBJECT] = published.tar()
    bucket.goog_hash = False
    with pytest.raises(SourceChecksumError, match="sent no x-goog-hash header") as info:
        fetch_small_cnn_zoo(URL, tmp_path / "z", progress=False)
    assert "\n" not in str(info.value) and "verify=False" in str(info.value)
    nothing_left(tmp_path)
    out = fetch_small_cnn_zoo(URL, tmp_path / "z", progress=False, verify=False)
    record = provenance(out)
    assert record["checksum"] is None and not record["checksum_checked"] and record["complete"]
    assert record["verified"] == (
        "nothing: the server sent no md5 (x-goog-hash), and verify=False accepted that"
    )
    check_rows(out, published, NETWORKS)


def test_a_crc32c_without_a_package_to_check_it_is_refused(bucket, published, tmp_path):
    if any(importlib.util.find_spec(m) for m in ("google_crc32c", "crc32c")):
        pytest.skip("a crc32c package is installed: the crc32c is checked")
    data = published.tar()
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    bucket.custom[OBJECT] = plain_answer(data, {"x-goog-hash": f"crc32c={crc}"})
    with pytest.raises(SourceChecksumError, match="crc32c needs the google-crc32c") as info:
        fetch_small_cnn_zoo(URL, tmp_path / "z", progress=False)
    assert "\n" not in str(info.value) and repr(f"crc32c={crc}") in str(info.value)
    nothing_left(tmp_path)


def test_metrics_that_disagree_with_the_weights_leave_no_zoo(bucket, published, tmp_path):
    text = gzip.decompress(published.files["metrics.csv.gz"]).decode()
    files = {**published.files, "metrics.csv.gz": gzip.compress(text.rsplit("\n", 2)[0].encode())}
    entries = [(f"cifar10/{name}", data) for name, data in files.items()]
    bucket.objects[OBJECT] = pack([_dir("cifar10"), *entries])
    with pytest.raises(LayoutError, match="metrics.csv.gz has 34 rows but weights.npy has 35"):
        fetch_small_cnn_zoo(URL, tmp_path / "z", progress=False)
    nothing_left(tmp_path)


def test_a_split_csv_is_read_as_the_papers_loader_reads_it(tmp_path):
    path = tmp_path / "split.csv"
    path.write_text("2\n0\n1\n")
    assert read_split_csv(path, 3, "split.csv") == [2, 0, 1]
    path.write_text("0\n2\n0\n1\n\n")  # pandas' header line 0, read as a row number
    assert read_split_csv(path, 3, "split.csv") == [0, 2, 0, 1]
    path.write_bytes("0\n2\n1\n\u00b2\n".encode())
    with pytest.raises(SourceContentError, match="not a text file of row numbers"):
        read_split_csv(path, 3, "split.csv")
    path.write_bytes(b"0\n2\n1\n0\n1\nzz\n")  # a fifth number for 3 rows, refused as read
    with pytest.raises(SourceContentError, match="more than 4 row numbers"):
        read_split_csv(path, 3, "split.csv")
    path.write_bytes(b"0\n" + b"1" * (1 << 20))  # one line of a MiB: never read whole
    with pytest.raises(SourceContentError, match="a line of more than 64 bytes"):
        read_split_csv(path, 3, "split.csv")


# -- bounds: hostile archives and servers end in one line, in bounded memory and time ---------


def _raw_tar(published: Published) -> bytes:
    """The fixture's archive as an uncompressed tar."""
    return lzma.decompress(published.tar())


def _xz_opening_with(kind: bytes, declared: int, zeros: int) -> bytes:
    """A tar.xz whose first header (``kind``) declares a body of ``declared`` bytes, followed
    by ``zeros`` zero bytes: a few KB compressed."""
    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = kind, declared
    packer = lzma.LZMACompressor(format=lzma.FORMAT_XZ, preset=0)
    parts = [packer.compress(info.tobuf(format=tarfile.GNU_FORMAT))]
    block = bytes(1 << 20)
    parts += [packer.compress(block) for _ in range(zeros >> 20)]
    return b"".join([*parts, packer.flush()])


@pytest.mark.parametrize(
    "kind", [tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE], ids=["gnu-long-name", "pax"]
)
def test_a_header_declaring_a_gigabyte_is_refused_as_it_arrives(bucket, tmp_path, kind):
    bucket.objects[OBJECT] = _xz_opening_with(kind, 1 << 30, 128 << 20)  # 128 MiB arrive
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeArchiveError, match="header bomb") as info:
            fetch_small_cnn_zoo(URL, tmp_path / "z", progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak  # tarfile alone reads a header's body whole into memory
    assert "\n" not in str(info.value) and str(smallcnn.HEADER_BYTES) in str(info.value)
    nothing_left(tmp_path)


@pytest.mark.parametrize(("links", "refused"), [(50, False), (2000, True)])
def test_a_chain_of_extended_headers_is_bounded_before_tarfile_recurses_deep(
    bucket, published, tmp_path, links, refused
):
    empty = tarfile.TarInfo("././@PaxHeader")
    empty.type = tarfile.XHDTYPE  # tarfile reads each, then the next, by recursion
    chain = empty.tobuf(format=tarfile.GNU_FORMAT) * links
    bucket.objects[OBJECT] = lzma.compress(chain + _raw_tar(published), preset=0)
    if refused:
        with pytest.raises(UnsafeArchiveError, match="header bomb") as info:
            fetch_small_cnn_zoo(URL, tmp_path / "z", progress=False)
        assert "at its start" in str(info.value)
        nothing_left(tmp_path)
    else:  # a few headers before a member are what pax archives hold
        check_rows(fetch_small_cnn_zoo(URL, tmp_path / "z", progress=False), published, NETWORKS)


def test_long_member_names_in_pax_headers_are_read(bucket, published, tmp_path):
    notes = [(f"cifar10/{'n' * 4000}{i}.txt", b"notes") for i in range(20)]
    files = [(f"cifar10/{n}", published.files[n]) for n in published.files]
    bucket.objects[OBJECT] = pack([_dir("cifar10"), *notes, *files])
    check_rows(fetch_small_cnn_zoo(URL, tmp_path / "z", progress=False), published, NETWORKS)


def test_a_sparse_member_is_refused(bucket, published, tmp_path):
    holes = _member("cifar10/holes.bin", tarfile.GNUTYPE_SPARSE)
    files = [(f"cifar10/{n}", published.files[n]) for n in published.files]
    bucket.objects[OBJECT] = pack([_dir("cifar10"), holes, *files])
    with pytest.raises(UnsafeArchiveError, match="a sparse file"):
        fetch_small_cnn_zoo(URL, tmp_path / "z", progress=False)
    nothing_left(tmp_path)


def _metrics(text: str) -> bytes:
    return gzip.compress(text.encode(), mtime=0)


@pytest.mark.parametrize(
    ("max_rows", "error", "words"),
    [
        (40, LayoutError, "more than 40 rows but weights.npy has 40"),
        (None, UnreadableFileError, "more than 40 rows, more than any dataset"),
    ],
    ids=["rows-of-the-weights", "the-zoos-bound"],
)
def test_metrics_index_refuses_the_first_row_beyond_its_bound_as_it_reads(
    tmp_path, monkeypatch, max_rows, error, words
):
    monkeypatch.setattr(cnn_zoo, "MAX_INDEX_ROWS", 40)
    lines = "".join(f"net{i % 7},{i}\n" for i in range(300_000))
    packed = _metrics("modeldir,step\n" + lines)
    path = tmp_path / "metrics.csv.gz"
    path.write_bytes(packed[:-8] + bytes(8))  # a broken trailer: only reading to the end finds it
    with pytest.raises(error, match=words):
        metrics_index(path, max_rows)
    path.write_bytes(_metrics("modeldir,step\n" + "".join(lines.splitlines(True)[:40])))
    assert metrics_index(path, max_rows)[-1] == ("net4", 39)  # the bound itself is accepted


def test_metrics_index_keeps_each_key_once_and_bounds_their_characters(tmp_path, monkeypatch):
    rows = [(f"runs/{'k' * 30}{n % 3}", step) for n in range(30) for step in (0, 86)]
    path = tmp_path / "metrics.csv.gz"
    path.write_bytes(_metrics("modeldir,step\n" + "".join(f"{k},{s}\n" for k, s in rows)))
    index = metrics_index(path)
    assert index == rows and len({id(key) for key, _ in index}) == 3  # one copy per network
    monkeypatch.setattr(cnn_zoo, "MAX_INDEX_KEY_CHARS", 2 * 36)  # two keys of 36 characters
    with pytest.raises(UnreadableFileError, match="more than 72 characters in all, by row 3"):
        metrics_index(path)


@pytest.mark.parametrize(
    ("order", "extra_rows", "bound", "error", "words"),
    [
        (("weights.npy", "metrics.csv.gz"), 1, None, LayoutError, "more than 35 rows but"),
        (("metrics.csv.gz", "weights.npy"), 1, None, LayoutError, "has 36 rows but weights"),
        (("metrics.csv.gz", "weights.npy"), 0, 20, UnreadableFileError, "more than any dataset"),
    ],
    ids=["weights-first", "metrics-first", "metrics-first-past-the-zoos-bound"],
)
def test_metrics_rows_beyond_the_weights_are_refused_naming_the_member(
    bucket, published, tmp_path, monkeypatch, order, extra_rows, bound, error, words
):
    if bound is not None:
        monkeypatch.setattr(cnn_zoo, "MAX_INDEX_ROWS", bound)
    text = gzip.decompress(published.files["metrics.csv.gz"]).decode()
    text += text.splitlines(True)[-1] * extra_rows
    files = {**published.files, "metrics.csv.gz": _metrics(text)}
    entries = [(f"cifar10/{n}", files[n]) for n in ("layout.csv", *order)]
    bucket.objects[OBJECT] = pack([_dir("cifar10"), *entries])
    with pytest.raises(error, match=words) as info:
        fetch_small_cnn_zoo(URL, tmp_path / "z", progress=False)
    message = str(info.value)
    assert "\n" not in message and ".stream" not in message  # the member, not the work copy
    assert "cifar10" in message and bucket.url in message
    nothing_left(tmp_path)


@pytest.mark.slow
def test_metrics_inflating_to_millions_of_rows_are_refused_in_bounded_memory(
    bucket, published, tmp_path
):
    block = b"".join(b"r/%d,86,0.5\n" % (i % 1000) for i in range(100_000))
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    parts = [packer.compress(b"modeldir,step,test_accuracy\n")]
    parts += [packer.compress(block) for _ in range(30)]  # 3 million rows, ~100 MB of text
    files = {**published.files, "metrics.csv.gz": b"".join([*parts, packer.flush()])}
    entries = [(f"cifar10/{n}", files[n]) for n in ("layout.csv", "metrics.csv.gz", "weights.npy")]
    bucket.objects[OBJECT] = pack([_dir("cifar10"), *entries])
    tracemalloc.start()
    try:
        with pytest.raises(UnreadableFileError, match=f"more than {cnn_zoo.MAX_INDEX_ROWS} rows"):
            fetch_small_cnn_zoo(URL, tmp_path / "z", progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 128 << 20, peak  # the index of 2**20 rows (64 MiB), each key kept once
    nothing_left(tmp_path)


def test_a_split_csv_sent_without_a_size_is_bounded(bucket, published, tmp_path):
    bucket.objects[OBJECT] = published.tar()
    csv_headers = {"Content-Type": "text/csv"}
    bucket.custom[SPLIT_OBJECT] = chunked_answer(published.split_csv(), csv_headers)
    out = fetch_small_cnn_zoo(URL, tmp_path / "z", split_csv_url=SPLIT_URL, progress=False)
    record = provenance(out)["split"]  # chunked is fine within the bound; its bytes recorded
    assert record["csv_sha256"] == hashlib.sha256(published.split_csv()).hexdigest()
    bucket.custom[SPLIT_OBJECT] = chunked_answer(b"0\n" * (9 << 20), csv_headers)  # 18 MiB
    with pytest.raises(SourceContentError, match=str(smallcnn.SPLIT_CSV_MAX_BYTES)) as info:
        fetch_small_cnn_zoo(URL, tmp_path / "y", split_csv_url=SPLIT_URL, progress=False)
    assert "\n" not in str(info.value)
    nothing_left(tmp_path, "z")


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_bucket_is_one_line_naming_the_url(monkeypatch, tmp_path):
    port = _unused_port()
    monkeypatch.setenv("WEIGHTZOO_HTTP_MIRROR", f"http://127.0.0.1:{port}")
    with pytest.raises(SourceConnectionError, match="rerun the same command") as info:
        fetch_small_cnn_zoo(URL, tmp_path / "z", progress=False)
    message = str(info.value)
    assert "\n" not in message and f"http://127.0.0.1:{port}{OBJECT}" in message
    assert "ConnectError" in message
    nothing_left(tmp_path)


@pytest.mark.parametrize(
    ("answer", "error", "words"),
    [
        (reset_answer, SourceConnectionError, "broke 4 times, before any byte"),
        (redirect_to_itself, SourceContentError, "in a loop"),
    ],
    ids=["reset-before-headers", "redirect-loop"],
)
def test_a_bucket_that_resets_or_loops_is_one_line(bucket, tmp_path, answer, error, words):
    bucket.custom[OBJECT] = answer
    with pytest.raises(error, match=words) as info:
        fetch_small_cnn_zoo(URL, tmp_path / "z", progress=False)
    assert "\n" not in str(info.value) and OBJECT in str(info.value)
    nothing_left(tmp_path)
    asked = sum(r[1] == OBJECT for r in bucket.requests)
    assert asked == (smallcnn.RESTARTS + 1 if answer is reset_answer else 21)
