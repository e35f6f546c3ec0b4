"""Side files: named per-checkpoint arrays computed from a zoo, kept beside its shards.

A side file holds arrays ``[models, checkpoints, ...]`` over some of the zoo's models (storage
positions) and epochs (checkpoint labels), e.g. every checkpoint's outputs on a query set or
its loss-landscape metrics, plus optional arrays shared by all checkpoints (the query set)::

    <zoo>/sidecars/<name>.h5     HDF5: models, epochs, arrays/<array>, common/<array>
    <zoo>/sidecars/<name>.json   its record: zoo, fingerprints, sha256, bytes, shapes, attrs

The hashed file carries its own identity: attributes ``zoo``, ``spec_fingerprint``,
``content_fingerprint`` (the sha256s of the shards holding its models and epochs) and
``name``, and datasets ``models`` and ``epochs``. A reader checks the record against the zoo's
current manifest, the file's size and sha256 against the record, and the file's identity against
both; so a side file of a zoo regenerated or re-imported since, or a record whose axes were
edited, is refused with what to recompute.

Same discipline as shards: the HDF5 file is written to a temporary name, fsynced and renamed,
then the record (the commit point) is replaced atomically. A record is outside input: it may
name only the writer's own file, a regular file directly under ``sidecars/`` (checked with
``lstat`` before it is opened, and opened without following links), and every shape and count
it declares is checked against the zoo and the file's size before anything is mapped. ``zoo.json``
is not touched, so every zoo stays readable by every version.

:func:`open_sidecar` gives a :class:`Sidecar` that reads any ``(model, epoch)`` pairs (one
memory map per array, tied to the very file that was hashed); :func:`read_sidecar` reads
everything into memory.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import math
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from weightzoo.errors import (
    EpochError,
    InvalidOptionError,
    SidecarCorruptError,
    SidecarNotFoundError,
    StorageWriteError,
    UnknownColumnError,
    UnsafePathError,
    WeightzooError,
)
from weightzoo.storage.manifest import Manifest, check_name
from weightzoo.storage.verify import _allowed_roots
from weightzoo.storage.writer import ZooLock

__all__ = [
    "BEHAVIOUR_SIDECAR",
    "SIDECAR_DIR",
    "Sidecar",
    "SidecarRecord",
    "list_sidecars",
    "open_sidecar",
    "read_sidecar",
    "sidecar_records",
    "write_sidecar",
]

SIDECAR_DIR = "sidecars"
BEHAVIOUR_SIDECAR = "behaviour"
"""Name of the side file :func:`weightzoo.functional.behaviour` writes and datasets read."""
SIDECAR_FORMAT = "weightzoo-sidecar"
SIDECAR_VERSION = 2  # 2: the file holds its identity; version 1 is refused (compute it again)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_NAME_RULE = "must be 1-100 letters, digits, '_', '.' or '-', not starting with '.', '_' or '-'"
# The writer's temporaries: .<name>.h5.<16 hex>.tmp (and the 8 characters of earlier versions).
_TEMP = re.compile(rf"\.{_NAME.pattern}\.(?:h5|json)\.(?:[0-9a-f]{{16}}|[a-z0-9_]{{8}})\.tmp")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_IDENTITY = ("zoo", "spec_fingerprint", "content_fingerprint", "name")
_AXIS_DTYPE = np.dtype("<i8")
_BLOCK = 1 << 20
_WRITE_BLOCK = 16 << 20
_ATTRS_MAX = 1 << 20  # JSON bytes of a record's attrs
_RECORD_SLACK = 16 << 20  # a record's bytes beyond its axes: attrs, array names and shapes
_RECORD_PER_ENTRY = 24  # JSON bytes per model or epoch of the axes, generously
_MAX_RANK = 32  # HDF5's own limit
_MAX_ITEMSIZE = 16
# A dimension beyond 2**40 fits no disk; dimensions whose product (zeros counted as one, at the
# largest item size) passes 2**62 bytes make no numpy array, even an empty one.
_MAX_DIM = 1 << 40
_MAX_EXTENT = 1 << 62


@dataclass(frozen=True)
class SidecarRecord:
    """The JSON record of a side file (``<zoo>/sidecars/<name>.json``).

    Attributes:
        name: the side file's name.
        zoo: the zoo's name.
        spec_fingerprint: the zoo manifest's ``spec_fingerprint`` when it was written.
        content_fingerprint: sha256 over the file and sha256 of every shard of the manifest that
            holds any of ``models`` at any of ``epochs``: it changes when the zoo is regenerated
            or re-imported with other contents, even under the same spec.
        file: the HDF5 file, relative to the zoo directory.
        sha256: hex digest of the HDF5 file.
        bytes: its size.
        models: the storage positions along axis 0 of every per-checkpoint array.
        epochs: the checkpoint labels along axis 1.
        arrays: per-checkpoint arrays: ``{name: {"dtype": str, "shape": [...]}}``.
        shared: arrays shared by every checkpoint, same form.
        attrs: free-form JSON attributes (what was computed, and how).
    """

    name: str
    zoo: str
    spec_fingerprint: str
    content_fingerprint: str
    file: str
    sha256: str
    bytes: int
    models: list[int]
    epochs: list[int]
    arrays: dict[str, dict[str, Any]]
    shared: dict[str, dict[str, Any]] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The record as written."""
        return {"format": SIDECAR_FORMAT, "format_version": SIDECAR_VERSION} | {
            k: getattr(self, k) for k in self.__dataclass_fields__
        }

    @classmethod
    def from_json(
        cls, data: Any, source: str, *, redo: str = "compute the side file again"
    ) -> SidecarRecord:
        """Parse a record, checking the type of every field.

        Args:
            data: the parsed JSON.
            source: where it comes from, for messages.
            redo: what to do about a record this refuses, for messages.

        Raises:
            SidecarCorruptError: if it is not a side-file record of the version this reads.
        """
        if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
            raise SidecarCorruptError(f"{source} is not a weightzoo side-file record; {redo}")
        version = data.get("format_version")
        if not _is_int(version) or version > SIDECAR_VERSION:
            raise SidecarCorruptError(
                f"{source} has format_version {version!r}; this weightzoo reads "
                f"{SIDECAR_VERSION}: upgrade weightzoo"
            )
        if version < SIDECAR_VERSION:
            raise SidecarCorruptError(
                f"{source} has format_version {version}, written before side files held their "
                f"own identity (zoo fingerprints, models, epochs); {redo}"
            )
        values = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        _check_types(values, source, redo)
        return cls(**values)


