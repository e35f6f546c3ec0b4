"""Side files: named per-checkpoint arrays computed from a zoo, kept beside its shards.

A side file holds arrays ``[models, checkpoints, ...]`` over some of the zoo's models (storage
positions) and epochs (checkpoint labels), e.g. every checkpoint's outputs on a query set or
its loss-landscape metrics, plus optional arrays shared by all checkpoints (the query set)::

    <zoo>/sidecars/<name>.h5     HDF5: models, epochs, arrays/<array>, common/<array>
    <zoo>/sidecars/<name>.json   its record: zoo, spec fingerprint, sha256, bytes, shapes, attrs

Same discipline as shards: the HDF5 file is written to a temporary name, fsynced and renamed,
then the record (the commit point) is replaced atomically; a reader checks the record against
the zoo's manifest, the file's size and sha256 against the record, and refuses any path that
leaves the zoo. ``zoo.json`` is not touched, so every zoo stays readable by every version.

:func:`open_sidecar` gives a :class:`Sidecar` that reads any ``(model, epoch)`` pairs (one
memory map per array, tied to the very file that was hashed); :func:`read_sidecar` reads
everything into memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from weightzoo.errors import (
    EpochError,
    InvalidOptionError,
    SidecarCorruptError,
    SidecarNotFoundError,
    UnknownColumnError,
    UnsafePathError,
)
from weightzoo.storage.manifest import Manifest
from weightzoo.storage.verify import _allowed_roots
from weightzoo.storage.writer import ZooLock

__all__ = [
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
SIDECAR_FORMAT = "weightzoo-sidecar"
SIDECAR_VERSION = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_BLOCK = 1 << 20


@dataclass(frozen=True)
class SidecarRecord:
    """The JSON record of a side file (``<zoo>/sidecars/<name>.json``).

    Attributes:
        name: the side file's name.
        zoo: the zoo's name.
        spec_fingerprint: the zoo manifest's ``spec_fingerprint`` when it was written.
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
    def from_json(cls, data: Any, source: str) -> SidecarRecord:
        """Parse a record.

        Raises:
            SidecarCorruptError: if it is not a side-file record of a version this reads.
        """
        if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
            raise SidecarCorruptError(f"{source} is not a weightzoo side-file record")
        if not isinstance(data.get("format_version"), int) or data["format_version"] > 1:
            raise SidecarCorruptError(
                f"{source} has format_version {data.get('format_version')!r}; this weightzoo "
                f"reads {SIDECAR_VERSION}: upgrade weightzoo"
            )
        try:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except TypeError as exc:
            raise SidecarCorruptError(f"{source} is missing fields: {exc}") from None


# ------------------------------------------------------------------------------ paths
def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidOptionError(
            f"side-file name {name!r} must be 1-100 letters, digits, '_', '.' or '-', not "
            "starting with '.', '_' or '-'"
        )
    return name


def _inside(zoo_dir: Path, path: Path) -> Path:
    """``path`` if it resolves inside the zoo (or its hub-cache blobs), else UnsafePathError."""
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in _allowed_roots(zoo_dir)):
        raise UnsafePathError(
            f"{path} resolves to {resolved}, outside zoo {zoo_dir}; weightzoo does not follow "
            "links out of a zoo. Remove the link and compute the side file again."
        )
    return path


def _paths(zoo_dir: Path, name: str) -> tuple[Path, Path]:
    folder = _inside(zoo_dir, zoo_dir / SIDECAR_DIR)
    return _inside(zoo_dir, folder / f"{name}.h5"), _inside(zoo_dir, folder / f"{name}.json")


def list_sidecars(zoo_dir: str | os.PathLike[str]) -> list[str]:
    """Names of the side files a zoo has a record for, sorted."""
    folder = Path(zoo_dir) / SIDECAR_DIR
    if not folder.is_dir():
        return []
    _inside(Path(zoo_dir), folder)
    return sorted(p.stem for p in folder.glob("*.json") if _NAME.fullmatch(p.stem))


# ------------------------------------------------------------------------------ writing
def _numeric(name: str, array: Any) -> np.ndarray:
    array = np.ascontiguousarray(array)
    if array.dtype.kind not in "biuf":
        raise InvalidOptionError(
            f"side-file array {name!r} must be numeric or bool, got dtype {array.dtype}"
        )
    return array


