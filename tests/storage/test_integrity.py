"""Faults that once gave wrong data silently or lost data: each must now be refused by name."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import weightzoo
from helpers.integrity_zoo import LAYOUT, open_writer, write_all, zoo_weights
from weightzoo.cli import run
from weightzoo.errors import (
    EmptySelectionError,
    EpochError,
    InvalidOptionError,
    ManifestError,
    ShardChangedError,
    ShardCorruptError,
    SpecMismatchError,
    UnknownSplitError,
    UnsafePathError,
    WeightzooError,
    ZooLockedError,
    ZooNotFoundError,
)
from weightzoo.storage import Layout, Manifest, ZooReader, verify_zoo
from weightzoo.storage import writer as writer_module

SRC = str(Path(weightzoo.__file__).resolve().parents[1])


@pytest.fixture
def zoo(tmp_path) -> Path:
    path = tmp_path / "zoo"
    with open_writer(path) as writer:
        write_all(writer, zoo_weights())
    return path


def shard_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((path / "shards").glob("*.h5"))}


def child(code: str, *args: str) -> subprocess.Popen:
    """A Python process importing this checkout's weightzoo, with the tests directory importable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(Path(__file__).parents[1])])}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# -- 1. one writer per zoo ----------------------------------------------------------------------


def test_second_writer_in_another_process_is_refused_with_its_pid(tmp_path):
    path = tmp_path / "zoo"
    holder = child(
        """
        import sys
        from helpers.integrity_zoo import open_writer
        writer = open_writer(sys.argv[1])
        print("locked", flush=True)
        sys.stdin.read()  # hold the lock until the parent closes our stdin
        """,
        str(path),
    )
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        with pytest.raises(ZooLockedError, match=f"another process \\(pid {holder.pid}\\)"):
            open_writer(path, spec={"a": 2})
        with pytest.raises(ZooLockedError):
            open_writer(path)  # the same spec too: two runs would share the shards
    finally:
        holder.stdin.close()
        holder.wait()
    # The holder is gone, so its lock is too.
    open_writer(path).close()


def test_lock_is_released_by_a_crash_and_stale_temporaries_are_removed(tmp_path):
    path = tmp_path / "zoo"
    crashed = child(
        """
        import os, sys
        from helpers.integrity_zoo import open_writer
        writer = open_writer(sys.argv[1])
        os._exit(3)  # no cleanup: only the OS releases the lock
        """,
        str(path),
    )
    assert crashed.wait() == 3, crashed.stderr.read()
    stale = [path / "shards" / "train-000000-c000.h5.999-abcd.tmp", path / ".zoo.json.x1.tmp"]
    for file in stale:
        file.write_bytes(b"partial")
    keep = path / "shards" / "notes.txt"
    keep.write_text("not ours")
    writer = open_writer(path)
    assert not any(file.exists() for file in stale) and keep.exists()
    assert (path / "zoo.json").stat().st_mode & 0o777 == 0o644
    with pytest.raises(ZooLockedError, match="another writer in this process"):
        open_writer(path)
    writer.close()
    with pytest.raises(ZooLockedError, match="closed"):
        write_all(writer, zoo_weights())


def test_a_child_forked_under_the_lock_does_not_keep_the_zoo_locked(tmp_path):
    # a training worker that outlives its killed parent by a moment must not block the rerun
    (tmp_path / "zoo").mkdir()
    lock = writer_module.ZooLock(tmp_path / "zoo")
    read_end, write_end = os.pipe()
    started_read, started_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child says it runs, then waits until the parent has locked again
        os.close(write_end)
        os.write(started_write, b"x")
        os.read(read_end, 1)
        os._exit(0 if not lock.held else 1)
    os.close(read_end)
    os.close(started_write)
    try:
        assert os.read(started_read, 1) == b"x"
        lock.release()
        again = writer_module.ZooLock(tmp_path / "zoo")  # the child still lives
        again.release()
    finally:
        os.write(write_end, b"x")
        os.close(write_end)
        os.close(started_read)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # the child's copy was dropped