_FIELD_TYPES: dict[str, type] = {
    "name": str,
    "zoo": str,
    "spec_fingerprint": str,
    "content_fingerprint": str,
    "file": str,
    "sha256": str,
    "bytes": int,
    "models": list,
    "epochs": list,
    "arrays": dict,
    "shared": dict,
    "attrs": dict,
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_types(values: dict[str, Any], source: str, redo: str) -> None:
    for key, kind in _FIELD_TYPES.items():
        if key not in values and key in ("shared", "attrs"):
            continue
        if key not in values:
            raise SidecarCorruptError(f"{source} lacks field {key!r}; {redo}")
        value = values[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise SidecarCorruptError(
                f"{source}: field {key!r} must be a {kind.__name__}, got "
                f"{type(value).__name__}; {redo}"
            )
    for key in ("models", "epochs"):
        if not all(_is_int(v) for v in values[key]):
            raise SidecarCorruptError(f"{source}: {key} must be integers; {redo}")
    if values["bytes"] < 0 or not _SHA256.fullmatch(values["sha256"]):
        raise SidecarCorruptError(f"{source}: malformed bytes or sha256; {redo}")


# ------------------------------------------------------------------------------ paths
def _check_name(name: str) -> str:
    return check_name(name, _NAME, "side-file name", _NAME_RULE, InvalidOptionError)


def _own_file(name: str) -> str:
    """The one file a record of side file ``name`` may name (relative to the zoo)."""
    return f"{SIDECAR_DIR}/{name}.h5"


def _redo(zoo_dir: Path, name: str) -> str:
    """What to run to compute side file ``name`` again, for messages."""
    option = "" if name in ("behaviour", "landscape") else f" --name {name}"
    commands = {"behaviour": ("behaviour",), "landscape": ("landscape",)}.get(
        name, ("behaviour", "landscape")
    )
    runs = " or ".join(f"`weightzoo {c} {zoo_dir}{option}`" for c in commands)
    return f"compute it again ({runs})"


def _inside(zoo_dir: Path, path: Path) -> Path:
    """``path`` if it resolves inside the zoo (or its hub-cache blobs), else UnsafePathError."""
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in _allowed_roots(zoo_dir)):
        raise UnsafePathError(
            f"{path} resolves to {resolved}, outside zoo {zoo_dir}; weightzoo does not follow "
            "links out of a zoo. Remove the link and compute the side file again."
        )
    return path


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((text for test, text in kinds if test(mode)), "a regular file")


def _folder(zoo_dir: Path, *, create: bool = False) -> Path:
    """``<zoo>/sidecars``, refused unless a plain directory inside the zoo."""
    folder = _inside(zoo_dir, zoo_dir / SIDECAR_DIR)
    try:
        mode = os.lstat(folder).st_mode
    except FileNotFoundError:
        if not create:
            return folder  # no side files yet
        folder.mkdir()
        mode = os.lstat(folder).st_mode
    if not stat.S_ISDIR(mode):
        raise UnsafePathError(
            f"{folder} is {_kind(mode)}, not a directory; weightzoo keeps side files in a plain "
            "folder of the zoo. Remove it and compute the side files again."
        )
    return folder


def _paths(zoo_dir: Path, name: str) -> tuple[Path, Path]:
    folder = _folder(zoo_dir)
    return _inside(zoo_dir, folder / f"{name}.h5"), _inside(zoo_dir, folder / f"{name}.json")


def _regular(path: Path) -> os.stat_result:
    """``lstat`` of a side file or record, refused unless a regular file (no link, FIFO, ...).

    Raises:
        FileNotFoundError: it does not exist (the caller words that).
        UnsafePathError: anything but a regular file.
    """
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePathError(
            f"{path} is {_kind(info.st_mode)}, not a regular file; weightzoo reads only the files "
            "it writes there. Remove it and compute the side file again."
        )
    return info


def _open_regular(path: Path) -> io.BufferedReader:
    """Open a file checked by :func:`_regular`, without following a link swapped in since."""
    before = _regular(path)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO must not block
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise UnsafePathError(f"{path} became a link while being opened; open it again") from None
    try:
        after = os.fstat(fd)
        if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (
            before.st_dev,
            before.st_ino,
        ):
            raise UnsafePathError(f"{path} was replaced while being opened; open it again")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def list_sidecars(zoo_dir: str | os.PathLike[str]) -> list[str]:
    """Names of the side files a zoo has a record for, sorted."""
    folder = _folder(Path(zoo_dir))
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if _NAME.fullmatch(p.stem))


