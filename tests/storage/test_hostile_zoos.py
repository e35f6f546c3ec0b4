"""A zoo from outside is data: hostile zoos, built here, run through every way of opening one.

One builder per HDF5 object kind that could make a read leave the shard (external link, soft link,
virtual dataset, external raw storage), per kind the writer never makes (filters, named types,
string/vlen/complex dtypes, a second link to one object), declared sizes the file does not hold,
special files, and manifests that name other files or absurd counts. Each case runs through the
command line (``info``, ``verify``, ``card``) and the Python entry points (``Zoo``,
``ZooDataset``, ``ZooReader``) and must end in a named one-line error, with no file outside the
zoo read or written (a canary's bytes, mtime and atime).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import integrity_zoo
from weightzoo import Zoo, ZooDataset, cli
from weightzoo.errors import ManifestError, ShardCorruptError, WeightzooError
from weightzoo.storage import Manifest, ZooReader
from weightzoo.storage.hashing import sha256_file
from weightzoo.storage.manifest import MAX_MODELS

SHARD = "shards/train-000000-c000.h5"  # models 0..1, epochs 0 and 5
BLOCK = (2, 2, integrity_zoo.LAYOUT.num_params)


@pytest.fixture(scope="module")
def base_zoo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("base") / "zoo"
    writer = integrity_zoo.open_writer(path)
    integrity_zoo.write_all(writer, integrity_zoo.zoo_weights())
    writer.close()
    return path


class Canary:
    """Files outside the zoo that an attack points at: their bytes and times must not change."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir()
        self.raw = folder / "secret.bin"
        self.raw.write_bytes(np.full(BLOCK, 7.0, dtype="<f4").tobytes())
        self.h5 = folder / "secret.h5"
        with h5py.File(self.h5, "w") as handle:
            handle["data"] = np.full(BLOCK, 7.0, dtype="<f4")
        self.paths = [self.raw, self.h5]
        past = time.time() - 3600
        for path in self.paths:  # atime before mtime: a read updates it even under relatime
            os.utime(path, (past - 1800, past))
        self.before = self._state()

    def _state(self) -> list[tuple[bytes, int, int]]:
        return [(p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_atime_ns) for p in self.paths]

    def untouched(self) -> bool:
        # _state reads the files itself, so compare the times taken before reading them
        times = [(p.stat().st_mtime_ns, p.stat().st_atime_ns) for p in self.paths]
        content = [p.read_bytes() for p in self.paths]
        before = [(m, a) for _, m, a in self.before]
        return times == before and content == [b for b, _, _ in self.before]


def _rehash(zoo: Path, file: str = SHARD) -> None:
    """Make the manifest vouch for the edited shard (the attack the sha256 cannot see)."""
    data = json.loads((zoo / "zoo.json").read_text())
    for entry in data["shards"]:
        if entry["file"] == file:
            entry["sha256"] = sha256_file(zoo / file)
            entry["bytes"] = (zoo / file).stat().st_size
    (zoo / "zoo.json").write_text(json.dumps(data))


def _replace_weights(make: Callable[[h5py.File, Canary], None]) -> Callable[[Path, Canary], None]:
    def build(zoo: Path, canary: Canary) -> None:
        with h5py.File(zoo / SHARD, "r+") as handle:
            del handle["weights"]
            make(handle, canary)
        _rehash(zoo)

    return build


def _edit_shard(make: Callable[[h5py.File, Canary], None]) -> Callable[[Path, Canary], None]:
    def build(zoo: Path, canary: Canary) -> None:
        with h5py.File(zoo / SHARD, "r+") as handle:
            make(handle, canary)
        _rehash(zoo)

    return build


def _virtual(handle: h5py.File, canary: Canary) -> None:
    layout = h5py.VirtualLayout(shape=BLOCK, dtype="<f4")
    layout[...] = h5py.VirtualSource(str(canary.h5), "data", shape=BLOCK)
    handle.create_virtual_dataset("weights", layout)


def _external_storage(handle: h5py.File, canary: Canary) -> None:
    size = int(np.prod(BLOCK)) * 4
    handle.create_dataset("weights", BLOCK, "<f4", external=[(str(canary.raw), 0, size)])


def _replace_metric(data: object, dtype: object = None) -> Callable[[h5py.File, Canary], None]:
    def make(handle: h5py.File, canary: Canary) -> None:
        del handle["metrics/acc"]
        handle.create_dataset("metrics/acc", data=data, dtype=dtype)

    return make