def test_a_lock_that_fails_for_another_reason_closes_its_file(tmp_path, monkeypatch):
    path = tmp_path / "zoo"
    open_writer(path).close()

    def no_locks(fd, operation):
        raise OSError(37, "No locks available")  # as on a file system without flock

    monkeypatch.setattr(writer_module.fcntl, "flock", no_locks)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with pytest.raises(OSError, match="No locks available"):
            writer_module.ZooLock(path)
    assert len(os.listdir("/proc/self/fd")) == before


def test_temporary_names_are_unique_per_writer(tmp_path, monkeypatch):
    seen = []
    original = writer_module.write_shard_file

    def spy(path, content):
        assert isinstance(content, writer_module.ShardContent)
        assert all(type(i) is int for i in (*content.models, *content.epochs))
        seen.append(Path(path).name)
        original(path, content)

    monkeypatch.setattr(writer_module, "write_shard_file", spy)
    for name in ("a", "b"):
        with open_writer(tmp_path / name) as writer:
            write_all(writer, zoo_weights())
    first, second = seen[0], seen[len(seen) // 2]
    assert first.startswith(f"train-000000-c000.h5.{os.getpid()}-") and first.endswith(".tmp")
    assert first != second  # same shard, same process, two writers: two names


# -- 2. shards carry their identity; manifests are checked ---------------------------------------


def test_shards_carry_their_identity_and_are_byte_identical(zoo, tmp_path):
    with h5py.File(zoo / "shards" / "val-000004-c001.h5") as handle:
        attrs = dict(handle.attrs)
    manifest = Manifest.load(zoo)
    assert attrs["spec_fingerprint"] == manifest.spec_fingerprint and attrs["split"] == "val"
    assert list(attrs["models"]) == [4, 5] and list(attrs["epochs"]) == [10]
    with open_writer(tmp_path / "again") as writer:
        write_all(writer, zoo_weights())
    assert shard_bytes(tmp_path / "again") == shard_bytes(zoo)


MUTATIONS = ("first", "last", "split", "epochs", "drop", "duplicate", "negative", "beyond")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(MUTATIONS),
    index=st.integers(0, 7),
    delta=st.integers(-6, 6).filter(bool),
)
def test_tampered_manifests_are_refused(zoo, kind, index, delta):
    data = json.loads((zoo / "zoo.json").read_text())
    assert Manifest.from_dict(json.loads(json.dumps(data))).finished
    shards = data["shards"]
    row = shards[index % len(shards)]
    if kind == "first":
        row["models"][0] += delta
    elif kind == "last":
        row["models"][1] += delta
    elif kind == "split":
        others = [s for s in ("train", "val", "test") if s != row["split"]]
        row["split"] = others[delta % 2]
    elif kind == "epochs":
        row = next(r for r in shards[index % len(shards) :] + shards if len(r["epochs"]) > 1)
        row["epochs"] = row["epochs"][::-1]
    elif kind == "drop":
        shards.remove(row)
    elif kind == "duplicate":
        shards.append({**row, "file": row["file"] + "x"})
    elif kind == "negative":
        row["models"] = [-abs(delta), row["models"][1]]
    else:
        row["models"][1] = data["num_models"] + abs(delta)
    with pytest.raises(ManifestError):
        Manifest.from_dict(data)


def edit(zoo: Path, change) -> None:
    data = json.loads((zoo / "zoo.json").read_text())
    change(data)
    (zoo / "zoo.json").write_text(json.dumps(data))


def test_overlap_is_refused_by_info_verify_and_datasets(zoo, capsys):
    edit(zoo, lambda d: d["shards"][0]["models"].__setitem__(1, 3))
    for call in (
        lambda: weightzoo.Zoo(zoo).info(),
        lambda: verify_zoo(zoo),
        lambda: weightzoo.ZooDataset(zoo, split="all", epochs="all"),
    ):
        with pytest.raises(ManifestError, match="overlap|no shard holds|split"):
            call()
    assert run(["verify", str(zoo)]) == 1 and run(["info", str(zoo)]) == 1


def rehash(zoo: Path, file: str) -> None:
    """Make the manifest's sha256 and size agree with whatever the file now holds."""
    from weightzoo.storage.hashing import sha256_file

    path = zoo / file

    def change(data):
        for row in data["shards"]:
            if row["file"] == file:
                row.update(sha256=sha256_file(path), bytes=path.stat().st_size)

    edit(zoo, change)