def _content_fingerprint(manifest: Manifest, models: Iterable[int], epochs: Iterable[int]) -> str:
    """sha256 over (file, sha256) of the manifest's shards holding any of models x epochs."""
    ordered = np.sort(np.fromiter(models, dtype=np.int64))
    wanted = {int(e) for e in epochs}
    held = []
    for entry in manifest.shards:
        at = int(np.searchsorted(ordered, entry.models[0]))
        if at < len(ordered) and ordered[at] < entry.models[1] and wanted & set(entry.epochs):
            held.append([entry.file, entry.sha256])
    return hashlib.sha256(json.dumps(sorted(held)).encode()).hexdigest()


def _record_limit(manifest: Manifest) -> int:
    """The most bytes a record of this zoo can need (its axes are bounded by the zoo's)."""
    return _RECORD_SLACK + _RECORD_PER_ENTRY * (manifest.num_models + len(manifest.epochs))


# ------------------------------------------------------------------------------ writing
def _numeric(name: str, array: Any) -> np.ndarray:
    array = np.ascontiguousarray(array)
    if array.dtype.kind not in "biuf" or array.dtype.itemsize > _MAX_ITEMSIZE:
        raise InvalidOptionError(
            f"side-file array {name!r} must be numeric or bool, got dtype {array.dtype}"
        )
    return array


def _axis(values: Iterable[int] | None, default: Sequence[int], what: str) -> np.ndarray:
    out = np.asarray(list(default) if values is None else list(values), dtype=np.int64)
    if out.ndim != 1 or len(np.unique(out)) != len(out):
        raise InvalidOptionError(f"side-file {what} must be distinct integers, got {out.tolist()}")
    return out


def _axes(
    manifest: Manifest, models: Iterable[int] | None, epochs: Iterable[int] | None
) -> tuple[np.ndarray, np.ndarray]:
    positions = _axis(models, range(manifest.num_models), "models")
    labels = _axis(epochs, manifest.epochs, "epochs")
    if len(positions) and (positions.min() < 0 or positions.max() >= manifest.num_models):
        raise InvalidOptionError(
            f"side-file models must be positions 0..{manifest.num_models - 1} of zoo "
            f"{manifest.name!r}"
        )
    unknown = sorted(set(labels.tolist()) - set(manifest.epochs))
    if unknown:
        raise InvalidOptionError(
            f"zoo {manifest.name!r} has no checkpoint for epoch(s) {unknown}; it has "
            f"{manifest.epochs}"
        )
    return positions, labels


