"""Checks that shards on disk are the ones the manifest lists."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from weightzoo.errors import (
    ShardCorruptError,
    ShardMissingError,
    UnsafePathError,
    UnsafeShardError,
)
from weightzoo.storage.hashing import sha256_file
from weightzoo.storage.manifest import Manifest, ShardEntry
from weightzoo.storage.shard_objects import check_shard_objects

SHARD_FORMAT = "weightzoo-shard"
# What h5py raises for a damaged file (a flipped byte in its metadata: RuntimeError from the HDF5
# library, UnicodeDecodeError for a link name, ...): a shard from outside is read under these.
SHARD_READ_ERRORS = (OSError, KeyError, ValueError, RuntimeError, TypeError, OverflowError)


def _allowed_roots(zoo_dir: Path) -> list[Path]:
    """Where a zoo's files may really live: the zoo, and for a hub-cache snapshot its blobs."""
    root = zoo_dir.resolve()
    roots = [root]
    # huggingface_hub cache: <kind>s--<owner>--<name>/snapshots/<commit> -> ../../blobs/; a
    # group of a grouped zoo sits deeper in the snapshot (<commit>/groups/<name>)
    for snapshot in (root, *root.parents):
        repo = snapshot.parent.parent
        if (
            snapshot.parent.name == "snapshots"
            and repo.name.startswith(("datasets--", "models--", "spaces--"))
            and (repo / "blobs").is_dir()
        ):
            roots.append(repo / "blobs")
            break
    return roots


def shard_path(zoo_dir: str | os.PathLike[str], entry: ShardEntry) -> Path:
    """The path of a shard, refusing one that is (or passes through) a link out of the zoo.

    Raises:
        UnsafePathError: if the file resolves outside the zoo directory (hub-cache snapshots may
            point into their own repo's ``blobs/``, which is how huggingface_hub stores files).
    """
    path = Path(zoo_dir) / entry.file
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in _allowed_roots(Path(zoo_dir))):
        raise UnsafePathError(
            f"shard {entry.file} of zoo {zoo_dir} is a link to {resolved}, outside the zoo "
            "directory; weightzoo does not read through such links. Replace it with the file "
            "itself (fetch or generate it again)."
        )
    return path


def check_shard_present(zoo_dir: str | os.PathLike[str], entry: ShardEntry) -> Path:
    """Cheap check (no hashing): the shard exists inside the zoo and has the manifest's size.

    Raises:
        ShardMissingError: if the file is absent.
        ShardCorruptError: if its size differs (truncated or overwritten).
        UnsafePathError: if it is a link out of the zoo directory.
    """
    path = shard_path(zoo_dir, entry)
    try:
        status = path.stat()
    except FileNotFoundError:
        raise ShardMissingError(
            f"shard {entry.file} of zoo {Path(zoo_dir)} is missing ({entry.split} split, models "
            f"{entry.models[0]}..{entry.models[1] - 1}). Fetch it again (`weightzoo fetch`) or "
            "rerun `weightzoo generate` with the same --out to rebuild it."
        ) from None
    if not stat.S_ISREG(status.st_mode):
        # A FIFO or device would block or stream forever once opened: never open one.
        raise UnsafeShardError(
            f"shard {path} is not a regular file (a FIFO, device or directory); weightzoo does "
            "not open such files. Delete it and fetch or generate the zoo again."
        )
    size = status.st_size
    if size != entry.bytes:
        raise ShardCorruptError(
            f"shard {path} has {size} bytes, the manifest says {entry.bytes}: it is truncated or "
            "was replaced. Delete it and fetch or generate it again."
        )
    return path


# A string attribute is one value; an array one is 1-D and short (the writer's [first, last]
# and the shard's epochs). Checked before a value is read: an attribute of many strings that all
# point at one large heap string would otherwise expand to gigabytes when read.
_MAX_TEXT = 4096


def _attr(attrs: h5py.AttributeManager, name: str, path: Path, *, items: int = 0) -> Any:
    """A shard attribute, checked to be one short string (``items=0``) or a short int array."""
    if name not in attrs:
        return None
    attribute = attrs.get_id(name)
    shape, dtype = attribute.shape, attribute.dtype
    if items == 0:
        ok = shape == () and h5py.check_string_dtype(dtype) is not None
    else:
        ok = len(shape or ()) == 1 and shape[0] <= items and dtype.kind in "iu"
    if not ok:
        raise UnsafeShardError(
            f"shard {path}: attribute {name!r} has shape {shape} and dtype {dtype}, not "
            f"{'one string' if items == 0 else f'at most {items} integers'} as the writer writes"
        )
    value = attrs[name]
    value = value.decode(errors="replace") if isinstance(value, bytes) else value
    if isinstance(value, str) and len(value) > _MAX_TEXT:
        raise UnsafeShardError(f"shard {path}: attribute {name!r} is {len(value)} characters long")
    return value