def test_shard_of_another_zoo_with_the_hash_updated_is_refused(zoo, tmp_path):
    other = tmp_path / "other"
    with open_writer(other, spec={"a": 2}) as writer:  # same layout, another spec
        write_all(writer, zoo_weights(seed=1))
    file = "shards/train-000002-c000.h5"
    shutil.copyfile(other / file, zoo / file)
    rehash(zoo, file)
    with pytest.raises(ShardCorruptError, match="spec_fingerprint"):
        ZooReader(zoo)
    assert [e.file for e, _ in verify_zoo(zoo)] == [file]
    with pytest.raises(ShardCorruptError):
        weightzoo.Zoo(zoo).info()


def test_shards_swapped_within_a_zoo_are_refused(zoo):
    a, b = "shards/train-000000-c000.h5", "shards/train-000002-c000.h5"
    (zoo / a).rename(zoo / "tmp")
    (zoo / b).rename(zoo / a)
    (zoo / "tmp").rename(zoo / b)
    rehash(zoo, a)
    rehash(zoo, b)
    with pytest.raises(ShardCorruptError, match="models="):
        weightzoo.ZooDataset(zoo, split="train", epochs="all")
    assert len(verify_zoo(zoo)) == 2


def test_old_shards_without_a_spec_fingerprint_get_the_weaker_check(zoo):
    file = "shards/test-000005-c000.h5"
    with h5py.File(zoo / file, "r+") as handle:
        del handle.attrs["spec_fingerprint"]
    rehash(zoo, file)
    assert ZooReader(zoo, split="test").num_models == 1  # zoo, split, models, epochs still hold
    with h5py.File(zoo / file, "r+") as handle:
        del handle.attrs["split"]
    rehash(zoo, file)
    with pytest.raises(ShardCorruptError, match="no attribute 'split'"):
        ZooReader(zoo, split="test")


# -- 3. a map is tied to the file that was validated ----------------------------------------------


def test_shard_replaced_after_validation_is_not_mapped(zoo):
    data = weightzoo.ZooDataset(zoo, split="train", epochs="all", filter_viable=False)
    file = zoo / "shards" / "train-000000-c000.h5"
    other = zoo / "shards" / "train-000002-c000.h5"
    assert file.stat().st_size == other.stat().st_size
    shutil.copyfile(other, zoo / "replacement")
    os.replace(zoo / "replacement", file)  # same size, another file
    with pytest.raises(ShardChangedError, match="replaced after it was validated"):
        data[0]
    assert isinstance(ShardChangedError("x"), ShardCorruptError)


def test_shard_rewritten_in_place_is_detected_by_its_mtime(zoo):
    reader = ZooReader(zoo, split="test")
    path = zoo / "shards" / "test-000005-c000.h5"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    with pytest.raises(ShardChangedError):
        reader.read("weights", [0], [0])


def test_validated_map_serves_the_stored_rows(zoo):
    reader = ZooReader(zoo)
    expected = zoo_weights()
    models, epochs = np.array([5, 0, 3, 4, 1]), np.array([2, 0, 1, 2, 2])
    np.testing.assert_array_equal(reader.read("weights", models, epochs), expected[models, epochs])


# -- 4. links out of the zoo ----------------------------------------------------------------------


def test_reader_refuses_a_shard_linked_from_outside(zoo, tmp_path):
    file = zoo / "shards" / "val-000004-c000.h5"
    outside = tmp_path / "elsewhere.h5"
    file.rename(outside)
    file.symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside the zoo"):
        ZooReader(zoo, split="val")
    assert [e.file for e, _ in verify_zoo(zoo)] == ["shards/val-000004-c000.h5"]
    inside = zoo / "kept" / "val.h5"
    inside.parent.mkdir()
    outside.rename(inside)
    file.unlink()
    file.symlink_to(inside)  # a link that stays in the zoo is fine
    assert ZooReader(zoo, split="val").num_models == 1