def _ragged(shape: tuple[int, ...]) -> np.ndarray:
    values = np.empty(shape, dtype=object)
    for index in np.ndindex(shape):
        values[index] = np.zeros(sum(index) + 1, "f4")
    return values


def _huge_metric(handle: h5py.File, canary: Canary) -> None:
    del handle["metrics/acc"]
    # 2 x 2 as the manifest says, but a second dataset of 10 GB declared and never written
    handle.create_dataset("metrics/acc", data=np.zeros((2, 2), "f4"))
    handle.create_dataset("models/kind2", shape=(2, 10**9, 5), dtype="f4", chunks=(1, 1, 5))


def _declared_not_written(handle: h5py.File, canary: Canary) -> None:
    del handle["metrics/acc"]
    handle.create_dataset("metrics/acc", shape=(2, 2), dtype="f4")  # storage never allocated


HDF5_ATTACKS = {
    "external link": _replace_weights(
        lambda h, c: h.__setitem__("weights", h5py.ExternalLink(str(c.h5), "/data"))
    ),
    "soft link": _replace_weights(
        lambda h, c: (
            h.__setitem__("other", np.zeros(BLOCK, "<f4")),
            h.__setitem__("weights", h5py.SoftLink("/other")),
        )
    ),
    "second hard link": _edit_shard(lambda h, c: h.__setitem__("metrics/acc2", h["metrics/acc"])),
    "virtual dataset": _replace_weights(_virtual),
    "external storage": _replace_weights(_external_storage),
    "gzip filter": _replace_weights(
        lambda h, c: h.create_dataset("weights", data=np.zeros(BLOCK, "<f4"), compression="gzip")
    ),
    "complex weights": _replace_weights(
        lambda h, c: h.create_dataset("weights", data=np.zeros(BLOCK, "<c8"))
    ),
    "big-endian weights": _replace_weights(
        lambda h, c: h.create_dataset("weights", data=np.zeros(BLOCK, ">f4"))
    ),
    "string metric": _edit_shard(_replace_metric([["a", "b"], ["c", "d"]], h5py.string_dtype())),
    "vlen metric": _edit_shard(_replace_metric(_ragged((2, 2)), h5py.vlen_dtype("f4"))),
    "wrong metric shape": _edit_shard(_replace_metric(np.zeros((2, 3), "f4"))),
    "unwritten metric": _edit_shard(_declared_not_written),
    "huge undeclared dataset": _edit_shard(_huge_metric),
    "named datatype": _edit_shard(lambda h, c: h.__setitem__("type", np.dtype("f4"))),
}


@pytest.fixture
def canary(tmp_path) -> Canary:
    return Canary(tmp_path / "outside")


@pytest.fixture
def zoo(tmp_path, base_zoo) -> Path:
    path = tmp_path / "zoo"
    shutil.copytree(base_zoo, path)
    return path


def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = cli.run(list(argv))
    return code, capsys.readouterr().err


def _one_line_error(err: str) -> str:
    """The error lines a command printed (``verify`` adds one ``BAD`` line per shard)."""
    lines = [line for line in err.splitlines() if "weightzoo: error" in line or "BAD" in line]
    assert "Traceback" not in err
    assert lines, err
    return "\n".join(lines)


@pytest.mark.parametrize("attack", sorted(HDF5_ATTACKS))
def test_a_hostile_shard_is_refused_everywhere_and_nothing_outside_is_read(
    attack, zoo, canary, tmp_path, capsys
):
    HDF5_ATTACKS[attack](zoo, canary)
    canary.before = canary._state()  # the builder itself may have read the canary
    tracemalloc.start()
    started = time.perf_counter()
    for open_zoo in (
        lambda: ZooReader(zoo, split="train"),
        lambda: ZooDataset(zoo, split="train", epochs="all")[0],
        lambda: Zoo(zoo).rows(epoch=0),
    ):
        with pytest.raises(ShardCorruptError, match="train-000000-c000") as info:
            open_zoo()
        assert "\n" not in str(info.value)
    for command in (["info", str(zoo)], ["verify", str(zoo)]):
        code, err = _cli(capsys, *command)
        assert code == 1, (command, err)
        assert "train-000000-c000" in _one_line_error(err)
    code, err = _cli(capsys, "card", str(zoo), "--out", str(tmp_path / "card"))
    assert code == 1 and "train-000000-c000" in _one_line_error(err)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 64 << 20  # a 10 GB declaration is never allocated
    assert time.perf_counter() - started < 30
    assert canary.untouched()


