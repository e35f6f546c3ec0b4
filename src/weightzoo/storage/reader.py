"""Reading zoos: global (model, checkpoint) -> (shard, row), and fast row reads.

Shards are immutable once written, so a reader opens each needed shard with h5py once: it checks
the shard's own attributes and dataset shapes against the manifest, loads its small arrays
(metrics, model columns, viability), finds where ``weights`` and ``stats`` sit in the file, and
records which file that was (device, inode, size, mtime). Rows are then read through
``np.memmap`` at those offsets: no HDF5 call, no h5py global lock, and nothing that breaks
across ``fork``. Maps are opened lazily in each process (after checking that the file is still
the one validated) and dropped when the reader is pickled (for ``spawn`` DataLoader workers).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from weightzoo._types import EpochSelection, SplitSelection
from weightzoo.errors import (
    ShardChangedError,
    ShardCorruptError,
    UnknownColumnError,
)
from weightzoo.storage.groups import load_any, resolve_group
from weightzoo.storage.manifest import Manifest, ShardEntry
from weightzoo.storage.selection import check_epochs, check_splits
from weightzoo.storage.shard_objects import ROW_DATASETS, check_shard_objects
from weightzoo.storage.verify import SHARD_READ_ERRORS, check_shard_attributes, check_shard_present

_MAX_OPEN_MAPS = 128
# Out-of-order reads across shards copy row by row when a row is at least this large (the
# Python loop then costs less than a second copy of the batch), else gather and scatter.
_ROW_LOOP_BYTES = 4096

FileIdentity = tuple[int, int, int, int]


def _identity(stat: os.stat_result) -> FileIdentity:
    """What ties a map to the file that was validated: device, inode, size, mtime."""
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True)
class _RowLocation:
    """Where a row dataset's bytes are: a regular grid of early-allocated chunks."""

    offset: int
    padded: int  # elements per row in the file (a multiple of the chunk length)
    length: int  # real elements per row