def _tables(
    arrays: Mapping[str, np.ndarray],
    shared: Mapping[str, np.ndarray] | None,
    lead: tuple[int, int],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    per = {_check_name(k): _numeric(k, v) for k, v in arrays.items()}
    common = {_check_name(k): _numeric(k, v) for k, v in (shared or {}).items()}
    if not per:
        raise InvalidOptionError("a side file needs at least one per-checkpoint array")
    reserved = {"models", "epochs"} & (set(per) | set(common))
    if reserved:
        raise InvalidOptionError(f"array names {sorted(reserved)} are reserved for the axes")
    if set(per) & set(common):
        raise InvalidOptionError(f"array names repeat: {sorted(set(per) & set(common))}")
    for key, value in per.items():
        if value.shape[:2] != lead:
            raise InvalidOptionError(
                f"side-file array {key!r} has shape {list(value.shape)}; it must start with "
                f"[{lead[0]} models, {lead[1]} checkpoints]"
            )
    return per, common


def _json_attrs(attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    text = json.dumps(dict(attrs or {}))
    if len(text) > _ATTRS_MAX:
        raise InvalidOptionError(
            f"side-file attrs take {len(text)} bytes of JSON, more than {_ATTRS_MAX}; store "
            "large values as arrays"
        )
    return json.loads(text)  # JSON only, and a copy


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_sidecar(
    zoo_dir: str | os.PathLike[str],
    name: str,
    arrays: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any] | None = None,
    *,
    shared: Mapping[str, np.ndarray] | None = None,
    models: Iterable[int] | None = None,
    epochs: Iterable[int] | None = None,
) -> SidecarRecord:
    """Write (or replace) the side file ``<zoo>/sidecars/<name>.h5`` and its record.

    Temporary files are removed on every exit path, and the writer's own temporaries that an
    earlier, killed writer left in ``sidecars/`` are removed first (under the zoo's lock).

    Args:
        zoo_dir: the zoo directory.
        name: the side file's name (letters, digits, ``_``, ``.``, ``-``).
        arrays: per-checkpoint arrays, each ``[len(models), len(epochs), ...]``, numeric.
        attrs: JSON-serialisable attributes kept in the record (at most 1 MiB of JSON).
        shared: arrays shared by every checkpoint (any shape), numeric.
        models: the storage positions along axis 0 (default: every model of the zoo).
        epochs: the checkpoint labels along axis 1 (default: every checkpoint).

    Returns:
        The record written.

    Raises:
        InvalidOptionError: a bad name, shape, dtype, model or epoch.
        ZooLockedError: another writer holds the zoo.
        UnsafePathError: ``sidecars/`` is a link or not a directory.
        OSError: writing failed (disk full, ...): one line naming the file, errno kept.
    """
    zoo_dir = Path(zoo_dir)
    manifest = Manifest.load(zoo_dir)
    _check_name(name)
    positions, labels = _axes(manifest, models, epochs)
    per, common = _tables(arrays, shared, (len(positions), len(labels)))
    attrs = _json_attrs(attrs)
    h5_path, json_path = _paths(zoo_dir, name)
    record = SidecarRecord(
        name=name,
        zoo=manifest.name,
        spec_fingerprint=manifest.spec_fingerprint,
        content_fingerprint=_content_fingerprint(manifest, positions, labels),
        file=_own_file(name),
        sha256="0" * 64,  # set once the file is written
        bytes=0,
        models=positions.tolist(),
        epochs=labels.tolist(),
        arrays={k: {"dtype": v.dtype.str, "shape": list(v.shape)} for k, v in per.items()},
        shared={k: {"dtype": v.dtype.str, "shape": list(v.shape)} for k, v in common.items()},
        attrs=attrs,
    )
    with _write_failures(h5_path, _redo(zoo_dir, name)):
        lock = ZooLock(zoo_dir)
        try:
            folder = _folder(zoo_dir, create=True)
            _remove_stale(folder)
            digest, size = _write_file(h5_path, record, per, common)
            record = replace(record, sha256=digest, bytes=size)
            _write_json(json_path, record.to_json())
            _fsync_dir(folder)
        finally:
            lock.release()
    return record


@contextlib.contextmanager
def _write_failures(path: Path, redo: str) -> Iterator[None]:
    """Turn an OSError of writing (a full disk, ...) into one line naming the side file."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, WeightzooError):
            raise
        raise _write_failed(path, exc, redo) from None


def _write_failed(path: Path, exc: OSError, redo: str) -> StorageWriteError:
    """One line for a failed write (h5py's messages span lines), keeping the errno."""
    reason = os.strerror(exc.errno) if exc.errno else " ".join(str(exc).split())
    message = (
        f"cannot write side file {path}: {reason}; its temporary files were removed. Free "
        f"space there (or fix the cause) and {redo}"
    )
    error = StorageWriteError(message)
    error.errno = exc.errno  # kept for callers that test it (ENOSPC)
    return error


def _remove_stale(folder: Path) -> None:
    """Remove temporaries a killed writer left: under the zoo's lock none of them is in use."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if _TEMP.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                Path(entry.path).unlink(missing_ok=True)


def _temporary(folder: Path, base: str, access: int = os.O_WRONLY) -> tuple[int, Path]:
    """A new file ``.<base>.<random>.tmp`` of ``folder`` (mode 0644) and its descriptor."""
    flags = access | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    while True:
        path = folder / f".{base}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(path, flags, 0o644)
        except FileExistsError:
            continue
        os.fchmod(fd, 0o644)  # whatever the umask: readers of the zoo read it
        return fd, path


def _write_file(
    path: Path,
    record: SidecarRecord,
    per: Mapping[str, np.ndarray],
    common: Mapping[str, np.ndarray],
) -> tuple[str, int]:
    """Write the HDF5 file under a temporary name, fsync, hash, rename: ``(sha256, bytes)``."""
    fd, tmp = _temporary(path.parent, path.name, os.O_RDWR)
    try:
        for offset, array in _write_layout(_Sink(fd), record, per, common):
            _pwrite_all(fd, array.reshape(-1).view(np.uint8), offset)
        os.fsync(fd)
        with open(fd, "rb", closefd=False) as handle:
            digest, size = _hash(handle)
        os.replace(tmp, path)
    finally:
        os.close(fd)
        tmp.unlink(missing_ok=True)  # gone after the rename; removed on any other exit
    return digest, size


def _pwrite_all(fd: int, data: Any, offset: int) -> None:
    """Write a whole buffer at ``offset``, in blocks (the one call that writes side files)."""
    view = memoryview(data).cast("B")
    done = 0
    while done < len(view):
        written = os.pwrite(fd, view[done : done + _WRITE_BLOCK], offset + done)
        if written <= 0:
            raise OSError(errno.EIO, f"no byte written at offset {offset + done}")
        done += written


class _Sink(io.RawIOBase):
    """The file object h5py writes a side file's structure through.

    The first failed write or truncate (a full disk, or an interrupt arriving meanwhile) is
    kept and later ones are dropped, so that h5py still closes the file cleanly (an exception
    raised through HDF5 leaves objects that fail again at interpreter exit) and the writer
    raises the failure once, after the close.
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd, self.position = fd, 0
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position}.get(whence)
        self.position = offset + (os.fstat(self.fd).st_size if base is None else base)
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: Any) -> int:
        data = os.pread(self.fd, len(buffer), self.position)
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        if self.error is None:
            try:
                _pwrite_all(self.fd, data, self.position)
            except BaseException as exc:  # kept: _write_layout raises it after the close
                self.error = exc
        self.position += size
        return size

    def truncate(self, size: int | None = None) -> int:
        size = self.position if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self.fd, size)  # h5py extends the file to its end of allocation
            except BaseException as exc:  # kept: _write_layout raises it after the close
                self.error = exc
        return size


