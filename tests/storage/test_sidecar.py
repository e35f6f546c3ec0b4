"""Side files: written atomically beside the shards, hashed, verified, kept inside the zoo."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from weightzoo.errors import (
    EpochError,
    InvalidOptionError,
    SidecarCorruptError,
    SidecarNotFoundError,
    UnknownColumnError,
    UnsafePathError,
    ZooLockedError,
)
from weightzoo.storage import sidecar as sc
from weightzoo.storage.manifest import Manifest
from weightzoo.storage.verify import verify_zoo
from weightzoo.storage.writer import ZooLock
from weightzoo.zoo import Zoo


def _arrays(models=12, checkpoints=4):
    values = np.arange(models * checkpoints * 3, dtype=np.float32).reshape(models, checkpoints, 3)
    return {"outputs": values, "sharp": values[..., 0].astype(np.float64) * -1}


def test_round_trip_and_pair_lookup(toy_zoo):
    arrays = _arrays()
    record = sc.write_sidecar(
        toy_zoo, "probe", arrays, {"kind": "random", "n": 3}, shared={"queries": np.eye(3)}
    )
    assert record.models == list(range(12)) and record.epochs == [0, 1, 2, 3]
    assert sc.list_sidecars(toy_zoo) == ["probe"]
    back = sc.read_sidecar(toy_zoo, "probe")
    np.testing.assert_array_equal(back["outputs"], arrays["outputs"])
    np.testing.assert_array_equal(back["sharp"], arrays["sharp"])
    np.testing.assert_array_equal(back["queries"], np.eye(3))
    with sc.open_sidecar(toy_zoo, "probe") as side:
        assert side.attrs == {"kind": "random", "n": 3}
        got = side.read("outputs", [7, 2, 7], [3, 0, 1])
        np.testing.assert_array_equal(got, arrays["outputs"][[7, 2, 7], [3, 0, 1]])
        np.testing.assert_array_equal(side.read("sharp", [5], 2), arrays["sharp"][[5], [2]])
        with pytest.raises(UnknownColumnError, match="no model"):
            side.read("outputs", [12], [0])
        with pytest.raises(EpochError, match="no epoch"):
            side.read("outputs", [0], [9])
        with pytest.raises(UnknownColumnError, match="queries"):
            side.read("queries", [0], [0])  # shared, not per checkpoint
        copy = pickle.loads(pickle.dumps(side))  # as DataLoader workers get it
    np.testing.assert_array_equal(copy.read("outputs", [1], [1]), arrays["outputs"][[1], [1]])
    copy.close()
    assert verify_zoo(toy_zoo) == []  # shards untouched, the zoo reads as before
    assert len(Zoo(toy_zoo).rows()) == 12
    assert not [p for p in (toy_zoo / "sidecars").iterdir() if p.name.startswith(".")]


def test_subset_of_models_and_epochs(toy_zoo):
    values = np.ones((2, 1, 4), np.float32) * np.array([[[1]], [[2]]], np.float32)
    sc.write_sidecar(toy_zoo, "part", {"v": values}, models=[9, 4], epochs=[3])
    side = sc.open_sidecar(toy_zoo, "part")
    np.testing.assert_array_equal(side.read("v", [4, 9], [3, 3])[:, 0], [2, 1])
    with pytest.raises(UnknownColumnError):
        side.read("v", [0], [3])
    side.close()


@pytest.mark.parametrize(
    ("arrays", "options", "match"),
    [
        ({"v": np.zeros((12, 3))}, {}, "must start with"),
        ({"v": np.zeros((12, 4), dtype=object)}, {}, "numeric"),
        ({"../v": np.zeros((12, 4))}, {}, "name"),
        ({"models": np.zeros((12, 4))}, {}, "reserved"),
        ({"v": np.zeros((1, 4))}, {"models": [12]}, "positions"),
        ({"v": np.zeros((12, 1))}, {"epochs": [7]}, "no checkpoint"),
        ({}, {}, "at least one"),
    ],
)
def test_bad_input_is_refused(toy_zoo, arrays, options, match):
    with pytest.raises(InvalidOptionError, match=match):
        sc.write_sidecar(toy_zoo, "bad", arrays, **options)
    with pytest.raises(InvalidOptionError, match="name"):
        sc.write_sidecar(toy_zoo, "../escape", _arrays())
    assert sc.list_sidecars(toy_zoo) == []


def test_damage_is_detected(toy_zoo):
    sc.write_sidecar(toy_zoo, "probe", _arrays())
    path = toy_zoo / "sidecars" / "probe.h5"
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(data))
    with pytest.raises(SidecarCorruptError, match="sha256"):
        sc.read_sidecar(toy_zoo, "probe")
    path.write_bytes(bytes(data[:-100]))
    with pytest.raises(SidecarCorruptError, match="bytes"):
        sc.open_sidecar(toy_zoo, "probe", verify=False)
    path.unlink()
    with pytest.raises(SidecarNotFoundError, match="compute it again"):
        sc.read_sidecar(toy_zoo, "probe")
    (toy_zoo / "sidecars" / "probe.json").unlink()
    with pytest.raises(SidecarNotFoundError, match="it has none"):
        sc.read_sidecar(toy_zoo, "probe")


def test_a_side_file_of_another_zoo_is_refused(toy_zoo):
    sc.write_sidecar(toy_zoo, "probe", _arrays())
    manifest = Manifest.load(toy_zoo)
    manifest.spec_fingerprint = "f" * 64
    manifest.save(toy_zoo)
    with pytest.raises(SidecarCorruptError, match="computed for zoo"):
        sc.open_sidecar(toy_zoo, "probe")


def test_a_replaced_file_is_refused_after_pickling(toy_zoo):
    sc.write_sidecar(toy_zoo, "probe", _arrays())
    side = sc.open_sidecar(toy_zoo, "probe")
    copy = pickle.loads(pickle.dumps(side))
    side.close()
    sc.write_sidecar(toy_zoo, "probe", {"outputs": _arrays()["outputs"] + 1})
    with pytest.raises(SidecarCorruptError, match="replaced"):
        copy.read("outputs", [0], [0])


def test_links_out_of_the_zoo_are_refused(toy_zoo, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (toy_zoo / "sidecars").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside zoo"):
        sc.write_sidecar(toy_zoo, "probe", _arrays())
    assert list(outside.iterdir()) == []
    (toy_zoo / "sidecars").unlink()
    sc.write_sidecar(toy_zoo, "probe", _arrays())
    target = outside / "probe.h5"
    os.replace(toy_zoo / "sidecars" / "probe.h5", target)
    (toy_zoo / "sidecars" / "probe.h5").symlink_to(target)
    with pytest.raises(UnsafePathError, match="outside zoo"):
        sc.read_sidecar(toy_zoo, "probe")


def test_a_failed_write_keeps_the_old_side_file(toy_zoo, monkeypatch):
    sc.write_sidecar(toy_zoo, "probe", _arrays())

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(sc.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        sc.write_sidecar(toy_zoo, "probe", {"outputs": _arrays()["outputs"] * 0})
    monkeypatch.undo()
    np.testing.assert_array_equal(
        sc.read_sidecar(toy_zoo, "probe")["outputs"], _arrays()["outputs"]
    )
    assert not [p for p in (toy_zoo / "sidecars").iterdir() if p.name.startswith(".")]


def test_one_writer_at_a_time(toy_zoo):
    lock = ZooLock(toy_zoo)
    try:
        with pytest.raises(ZooLockedError):
            sc.write_sidecar(toy_zoo, "probe", _arrays())
    finally:
        lock.release()
