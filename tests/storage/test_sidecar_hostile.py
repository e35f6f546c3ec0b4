"""Side files as outside input: identity inside the hashed file, own names, sizes, clean faults."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from families.mlds.test_mlds_family import tiny
from weightzoo.cli import run
from weightzoo.errors import SidecarCorruptError, StorageWriteError, UnsafePathError
from weightzoo.generate.runner import generate
from weightzoo.storage import sidecar as sc
from weightzoo.storage.manifest import Manifest
from weightzoo.storage.verify import verify_zoo

HOSTILE_ERRORS = (SidecarCorruptError, UnsafePathError)


def _values(models=12, checkpoints=4):
    return np.arange(models * checkpoints * 3, dtype=np.float32).reshape(models, checkpoints, 3)


def _record(zoo: Path, name: str = "probe") -> dict:
    return json.loads((zoo / "sidecars" / f"{name}.json").read_text())


def _save_record(zoo: Path, data: dict, name: str = "probe") -> None:
    (zoo / "sidecars" / f"{name}.json").write_text(json.dumps(data))


def _leftovers(zoo: Path) -> list[str]:
    return sorted(p.name for p in (zoo / "sidecars").iterdir() if p.name.startswith("."))


@pytest.fixture
def probed(toy_zoo):
    """The toy zoo with side file ``probe`` (12 models x 4 epochs x 3) and a shared array."""
    sc.write_sidecar(toy_zoo, "probe", {"v": _values()}, {"k": 1}, shared={"q": np.eye(3)})
    return toy_zoo


# ------------------------------------------------------------------------------ identity
def test_the_hashed_file_carries_the_identity_the_record_and_zoo_agree_on(probed):
    record, manifest = _record(probed), Manifest.load(probed)
    assert record["format_version"] == sc.SIDECAR_VERSION == 2
    with h5py.File(probed / "sidecars" / "probe.h5", "r") as h5:
        assert h5.attrs["zoo"] == manifest.name == record["zoo"]
        assert h5.attrs["spec_fingerprint"] == manifest.spec_fingerprint
        assert h5.attrs["content_fingerprint"] == record["content_fingerprint"]
        assert h5["models"][()].tolist() == record["models"] == list(range(12))
        assert h5["epochs"][()].tolist() == record["epochs"] == manifest.epochs
        assert h5["arrays/v"].id.get_offset() is not None  # contiguous: memory-mapped
    np.testing.assert_array_equal(sc.read_sidecar(probed, "probe")["v"], _values())


@pytest.mark.parametrize("axis", ["epochs", "models"])
def test_an_axis_reordered_in_the_record_is_refused(probed, axis):
    data = _record(probed)
    data[axis] = data[axis][::-1]  # the hash covers the file, not the record
    _save_record(probed, data)
    with pytest.raises(SidecarCorruptError, match=rf"holds {axis}\[0\] = 0, its record") as info:
        sc.open_sidecar(probed, "probe", verify=True)
    assert "probe.h5" in str(info.value) and "`weightzoo behaviour" in str(info.value)


def test_an_axis_the_zoo_does_not_have_is_refused_before_the_file(probed):
    data = _record(probed)
    data["models"][0] = 12  # the zoo has positions 0..11
    _save_record(probed, data)
    with pytest.raises(SidecarCorruptError, match=r"positions 0\.\.11"):
        sc.sidecar_records(probed)
    data["models"][0], data["epochs"][0] = 0, 99
    _save_record(probed, data)
    with pytest.raises(SidecarCorruptError, match="lists epochs"):
        sc.open_sidecar(probed, "probe")


def _rewrite_shard(zoo: Path, index: int) -> None:
    """Give shard ``index`` other weights, as regenerating or re-importing under one spec can."""
    manifest = Manifest.load(zoo)
    entry = manifest.shards[index]
    with h5py.File(zoo / entry.file, "a") as h5:
        h5["weights"][0, 0, 0] = h5["weights"][0, 0, 0] + 1
    digest, size = _digest(zoo / entry.file)
    manifest.shards[index] = dataclasses.replace(entry, sha256=digest, bytes=size)
    manifest.save(zoo)
    assert Manifest.load(zoo).spec_fingerprint == manifest.spec_fingerprint
    assert verify_zoo(zoo) == []  # a valid zoo: only its contents changed


def test_a_side_file_of_the_zoos_earlier_contents_is_refused(probed):
    sc.write_sidecar(probed, "part", {"v": _values()[:3]}, models=[0, 1, 2])
    holder = next(
        i for i, e in enumerate(Manifest.load(probed).shards) if e.models[0] <= 0 < e.models[1]
    )
    other = next(i for i, e in enumerate(Manifest.load(probed).shards) if e.models[0] >= 3)
    _rewrite_shard(probed, other)  # holds none of part's models: part stays valid
    np.testing.assert_array_equal(sc.read_sidecar(probed, "part")["v"], _values()[:3])
    with pytest.raises(SidecarCorruptError, match="other contents") as info:
        sc.open_sidecar(probed, "probe")  # covers every model
    assert "probe.json" in str(info.value) and "compute it again" in str(info.value)
    _rewrite_shard(probed, holder)
    with pytest.raises(SidecarCorruptError, match="regenerated or re-imported since"):
        sc.sidecar_records(probed)
    sc.write_sidecar(probed, "probe", {"v": _values()})
    sc.write_sidecar(probed, "part", {"v": _values()[:3]}, models=[0, 1, 2])
    assert sorted(sc.sidecar_records(probed)) == ["part", "probe"]


@pytest.mark.parametrize(
    ("version", "match"), [(1, "before side files held their own identity"), (3, "upgrade")]
)
def test_records_of_other_versions_are_refused(probed, version, match):
    data = _record(probed)
    data["format_version"] = version
    if version == 1:
        del data["content_fingerprint"]
    _save_record(probed, data)
    with pytest.raises(SidecarCorruptError, match=match):
        sc.open_sidecar(probed, "probe")


def test_a_file_without_the_embedded_identity_is_refused(probed):
    path = probed / "sidecars" / "probe.h5"
    with h5py.File(path, "a") as h5:
        del h5.attrs["content_fingerprint"]
    data = _record(probed)
    data["sha256"], data["bytes"] = _digest(path)
    _save_record(probed, data)
    with pytest.raises(SidecarCorruptError, match="holds content_fingerprint=None"):
        sc.open_sidecar(probed, "probe")


def _digest(path: Path) -> tuple[str, int]:
    import hashlib

    blob = path.read_bytes()
    return hashlib.sha256(blob).hexdigest(), len(blob)


# ------------------------------------------------------------------------------ names
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("file", "sidecars/sub/probe.h5"),
        ("file", "sidecars/../zoo.json"),
        ("file", "/etc/passwd"),
        ("file", "sidecars/probe.npy"),
        ("file", "sidecars/other.h5"),
        ("file", "shards/train-000000-c000.h5"),
        ("name", "other"),
    ],
)
def test_a_record_names_only_the_writers_own_file(probed, monkeypatch, field, value):
    data = _record(probed)
    data[field] = value
    _save_record(probed, data)
    opened = _spy_opens(monkeypatch)
    with pytest.raises(SidecarCorruptError, match="the writer names only sidecars/probe.h5"):
        sc.open_sidecar(probed, "probe")
    side_files = [p.name for p in opened if p.parent.name == "sidecars"]
    assert side_files == ["probe.json"]  # the file it names was never opened
    assert not [p for p in opened if p.name in ("passwd", "probe.npy", "train-000000-c000.h5")]


def _spy_opens(monkeypatch) -> list[Path]:
    opened: list[Path] = []
    real = os.open

    def spy(path, *args, **kwargs):
        opened.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(sc.os, "open", spy)
    return opened


def _make(path: Path, kind: str, zoo: Path) -> None:
    """Replace ``path`` by a link inside the zoo, a FIFO or a directory."""
    copy = zoo / "copy"
    shutil.copy(path, copy)
    path.unlink()
    if kind == "symlink":
        path.symlink_to(copy)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
@pytest.mark.parametrize("suffix", [".h5", ".json"])
def test_links_and_special_files_are_refused_before_they_are_opened(
    probed, monkeypatch, kind, suffix
):
    target = probed / "sidecars" / f"probe{suffix}"
    _make(target, kind, probed)
    opened = _spy_opens(monkeypatch)
    words = {"symlink": "a symbolic link", "fifo": "a FIFO", "directory": "a directory"}[kind]
    with pytest.raises(UnsafePathError, match=f"is {words}, not a regular file"):
        sc.open_sidecar(probed, "probe")  # a FIFO opened for reading would block here
    assert target not in opened


def test_a_sidecars_folder_linked_inside_the_zoo_is_refused(probed):
    (probed / "sidecars").rename(probed / "elsewhere")
    (probed / "sidecars").symlink_to(probed / "elsewhere")
    with pytest.raises(UnsafePathError, match="not a directory"):
        sc.list_sidecars(probed)
    with pytest.raises(UnsafePathError, match="not a directory"):
        sc.write_sidecar(probed, "probe", {"v": _values()})


# ------------------------------------------------------------------------------ sizes
def _craft(zoo: Path, build) -> None:
    """Rewrite probe.h5 with ``build(h5)`` adding arrays/v, and a record that matches its hash."""
    record = _record(zoo)
    path = zoo / "sidecars" / "probe.h5"
    path.unlink()
    with h5py.File(path, "w") as h5:
        for key in ("format", "format_version", "zoo", "spec_fingerprint", "name"):
            h5.attrs[key] = record.get(key, "weightzoo-sidecar")
        h5.attrs["content_fingerprint"] = record["content_fingerprint"]
        h5.create_dataset("models", data=np.asarray(record["models"], "<i8"))
        h5.create_dataset("epochs", data=np.asarray(record["epochs"], "<i8"))
        h5.create_group("common").create_dataset("q", data=np.eye(3))
        build(h5.create_group("arrays"))
    record["sha256"], record["bytes"] = _digest(path)
    _save_record(zoo, record)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda g: g.create_dataset("v", data=_values(), chunks=(1, 4, 3)), "contiguous"),
        (lambda g: g.create_dataset("v", data=_values(), compression="gzip"), "contiguous"),
        (lambda g: g.create_dataset("v", data=_values().astype("<f8")), "its record says"),
        (lambda g: g.create_dataset("v", data=_values()[:6]), "its record says"),
        (lambda g: g.__setitem__("v", h5py.SoftLink("/common/q")), "a link"),
        (lambda g: g.__setitem__("v", h5py.ExternalLink("/etc/hosts", "/")), "a link"),
    ],
)
def test_crafted_files_matching_their_record_are_refused(probed, build, match):
    _craft(probed, build)
    with pytest.raises(SidecarCorruptError, match=match):
        sc.open_sidecar(probed, "probe")


def test_external_storage_outside_the_file_is_refused(probed, tmp_path):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(_values().tobytes())
    _craft(
        probed,
        lambda g: g.create_dataset(
            "v", shape=(12, 4, 3), dtype="<f4", external=[(str(outside), 0, _values().nbytes)]
        ),
    )
    with pytest.raises(SidecarCorruptError, match="contiguous"):
        sc.open_sidecar(probed, "probe")


DIMENSION = st.one_of(
    st.integers(min_value=0, max_value=1 << 70), st.just(-1), st.just(True), st.just("3")
)
SHAPE = st.one_of(st.lists(DIMENSION, max_size=40), st.just("12"), st.none())
DTYPE = st.sampled_from(["<f4", "<f8", "|u1", "O", "<U9", "V99999999", "f4,f4", "<c16", "no", 7])
COUNT = st.one_of(st.integers(-5, 1 << 66), st.just(1.5), st.just(None))
AXIS = st.lists(st.integers(-3, 1 << 40), max_size=30)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    change=st.one_of(
        st.tuples(st.just("shape"), SHAPE),
        st.tuples(st.just("dtype"), DTYPE),
        st.tuples(st.just("bytes"), COUNT),
        st.tuples(st.just("models"), AXIS),
        st.tuples(st.just("epochs"), AXIS),
        st.tuples(st.just("shared_shape"), SHAPE),
    )
)
def test_declared_sizes_are_checked_before_anything_is_allocated(probed, monkeypatch, change):
    original = _record(probed)
    file_size = (probed / "sidecars" / "probe.h5").stat().st_size
    data = json.loads(json.dumps(original))
    key, value = change
    if key in ("shape", "dtype"):
        data["arrays"]["v"][key] = value
    elif key == "shared_shape":
        data["shared"]["q"]["shape"] = value
    else:
        data[key] = value
    _save_record(probed, data)
    sizes: list[int] = []
    real_memmap, real_empty = np.memmap, np.empty

    def memmap(*args, **kwargs):
        sizes.append(np.dtype(kwargs["dtype"]).itemsize * int(np.prod(kwargs["shape"])))
        return real_memmap(*args, **kwargs)

    def empty(shape, dtype=float, *args, **kwargs):
        sizes.append(np.dtype(dtype).itemsize * int(np.prod(shape)))
        return real_empty(shape, dtype, *args, **kwargs)

    monkeypatch.setattr(sc.np, "memmap", memmap)
    monkeypatch.setattr(sc.np, "empty", empty)
    try:
        side, refused = _open_or_refusal(probed)
    finally:
        monkeypatch.undo()
        _save_record(probed, original)
    assert all(size <= file_size for size in sizes)
    if refused is not None:
        assert "\n" not in str(refused) and "probe" in str(refused)
    else:  # accepted only when the change left the record as it was
        np.testing.assert_array_equal(side["v"], _values())
        assert side.record == sc.SidecarRecord.from_json(original, "x")
        side.close()


def _open_or_refusal(zoo: Path) -> tuple[sc.Sidecar | None, Exception | None]:
    try:
        return sc.open_sidecar(zoo, "probe"), None
    except HOSTILE_ERRORS as exc:
        return None, exc


def _store_shared(zoo: Path, shape: tuple[int, ...]) -> None:
    """Replace shared array ``q`` by an empty one of ``shape``, file and record agreeing."""
    path = zoo / "sidecars" / "probe.h5"
    with h5py.File(path, "r+") as h5:
        del h5["common/q"]
        h5["common"].create_dataset("q", shape=shape, dtype="<f4")
    record = _record(zoo)
    record["shared"]["q"] = {"dtype": "<f4", "shape": list(shape)}
    record["sha256"], record["bytes"] = _digest(path)
    _save_record(zoo, record)


@pytest.mark.parametrize(
    "shape", [(0, 2**62), (0, 2**41), (2**41, 0), (0, 2**40, 2**22), (0,) + (2**20,) * 3]
)
def test_empty_arrays_of_absurd_dimensions_are_refused(probed, capsys, shape):
    # 0 bytes on disk, yet numpy cannot make them: each dimension and their extent is bounded
    _store_shared(probed, shape)
    for read in (sc.read_sidecar, sc.open_sidecar, sc.sidecar_records):
        with pytest.raises(SidecarCorruptError) as info:
            read(probed, "probe") if read is not sc.sidecar_records else read(probed)
        message = str(info.value)
        assert "\n" not in message and "probe.json" in message and str(shape[1]) in message
        assert "dimensions up to 2**40" in message


@pytest.mark.parametrize("shape", [(0, 2**40), (0, 5), (2**20, 0, 2**20)])
def test_empty_arrays_within_the_bounds_read_back(probed, shape):
    _store_shared(probed, shape)
    data = sc.read_sidecar(probed, "probe")
    assert data["q"].shape == shape and data["q"].dtype == np.float32
    np.testing.assert_array_equal(data["v"], _values())


def test_an_oversized_record_is_refused_unread(probed):
    path = probed / "sidecars" / "probe.json"
    with path.open("r+b") as handle:
        handle.truncate(sc._record_limit(Manifest.load(probed)) + 1)  # sparse: no disk used
    with pytest.raises(SidecarCorruptError, match="more than a record of zoo"):
        sc.open_sidecar(probed, "probe")


# ------------------------------------------------------------------------------ faults
def _fail_writes(
    monkeypatch, *, after: int = 0, exc: BaseException | None = None, armed: bool = True
) -> dict:
    """Fail every write after ``after`` of them once armed (ENOSPC unless ``exc``)."""
    state = {"armed": armed, "writes": 0}
    real = os.pwrite

    def pwrite(fd, data, offset):
        if state["armed"]:
            state["writes"] += 1
            if state["writes"] > after:
                raise exc or OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(sc.os, "pwrite", pwrite)
    return state


def _arm_after(monkeypatch, state: dict, step: str) -> None:
    """Arm the failing writes once the writer has done ``step`` (one of its functions)."""
    real = getattr(sc, step)

    def armed(*args, **kwargs):
        out = real(*args, **kwargs)
        state["armed"] = True
        return out

    monkeypatch.setattr(sc, step, armed)


# structure: h5py's writes of the attributes and axes; arrays: the streamed arrays, in 64-byte
# writes. Each is armed once the writer holds the zoo's lock.
WHERE = {
    "structure": ("_temporary", 0),
    "mid-structure": ("_temporary", 3),
    "arrays": ("_write_layout", 3),
}


@pytest.mark.parametrize("where", list(WHERE))
def test_a_full_disk_is_one_line_leaves_nothing_and_a_rerun_succeeds(probed, monkeypatch, where):
    new = {"v": _values() + 1}
    step, after = WHERE[where]
    state = _fail_writes(monkeypatch, after=after, armed=False)
    _arm_after(monkeypatch, state, step)
    monkeypatch.setattr(sc, "_WRITE_BLOCK", 64)
    with pytest.raises(StorageWriteError, match="No space left on device") as info:
        sc.write_sidecar(probed, "probe", new)
    monkeypatch.undo()
    assert state["writes"] == after + 1  # the failure was reached, once
    text = str(info.value)
    assert info.value.errno == errno.ENOSPC and "\n" not in text
    assert text.startswith(f"cannot write side file {probed}/sidecars/probe.h5")
    assert f"`weightzoo behaviour {probed} --name probe`" in text
    assert _leftovers(probed) == []
    np.testing.assert_array_equal(sc.read_sidecar(probed, "probe")["v"], _values())  # old kept
    sc.write_sidecar(probed, "probe", new)
    np.testing.assert_array_equal(sc.read_sidecar(probed, "probe")["v"], new["v"])


def test_an_interrupt_while_writing_removes_the_temporary(probed, monkeypatch):
    _fail_writes(monkeypatch, after=2, exc=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        sc.write_sidecar(probed, "probe", {"v": _values() * 2})
    monkeypatch.undo()
    assert _leftovers(probed) == []
    np.testing.assert_array_equal(sc.read_sidecar(probed, "probe")["v"], _values())


def test_a_rerun_removes_the_stale_temporaries_it_recognises_and_nothing_else(probed):
    folder = probed / "sidecars"
    ours = [".probe.h5.0123456789abcdef.tmp", ".other.json.fedcba9876543210.tmp"]
    earlier = [".behaviour.h5.k2_x9q0z.tmp"]  # the 8 characters of an earlier writer
    foreign = [".probe.h5.tmp", "probe.h5.0123456789abcdef.tmp", ".x.h5.0123.tmp", "notes.txt"]
    for name in ours + earlier + foreign:
        (folder / name).write_bytes(b"left by a killed writer")
    keep = probed / "keep.txt"
    keep.write_text("not the writer's")
    (folder / ".link.h5.00000000000000ff.tmp").symlink_to(keep)
    sc.write_sidecar(probed, "probe", {"v": _values() + 5})
    left = sorted(p.name for p in folder.iterdir())
    assert not set(ours + earlier) & set(left)
    assert set(foreign) | {".link.h5.00000000000000ff.tmp"} <= set(left)
    assert keep.read_text() == "not the writer's"


# ------------------------------------------------------------------------------ the command
@pytest.fixture(scope="module")
def mlds_zoo(tmp_path_factory):
    """A tiny MLDS zoo (8 models x 2 checkpoints) that `weightzoo behaviour` can run."""
    out = tmp_path_factory.mktemp("behaviour") / "ds1"
    generate(tiny("ds1"), out, progress=False)
    return out


def _errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if "weightzoo: error" in line]


def test_behaviour_on_a_full_disk_is_one_line_and_a_rerun_succeeds(mlds_zoo, tmp_path, capsys):
    zoo = tmp_path / "zoo"
    shutil.copytree(mlds_zoo, zoo)
    with pytest.MonkeyPatch.context() as patch:
        _fail_writes(patch, after=5)
        assert run(["behaviour", str(zoo), "--n", "4"]) == 1
    errors = _errors(capsys.readouterr().err)
    assert len(errors) == 1, errors
    assert str(zoo / "sidecars" / "behaviour.h5") in errors[0]
    assert "No space left on device" in errors[0] and f"weightzoo behaviour {zoo}" in errors[0]
    assert _leftovers(zoo) == [] and not (zoo / "sidecars" / "behaviour.json").exists()
    assert run(["behaviour", str(zoo), "--n", "4"]) == 0
    assert sc.read_sidecar(zoo, "behaviour")["outputs"].shape[:3] == (8, 2, 4)
    assert _leftovers(zoo) == []


def _mount(point: Path, size: str, *, remount: bool = False) -> bool:
    options = f"remount,size={size}" if remount else f"size={size}"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True
    )
    return done.returncode == 0


def test_behaviour_on_a_real_full_tmpfs_ends_cleanly(mlds_zoo, tmp_path):
    point = tmp_path / "small"
    point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None or not _mount(point, "600k"):
        pytest.skip("mounting a tmpfs needs root")
    try:
        zoo = point / "zoo"
        shutil.copytree(mlds_zoo, zoo)
        free = shutil.disk_usage(point).free
        queries = free // (8 * 2 * 8 * 8 * 4) + 64  # outputs bigger than the free space
        command = [sys.executable, "-m", "weightzoo.cli", "behaviour", str(zoo)]
        command += ["--n", str(queries)]
        env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
        first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        assert first.returncode == 1, first.stderr
        assert len(_errors(first.stderr)) == 1 and "No space left on device" in first.stderr
        assert "Traceback" not in first.stderr and "Exception ignored" not in first.stderr
        assert _leftovers(zoo) == []
        assert _mount(point, "4m", remount=True)
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        assert second.returncode == 0, second.stderr
        assert sc.read_sidecar(zoo, "behaviour")["outputs"].shape[2] == queries
    finally:
        subprocess.run(["umount", str(point)], capture_output=True)