def _write_layout(
    sink: _Sink,
    record: SidecarRecord,
    per: Mapping[str, np.ndarray],
    common: Mapping[str, np.ndarray],
) -> list[tuple[int, np.ndarray]]:
    """The HDF5 structure with the arrays' space allocated: ``(offset, array)`` to fill.

    h5py writes the attributes and the axes through ``sink`` and is closed before the arrays
    go in by :func:`_pwrite_all`, which streams them without a copy.
    """
    places = []
    try:
        with h5py.File(sink, "w") as handle:
            handle.attrs.update(
                {"format": SIDECAR_FORMAT, "format_version": SIDECAR_VERSION}
                | {key: getattr(record, key) for key in _IDENTITY}
            )
            handle.create_dataset("models", data=np.asarray(record.models, dtype=_AXIS_DTYPE))
            handle.create_dataset("epochs", data=np.asarray(record.epochs, dtype=_AXIS_DTYPE))
            for group, table in (("arrays", per), ("common", common)):
                folder = handle.create_group(group)
                for key, value in table.items():
                    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
                    plist.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)  # its offset is known now
                    dataset = folder.create_dataset(  # contiguous: memory-mappable
                        key, shape=value.shape, dtype=value.dtype, dcpl=plist, fill_time="never"
                    )
                    if value.size:
                        places.append((dataset.id.get_offset(), value))
    except Exception:
        if sink.error is None:
            raise
    if sink.error is not None:
        raise sink.error
    return places