def test_other_shards_stay_readable_beside_a_hostile_one(zoo, canary):
    HDF5_ATTACKS["external link"](zoo, canary)
    assert ZooReader(zoo, split="val").num_models == 1


def test_verify_names_every_bad_shard(zoo, canary, capsys):
    HDF5_ATTACKS["virtual dataset"](zoo, canary)
    other = "shards/test-000005-c001.h5"
    with h5py.File(zoo / other, "r+") as handle:
        handle["metrics/extra"] = np.zeros((1, 1), "f4")
    _rehash(zoo, other)
    code, err = _cli(capsys, "verify", str(zoo))
    bad = [line for line in err.splitlines() if line.startswith("BAD")]
    assert code == 1 and len(bad) == 2
    assert "virtual" in bad[0] + bad[1] and "metrics/extra" in bad[0] + bad[1]


def test_rows_marked_viable_must_be_finite(zoo, capsys):
    with h5py.File(zoo / SHARD, "r+") as handle:
        row = handle["weights"][1, 0]
        row[3] = np.nan
        handle["weights"][1, 0] = row
    _rehash(zoo)
    code, err = _cli(capsys, "verify", str(zoo))
    assert code == 1 and "model 1" in err and "NaN" in err


def test_a_fifo_in_place_of_a_shard_is_refused_without_blocking(zoo):
    """Run in a child process: a regression would block, and the timeout then fails the test."""
    (zoo / SHARD).unlink()
    os.mkfifo(zoo / SHARD)
    data = json.loads((zoo / "zoo.json").read_text())
    data["shards"][0]["bytes"] = 0
    (zoo / "zoo.json").write_text(json.dumps(data))
    for command in ("info", "verify"):
        done = subprocess.run(
            [sys.executable, "-m", "weightzoo.cli", command, str(zoo)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1 and "not a regular file" in done.stderr
        assert "Traceback" not in done.stderr


def test_a_fifo_in_place_of_the_manifest_is_refused_without_blocking(tmp_path):
    folder = tmp_path / "zoo"
    folder.mkdir()
    os.mkfifo(folder / "zoo.json")
    done = subprocess.run(
        [sys.executable, "-m", "weightzoo.cli", "info", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr


def test_a_huge_declared_block_is_refused_before_allocation(zoo):
    """The manifest and the shard agree on a million models the file does not hold."""
    models = 10**6
    with h5py.File(zoo / SHARD, "r+") as handle:
        for name in ("weights", "stats", "checkpoint_viable", "metrics/acc"):
            old = handle[name]
            shape, dtype = (models, *old.shape[1:]), old.dtype
            del handle[name]
            handle.create_dataset(name, shape=shape, dtype=dtype, chunks=(1, *shape[1:]))
        handle.attrs["models"] = np.asarray([0, models])
    data = json.loads((zoo / "zoo.json").read_text())
    data.update(num_models=models + 4, split_counts={"train": models + 2, "val": 1, "test": 1})
    data["finished"] = False
    data["shards"] = [s for s in data["shards"] if s["file"].startswith("shards/train-000000")]
    data["shards"][0]["models"] = [0, models]
    data["shards"] = data["shards"][:1]
    (zoo / "zoo.json").write_text(json.dumps(data))
    _rehash(zoo)
    tracemalloc.start()
    with pytest.raises(ShardCorruptError, match="declares shape"):
        ZooReader(zoo, split="train")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 16 << 20


@pytest.mark.parametrize(
    "file",
    [
        "conftest.py",
        "shards/conftest.py",
        "shards/train-000000-c000.h5/../../x.h5",
        "shards/val-000000-c000.h5",  # another split's name
        "shards/train-000001-c000.h5",  # another first model
        "sidecars/x.h5",
        "shards/sub/train-000000-c000.h5",
    ],
)
def test_a_manifest_names_only_the_writers_own_shard_files(zoo, file, capsys):
    data = json.loads((zoo / "zoo.json").read_text())
    data["shards"][0]["file"] = file
    (zoo / "zoo.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError):
        Manifest.load(zoo)
    code, err = _cli(capsys, "info", str(zoo))
    assert code == 1 and "Traceback" not in err


# -- manifests: anything a publisher can write is parsed or refused, never more ----------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
SHARD_FIELDS = ("file", "sha256", "bytes", "models", "split", "epochs")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    field=st.sampled_from(SHARD_FIELDS),
    value=JSON,
    top=st.sampled_from(
        ("num_models", "epochs", "split_counts", "layout", "metrics", "columns", "shards", None)
    ),
    top_value=JSON,
)
def test_any_manifest_value_is_parsed_or_refused_by_name(base_zoo, field, value, top, top_value):
    data = json.loads((base_zoo / "zoo.json").read_text())
    data["shards"][0][field] = value
    if top is not None:
        data[top] = top_value
    started = time.perf_counter()
    try:
        manifest, error = Manifest.from_dict(data, source="hostile"), None
    except WeightzooError as exc:
        manifest, error = None, exc
    if error is not None:
        assert "hostile" in str(error) and "\n" not in str(error)
    else:
        for entry in manifest.shards:  # what is accepted names the writer's files only
            assert entry.file.startswith("shards/") and entry.file.endswith(".h5")
            assert 0 <= entry.models[0] < entry.models[1] <= manifest.num_models <= MAX_MODELS
    assert time.perf_counter() - started < 1


@settings(max_examples=60, deadline=None)
@given(count=st.integers(min_value=-5, max_value=2**70), first=st.integers(-5, 2**70))
def test_absurd_counts_are_refused_before_anything_is_sized(base_zoo, count, first):
    data = json.loads((base_zoo / "zoo.json").read_text())
    data["num_models"] = count
    data["split_counts"] = {"train": count}
    data["shards"][0]["models"] = [first, first + 2]
    try:
        Manifest.from_dict(data, source="hostile")
    except ManifestError:
        return
    assert 0 <= count <= MAX_MODELS


def test_a_sixteen_thousand_shard_manifest_loads_in_linear_time(base_zoo):
    data = json.loads((base_zoo / "zoo.json").read_text())
    entry = data["shards"][0]

    def manifest_of(count: int) -> dict:
        shards = [
            dict(entry, file=f"shards/train-{i:06d}-c000.h5", models=[i, i + 1], epochs=[0, 5, 10])
            for i in range(count)
        ]
        return dict(
            data, num_models=count, split_counts={"train": count}, shards=shards, finished=True
        )

    manifest = manifest_of(16000)
    started = time.perf_counter()
    assert len(Manifest.from_dict(manifest).shards) == 16000
    # Quadratic checks took 88 s here; linear ones take a fraction of a second (a wide margin
    # for a loaded machine, far below the quadratic time).
    assert time.perf_counter() - started < 5.0


# -- faults: a full disk ends in one line, leaves no temporary file, and a rerun resumes --------


@pytest.fixture
def small_disk(tmp_path):
    """A 48 KiB file system (tmpfs, where the tests run as root), or ``None`` where none mounts."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(folder)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode != 0:
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _fill_after(monkeypatch, budget: int) -> None:
    """Where no small file system can be mounted: writes of shard images fail once past budget."""
    from weightzoo.storage import writer

    written = [0]
    real_open = open

    def limited_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        if "w" in mode and str(path).endswith(".tmp"):
            written[0] += 1
            if written[0] > budget:
                handle.close()
                raise OSError(28, "No space left on device", str(path))
        return handle

    monkeypatch.setattr(writer, "open", limited_open, raising=False)


def test_a_full_disk_ends_in_one_line_and_a_rerun_resumes(
    small_disk, tmp_path, monkeypatch, capsys
):
    out = (small_disk or tmp_path) / "zoo"
    if small_disk is None:
        _fill_after(monkeypatch, budget=1)
    code, err = _cli(capsys, "generate", "toy", "--out", str(out))
    assert code == 1 and "Traceback" not in err
    line = _one_line_error(err)
    assert "No space left on device" in line and "shards/" in line
    assert not list(out.rglob("*.tmp"))
    written = Manifest.load(out).shards
    if small_disk is None:
        monkeypatch.undo()
    else:
        remount = ["mount", "-o", "remount,size=8m", str(small_disk)]
        subprocess.run(remount, check=True, capture_output=True)
    code, err = _cli(capsys, "generate", "toy", "--out", str(out))
    assert code == 0, err
    manifest = Manifest.load(out)
    assert manifest.finished and {s.file for s in written} <= {s.file for s in manifest.shards}
    assert cli.run(["verify", str(out)]) == 0