def _axis(values: Iterable[int] | None, default: Sequence[int], what: str) -> np.ndarray:
    out = np.asarray(list(default) if values is None else list(values), dtype=np.int64)
    if out.ndim != 1 or len(np.unique(out)) != len(out):
        raise InvalidOptionError(f"side-file {what} must be distinct integers, got {out.tolist()}")
    return out


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

    Args:
        zoo_dir: the zoo directory.
        name: the side file's name (letters, digits, ``_``, ``.``, ``-``).
        arrays: per-checkpoint arrays, each ``[len(models), len(epochs), ...]``, numeric.
        attrs: JSON-serialisable attributes kept in the record.
        shared: arrays shared by every checkpoint (any shape), numeric.
        models: the storage positions along axis 0 (default: every model of the zoo).
        epochs: the checkpoint labels along axis 1 (default: every checkpoint).

    Returns:
        The record written.

    Raises:
        InvalidOptionError: a bad name, shape, dtype, model or epoch.
        ZooLockedError: another writer holds the zoo.
        UnsafePathError: ``sidecars/`` or the file is a link out of the zoo.
    """
    zoo_dir = Path(zoo_dir)
    manifest = Manifest.load(zoo_dir)
    _check_name(name)
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
        if value.shape[:2] != (len(positions), len(labels)):
            raise InvalidOptionError(
                f"side-file array {key!r} has shape {list(value.shape)}; it must start with "
                f"[{len(positions)} models, {len(labels)} checkpoints]"
            )
    attrs = json.loads(json.dumps(dict(attrs or {})))  # JSON only, and a copy
    h5_path, json_path = _paths(zoo_dir, name)
    lock = ZooLock(zoo_dir)
    try:
        h5_path.parent.mkdir(exist_ok=True)
        _inside(zoo_dir, h5_path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.h5.", suffix=".tmp", dir=h5_path.parent)
        os.close(fd)
        try:
            with h5py.File(tmp, "w") as handle:
                handle.attrs["format"] = SIDECAR_FORMAT
                handle.attrs["format_version"] = SIDECAR_VERSION
                handle.attrs["zoo"] = manifest.name
                handle.attrs["spec_fingerprint"] = manifest.spec_fingerprint
                handle.attrs["name"] = name
                handle.create_dataset("models", data=positions)
                handle.create_dataset("epochs", data=labels)
                for group, table in (("arrays", per), ("common", common)):
                    folder = handle.create_group(group)
                    for key, value in table.items():
                        folder.create_dataset(key, data=value)  # contiguous: memory-mappable
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
                digest, size = _hash(handle)
            os.chmod(tmp, 0o644)
            os.replace(tmp, h5_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        record = SidecarRecord(
            name=name,
            zoo=manifest.name,
            spec_fingerprint=manifest.spec_fingerprint,
            file=f"{SIDECAR_DIR}/{name}.h5",
            sha256=digest,
            bytes=size,
            models=positions.tolist(),
            epochs=labels.tolist(),
            arrays={k: {"dtype": v.dtype.str, "shape": list(v.shape)} for k, v in per.items()},
            shared={k: {"dtype": v.dtype.str, "shape": list(v.shape)} for k, v in common.items()},
            attrs=attrs,
        )
        _write_json(json_path, record.to_json())
        _fsync_dir(h5_path.parent)
    finally:
        lock.release()
    return record


def _write_json(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)  # one line: the model list may be long
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    if not json_path.is_file():
        have = list_sidecars(zoo_dir)
        raise SidecarNotFoundError(
            f"zoo {zoo_dir} has no side file {name!r} ({json_path} does not exist); it has "
            f"{have or 'none'}. Compute it (e.g. `weightzoo behaviour {zoo_dir}`)."
        )
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SidecarCorruptError(f"cannot parse {json_path}: {exc}") from None
    record = SidecarRecord.from_json(data, str(json_path))
    if record.file != f"{SIDECAR_DIR}/{name}.h5" or record.name != name:
        raise SidecarCorruptError(
            f"{json_path} names file {record.file!r} / side file {record.name!r}; expected "
            f"{SIDECAR_DIR}/{name}.h5. Compute the side file again."
        )
    if record.zoo != manifest.name or record.spec_fingerprint != manifest.spec_fingerprint:
        raise SidecarCorruptError(
            f"side file {json_path} was computed for zoo {record.zoo!r} (spec "
            f"{record.spec_fingerprint[:12]}), not this zoo {manifest.name!r} (spec "
            f"{manifest.spec_fingerprint[:12]}). Compute it again."
        )
    return record, h5_path


def sidecar_records(zoo_dir: str | os.PathLike[str]) -> dict[str, SidecarRecord]:
    """Every side file's record, checked against the zoo (the files are not hashed here).

    Raises:
        SidecarCorruptError: a record that does not parse or belongs to another zoo.
    """
    zoo_dir = Path(zoo_dir)
    manifest = Manifest.load(zoo_dir)
    return {name: _load_record(zoo_dir, name, manifest)[0] for name in list_sidecars(zoo_dir)}


class Sidecar:
    """An open side file: per-checkpoint arrays by ``(model, epoch)``, shared arrays by name.

    The file is hashed once when opened; arrays are then memory-mapped through the same open
    file, so what is read is what was hashed. Picklable (for DataLoader workers): the copy
    reopens the file and refuses it if it was replaced (inode, size or modification time).

    Args:
        zoo_dir: the zoo directory.
        name: the side file's name.
        verify: check the sha256 (True) or only the size.

    Raises:
        SidecarNotFoundError: no such side file.
        SidecarCorruptError: a record for another zoo, or a file that differs from it.
        UnsafePathError: a link out of the zoo.
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

    def _open(self, verify: bool) -> None:
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            raise SidecarNotFoundError(
                f"side file {self.path} is missing although its record exists; compute it again"
            ) from None
        stat = os.fstat(handle.fileno())
        identity = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        try:
            if self._identity is not None and identity != self._identity:
                raise SidecarCorruptError(
                    f"side file {self.path} was replaced after it was opened; open it again"
                )
            if stat.st_size != self.record.bytes:
                raise SidecarCorruptError(
                    f"side file {self.path} has {stat.st_size} bytes, its record says "
                    f"{self.record.bytes}: truncated or replaced. Compute it again."
                )
            if verify:
                digest, _ = _hash(handle)
                if digest != self.record.sha256:
                    raise SidecarCorruptError(
                        f"side file {self.path} is corrupt: sha256 {digest}, expected "
                        f"{self.record.sha256}. Compute it again."
                    )
            self._maps = self._map(handle)
        except BaseException:
            handle.close()
            raise
        self._file, self._identity = handle, identity

    def _map(self, handle: io.BufferedReader) -> dict[str, np.ndarray]:
        maps: dict[str, np.ndarray] = {}
        try:
            with h5py.File(handle, "r") as h5:
                for key in ("zoo", "spec_fingerprint", "name"):
                    value = h5.attrs.get(key)
                    value = value.decode() if isinstance(value, bytes) else value
                    if value != getattr(self.record, key):
                        raise SidecarCorruptError(
                            f"side file {self.path} says {key}={value!r}, its record "
                            f"{getattr(self.record, key)!r}. Compute it again."
                        )
                if h5["models"][()].tolist() != self.record.models:
                    raise SidecarCorruptError(f"side file {self.path}: models differ from record")
                tables = (("arrays", self.record.arrays), ("common", self.record.shared))
                for group, table in tables:
                    for key, meta in table.items():
                        dataset = h5[f"{group}/{key}"]
                        if list(dataset.shape) != list(meta["shape"]):
                            raise SidecarCorruptError(
                                f"side file {self.path}: {group}/{key} has shape "
                                f"{list(dataset.shape)}, its record {meta['shape']}"
                            )
                        offset = dataset.id.get_offset()
                        if offset is None or dataset.size == 0:
                            maps[key] = dataset[()]  # empty or not contiguous: read it whole
                        else:
                            maps[key] = np.memmap(
                                handle,
                                dtype=dataset.dtype,
                                mode="r",
                                offset=offset,
                                shape=dataset.shape,
                            )
        except (OSError, KeyError) as exc:
            raise SidecarCorruptError(f"cannot read side file {self.path}: {exc}") from None
        return maps

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