def _write_json(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = _temporary(path.parent, path.name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)  # one line: the model list may be long
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _hash(handle: io.BufferedIOBase) -> tuple[str, int]:
    handle.seek(0)
    digest, size = hashlib.sha256(), 0
    while block := handle.read(_BLOCK):
        digest.update(block)
        size += len(block)
    handle.seek(0)
    return digest.hexdigest(), size


# ------------------------------------------------------------------------------ reading
def _load_record(zoo_dir: Path, name: str, manifest: Manifest) -> tuple[SidecarRecord, Path]:
    h5_path, json_path = _paths(zoo_dir, _check_name(name))
    redo = _redo(zoo_dir, name)
    try:
        handle = _open_regular(json_path)
    except FileNotFoundError:
        have = list_sidecars(zoo_dir)
        raise SidecarNotFoundError(
            f"zoo {zoo_dir} has no side file {name!r} ({json_path} does not exist); it has "
            f"{have or 'none'}. Compute it (e.g. `weightzoo behaviour {zoo_dir}`)."
        ) from None
    limit = _record_limit(manifest)
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise SidecarCorruptError(
                f"{json_path} has {size} bytes, more than a record of zoo {manifest.name!r} "
                f"can need ({limit}); remove it and {redo}"
            )
        try:
            data = json.loads(handle.read(limit + 1).decode("utf-8"))
        except (OSError, UnicodeDecodeError, RecursionError, json.JSONDecodeError) as exc:
            raise SidecarCorruptError(f"cannot parse {json_path}: {exc}; {redo}") from None
    record = SidecarRecord.from_json(data, str(json_path), redo=redo)
    _check_record(record, json_path, manifest, redo)
    return record, h5_path


def _check_record(record: SidecarRecord, source: Path, manifest: Manifest, redo: str) -> None:
    """The record against its own name and the zoo's current manifest."""
    name = source.stem
    if record.file != _own_file(name) or record.name != name:
        raise SidecarCorruptError(
            f"{source} names file {record.file!r} / side file {record.name!r}; the writer "
            f"names only {_own_file(name)}. Remove it and {redo}"
        )
    if record.zoo != manifest.name or record.spec_fingerprint != manifest.spec_fingerprint:
        raise SidecarCorruptError(
            f"side file {source} was computed for zoo {record.zoo!r} (spec "
            f"{record.spec_fingerprint[:12]}), not this zoo {manifest.name!r} (spec "
            f"{manifest.spec_fingerprint[:12]}); {redo}"
        )
    _check_axes(record, source, manifest, redo)
    content = _content_fingerprint(manifest, record.models, record.epochs)
    if record.content_fingerprint != content:
        raise SidecarCorruptError(
            f"side file {source} was computed on other contents of zoo {manifest.name!r} "
            f"(shards {record.content_fingerprint[:12]}, now {content[:12]}): the zoo was "
            f"regenerated or re-imported since; {redo}"
        )
    _check_sizes(record, source, redo)


def _check_axes(record: SidecarRecord, source: Path, manifest: Manifest, redo: str) -> None:
    count, models = manifest.num_models, record.models
    if (
        len(models) > count
        or len(set(models)) != len(models)
        or not all(0 <= m < count for m in models)
    ):
        raise SidecarCorruptError(
            f"{source} lists models {models[:8]} ({len(models)}); zoo {manifest.name!r} has "
            f"positions 0..{count - 1}, each at most once; {redo}"
        )
    epochs, known = record.epochs, set(manifest.epochs)
    if len(set(epochs)) != len(epochs) or not known.issuperset(epochs):
        raise SidecarCorruptError(
            f"{source} lists epochs {epochs[:8]} ({len(epochs)}); zoo {manifest.name!r} has "
            f"{manifest.epochs[:8]} ({len(known)}), each at most once; {redo}"
        )


def _check_sizes(record: SidecarRecord, source: Path, redo: str) -> None:
    """Every declared array well-formed, and all of them together within the file's size."""
    lead = [len(record.models), len(record.epochs)]
    names = list(record.arrays) + list(record.shared)
    if len(set(names)) != len(names) or {"models", "epochs"} & set(names):
        raise SidecarCorruptError(f"{source} repeats an array name or uses an axis's; {redo}")
    total = _AXIS_DTYPE.itemsize * sum(lead)
    for table, first in ((record.arrays, lead), (record.shared, None)):
        for key, meta in table.items():
            total += _declared_bytes(key, meta, first, source, redo)
    if total > record.bytes:
        raise SidecarCorruptError(
            f"{source} declares {total} bytes of arrays, more than the {record.bytes}-byte "
            f"file it names; {redo}"
        )


def _declared_bytes(key: str, meta: Any, lead: list[int] | None, source: Path, redo: str) -> int:
    dtype, shape = _declared(key, meta)
    if dtype is None or shape is None or (lead is not None and shape[:2] != lead):
        raise SidecarCorruptError(
            f"{source}: array {key!r} is declared as {meta!r:.200}; expected a name, a numeric "
            f"dtype and a shape{f' starting {lead}' if lead else ''} of dimensions up to "
            f"2**40; {redo}"
        )
    return math.prod(shape) * dtype.itemsize


def _declared(key: str, meta: Any) -> tuple[np.dtype | None, list[int] | None]:
    """The ``(dtype, shape)`` a record declares for an array; ``None`` for what is malformed."""
    if not _NAME.fullmatch(key) or not isinstance(meta, dict):
        return None, None
    shape, text = meta.get("shape"), meta.get("dtype")
    if not isinstance(shape, list) or len(shape) > _MAX_RANK:
        shape = None
    elif not all(_is_int(d) and d >= 0 for d in shape):
        shape = None
    elif not all(d <= _MAX_DIM for d in shape):
        shape = None
    try:
        dtype = np.dtype(text) if isinstance(text, str) else None
    except (TypeError, ValueError):
        dtype = None
    if dtype is not None and (dtype.kind not in "biuf" or dtype.itemsize > _MAX_ITEMSIZE):
        dtype = None
    if shape is not None and math.prod(max(d, 1) for d in shape) * _MAX_ITEMSIZE > _MAX_EXTENT:
        shape = None  # Python ints: the product cannot overflow
    return dtype, shape


def sidecar_records(zoo_dir: str | os.PathLike[str]) -> dict[str, SidecarRecord]:
    """Every side file's record, checked against the zoo (the files are not hashed here).

    Raises:
        SidecarCorruptError: a record that does not parse, belongs to another zoo or another
            content of this one, or declares what the zoo or file cannot hold.
        UnsafePathError: a record that is a link or not a regular file.
    """
    zoo_dir = Path(zoo_dir)
    manifest = Manifest.load(zoo_dir)
    return {name: _load_record(zoo_dir, name, manifest)[0] for name in list_sidecars(zoo_dir)}


def _plain_member(parent: h5py.Group, key: str, kind: type, path: Path, redo: str) -> Any:
    """``parent[key]``, refused unless a hard link to a ``kind`` (no soft or external link)."""
    link = parent.get(key, getlink=True)
    member = parent.get(key) if isinstance(link, h5py.HardLink) else None
    if not isinstance(member, kind):
        raise SidecarCorruptError(
            f"side file {path}: {parent.name.rstrip('/')}/{key} is missing, a link or not a "
            f"{kind.__name__}; weightzoo writes plain members; {redo}"
        )
    return member


def _plain_dataset(
    parent: h5py.Group,
    key: str,
    dtype: np.dtype,
    shape: list[int],
    size: int,
    where: tuple[Path, str],
) -> tuple[h5py.Dataset, int | None]:
    """A dataset checked to be the record's (dtype, shape), contiguous and inside the file.

    Returns:
        The dataset and its data's byte offset (``None`` when it holds no element).
    """
    path, redo = where
    dataset = _plain_member(parent, key, h5py.Dataset, path, redo)
    plist = dataset.id.get_create_plist()
    label = f"{parent.name.rstrip('/')}/{key}"
    if plist.get_layout() != h5py.h5d.CONTIGUOUS or plist.get_external_count():
        raise SidecarCorruptError(
            f"side file {path}: {label} is not stored contiguously in the file; {redo}"
        )
    found = None if dataset.shape is None else list(dataset.shape)
    if found != shape or dataset.dtype != dtype:
        raise SidecarCorruptError(
            f"side file {path}: {label} is {dataset.dtype} {found}, its record says {dtype} "
            f"{shape}; {redo}"
        )
    nbytes = math.prod(shape) * dtype.itemsize
    offset = dataset.id.get_offset()
    if nbytes and (offset is None or offset + nbytes > size):
        raise SidecarCorruptError(
            f"side file {path}: {label} lies outside the {size}-byte file; {redo}"
        )
    return dataset, offset


def _attr(handle: h5py.File, key: str) -> Any:
    value = handle.attrs.get(key)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value.tolist() if isinstance(value, np.ndarray | np.generic) else value


class Sidecar:
    """An open side file: per-checkpoint arrays by ``(model, epoch)``, shared arrays by name.

    The file is hashed once when opened; arrays are then memory-mapped through the same open
    file, so what is read is what was hashed. Its embedded identity (zoo, spec and content
    fingerprints, name, models, epochs) must equal the record's, which must match the zoo's
    current manifest. Picklable (for DataLoader workers): the copy reopens the file and
    refuses it if it was replaced (inode, size or modification time).

    Args:
        zoo_dir: the zoo directory.
        name: the side file's name.
        verify: check the sha256 (True) or only the size.

    Raises:
        SidecarNotFoundError: no such side file.
        SidecarCorruptError: a record for another zoo or other contents of it, or a file that
            differs from its record.
        UnsafePathError: a link, a special file, or a path out of the zoo.
    """

    def __init__(self, zoo_dir: str | os.PathLike[str], name: str, *, verify: bool = True) -> None:
        self.zoo_dir = Path(zoo_dir)
        manifest = Manifest.load(self.zoo_dir)
        self.record, self.path = _load_record(self.zoo_dir, name, manifest)
        self.name = name
        self.models = np.asarray(self.record.models, dtype=np.int64)
        self.epochs = list(self.record.epochs)
        self._order = np.argsort(self.models, kind="stable")
        self._identity: tuple[int, int, int, int] | None = None
        self._file: io.BufferedReader | None = None
        self._maps: dict[str, np.ndarray] = {}
        self._open(verify)

    @property
    def attrs(self) -> dict[str, Any]:
        """The record's attributes."""
        return dict(self.record.attrs)

    @property
    def arrays(self) -> list[str]:
        """Names of the per-checkpoint arrays."""
        return list(self.record.arrays)

    @property
    def shared(self) -> list[str]:
        """Names of the arrays shared by every checkpoint."""
        return list(self.record.shared)

    @property
    def _again(self) -> str:
        return _redo(self.zoo_dir, self.name)

    def _open(self, verify: bool) -> None:
        try:
            handle = _open_regular(self.path)
        except FileNotFoundError:
            raise SidecarNotFoundError(
                f"side file {self.path} is missing although its record exists; {self._again}"
            ) from None
        info = os.fstat(handle.fileno())
        identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        try:
            if self._identity is not None and identity != self._identity:
                raise SidecarCorruptError(
                    f"side file {self.path} was replaced after it was opened; open it again"
                )
            if info.st_size != self.record.bytes:
                raise SidecarCorruptError(
                    f"side file {self.path} has {info.st_size} bytes, its record says "
                    f"{self.record.bytes}: truncated or replaced; {self._again}"
                )
            if verify:
                digest, _ = _hash(handle)
                if digest != self.record.sha256:
                    raise SidecarCorruptError(
                        f"side file {self.path} is corrupt: sha256 {digest}, expected "
                        f"{self.record.sha256}; {self._again}"
                    )
            self._maps = self._map(handle)
        except BaseException:
            handle.close()
            raise
        self._file, self._identity = handle, identity

    def _map(self, handle: io.BufferedReader) -> dict[str, np.ndarray]:
        maps: dict[str, np.ndarray] = {}
        where = (self.path, self._again)
        try:
            with h5py.File(handle, "r") as h5:
                self._check_identity(h5)
                tables = (("arrays", self.record.arrays), ("common", self.record.shared))
                for group, table in tables:
                    folder = _plain_member(h5, group, h5py.Group, *where)
                    for key, meta in table.items():
                        dtype, shape = np.dtype(meta["dtype"]), meta["shape"]
                        _, offset = _plain_dataset(
                            folder, key, dtype, shape, self.record.bytes, where
                        )
                        if offset is None:
                            maps[key] = np.empty(shape, dtype)  # no element: nothing to read
                        else:
                            maps[key] = np.memmap(
                                handle, dtype=dtype, mode="r", offset=offset, shape=tuple(shape)
                            )
        except (OSError, KeyError) as exc:
            raise SidecarCorruptError(
                f"cannot read side file {self.path}: {' '.join(str(exc).split())}; {self._again}"
            ) from None
        return maps

    def _check_identity(self, h5: h5py.File) -> None:
        """The identity the file carries, against its record (itself checked against the zoo)."""
        expected = {"format": SIDECAR_FORMAT, "format_version": SIDECAR_VERSION} | {
            key: getattr(self.record, key) for key in _IDENTITY
        }
        for key, want in expected.items():
            got = _attr(h5, key)
            if got != want:
                raise SidecarCorruptError(
                    f"side file {self.path} holds {key}={got!r:.80}, its record {want!r:.80}; "
                    f"{self._again}"
                )
        for axis in ("models", "epochs"):
            want = getattr(self.record, axis)
            dataset, _ = _plain_dataset(
                h5, axis, _AXIS_DTYPE, [len(want)], self.record.bytes, (self.path, self._again)
            )
            got = dataset[()].tolist() if want else []
            if got != want:
                at = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
                raise SidecarCorruptError(
                    f"side file {self.path} holds {axis}[{at}] = {got[at]}, its record "
                    f"{want[at]} (record edited or not this file's); {self._again}"
                )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"], state["_maps"] = None, {}
        return state

    def _ensure_open(self) -> dict[str, np.ndarray]:
        if self._file is None:
            self._open(verify=False)  # identity-checked against the file hashed first
        return self._maps

    def __getitem__(self, name: str) -> np.ndarray:
        """A whole array (per-checkpoint or shared) as a read-only array."""
        maps = self._ensure_open()
        if name not in maps:
            raise UnknownColumnError(
                f"side file {self.name!r} has no array {name!r}; it has "
                f"{', '.join(self.arrays + self.shared)}"
            )
        return maps[name]

    def index(
        self, models: Sequence[int] | np.ndarray, epochs: Sequence[int] | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Axis indices of ``(model position, epoch label)`` pairs.

        Raises:
            UnknownColumnError: a model the side file does not cover.
            EpochError: an epoch it does not cover.
        """
        wanted = np.atleast_1d(np.asarray(models, dtype=np.int64))
        sorted_models = self.models[self._order]
        at = np.searchsorted(sorted_models, wanted).clip(0, max(len(sorted_models) - 1, 0))
        if len(sorted_models) == 0 or (sorted_models[at] != wanted).any():
            missing = wanted if len(sorted_models) == 0 else wanted[sorted_models[at] != wanted]
            raise UnknownColumnError(
                f"side file {self.name!r} of {self.zoo_dir} has no model(s) "
                f"{missing.tolist()[:5]}; compute it again over them"
            )
        column = {e: i for i, e in enumerate(self.epochs)}
        labels = np.atleast_1d(np.asarray(epochs, dtype=np.int64)).tolist()
        missing_epochs = [e for e in labels if e not in column]
        if missing_epochs:
            raise EpochError(
                f"side file {self.name!r} of {self.zoo_dir} has no epoch(s) {missing_epochs}; "
                f"it has {self.epochs}"
            )
        return self._order[at], np.asarray([column[e] for e in labels], dtype=np.int64)

    def read(
        self,
        name: str,
        models: Sequence[int] | np.ndarray,
        epochs: Sequence[int] | np.ndarray,
    ) -> np.ndarray:
        """Values of array ``name`` for ``(model position, epoch label)`` pairs: ``[n, ...]``."""
        if name not in self.record.arrays:
            raise UnknownColumnError(
                f"side file {self.name!r} has no per-checkpoint array {name!r}; it has "
                f"{', '.join(self.arrays)}"
            )
        rows, columns = self.index(models, epochs)
        if len(rows) != len(columns):
            columns = np.broadcast_to(columns, rows.shape)
        return np.asarray(self[name][rows, columns])

    def close(self) -> None:
        """Release the maps and the file."""
        self._maps = {}
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Sidecar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_sidecar(zoo_dir: str | os.PathLike[str], name: str, *, verify: bool = True) -> Sidecar:
    """Open a side file for ``(model, epoch)`` reads; see :class:`Sidecar`."""
    return Sidecar(zoo_dir, name, verify=verify)


def read_sidecar(zoo_dir: str | os.PathLike[str], name: str) -> dict[str, np.ndarray]:
    """Every array of a side file (per-checkpoint and shared) in memory, after verifying it.

    Also ``models`` (storage positions, axis 0) and ``epochs`` (labels, axis 1).

    Raises:
        SidecarNotFoundError, SidecarCorruptError, UnsafePathError: as :class:`Sidecar`.
    """
    with Sidecar(zoo_dir, name) as sidecar:
        out = {key: np.array(sidecar[key]) for key in sidecar.arrays + sidecar.shared}
        out.setdefault("models", sidecar.models.copy())
        out.setdefault("epochs", np.asarray(sidecar.epochs, dtype=np.int64))
        return out
