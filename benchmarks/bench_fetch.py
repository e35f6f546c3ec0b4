"""Fetching published zoos from a local server: bytes and seconds, whole vs partial.

Runs tests/helpers/source_server.py on 127.0.0.1 (real HTTP/1.1, Zenodo's records API and a bucket
with ``x-goog-hash``) and measures, all in one run:

* **zip** (a Model Zoos population, ``--trials`` trials x ``--epochs`` checkpoints, each with
  its optimizer state as published) through :func:`weightzoo.sources.fetch.fetch_zenodo`: the
  whole zoo vs one epoch (the last), with range support (only the central directory and the
  members needed are read) and without (the whole zip is downloaded, resumably, then read);
* **tar.xz** (a Small CNN Zoo dataset in the published layout, ``--networks`` networks x 9
  checkpoints of 4970 float32 weights, rows grouped by network, ``layout.csv`` and
  ``metrics.csv.gz`` before ``weights.npy``) through
  :func:`weightzoo.sources.smallcnn.fetch_small_cnn_zoo`: the whole stream, ``--models`` networks
  (the stream closed after their rows), and a stream cut half-way (it restarts from byte 0);
* **conversion**: rows/s of the streamed fetch (download, decompression, confinement, writing the
  rows, md5, import) against :func:`weightzoo.importers.cnn_zoo.import_cnn_zoo` reading an
  already-extracted copy (the target is a ratio of at most 1.2) and against doing by hand what
  the stream replaces (download to disk, extract, import), best of ``--rounds``; and the rate
  at which ``tarfile`` alone decompresses the archive: every fetch of a tar.xz pays it (an
  extracted copy has paid it before), and a resumed stream would have to replay it.

Bytes: for the zip, those the server sent for the file (the listing aside); for the tar.xz,
those the client read (a server cannot count what a closed connection never took). Seconds
are wall-clock; on a shared machine compare the ratios, not the rates, across runs.

    python benchmarks/bench_fetch.py [--trials 8] [--epochs 51] [--networks 300] [--models 10]
        [--rounds 3]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.source_server import SourceServer
from weightzoo.importers.cnn_zoo import import_cnn_zoo
from weightzoo.sources.archive import extract_tar
from weightzoo.sources.fetch import fetch_zenodo
from weightzoo.sources.http import download
from weightzoo.sources.smallcnn import fetch_small_cnn_zoo

STEPS = (0, 1, 2, 3, 20, 40, 60, 80, 86)
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
ZIP = "mnist_cnn_s_seed.zip"
OBJECT = "/gresearch/smallcnnzoo-dataset/cifar10.tar.xz"
URL = "https://storage.googleapis.com" + OBJECT


def _mb(count: float) -> str:
    return f"{count / 1e6:8.2f} MB"


# -- fixtures in the published layouts --------------------------------------------------------


def model_zoos_zip(root: Path, trials: int, epochs: int, rng: np.random.Generator) -> bytes:
    """Ray Tune trial directories of a CNN-s (MNIST) as the Model Zoos zips hold them."""
    top = root / "mnist_cnn_s_seed"
    shapes = {
        "module_list.0.weight": (8, 1, 5, 5),
        "module_list.0.bias": (8,),
        "module_list.3.weight": (6, 8, 5, 5),
        "module_list.3.bias": (6,),
        "module_list.6.weight": (4, 6, 2, 2),
        "module_list.6.bias": (4,),
        "module_list.9.weight": (20, 36),
        "module_list.9.bias": (20,),
        "module_list.11.weight": (10, 20),
        "module_list.11.bias": (10,),
    }
    for t in range(trials):
        trial = top / f"NN_tune_trainable_{t:05x}_{t}_seed={t}"
        trial.mkdir(parents=True)
        (trial / "params.json").write_text(json.dumps({"model::type": "CNN", "seed": t}))
        lines = [{"training_iteration": e, "test_acc": e / epochs} for e in range(1, epochs)]
        (trial / "result.json").write_text("".join(json.dumps(x) + "\n" for x in lines))
        for epoch in range(epochs):
            folder = trial / f"checkpoint_{epoch:06d}"
            folder.mkdir()
            sd = {k: torch.from_numpy(rng.normal(size=s)).float() for k, s in shapes.items()}
            torch.save(sd, folder / "checkpoints")
            moments = {k: torch.stack([v, v]) for k, v in sd.items()}
            torch.save({"state": moments}, folder / "optimizer")
    base = shutil.make_archive(str(root / "zip"), "zip", root, top.name)
    return Path(base).read_bytes()


def small_cnn_zoo(root: Path, networks: int, rng: np.random.Generator) -> tuple[bytes, Path]:
    """A Small CNN Zoo dataset: the ``tar.xz`` and the folder it extracts to."""
    folder = root / "cifar10"
    folder.mkdir(parents=True)
    rows = [(f"cifar10/run_{n:05d}", s) for n in range(networks) for s in STEPS]
    width = sum(int(np.prod(shape)) for _, shape in VARIABLES)
    np.save(folder / "weights.npy", rng.normal(scale=0.1, size=(len(rows), width)).astype("f4"))
    with open(folder / "layout.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["varname", "start_idx", "end_idx", "shape"])
        offset = 0
        for name, shape in VARIABLES:
            writer.writerow([name, offset, offset + int(np.prod(shape)), str(shape)])
            offset += int(np.prod(shape))
    with gzip.open(folder / "metrics.csv.gz", "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["modeldir", "step", "test_accuracy", "train_loss", "config.dropout"])
        for i, (modeldir, step) in enumerate(rows):
            writer.writerow([modeldir, step, (i % 97) / 100, 1 - (i % 89) / 100, 0.2])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz", preset=1) as tar:
        tar.add(folder, arcname="cifar10", recursive=False)
        for name in ("layout.csv", "metrics.csv.gz", "weights.npy"):
            tar.add(folder / name, arcname=f"cifar10/{name}")
    return buffer.getvalue(), folder


# -- measurements -----------------------------------------------------------------------------


def timed(work, *args, **kwargs):
    start = time.perf_counter()
    result = work(*args, **kwargs)
    return result, time.perf_counter() - start


def bench_zip(state, tmp: Path, args, rng) -> None:
    data = model_zoos_zip(tmp / "zip-src", args.trials, args.epochs, rng)
    state.add_record("101", {ZIP: data}, concept="100")
    path = state.file_path("101", ZIP)
    print(f"zip: {args.trials} trials x {args.epochs} checkpoints, {_mb(len(data))}")
    for ranges in (True, False):
        state.ranges = ranges
        for label, epochs in (("whole", None), ("one epoch", "last")):
            before = state.sent(path)
            out = tmp / f"zip-{ranges}-{epochs}"
            got, seconds = timed(fetch_zenodo, f"zenodo:101/{ZIP}", out, epochs=epochs)
            sent = state.sent(path) - before
            how = "ranges" if ranges else "no ranges"
            print(
                f"  {how:9} {label:9}: {_mb(sent)} sent ({sent / len(data):6.1%} of the zip), "
                f"{seconds:6.2f} s, {len(got.selection.trials)} x {len(got.selection.epochs)} "
                "checkpoints"
            )
            shutil.rmtree(out)
    state.ranges = True


def bench_stream(state, tmp: Path, args, rng) -> None:
    data, folder = small_cnn_zoo(tmp / "cnn-src", args.networks, rng)
    rows = args.networks * len(STEPS)
    raw = (folder / "weights.npy").stat().st_size
    state.objects[OBJECT] = data
    print(
        f"tar.xz: {args.networks} networks x {len(STEPS)} checkpoints ({rows} rows), "
        f"{_mb(len(data))} compressed, weights.npy {_mb(raw)}"
    )
    runs = [("whole", {}), (f"{args.models} models", {"models": args.models})]
    for label, kwargs in runs:
        out = tmp / "stream-once"
        _, seconds = timed(fetch_small_cnn_zoo, URL, out, progress=False, **kwargs)
        record = json.loads((out / "source.json").read_text())
        read = record["bytes_read"]  # the client's count: a closed stream's rest never arrives
        print(
            f"  {label:12}: {_mb(read)} read ({read / len(data):6.1%} of the file), "
            f"{seconds:6.2f} s, {record['networks']} networks, checksum checked: "
            f"{record['checksum_checked']}"
        )
        shutil.rmtree(out)
    before = state.sent(OBJECT)
    state.cut_after[OBJECT] = len(data) // 2
    _, seconds = timed(fetch_small_cnn_zoo, URL, tmp / "stream-cut", progress=False)
    sent = state.sent(OBJECT) - before
    print(
        f"  cut at 50%  : {_mb(sent)} sent ({sent / len(data):6.1%} of the file), {seconds:6.2f} "
        "s (restarted from byte 0)"
    )
    shutil.rmtree(tmp / "stream-cut")
    compare(tmp, data, folder, rows, args.rounds)


def _decompress(data: bytes) -> int:
    total = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|xz") as tar:
        for member in tar:
            src = tar.extractfile(member)
            while src is not None and (chunk := src.read(1 << 20)):
                total += len(chunk)
    return total


def _by_hand(tmp: Path, folder: str) -> float:
    """Download to disk, extract, import: the path a fetch that streams replaces."""
    start = time.perf_counter()
    got = download(URL, tmp / "by-hand" / "cifar10.tar.xz", progress=False)
    extract_tar(got.path, tmp / "by-hand" / "x")
    import_cnn_zoo(tmp / "by-hand" / "x" / folder, tmp / "by-hand" / "zoo")
    seconds = time.perf_counter() - start
    shutil.rmtree(tmp / "by-hand")
    return seconds


def compare(tmp: Path, data: bytes, folder: Path, rows: int, rounds: int) -> None:
    (tmp / "archive.tar.xz").write_bytes(data)
    extract_tar(tmp / "archive.tar.xz", tmp / "extracted")
    times: dict[str, list[float]] = {"stream": [], "import": [], "hand": [], "xz": []}
    for _ in range(rounds):
        _, seconds = timed(import_cnn_zoo, tmp / "extracted" / folder.name, tmp / "imported")
        times["import"].append(seconds)
        shutil.rmtree(tmp / "imported")
        _, seconds = timed(fetch_small_cnn_zoo, URL, tmp / "streamed", progress=False)
        times["stream"].append(seconds)
        shutil.rmtree(tmp / "streamed")
        times["hand"].append(_by_hand(tmp, folder.name))
        size, seconds = timed(_decompress, data)
        times["xz"].append(seconds)
    best = {k: min(v) for k, v in times.items()}

    def rate(key: str) -> str:
        return f"{rows / best[key]:7.0f} rows/s ({best[key]:6.2f} s)"

    print(f"conversion, best of {rounds}:")
    print(f"  streamed fetch (download, xz, md5, import)   : {rate('stream')}")
    print(
        f"  import of an already-extracted copy          : {rate('import')}  ratio "
        f"{best['stream'] / best['import']:.2f} (target <= 1.20)"
    )
    print(
        f"  download to disk, extract, import (by hand)  : {rate('hand')}  ratio "
        f"{best['stream'] / best['hand']:.2f}"
    )
    print(
        f"  xz decompression alone (tarfile r|xz)        : {_mb(size / best['xz'])}/s "
        f"({best['xz']:.2f} s): a floor of {best['xz'] / best['import']:.2f}x the extracted "
        "import for any fetch of the tar.xz"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=51)
    parser.add_argument("--networks", type=int, default=300)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parts", nargs="+", default=["zip", "stream"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder, SourceServer() as state:
        state.quiet_resets = True  # the partial fetch closes its stream early
        os.environ["WEIGHTZOO_ZENODO_ENDPOINT"] = state.url
        os.environ["WEIGHTZOO_HTTP_MIRROR"] = state.url
        tmp = Path(folder)
        if "zip" in args.parts:
            bench_zip(state, tmp, args, rng)
        if "stream" in args.parts:
            bench_stream(state, tmp, args, rng)


if __name__ == "__main__":
    main()