@pytest.mark.parametrize(
    ("repo", "allowed"), [("datasets--owner--zoo", True), ("my-experiments", False)]
)
def test_only_a_hub_cache_snapshot_may_link_into_its_blobs(zoo, tmp_path, repo, allowed):
    # huggingface_hub stores snapshots/<commit>/<file> as links into ../../blobs; any other
    # directory that happens to be named "snapshots" gets no such allowance.
    snapshot = tmp_path / repo / "snapshots" / "abc123"
    blobs = tmp_path / repo / "blobs"
    blobs.mkdir(parents=True)
    shutil.copytree(zoo, snapshot)
    file = snapshot / "shards" / "val-000004-c000.h5"
    file.rename(blobs / "0123abcd")
    file.symlink_to(blobs / "0123abcd")
    if allowed:
        assert ZooReader(snapshot, split="val").num_models == 1
    else:
        with pytest.raises(UnsafePathError, match="outside the zoo"):
            ZooReader(snapshot, split="val")


# -- 5. a stub without shards may be replaced -----------------------------------------------------


def test_stub_without_shards_is_replaced_but_a_started_zoo_is_not(tmp_path):
    path = tmp_path / "zoo"
    open_writer(path, spec={"a": 1}).close()  # failed before its first shard
    with open_writer(path, spec={"a": 2}) as writer:
        assert Manifest.load(path).spec == {"a": 2}
        write_all(writer, zoo_weights())
    with pytest.raises(SpecMismatchError, match="differing fields: a"):
        open_writer(path, spec={"a": 3})


# -- 6. killed at each write step ----------------------------------------------------------------

STEPS = ("before_shard_rename", "after_shard_rename", "before_manifest_replace")


@pytest.mark.parametrize(
    ("step", "occurrence"),
    [(step, 3) for step in STEPS]
    + [
        ("after_manifest_replace", 3),
        ("before_manifest_replace", 1),
        ("after_manifest_replace", 9),
    ],
)
def test_killed_writer_leaves_a_zoo_that_resumes_byte_identical(zoo, tmp_path, step, occurrence):
    path = tmp_path / "killed"
    killed = child(
        """
        import os, sys
        from weightzoo.storage import writer as writer_module
        from helpers.integrity_zoo import open_writer, write_all, zoo_weights
        step, occurrence, seen = sys.argv[2], int(sys.argv[3]), []

        def hook(name):
            seen.append(name)
            if seen.count(step) == occurrence:
                os._exit(9)

        writer_module.fault_hook = hook
        write_all(open_writer(sys.argv[1]), zoo_weights())
        """,
        str(path),
        step,
        str(occurrence),
    )
    assert killed.wait() == 9, killed.stderr.read()
    # What a reader sees now: no zoo yet, or a valid manifest whose every shard is complete.
    if not (path / "zoo.json").exists():
        assert (step, occurrence) == ("before_manifest_replace", 1)
        with pytest.raises(ZooNotFoundError):
            weightzoo.ZooDataset(path)
        with open_writer(path) as writer:
            write_all(writer, zoo_weights())
        assert shard_bytes(path) == shard_bytes(zoo)
        return
    manifest = Manifest.load(path)
    assert verify_zoo(path) == []
    reader = ZooReader(path)  # opens and checks every listed shard
    models, epochs = np.nonzero(reader.shard_of >= 0)
    stored = zoo_weights()[reader.positions[models], epochs]
    np.testing.assert_array_equal(reader.read("weights", models, epochs), stored)
    assert not manifest.finished or step == "after_manifest_replace"
    for shard in (path / "shards").glob("*.h5"):
        with h5py.File(shard) as handle:  # a renamed shard is always a whole file
            assert handle["weights"].shape[2] == LAYOUT.num_params
    # Resume in this process: the same bytes as a zoo written in one go.
    with open_writer(path) as writer:
        write_all(writer, zoo_weights())
    assert shard_bytes(path) == shard_bytes(zoo)
    resumed = Manifest.load(path)
    assert resumed.finished and resumed.shards == Manifest.load(zoo).shards
    assert not list(path.rglob("*.tmp"))


# -- 7. named errors for bad options --------------------------------------------------------------


