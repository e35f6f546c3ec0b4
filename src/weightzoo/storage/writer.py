"""Writing zoos: atomic HDF5 shards and the manifest that lists them.

One writer per zoo directory: a writer holds an exclusive ``flock`` on ``<zoo>/.lock`` for its
life (the OS releases it when the process ends, however it ends). Every shard is written to a
temporary name unique to the writer, flushed and fsynced, hashed, renamed into place, and only
then added to the manifest, which is itself replaced atomically. A crash at any point leaves the
zoo readable with the shards that were complete, and a rerun writes the rest.

Slices (``weightzoo generate --slice i/n``, one job of a batch array each) write one zoo
directory together: each slice writer holds ``<zoo>/.lock`` *shared* and its own
``<zoo>/.lock.slice-<i>-of-<n>`` exclusively, and keeps its own manifest
``zoo.slice-<i>-of-<n>.json``. Slices therefore run at the same time, a slice cannot run twice,
and a whole-zoo writer (or the merge, :mod:`weightzoo.storage.merge`) waits for none of them:
it is refused while any slice holds the shared lock.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from weightzoo.errors import (
    InvalidOptionError,
    ManifestError,
    SpecMismatchError,
    StorageWriteError,
    ZooLockedError,
)
from weightzoo.storage.hashing import sha256_file
from weightzoo.storage.layout import Layout
from weightzoo.storage.manifest import (
    COLUMN_KINDS,
    FORMAT_VERSION,
    MANIFEST_NAME,
    SHARD_DIR,
    SPLITS,
    Manifest,
    ShardEntry,
    check_shard_file,
    parse_slice_manifest_name,
    slice_manifest_name,
)

TEMP_SUFFIX = ".tmp"
LOCK_NAME = ".lock"

# Fault injection for tests: called with the name of each write step (``before_shard_rename``,
# ``after_shard_rename``, ``before_manifest_replace``, ``after_manifest_replace``).
fault_hook: Callable[[str], None] | None = None


def write_failure(exc: BaseException) -> str:
    """The reason of a failed write in a few words (``No space left on device``).

    h5py reports a failed write as a ``RuntimeError`` whose text holds HDF5's own record,
    including ``error message = '...'``; an ``OSError`` has its ``strerror``.
    """
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    marker = "error message = '"
    if marker in text:
        return text.split(marker, 1)[1].split("'", 1)[0]
    return " ".join(text.split())[:200]


def _step(name: str) -> None:
    if fault_hook is not None:
        fault_hook(name)


def slice_lock_name(index: int, count: int) -> str:
    """The lock file that keeps slice ``index`` of ``count`` from running twice."""
    return f"{LOCK_NAME}.slice-{index}-of-{count}"


# The names a writer gives the files of a zoo directory it starts, and of its shards/ folder.
_OWN_TOP = re.compile(
    r"zoo(\.slice-\d+-of-\d+)?\.json|\.zoo(\.slice-\d+-of-\d+)?\.json\..+\.tmp"
    r"|\.lock(\.slice-\d+-of-\d+)?|shards|sidecars|groups|\.resume"
)
_OWN_SHARD = re.compile(r"(train|val|test)-\d{6,10}-c\d{3,6}\.h5(\..+\.tmp)?")
# Training states of unfinished blocks (weightzoo.generate.resume) and their temporaries.
RESUME_DIR = ".resume"
_OWN_STATE = re.compile(r"(train|val|test)-\d{6,10}\.pt(\.[0-9a-f]{16}\.tmp)?")
_LOCK_TEXT = re.compile(rb"\d*\n?")


def is_own_top_name(name: str) -> bool:
    """Whether ``name`` is one a writer gives an entry at the top of a zoo directory."""
    return _OWN_TOP.fullmatch(name) is not None


def _own_entry(path: Path) -> bool:
    if not _OWN_TOP.fullmatch(path.name) or path.is_symlink():
        return False
    if path.name.startswith(LOCK_NAME):  # a lock holds a pid or nothing, never a user's data
        return path.is_file() and bool(_LOCK_TEXT.fullmatch(path.read_bytes()[:64]))
    if path.name == SHARD_DIR:
        return path.is_dir() and all(_OWN_SHARD.fullmatch(p.name) for p in path.iterdir())
    if path.name in ("sidecars", "groups"):  # a zoo not begun has none: only empty ones
        return path.is_dir() and not any(path.iterdir())
    if path.name == RESUME_DIR:
        return path.is_dir() and all(is_state_file_name(p.name) for p in path.iterdir())
    return True


def is_state_file_name(name: str) -> bool:
    """Whether ``name`` is one a block's state file (or its temporary) in ``.resume`` takes."""
    return bool(_OWN_STATE.fullmatch(name))