def check_shard_attributes(
    handle: h5py.File, path: Path, entry: ShardEntry, manifest: Manifest
) -> None:
    """Compare a shard's own attributes with its manifest entry.

    Shards carry ``format``, ``zoo``, ``split``, ``models`` and ``epochs`` (every version) and
    ``spec_fingerprint`` (written since the attribute check exists). A shard without
    ``spec_fingerprint`` is checked on the rest; one without the others is refused. Each
    attribute's shape and dtype are checked before its value is read.

    Raises:
        ShardCorruptError: naming the first attribute that differs.
        UnsafeShardError: for an attribute of a shape or dtype the writer never writes.
    """
    attrs = handle.attrs
    found = _attr(attrs, "format", path)
    if found != SHARD_FORMAT:
        raise ShardCorruptError(
            f"{path} is not a weightzoo shard (attribute format={found!r}); fetch or generate "
            "it again"
        )
    expected: dict[str, Any] = {
        "zoo": manifest.name,
        "split": entry.split,
        "models": list(entry.models),
        "epochs": list(entry.epochs),
    }
    if "spec_fingerprint" in attrs:
        expected["spec_fingerprint"] = manifest.spec_fingerprint
    for name, want in expected.items():
        if name not in attrs:
            raise ShardCorruptError(
                f"{path} has no attribute {name!r}, so it cannot be matched to the manifest; "
                "fetch or generate it again"
            )
        got = _attr(attrs, name, path, items=len(want) if isinstance(want, list) else 0)
        if isinstance(want, list):
            got = np.asarray(got).ravel().tolist()
        if got != want:
            raise ShardCorruptError(
                f"shard {path} says {name}={_clip(got)}, but the manifest lists it with "
                f"{_clip(want)}: it belongs to another zoo or another place in this one. Delete "
                "it and fetch or generate it again."
            )


def _clip(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else f"{text[:117]}..."


def check_shard(
    zoo_dir: str | os.PathLike[str],
    entry: ShardEntry,
    manifest: Manifest,
    *,
    finite: bool = False,
) -> Path:
    """Check one shard without hashing: inside the zoo, full size, attributes and objects match.

    Args:
        zoo_dir: the zoo directory.
        entry: the shard's manifest entry.
        manifest: the zoo's manifest.
        finite: also read every row marked viable and check that it is finite.

    Raises:
        ShardMissingError, ShardCorruptError, UnsafePathError: as the checks it runs.
    """
    path = check_shard_present(zoo_dir, entry)
    try:
        with h5py.File(path, "r") as handle:
            check_shard_attributes(handle, path, entry, manifest)
            check_shard_objects(handle, path, entry, manifest)
            if finite:
                check_viable_rows(handle, path)
    except SHARD_READ_ERRORS as exc:
        if isinstance(exc, ShardCorruptError):
            raise
        text = " ".join(str(exc).split())[:300]
        raise ShardCorruptError(f"cannot read shard {path}: {text}") from exc
    return path


def check_viable_rows(handle: h5py.File, path: Path) -> None:
    """Check that every checkpoint a shard marks viable is finite, and every viable model too.

    Reads the shard's weights one row at a time (a row of the largest zoos is tens of MB).

    Raises:
        ShardCorruptError: naming the first model and checkpoint whose flags lie.
    """
    weights = handle["weights"]
    checkpoint_viable = handle["checkpoint_viable"][()]
    viable = handle["models/viable"][()] if "viable" in handle.get("models", {}) else None
    for model, checkpoint in zip(*np.nonzero(checkpoint_viable), strict=True):
        if not np.isfinite(weights[model, checkpoint]).all():
            raise ShardCorruptError(
                f"shard {path}: model {model} (row in the shard) checkpoint {checkpoint} is "
                "marked viable but holds NaN or infinite weights; the shard is corrupt or was "
                "edited. Fetch or generate it again."
            )
    if viable is not None and (viable & ~checkpoint_viable.all(axis=1)).any():
        model = int(np.flatnonzero(viable & ~checkpoint_viable.all(axis=1))[0])
        raise ShardCorruptError(
            f"shard {path}: model {model} (row in the shard) is marked viable although some of "
            "its checkpoints are not; the shard is corrupt or was edited"
        )


def verify_shard(
    zoo_dir: str | os.PathLike[str], entry: ShardEntry, manifest: Manifest | None = None
) -> None:
    """Full check: size and sha256 against the manifest, then the shard's own attributes.

    Raises:
        ShardMissingError: if the file is absent.
        ShardCorruptError: if its size, hash or attributes differ, giving expected and actual.
    """
    path = check_shard_present(zoo_dir, entry)
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise ShardCorruptError(
            f"shard {path} is corrupt: sha256 {actual}, expected {entry.sha256}. Delete it and "
            "fetch or generate it again."
        )
    if manifest is not None:
        check_shard(zoo_dir, entry, manifest, finite=True)


def verify_zoo(
    zoo_dir: str | os.PathLike[str],
    *,
    on_shard: Callable[[ShardEntry], None] | None = None,
) -> list[tuple[ShardEntry, Exception]]:
    """Recompute every shard's hash and check its attributes against the manifest.

    Args:
        zoo_dir: the zoo directory.
        on_shard: called after each shard is checked (for progress bars).

    Returns:
        The failing shards with their errors (empty when the zoo is intact).

    A grouped zoo (format version 2) is checked whole: its hash chain, then every group's
    shards (:func:`weightzoo.storage.groups.verify_grouped_zoo`; files are then named relative
    to ``zoo_dir``).

    Raises:
        ManifestError: if the manifest itself is malformed (overlapping or out-of-range shards).
        GroupManifestError: if a group's manifest breaks a grouped zoo's hash chain.
    """
    from weightzoo.storage.groups import is_grouped, verify_grouped_zoo

    if is_grouped(zoo_dir):
        return verify_grouped_zoo(zoo_dir, on_shard=on_shard)
    manifest = Manifest.load(zoo_dir)
    failures: list[tuple[ShardEntry, Exception]] = []
    for entry in manifest.shards:
        try:
            verify_shard(zoo_dir, entry, manifest)
        except (ShardMissingError, ShardCorruptError, UnsafePathError) as exc:
            failures.append((entry, exc))
        if on_shard is not None:
            on_shard(entry)
    return failures