def _row_location(dataset: h5py.Dataset) -> _RowLocation | None:
    """Offsets of an uncompressed chunked ``[m, c, n]`` dataset, if they form a regular grid.

    Returns ``None`` when the layout is anything else (compressed, contiguous with no storage,
    chunks out of order); the reader then falls back to h5py reads.
    """
    models, checkpoints, length = dataset.shape
    if dataset.size == 0 or dataset.dtype != np.dtype("<f4"):
        return None
    dcpl = dataset.id.get_create_plist()
    if dcpl.get_nfilters() != 0:
        return None
    if dcpl.get_layout() == h5py.h5d.CONTIGUOUS:
        offset = dataset.id.get_offset()
        return None if offset is None else _RowLocation(offset, length, length)
    if dcpl.get_layout() != h5py.h5d.CHUNKED:
        return None
    chunk = dataset.chunks
    if chunk[0] != 1 or chunk[1] != 1:
        return None
    per_row = -(-length // chunk[2])
    chunk_bytes = chunk[2] * 4
    offsets: list[int] = []
    dataset.id.chunk_iter(lambda info: offsets.append(info.byte_offset))
    if len(offsets) != models * checkpoints * per_row:
        return None
    offsets_array = np.asarray(offsets, dtype=np.int64)
    expected = offsets_array[0] + chunk_bytes * np.arange(len(offsets), dtype=np.int64)
    if not np.array_equal(offsets_array, expected):
        return None
    return _RowLocation(int(offsets_array[0]), per_row * chunk[2], length)


class ShardData:
    """One shard: its small arrays in memory and lazily mapped row datasets.

    Opening checks the shard against the manifest (attributes, shapes, widths); reads check
    nothing more, except that a new map or handle is of the same file (once per open).

    Args:
        path: the shard file.
        entry: its manifest entry.
        manifest: the zoo's manifest.

    Raises:
        ShardCorruptError: if the file cannot be read or does not match the manifest.
    """

    def __init__(self, path: Path, entry: ShardEntry, manifest: Manifest) -> None:
        self.path = path
        self.entry = entry
        try:
            with h5py.File(path, "r") as handle:
                # The descriptor h5py read through: the identity is the validated file's.
                self.identity = _identity(os.fstat(handle.id.get_vfd_handle()))
                check_shard_attributes(handle, path, entry, manifest)
                check_shard_objects(handle, path, entry, manifest)  # before anything is read
                self.shape = {name: handle[name].shape for name in ROW_DATASETS}
                # (every chunk lies inside the file: check_shard_objects)
                self.locations = {n: _row_location(handle[n]) for n in ROW_DATASETS}
                self.metrics = {k: v[()] for k, v in handle["metrics"].items()}
                self.columns = {k: _read_column(v) for k, v in handle["models"].items()}
                self.checkpoint_viable = handle["checkpoint_viable"][()]
        except SHARD_READ_ERRORS as exc:
            if isinstance(exc, ShardCorruptError):
                raise
            raise ShardCorruptError(
                f"cannot read shard {path}: {' '.join(str(exc).split())[:300]}. Run `weightzoo "
                "verify` on the zoo, then fetch or generate the shard again."
            ) from exc
        self._maps: dict[str, np.ndarray] = {}
        self._h5: h5py.File | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = {}
        state["_h5"] = None
        return state

    def close(self) -> None:
        """Drop open maps and handles (they reopen on the next read)."""
        self._maps = {}
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def _check_identity(self, stat: os.stat_result) -> None:
        if _identity(stat) != self.identity:
            raise ShardChangedError(
                f"shard {self.path} was replaced after it was validated (another file, size or "
                "modification time); its rows may differ from the metadata read then. Create "
                "the Dataset or reader again."
            )

    def _map(self, name: str) -> np.ndarray | None:
        """The row dataset as a plain ``[models * checkpoints, padded]`` view of a map."""
        mapped = self._maps.get(name)
        if mapped is None:
            location = self.locations[name]
            if location is None:
                return None
            models, checkpoints, _ = self.shape[name]
            with open(self.path, "rb") as handle:
                # Map the very descriptor that was checked, never the path again.
                self._check_identity(os.fstat(handle.fileno()))
                memmap = np.memmap(
                    handle,
                    dtype="<f4",
                    mode="r",
                    offset=location.offset,
                    shape=(models * checkpoints, location.padded),
                )
            mapped = memmap.view(np.ndarray)  # keeps the map alive; no memmap subclass overhead
            self._maps[name] = mapped
        return mapped

    def _hdf5(self) -> h5py.File:
        if self._h5 is None:
            handle = h5py.File(self.path, "r")
            try:
                self._check_identity(os.fstat(handle.id.get_vfd_handle()))
            except ShardChangedError:
                handle.close()
                raise
            self._h5 = handle
        return self._h5

    def read_into(
        self,
        name: str,
        index: np.ndarray,
        out: np.ndarray,
        positions: np.ndarray | None = None,
    ) -> None:
        """Write rows ``index[i]`` (``model * checkpoints + checkpoint``) into ``out[i]``.

        With ``positions=None`` the rows go straight into ``out`` (one copy); with positions,
        row ``i`` goes to ``out[positions[i]]``, copied row by row.
        """
        flat = self._map(name)
        _, per_model, length = self.shape[name]
        if flat is not None:
            if positions is not None:
                for i, position in enumerate(positions.tolist()):
                    out[position] = flat[index[i], :length]
            elif flat.shape[1] == length:
                # mode="clip": indices are valid; "raise" would buffer the whole result twice.
                np.take(flat, index, axis=0, out=out, mode="clip")
            else:
                out[...] = flat[index, :length]
            return
        # Fallback: point reads through h5py (never a fancy selection on a chunked dataset:
        # that is 20x slower than row-by-row reads).
        dataset = self._hdf5()[name]
        targets = range(len(index)) if positions is None else positions.tolist()
        for i, position in enumerate(targets):
            out[position] = dataset[int(index[i]) // per_model, int(index[i]) % per_model]


def _read_column(dataset: h5py.Dataset) -> np.ndarray:
    if h5py.check_string_dtype(dataset.dtype) is not None:
        return np.asarray(dataset.asstr()[()], dtype=object)
    return dataset[()]


class ZooReader:
    """Index over the shards of one zoo for a selection of splits and epochs.

    Models are addressed by *local index* ``0..num_models-1`` (storage order of the selected
    models) and checkpoints by *epoch index* ``0..len(epochs)-1`` of the selected epochs.

    Args:
        zoo_dir: the zoo directory.
        split: a split name, several, or ``None``/``"all"``.
        epochs: checkpoint labels, ``"last"``, or ``None``/``"all"``.
        manifest: an already loaded manifest (optional; of ``zoo_dir`` itself).
        group: for a grouped zoo (format version 2), the group to read; ``None`` picks the
            only group of a one-group zoo. :attr:`zoo_dir` is then the group's directory.

    Raises:
        ZooNotFoundError: if there is no zoo at ``zoo_dir``.
        GroupRequiredError: for a grouped zoo with several groups and no ``group``.
        UnknownGroupError: for a group the zoo does not have.
        UnknownSplitError, EpochError: for a bad selection.
        ShardMissingError, ShardCorruptError: if a needed shard is absent or damaged.
    """

    def __init__(
        self,
        zoo_dir: str | os.PathLike[str],
        *,
        split: SplitSelection = None,
        epochs: EpochSelection = None,
        manifest: Manifest | None = None,
        group: str | None = None,
    ) -> None:
        self.zoo_dir = Path(zoo_dir)
        self.group = group
        if manifest is None:
            found = load_any(self.zoo_dir)  # one parse for a version-1 zoo
            if isinstance(found, Manifest) and group is None:
                manifest = found
            else:
                self.zoo_dir, self.group = resolve_group(self.zoo_dir, group)
        self.manifest = manifest or Manifest.load(self.zoo_dir)
        self.splits = check_splits(split, self.manifest)
        self.epochs = check_epochs(epochs, self.manifest)
        self.shards: list[ShardData] = []
        self._build_index()
        self._open: OrderedDict[int, None] = OrderedDict()
        self._lock = threading.Lock()  # reads may come from several threads

    def _build_index(self) -> None:
        epoch_index = {e: i for i, e in enumerate(self.epochs)}
        entries = self.manifest.shards_for(self.splits, self.epochs)
        # Open (and so check) every shard first: a manifest's model ranges are only believed
        # once the shard files are seen to hold that many models.
        self.shards = [
            ShardData(check_shard_present(self.zoo_dir, entry), entry, self.manifest)
            for entry in entries
        ]
        ranges = [np.arange(*entry.models, dtype=np.int64) for entry in entries]
        self.positions = np.unique(np.concatenate(ranges)) if ranges else np.zeros(0, np.int64)
        n, c = len(self.positions), len(self.epochs)
        self.shard_of = np.full((n, c), -1, dtype=np.int32)
        # One int64 per (model, checkpoint): shard index << 32 | row in the shard's flat
        # [models * checkpoints] order, -1 where absent. Sorting it is sorting by file order.
        self._key = np.full((n, c), -1, dtype=np.int64)
        self.metrics = {m: np.full((n, c), np.nan, np.float32) for m in self.manifest.metrics}
        self.checkpoint_viable = np.zeros((n, c), dtype=bool)
        columns: dict[str, np.ndarray] = {}
        split_names = np.empty(n, dtype=object)
        for index, (entry, shard) in enumerate(zip(entries, self.shards, strict=True)):
            first = int(np.searchsorted(self.positions, entry.models[0]))
            rows = slice(first, first + entry.num_models)
            in_shard = np.arange(entry.num_models, dtype=np.int64) * len(entry.epochs)
            split_names[rows] = entry.split
            for k, epoch in enumerate(entry.epochs):
                if epoch not in epoch_index:
                    continue
                j = epoch_index[epoch]
                self.shard_of[rows, j] = index
                self._key[rows, j] = (index << 32) | (in_shard + k)
                self.checkpoint_viable[rows, j] = shard.checkpoint_viable[:, k]
                for name, values in shard.metrics.items():
                    if name in self.metrics:
                        self.metrics[name][rows, j] = values[:, k]
            for name, values in shard.columns.items():
                if name not in columns:
                    columns[name] = np.zeros((n, *values.shape[1:]), dtype=values.dtype)
                elif columns[name].shape[1:] != values.shape[1:]:
                    raise ShardCorruptError(
                        f"shard {shard.path}: column {name!r} holds {values.shape[1:]} values "
                        f"per model, other shards {columns[name].shape[1:]}; the zoo is damaged"
                    )
                columns[name][rows] = values
        for name, kind in self.manifest.columns.items():
            if name not in columns:  # no shard selected: empty columns of the right dtype
                columns[name] = np.zeros(0, dtype=object if kind == "str" else kind)
        columns["split"] = split_names
        columns["position"] = self.positions.copy()
        self.columns = columns
        # A model counts only where every selected checkpoint is present.
        self.complete = (self.shard_of >= 0).all(axis=1)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def num_models(self) -> int:
        """Number of selected models."""
        return len(self.positions)

    def column(self, name: str) -> np.ndarray:
        """Per-model column (``model_id``, ``seed``, hyperparameters, ``viable``, ``split``...).

        Raises:
            UnknownColumnError: naming the available columns.
        """
        if name not in self.columns:
            raise UnknownColumnError(
                f"zoo {self.manifest.name!r} has no model column {name!r}; it has "
                f"{', '.join(sorted(self.columns))}"
            )
        return self.columns[name]

    def storage_order(self, models: np.ndarray, checkpoints: np.ndarray) -> np.ndarray:
        """The permutation that sorts (model, checkpoint) pairs into file order."""
        return np.argsort(self._key[models, checkpoints], kind="stable")

    def read(
        self,
        name: str,
        models: np.ndarray | Sequence[int],
        checkpoints: np.ndarray | Sequence[int],
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Read ``weights`` or ``stats`` rows for local model and epoch indices, in that order.

        Rows are copied once, straight into the result. Pairs in :meth:`storage_order` read
        forward through the files (best on a cold page cache).

        Args:
            name: ``"weights"`` or ``"stats"``.
            models: local model indices ``[n]``.
            checkpoints: epoch indices ``[n]`` into :attr:`epochs`.
            out: float32 ``[n, width]`` C-contiguous array to fill (optional).

        Returns:
            float32 ``[n, params]`` (or ``[n, stats]``), in the order requested.
        """
        keys = self._key[np.asarray(models, dtype=np.intp), np.asarray(checkpoints, dtype=np.intp)]
        n = len(keys)
        width = self.manifest.num_params if name == "weights" else len(self.manifest.stats_names)
        if out is None:
            out = np.empty((n, width), dtype=np.float32)
        elif out.shape != (n, width) or out.dtype != np.float32:
            raise ValueError(f"out must be float32 {(n, width)}, got {out.shape}")
        if n == 0:
            return out
        shard_ids = keys >> 32
        first, last = int(shard_ids.min()), int(shard_ids.max())
        if first < 0:
            bad = int(np.flatnonzero(shard_ids < 0)[0])
            raise ShardCorruptError(
                f"model {int(self.positions[np.asarray(models)[bad]])} has no shard holding "
                f"epoch {self.epochs[int(np.asarray(checkpoints)[bad])]}; the zoo is incomplete"
            )
        rows = keys & 0xFFFFFFFF
        if first == last:
            self._shard(first).read_into(name, rows, out)
            return out
        if (shard_ids[1:] >= shard_ids[:-1]).all():
            # Grouped by shard already (e.g. in storage order): each run goes straight in.
            starts = [0, *(np.flatnonzero(shard_ids[1:] != shard_ids[:-1]) + 1).tolist(), n]
            for a, b in itertools.pairwise(starts):
                self._shard(int(shard_ids[a])).read_into(name, rows[a:b], out[a:b])
            return out
        order = np.argsort(shard_ids, kind="stable")
        grouped = shard_ids[order]
        starts = [0, *(np.flatnonzero(grouped[1:] != grouped[:-1]) + 1).tolist(), n]
        row_loop = width * 4 >= _ROW_LOOP_BYTES
        for a, b in itertools.pairwise(starts):
            shard = self._shard(int(grouped[a]))
            where = order[a:b]
            if row_loop:
                shard.read_into(name, rows[where], out, positions=where)
            else:
                part = np.empty((b - a, width), dtype=np.float32)
                shard.read_into(name, rows[where], part)
                out[where] = part
        return out

    def _shard(self, index: int) -> ShardData:
        # Bound the number of open maps (each holds a file descriptor). A read in progress
        # keeps its own reference to a map that is closed here.
        with self._lock:
            self._open[index] = None
            self._open.move_to_end(index)
            while len(self._open) > _MAX_OPEN_MAPS:
                stale, _ = self._open.popitem(last=False)
                self.shards[stale].close()
        return self.shards[index]

    def close(self) -> None:
        """Release every open map and handle."""
        for shard in self.shards:
            shard.close()
        self._open.clear()
