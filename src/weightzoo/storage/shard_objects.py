"""A shard is self-contained: every HDF5 object in it is a plain dataset stored in its file.

The sha256 in a manifest covers the shard file only, and HDF5 can point elsewhere: an external
link, a soft link, a virtual dataset or external raw storage would make a read return another
file's bytes while ``verify`` passes. A declared shape is also free of cost in HDF5 (an unwritten
10 GB dataset fits in a few hundred bytes), so sizes are only trusted once the file is seen to hold
them. :func:`check_shard_objects` walks the shard's links without following any, and checks
every dataset against what the writer makes (``storage/writer.py``) before anything is read:
its name, layout, storage, filters, dtype and shape. It runs once per shard open.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from weightzoo.errors import UnsafeShardError
from weightzoo.storage.manifest import Manifest, ShardEntry

ROW_DATASETS = ("weights", "stats")
MAX_STRING_BYTES = 4096  # a model column's string (a class name, a device, a JSON value)
_GROUPS = ("metrics", "models")
_LAYOUTS = {h5py.h5d.CONTIGUOUS: "contiguous", h5py.h5d.CHUNKED: "chunked"}
_LAYOUT_NAMES = {h5py.h5d.COMPACT: "compact", h5py.h5d.VIRTUAL: "virtual"}
_LINK_KINDS = {h5py.SoftLink: "a soft link", h5py.ExternalLink: "an external link"}


@dataclass(frozen=True)
class _Expected:
    """What the writer stores under one name: the shape and a dtype rule."""

    shape: tuple[int, ...]
    dtype: str  # a numpy dtype name, "str" (variable-length UTF-8) or "<f4" (exact)
    axes: str = "models x checkpoints"
    prefix_only: bool = False  # numeric model columns may hold a vector per model


def _expected(entry: ShardEntry, manifest: Manifest) -> dict[str, _Expected]:
    models, checkpoints = entry.num_models, len(entry.epochs)
    expected = {
        "weights": _Expected(
            (models, checkpoints, manifest.num_params),
            "<f4",
            axes="models x checkpoints x parameters (the layout)",
        ),
        "stats": _Expected(
            (models, checkpoints, len(manifest.stats_names)),
            "<f4",
            axes="models x checkpoints x statistics",
        ),
        "checkpoint_viable": _Expected((models, checkpoints), "bool"),
    }
    for name in manifest.metrics:
        expected[f"metrics/{name}"] = _Expected((models, checkpoints), "float32")
    for name, kind in manifest.columns.items():
        # a history per model (MLDS loss curves) is a 2-D column; strings are one per model
        expected[f"models/{name}"] = _Expected(
            (models,), kind, axes="models", prefix_only=kind != "str"
        )
    return expected


def _link_kind(link: object) -> str:
    return next((k for t, k in _LINK_KINDS.items() if isinstance(link, t)), type(link).__name__)


def _walk(handle: h5py.File, path: Path) -> dict[str, h5py.Dataset]:
    """Every dataset under the root, reached by hard links only, each object once.

    Raises:
        UnsafeShardError: for any other link, object kind, a revisited object or a group the
            writer does not make.
    """
    found: dict[str, h5py.Dataset] = {}
    seen: set[int] = set()
    pending: list[tuple[str, h5py.Group]] = [("", handle)]
    while pending:
        prefix, group = pending.pop()
        for name in group:  # link names only: nothing is resolved yet
            full = f"{prefix}{name}"
            link = group.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                target = getattr(link, "filename", None)
                where = f" to {target!r}" if target else ""
                raise UnsafeShardError(
                    f"shard {path}: {full!r} is {_link_kind(link)}{where}; a weightzoo shard holds "
                    "only its own datasets. The zoo is malformed or malicious: do not use it."
                )
            info = h5py.h5o.get_info(group.id, name.encode())
            if info.addr in seen:
                raise UnsafeShardError(f"shard {path}: {full!r} is a second link to one object")
            seen.add(info.addr)
            if info.type == h5py.h5o.TYPE_GROUP and not prefix and name in _GROUPS:
                pending.append((f"{name}/", group[name]))
            elif info.type == h5py.h5o.TYPE_DATASET:
                found[full] = group[name]
            else:
                raise UnsafeShardError(
                    f"shard {path}: {full!r} is an object the writer never makes; the zoo is "
                    "malformed or malicious: do not use it."
                )
    return found


def _dtype_matches(dataset: h5py.Dataset, rule: str) -> bool:
    dtype = dataset.dtype
    string = h5py.check_string_dtype(dtype)
    if rule == "str":
        return string is not None and string.length is None and string.encoding == "utf-8"
    if string is not None or h5py.check_vlen_dtype(dtype) is not None:
        return False
    if rule == "<f4":
        return dtype == np.dtype("<f4")
    return dtype.kind in "biuf" and dtype.name == rule


def _check_storage(dataset: h5py.Dataset, full: str, path: Path, file_size: int) -> None:
    """Refuse external, filtered, virtual or unwritten storage, and sizes the file cannot hold."""
    dcpl = dataset.id.get_create_plist()
    layout = dcpl.get_layout()
    if layout not in _LAYOUTS:
        kind = _LAYOUT_NAMES.get(layout, f"layout {layout}")
        raise UnsafeShardError(f"shard {path}: {full!r} is a {kind} dataset; refused")
    if dcpl.get_external_count():
        raise UnsafeShardError(
            f"shard {path}: {full!r} stores its data in external file(s) "
            f"{dcpl.get_external(0)[0]!r}...; a weightzoo shard holds its own data. Refused."
        )
    if dcpl.get_nfilters():
        raise UnsafeShardError(
            f"shard {path}: {full!r} uses HDF5 filters the writer never uses; refused"
        )
    needed = int(np.prod(dataset.shape, dtype=np.int64)) * dataset.id.get_type().get_size()
    stored = dataset.id.get_storage_size()
    if stored < needed or stored > file_size:
        raise UnsafeShardError(
            f"shard {path}: {full!r} declares shape {dataset.shape} ({needed} bytes) but the "
            f"file stores {stored} of its {file_size} bytes for it; refused"
        )
    if layout == h5py.h5d.CONTIGUOUS and needed:
        offset = dataset.id.get_offset()
        if offset is None or offset + needed > file_size:
            raise UnsafeShardError(f"shard {path}: {full!r} lies beyond the end of the file")
    if layout == h5py.h5d.CHUNKED and needed:
        ends: list[int] = []
        dataset.id.chunk_iter(lambda chunk: ends.append(chunk.byte_offset + chunk.size))
        if max(ends, default=0) > file_size:
            raise UnsafeShardError(f"shard {path}: {full!r} has chunks beyond the end of the file")


def _check_string_lengths(dataset: h5py.Dataset, full: str, path: Path) -> None:
    """Read a string column one value at a time, refusing any longer than a column needs.

    Every value of a variable-length string dataset may point at the same heap string: a
    dataset of a few bytes per value can expand to gigabytes when read whole.
    """
    for index in range(dataset.shape[0]):
        value = dataset[index]
        if len(value) > MAX_STRING_BYTES:
            raise UnsafeShardError(
                f"shard {path}: {full!r} holds a value of {len(value)} bytes (at most "
                f"{MAX_STRING_BYTES}); refused"
            )


def check_shard_objects(
    handle: h5py.File, path: Path, entry: ShardEntry, manifest: Manifest
) -> None:
    """Check that a shard holds only what its writer makes, before any of it is read.

    Args:
        handle: the open shard.
        path: its path, for messages.
        entry: its manifest entry.
        manifest: the zoo's manifest.

    Raises:
        UnsafeShardError: naming the first object that breaks a rule.
    """
    file_size = os.fstat(handle.id.get_vfd_handle()).st_size
    expected = _expected(entry, manifest)
    found = _walk(handle, path)
    for name in expected:  # every dataset the manifest implies, and no other
        if name not in found:
            raise UnsafeShardError(f"shard {path} has no dataset {name!r}")
    for name, dataset in found.items():
        want = expected.get(name)
        if want is None:
            raise UnsafeShardError(
                f"shard {path}: dataset {name!r} is not in the manifest's layout, metrics or "
                "columns; refused"
            )
        shape = dataset.shape  # None for an empty dataspace
        if shape is None or (shape[: len(want.shape)] if want.prefix_only else shape) != want.shape:
            raise UnsafeShardError(
                f"shard {path}: {name!r} has shape {shape}, but the manifest lists "
                f"{want.shape}{' + ...' if want.prefix_only else ''} ({want.axes})"
            )
        _check_storage(dataset, name, path, file_size)
        if not _dtype_matches(dataset, want.dtype):
            raise UnsafeShardError(
                f"shard {path}: {name!r} has dtype {dataset.dtype}, the manifest implies "
                f"{'variable-length UTF-8 strings' if want.dtype == 'str' else want.dtype}"
            )
        if want.dtype == "str":
            _check_string_lengths(dataset, name, path)