def test_empty_split_is_refused_unless_allowed(tmp_path):
    path = tmp_path / "zoo"
    with open_writer(path) as writer:
        write_all(writer, zoo_weights())
    data = weightzoo.ZooDataset(path, split="val", epochs="all", targets="kind")
    assert len(data) == 3  # one val model x three checkpoints
    manifest = json.loads((path / "zoo.json").read_text())
    manifest["shards"] = [r for r in manifest["shards"] if r["split"] != "val"]
    manifest["finished"] = False
    (path / "zoo.json").write_text(json.dumps(manifest))
    with pytest.raises(EmptySelectionError, match="split 'val'"):
        weightzoo.ZooDataset(path, split="val", targets=("kind", "model_id"))
    empty = weightzoo.ZooDataset(path, split="val", targets=("kind", "model_id"), allow_empty=True)
    assert len(empty) == 0 and list(empty.loader(batch_size=4)) == []


def test_width_mismatch_between_manifest_and_shard_is_named(zoo):
    wider = Layout.from_shapes({"w": (3, 5), "b": (3,)}).to_json()
    edit(zoo, lambda d: d.update(layout=wider))
    with pytest.raises(ShardCorruptError, match="parameters"):
        weightzoo.ZooDataset(zoo)
    edit(zoo, lambda d: d.update(layout=LAYOUT.to_json(), stats_names=["mean", "var"]))
    with pytest.raises(ShardCorruptError, match="statistics"):
        weightzoo.ZooDataset(zoo, features="stats")


def test_category_missing_from_the_manifest_is_named(zoo):
    edit(zoo, lambda d: d["categories"].update(kind=["b"]))
    with pytest.raises(ManifestError, match="'kind'.*\\['a'\\]"):
        weightzoo.ZooDataset(zoo, targets="kind")


@pytest.mark.parametrize("epoch", [np.int64(5), torch.tensor(5), 5])
def test_integer_like_epochs_are_accepted(zoo, epoch):
    data = weightzoo.ZooDataset(zoo, split="all", epochs=epoch, targets="epoch")
    assert data.epochs == [5] and int(data[0]["epoch"]) == 5
    assert weightzoo.ZooDataset(zoo, epochs=[np.int64(0), torch.tensor(10)]).epochs == [0, 10]


@pytest.mark.parametrize("epoch", [1.5, 5.0, "5", [0, 2.5], True])
def test_non_integer_epochs_are_refused(zoo, epoch):
    with pytest.raises(EpochError, match="int"):
        weightzoo.ZooDataset(zoo, epochs=epoch)


def test_tensor_indices_and_bad_options(zoo):
    data = weightzoo.ZooDataset(zoo, split="all", epochs="all", ids=True)
    single = data[torch.tensor(3)]
    assert all(torch.equal(single[k], data[3][k]) for k in single)
    assert torch.equal(data[torch.tensor([3, 1])]["weights"][1], data[1]["weights"])
    assert torch.equal(data[np.int32(2)]["weights"], data[2]["weights"])
    for bad in (1.5, "3"):
        with pytest.raises(InvalidOptionError):
            data[bad]
    for split in (5, 2.0, [1]):
        with pytest.raises(UnknownSplitError, match="split must be"):
            weightzoo.ZooDataset(zoo, split=split)
    with pytest.raises(InvalidOptionError, match="targets"):
        weightzoo.ZooDataset(zoo, targets=7)
    with pytest.raises(InvalidOptionError, match="worker_type"):
        data.loader(worker_type="fiber")
    for size in (0, -2, 2.5, True):
        with pytest.raises(InvalidOptionError, match="batch_size"):
            data.loader(batch_size=size)
    with pytest.raises(InvalidOptionError, match="mode"):
        weightzoo.Trajectories(zoo, mode="zigzag")
    assert issubclass(InvalidOptionError, ValueError) and issubclass(
        InvalidOptionError, WeightzooError
    )


def test_threaded_loader_yields_what_batch_reads(zoo):
    data = weightzoo.ZooDataset(zoo, split="all", epochs="all", ids=True, filter_viable=False)
    single = list(data.loader(batch_size=4, shuffle=True, seed=1))
    threaded = data.loader(batch_size=4, shuffle=True, seed=1, num_workers=2)
    assert len(threaded) == len(single) == 5
    for a, b in zip(single, threaded, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