def refuse_foreign_files(zoo_dir: Path) -> None:
    """Refuse to start a zoo in a directory that holds files weightzoo did not write.

    A directory that holds a manifest is a zoo (resumed, or refused as another zoo by its
    spec); any other must be empty or hold only a writer's own files (its locks, slice
    manifests, shards, and the ``.resume`` folder of block states), so that no lock,
    temporary file, shard or state of a run ever overwrites or deletes a user's file.

    Raises:
        InvalidOptionError: naming the first files that are not weightzoo's.
    """
    if (zoo_dir / MANIFEST_NAME).exists():
        return
    foreign = sorted(p.name for p in zoo_dir.iterdir() if not _own_entry(p))
    if foreign:
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        raise InvalidOptionError(
            f"{zoo_dir} is not empty and holds no zoo (it holds {', '.join(foreign[:5])}{more}); "
            "weightzoo writes a new zoo only into an empty or absent directory. Choose another "
            "directory."
        )


class ZooLock:
    """A ``flock`` on ``<zoo>/.lock`` (or another lock file of the zoo).

    An exclusive holder writes its pid into the file for error messages; shared holders (the
    slices of one zoo) leave the file alone. A process forked while the lock is held (a
    training worker) does not hold it: the lock goes when its holder does, even if a worker
    outlives it by a moment.

    Args:
        zoo_dir: the zoo directory (must exist).
        name: the lock file's name inside it.
        shared: take a shared lock (any number of shared holders, no exclusive one).

    Raises:
        ZooLockedError: if another open writer (in this or another process) holds the lock in
            a conflicting mode.
    """

    def __init__(self, zoo_dir: Path, *, name: str = LOCK_NAME, shared: bool = False) -> None:
        self.path = zoo_dir / name
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        self._fd: int | None = os.open(self.path, flags, 0o644)
        try:
            fcntl.flock(self._fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(self._fd, 32, 0).decode(errors="replace").strip()
            os.close(self._fd)
            self._fd = None
            if not owner:  # only shared holders write no pid: slices are running
                who = "slices (generate --slice) are"
            elif owner == str(os.getpid()):
                who = f"another writer in this process (pid {owner}) is"
            else:
                who = f"another process (pid {owner}) is"
            raise ZooLockedError(
                f"{who} writing zoo {zoo_dir} ({name}); wait for it to finish (or close it) or "
                "use another --out directory"
            ) from None
        except BaseException:
            os.close(self._fd)  # e.g. no flock on this file system: keep no descriptor open
            self._fd = None
            raise
        if not self._names_our_file():
            # the file was unlinked (a failed run cleaning up) between our open and our flock:
            # a lock on an orphan would let the next writer lock a new file beside us
            self.release()
            raise ZooLockedError(
                f"the lock file {self.path} was removed while this writer took it; "
                "rerun the command"
            )
        try:
            # An exclusive holder's pid would outlive it and name the wrong culprit to the next.
            os.ftruncate(self._fd, 0)
            if not shared:
                os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:  # e.g. a full disk: hold no lock the caller never gets to release
            self.release()
            raise
        _HELD.add(self)

    def _names_our_file(self) -> bool:
        """Whether ``self.path`` is still the file whose descriptor holds the lock."""
        try:
            on_disk = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        held = os.fstat(self._fd)
        return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._fd is not None

    def release(self) -> None:
        """Release the lock (idempotent). The lock file stays; only the lock matters."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor releases the flock


#: The locks this process holds, for :func:`_drop_inherited_locks`.
_HELD: weakref.WeakSet[ZooLock] = weakref.WeakSet()


def _drop_inherited_locks() -> None:
    """In a forked child: close the lock descriptors it inherited, without unlocking.

    A descriptor copied by ``fork`` shares its ``flock``: a worker still alive after its
    parent was killed would otherwise keep the zoo locked against the rerun.
    """
    for lock in list(_HELD):
        if lock._fd is not None:
            fd, lock._fd = lock._fd, None
            os.close(fd)  # the parent's descriptor still holds the lock
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_locks)


# Shards up to this size are built in memory and written with one plain write.
IN_MEMORY_SHARD_BYTES = 1 << 30
# Rows longer than this (float32 elements, 4 MiB) are chunked along params too.
MAX_CHUNK_PARAMS = 1 << 20


def checkpoint_viability(weights: np.ndarray, threshold: float) -> np.ndarray:
    """Per-checkpoint viability of ``weights [models, checkpoints, params]``.

    A checkpoint is viable when all its weights are finite and none exceeds ``threshold`` in
    absolute value (the Model Zoos paper's filter).
    """
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(weights).all(axis=-1)
        bounded = np.nan_to_num(np.abs(weights), nan=np.inf).max(axis=-1, initial=0) <= threshold
    return finite & bounded


def _create_row_dataset(group: h5py.Group, name: str, data: np.ndarray) -> None:
    """Create a float32 ``[models, checkpoints, n]`` dataset, one chunk per row (or row part).

    Chunks are allocated early (all at creation) so that they lie in row-major order at
    regular offsets: the reader then maps the file with ``np.memmap`` (memmap speed) instead
    of asking HDF5 for each chunk. No compression: it saves 10-15% on float weights and costs
    two orders of magnitude in random-read speed.
    """
    _models, _checkpoints, n = data.shape
    chunk = (1, 1, max(1, min(n, MAX_CHUNK_PARAMS)))
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk(chunk)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    dcpl.set_obj_track_times(False)  # timestamps would make same-spec shards differ byte-wise
    space = h5py.h5s.create_simple(data.shape)
    tid = h5py.h5t.py_create(np.dtype("<f4"))
    dsid = h5py.h5d.create(group.id, name.encode(), tid, space, dcpl=dcpl)
    dataset = h5py.Dataset(dsid)
    if data.size:
        dataset[...] = data


def _create_group(parent: h5py.Group, name: str) -> h5py.Group:
    """A group without modification times (same input -> byte-identical shard)."""
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    return h5py.Group(h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl))


def _column_array(name: str, values: Any, models: int) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind in "OUS":
        array = np.asarray([str(v) for v in np.ravel(array)], dtype=object)
    if array.shape[:1] != (models,):
        raise ValueError(
            f"column {name!r} has shape {array.shape}; expected {models} values, one per model"
        )
    if array.dtype.kind == "f":
        array = array.astype(np.float32 if array.dtype.itemsize <= 4 else np.float64)
    return array


def dtype_name(array: np.ndarray) -> str:
    """The manifest's dtype string of a column: numpy's name, ``str`` for strings.

    Raises:
        ValueError: for a dtype a reader would refuse (complex, datetime, ...).
    """
    name = "str" if array.dtype == object else array.dtype.name
    if name not in COLUMN_KINDS:
        raise ValueError(f"a column of dtype {name} cannot be stored; use a number or a string")
    return name


@dataclass(frozen=True, eq=False)  # arrays: compared by identity
class ShardContent:
    """What one shard file holds: its identity, its arrays and its rows of the model table.

    :meth:`ZooWriter.write_shard` builds it from checked input; :func:`write_shard_file`
    writes it.

    Attributes:
        zoo_name: name of the zoo the shard belongs to.
        spec_fingerprint: identity of the zoo's spec.
        split: ``train``, ``val`` or ``test``.
        models: storage positions ``[first, last)``.
        epochs: checkpoint labels held, in the zoo's order.
        weights: float32 ``[models, checkpoints, params]``.
        stats: float32 ``[models, checkpoints, statistics]``.
        metrics: ``{name: float32 [models, checkpoints]}``.
        columns: ``{name: [models] or [models, k]}``; strings as ``object`` arrays.
        checkpoint_viable: bool ``[models, checkpoints]``.
    """

    zoo_name: str
    spec_fingerprint: str
    split: str
    models: tuple[int, int]
    epochs: tuple[int, ...]
    weights: np.ndarray
    stats: np.ndarray
    metrics: Mapping[str, np.ndarray]
    columns: Mapping[str, np.ndarray]
    checkpoint_viable: np.ndarray


def write_shard_file(path: str | os.PathLike[str], content: ShardContent) -> None:
    """Write one shard file in format version 1 (not atomic: see :meth:`ZooWriter.write_shard`).

    The arrays of ``content`` must already be validated (shapes ``[models, len(epochs),
    ...]``). The file attributes identify the shard (zoo, spec fingerprint, split, models,
    epochs), so that a reader can check it against the manifest; they hold no time or path, so
    the same input gives the same bytes.

    A shard of up to :data:`IN_MEMORY_SHARD_BYTES` is built in memory (HDF5's core driver, the
    same bytes) and written with one plain write: a full disk then fails as an ordinary
    ``OSError``, never inside HDF5, whose half-written file fails again when it is closed.
    """
    in_memory = content.weights.nbytes + content.stats.nbytes <= IN_MEMORY_SHARD_BYTES
    driver: dict[str, Any] = {"driver": "core", "backing_store": False} if in_memory else {}
    with h5py.File(os.fspath(path), "w", libver="latest", **driver) as handle:
        handle.attrs["format"] = "weightzoo-shard"
        handle.attrs["format_version"] = FORMAT_VERSION
        handle.attrs["zoo"] = content.zoo_name
        handle.attrs["spec_fingerprint"] = content.spec_fingerprint
        handle.attrs["split"] = content.split
        handle.attrs["models"] = np.asarray(content.models, dtype=np.int64)
        handle.attrs["epochs"] = np.asarray(content.epochs, dtype=np.int64)
        _create_row_dataset(handle, "weights", content.weights)
        _create_row_dataset(handle, "stats", content.stats)
        handle.create_dataset(
            "checkpoint_viable", data=content.checkpoint_viable.astype(bool), track_times=False
        )
        metric_group = _create_group(handle, "metrics")
        for name, values in content.metrics.items():
            metric_group.create_dataset(name, data=values.astype(np.float32), track_times=False)
        model_group = _create_group(handle, "models")
        for name, values in content.columns.items():
            if values.dtype == object:
                model_group.create_dataset(
                    name,
                    data=values.astype(str).tolist(),
                    dtype=h5py.string_dtype("utf-8"),
                    track_times=False,
                )
            else:
                model_group.create_dataset(name, data=values, track_times=False)
        handle.flush()
        if in_memory:
            handle.flush()  # a second flush settles the image to the bytes the file driver writes
        image = handle.id.get_file_image() if in_memory else None
    if image is not None:
        with open(path, "wb") as out:
            out.write(image)


class ZooWriter:
    """Writes shards of one zoo and keeps its manifest current.

    Opening a writer takes the zoo's lock (see :class:`ZooLock`) until :meth:`close`, the end
    of a ``with`` block, garbage collection or the end of the process. Opening a writer on a
    directory that already holds a zoo resumes it: shards listed in the manifest and present
    with the right size are kept, leftovers of interrupted writes are removed, and a zoo of a
    different spec is refused, unless it has no finished shard yet (then it is replaced).

    Args:
        zoo_dir: the zoo directory (created if missing).
        name: zoo name.
        family: zoo family.
        spec: the full generating spec as JSON data.
        layout: layout of one weight row.
        epochs: checkpoint labels in checkpoint-axis order.
        metrics: names of per-checkpoint metrics each shard carries.
        stats_names: names of the stored statistics.
        num_models: number of models of the complete zoo.
        split_counts: models per split of the complete zoo (optional).
        stats_preset: the statistics definition stored.
        spec_fingerprint: identity of the spec (defaults to a hash of ``spec``).
        diverge_threshold: ``abs(weight)`` beyond which a checkpoint is not viable.
        extra: free-form manifest information (library version, creator).
        slice: ``(index, count)`` to write one slice of the zoo: the manifest goes to
            ``zoo.slice-<index>-of-<count>.json`` and other slices may write the same
            directory at the same time (see the module's documentation).

    Raises:
        ZooLockedError: if another writer is writing ``zoo_dir`` (for a slice: a whole-zoo
            writer, or the same slice).
        SpecMismatchError: if ``zoo_dir`` holds a zoo generated from another spec.
        ManifestError: for a whole-zoo writer on a directory of slices or of stray shards, and
            for a slice writer on a directory with a whole-zoo manifest or slices of another
            count.
    """

    _lock: ZooLock | None = None
    _slice_lock: ZooLock | None = None

    def __init__(
        self,
        zoo_dir: str | os.PathLike[str],
        *,
        name: str,
        family: str,
        spec: Mapping[str, Any],
        layout: Layout,
        epochs: Sequence[int],
        metrics: Sequence[str],
        stats_names: Sequence[str],
        num_models: int,
        split_counts: Mapping[str, int] | None = None,
        stats_preset: str = "modelzoo",
        spec_fingerprint: str | None = None,
        diverge_threshold: float = 1e3,
        extra: Mapping[str, Any] | None = None,
        slice: tuple[int, int] | None = None,
    ) -> None:
        import hashlib
        import json

        self.zoo_dir = Path(zoo_dir)
        self.diverge_threshold = float(diverge_threshold)
        spec = json.loads(json.dumps(dict(spec)))
        if spec_fingerprint is None:
            canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
            spec_fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
        self.manifest = Manifest(
            name=name,
            family=family,
            spec=spec,
            spec_fingerprint=spec_fingerprint,
            layout=layout,
            epochs=[int(e) for e in epochs],
            metrics=list(metrics),
            columns={},
            stats_preset=stats_preset,
            stats_names=list(stats_names),
            num_models=int(num_models),
            split_counts=dict(split_counts or {}),
            extra=dict(extra or {}),
        )
        self.slice = slice
        if slice is None:
            self.manifest_file = MANIFEST_NAME
            self._temp_tag = ""
        else:
            index, count = slice
            if not 0 <= index < count:
                raise ValueError(f"slice {index}/{count}: expected 0 <= index < count")
            self.manifest_file = slice_manifest_name(index, count)
            self._temp_tag = f"slice-{index}-of-{count}."
        self.zoo_dir.mkdir(parents=True, exist_ok=True)
        refuse_foreign_files(self.zoo_dir)  # before the lock file is created or truncated
        self._lock = ZooLock(self.zoo_dir, shared=slice is not None)
        try:
            if slice is not None:
                self._slice_lock = ZooLock(self.zoo_dir, name=slice_lock_name(*slice))
            (self.zoo_dir / SHARD_DIR).mkdir(exist_ok=True)
            self._check_directory()
            if (self.zoo_dir / self.manifest_file).exists():
                self._resume()
            self._remove_temporaries()
            self._save()
        except BaseException:
            self.close()
            raise

    def _check_directory(self) -> None:
        """Refuse to mix a whole-zoo run and slices, or slices of different counts."""
        names = (p.name for p in self.zoo_dir.glob("zoo.slice-*.json"))
        slices = sorted(n for n in names if parse_slice_manifest_name(n))
        has_zoo = (self.zoo_dir / MANIFEST_NAME).exists()
        if self.slice is None:
            if slices:
                raise ManifestError(
                    f"{self.zoo_dir} holds slice manifests ({', '.join(slices)}): finish the "
                    "slices and run `weightzoo merge` on it, or use another --out directory"
                )
            if not has_zoo and any(p.suffix == ".h5" for p in (self.zoo_dir / SHARD_DIR).iterdir()):
                raise ManifestError(
                    f"{self.zoo_dir} holds shard files but no {MANIFEST_NAME}; refusing to mix "
                    "them into a new zoo. Choose an empty --out directory or delete the old "
                    "shards."
                )
            return
        if has_zoo:
            raise ManifestError(
                f"{self.zoo_dir} holds a whole-zoo {MANIFEST_NAME}; slices (--slice) write into "
                "an empty directory or one holding slices only. Use another --out directory."
            )
        count = self.slice[1]
        other = [n for n in slices if parse_slice_manifest_name(n)[1] != count]  # type: ignore[index]
        if other:
            raise ManifestError(
                f"{self.zoo_dir} holds slices of another count ({', '.join(other)}); every "
                f"slice of a zoo must use the same n (here {count}). Use another --out directory."
            )

    def close(self) -> None:
        """Release the zoo's lock; the writer cannot write afterwards."""
        if self._slice_lock is not None:
            self._slice_lock.release()
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> ZooWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def _save(self) -> None:
        self.manifest.save(self.zoo_dir, file=self.manifest_file, on_step=_step)

    def _resume(self) -> None:
        existing = Manifest.load(self.zoo_dir, file=self.manifest_file)
        if not existing.shards:
            return  # a stub of a run that failed before its first shard: start afresh
        if existing.spec_fingerprint != self.manifest.spec_fingerprint:
            changed = sorted(
                key
                for key in set(existing.spec) | set(self.manifest.spec)
                if existing.spec.get(key) != self.manifest.spec.get(key)
            )
            raise SpecMismatchError(
                f"{self.zoo_dir} already holds zoo {existing.name!r} generated from a different "
                f"spec (differing fields: {', '.join(changed) or 'none'}). Use another --out "
                "directory, or delete this one to start over."
            )
        if existing.layout != self.manifest.layout or existing.epochs != self.manifest.epochs:
            raise SpecMismatchError(
                f"{self.zoo_dir} holds a zoo with another layout or checkpoint schedule; use "
                "another --out directory."
            )
        kept = []
        for entry in existing.shards:
            path = self.zoo_dir / entry.file
            if not path.is_symlink() and path.is_file() and path.stat().st_size == entry.bytes:
                kept.append(entry)
        self.manifest.shards = kept
        self.manifest.columns = existing.columns
        self.manifest.categories = existing.categories

    def _remove_temporaries(self) -> None:
        """Delete temporary files of earlier writers: we hold the lock, so they are gone.

        A slice deletes only its own (tagged) temporary files: the other slices are alive.
        """
        tag = self._temp_tag
        leftovers = [
            *(self.zoo_dir / SHARD_DIR).glob(f"*.{tag}*{TEMP_SUFFIX}"),
            *self.zoo_dir.glob(f".{self.manifest_file}.*{TEMP_SUFFIX}"),
        ]
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)

    def has_shard(self, file: str) -> bool:
        """Whether ``file`` is already complete (listed and present with the right size)."""
        return any(entry.file == file for entry in self.manifest.shards)

    def write_shard(
        self,
        file: str,
        *,
        split: str,
        models: tuple[int, int],
        epochs: Sequence[int],
        weights: np.ndarray,
        stats: np.ndarray,
        metrics: Mapping[str, np.ndarray] | None = None,
        columns: Mapping[str, Any] | None = None,
        checkpoint_viable: np.ndarray | None = None,
    ) -> ShardEntry:
        """Write one shard atomically and add it to the manifest.

        Args:
            file: path inside the zoo, e.g. from :func:`shard_file_name`.
            split: ``train``, ``val`` or ``test``.
            models: storage positions ``[first, last)``.
            epochs: checkpoint labels held (a subset of the zoo's, in its order).
            weights: float32 ``[models, checkpoints, params]``.
            stats: float32 ``[models, checkpoints, len(stats_names)]``.
            metrics: ``{name: [models, checkpoints]}``; must cover the zoo's metric names.
            columns: ``{name: [models] or [models, k]}``; ``model_id`` is required. ``viable``
                is computed from the weights (and ANDed with a given one).
            checkpoint_viable: bool ``[models, checkpoints]``; computed when omitted.

        Returns:
            The manifest entry of the new shard.

        Raises:
            ValueError: for arrays of the wrong shape, unknown epochs or missing metrics.
            ZooLockedError: if the writer was closed.
        """
        if self._lock is None or not self._lock.held:
            raise ZooLockedError(
                f"this writer of {self.zoo_dir} was closed; open a new ZooWriter to write more"
            )
        manifest = self.manifest
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        file = check_shard_file(file, split, int(models[0]))
        epochs = [int(e) for e in epochs]
        if not set(epochs) <= set(manifest.epochs):
            raise ValueError(f"epochs {epochs} are not all among the zoo's {manifest.epochs}")
        count = models[1] - models[0]
        if count <= 0 or models[0] < 0 or models[1] > manifest.num_models:
            raise ValueError(
                f"models {list(models)} is not a non-empty range within {manifest.num_models}"
            )
        if np.iscomplexobj(weights) or np.iscomplexobj(stats):
            raise ValueError(
                f"shard {file}: complex weights or statistics cannot be stored (the imaginary "
                "part would be lost); store real and imaginary parts as separate tensors"
            )
        weights = np.ascontiguousarray(weights, dtype=np.float32)
        stats = np.ascontiguousarray(stats, dtype=np.float32)
        expected = (count, len(epochs))
        if weights.shape != (*expected, manifest.num_params):
            raise ValueError(
                f"weights have shape {weights.shape}, expected "
                f"{(*expected, manifest.num_params)} [models, checkpoints, params]"
            )
        if stats.shape != (*expected, len(manifest.stats_names)):
            raise ValueError(
                f"stats have shape {stats.shape}, expected {(*expected, len(manifest.stats_names))}"
            )
        metrics = {k: np.asarray(v, dtype=np.float32) for k, v in (metrics or {}).items()}
        missing = [m for m in manifest.metrics if m not in metrics]
        if missing:
            raise ValueError(f"metrics {missing} are missing from shard {file}")
        for name, values in metrics.items():
            if values.shape != expected:
                raise ValueError(f"metric {name!r} has shape {values.shape}, expected {expected}")
        if checkpoint_viable is None:
            checkpoint_viable = checkpoint_viability(weights, self.diverge_threshold)
        checkpoint_viable = np.asarray(checkpoint_viable, dtype=bool)
        if checkpoint_viable.shape != expected:
            raise ValueError(
                f"checkpoint_viable has shape {checkpoint_viable.shape}, expected {expected}"
            )
        table = {name: _column_array(name, v, count) for name, v in (columns or {}).items()}
        if "model_id" not in table:
            raise ValueError("columns must include 'model_id' (the generator's model id)")
        computed_viable = checkpoint_viable.all(axis=1)
        if "viable" in table:
            computed_viable &= table["viable"].astype(bool)
        table["viable"] = computed_viable
        self._check_columns(table, file)

        final = self.zoo_dir / file
        final.parent.mkdir(parents=True, exist_ok=True)
        # Unique per writer: a temporary name never collides with another process's.
        temp = final.with_name(
            f"{final.name}.{self._temp_tag}{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}"
        )
        content = ShardContent(
            zoo_name=manifest.name,
            spec_fingerprint=manifest.spec_fingerprint,
            split=split,
            models=(int(models[0]), int(models[1])),
            epochs=tuple(epochs),
            weights=weights,
            stats=stats,
            metrics=metrics,
            columns=table,
            checkpoint_viable=checkpoint_viable,
        )
        try:
            write_shard_file(temp, content)
            with open(temp, "rb+") as handle:
                os.fsync(handle.fileno())
            digest = sha256_file(temp)
            size = temp.stat().st_size
            _step("before_shard_rename")
            os.replace(temp, final)
        except (OSError, RuntimeError) as exc:
            # RuntimeError: what h5py raises for a failed write of a shard too large to build
            # in memory. Either way, one line naming the file, and nothing left behind.
            temp.unlink(missing_ok=True)
            raise StorageWriteError(
                f"writing shard {final} failed: {write_failure(exc)}. Free some space (or fix "
                "the disk) and rerun the same command: the shards already written are kept."
            ) from exc
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _step("after_shard_rename")
        entry = ShardEntry(file, digest, size, content.models, split, content.epochs)
        manifest.shards = [s for s in manifest.shards if s.file != file] + [entry]
        manifest.shards.sort(key=lambda s: (SPLITS.index(s.split), s.models, s.epochs))
        manifest.finished = False
        self._save()
        return entry

    def _check_columns(self, table: Mapping[str, np.ndarray], file: str) -> None:
        """Columns must agree across shards, so that the zoo is one table."""
        types = {name: dtype_name(values) for name, values in table.items()}
        known = self.manifest.columns
        if known and set(known) != set(types):
            raise ValueError(
                f"shard {file} has columns {sorted(types)}, earlier shards have {sorted(known)}"
            )
        for name, kind in types.items():
            if known and known[name] != kind:
                raise ValueError(
                    f"column {name!r} of shard {file} is {kind}, earlier shards have {known[name]}"
                )
        self.manifest.columns = dict(sorted(types.items())) if not known else known
        for name, values in table.items():
            if values.dtype == object:
                merged = set(self.manifest.categories.get(name, [])) | set(map(str, values))
                self.manifest.categories[name] = sorted(merged)

    def finish(self) -> Manifest:
        """Record split sizes from the shards if not given, save, and return the manifest.

        The manifest is marked ``finished`` when its shards cover every model and checkpoint;
        readers then also refuse gaps. The lock is kept until :meth:`close`.
        """
        if not self.manifest.split_counts:
            self.manifest.split_counts = self.manifest.splits()
        self.manifest.finished = self.manifest.complete
        self._save()
        return self.manifest
