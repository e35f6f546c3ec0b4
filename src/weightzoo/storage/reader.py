"""Reading zoos: global (model, checkpoint) -> (shard, row), and fast row reads.

Shards are immutable once written, so a reader opens each needed shard with h5py once to load
its small arrays (metrics, model columns, viability) and to find where ``weights`` and ``stats``
sit in the file. Rows are then read through ``np.memmap`` at those offsets: no HDF5 call, no
h5py global lock, and nothing that breaks across ``fork``. Maps are opened lazily in each process
and dropped when the reader is pickled (for ``spawn`` DataLoader workers).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from weightzoo.errors import ShardCorruptError, UnknownColumnError
from weightzoo.storage.manifest import Manifest, ShardEntry
from weightzoo.storage.selection import check_epochs, check_splits
from weightzoo.storage.verify import check_shard_present

ROW_DATASETS = ("weights", "stats")
_MAX_OPEN_MAPS = 128


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

    Args:
        path: the shard file.
        entry: its manifest entry.
    """

    def __init__(self, path: Path, entry: ShardEntry) -> None:
        self.path = path
        self.entry = entry
        try:
            with h5py.File(path, "r") as handle:
                self.shape = {name: handle[name].shape for name in ROW_DATASETS}
                self.locations = {name: _row_location(handle[name]) for name in ROW_DATASETS}
                self.metrics = {k: v[()] for k, v in handle["metrics"].items()}
                self.columns = {k: _read_column(v) for k, v in handle["models"].items()}
                self.checkpoint_viable = handle["checkpoint_viable"][()]
        except (OSError, KeyError) as exc:
            raise ShardCorruptError(
                f"cannot read shard {path}: {exc}. Run `weightzoo verify` on the zoo, then "
                "fetch or generate the shard again."
            ) from exc
        expected = (entry.num_models, len(entry.epochs))
        if self.shape["weights"][:2] != expected:
            raise ShardCorruptError(
                f"shard {path} holds weights of shape {self.shape['weights']}, but the manifest "
                f"lists {expected[0]} models x {expected[1]} checkpoints"
            )
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

    def _map(self, name: str) -> np.ndarray | None:
        if name not in self._maps:
            location = self.locations[name]
            if location is None:
                return None
            models, checkpoints, _ = self.shape[name]
            self._maps[name] = np.memmap(
                self.path,
                dtype="<f4",
                mode="r",
                offset=location.offset,
                shape=(models, checkpoints, location.padded),
            )
        return self._maps[name]

    def read_into(
        self, name: str, rows: np.ndarray, checkpoints: np.ndarray, out: np.ndarray
    ) -> None:
        """Write rows ``name[rows[i], checkpoints[i], :]`` into ``out[i]``.

        Callers pass indices in storage order (sorted) so that reads move forward in the file.
        """
        mapped = self._map(name)
        models, per_model, length = self.shape[name]
        if mapped is not None:
            flat = mapped.reshape(models * per_model, -1)
            index = rows * per_model + checkpoints
            if flat.shape[1] == length:
                # mode="clip": indices are valid; "raise" would buffer the whole result twice.
                np.take(flat, index, axis=0, out=out, mode="clip")
            else:
                out[...] = flat[index, :length]
            return
        # Fallback: point reads through h5py in file order (never a fancy selection on a
        # chunked dataset: that is 20x slower than row-by-row reads).
        if self._h5 is None:
            self._h5 = h5py.File(self.path, "r")
        dataset = self._h5[name]
        for i in range(len(rows)):
            out[i] = dataset[rows[i], checkpoints[i]]


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
        manifest: an already loaded manifest (optional).

    Raises:
        ZooNotFoundError: if there is no zoo at ``zoo_dir``.
        UnknownSplitError, EpochError: for a bad selection.
        ShardMissingError, ShardCorruptError: if a needed shard is absent or damaged.
    """

    def __init__(
        self,
        zoo_dir: str | os.PathLike[str],
        *,
        split: str | Sequence[str] | None = None,
        epochs: int | str | Iterable[int] | None = None,
        manifest: Manifest | None = None,
    ) -> None:
        self.zoo_dir = Path(zoo_dir)
        self.manifest = manifest or Manifest.load(self.zoo_dir)
        self.splits = check_splits(split, self.manifest)
        self.epochs = check_epochs(epochs, self.manifest)
        self.shards: list[ShardData] = []
        self._build_index()
        self._open: OrderedDict[int, None] = OrderedDict()

    def _build_index(self) -> None:
        epoch_index = {e: i for i, e in enumerate(self.epochs)}
        entries = self.manifest.shards_for(self.splits, self.epochs)
        positions = sorted({p for e in entries for p in range(*e.models)})
        self.positions = np.asarray(positions, dtype=np.int64)
        local = {p: i for i, p in enumerate(positions)}
        n, c = len(positions), len(self.epochs)
        self.shard_of = np.full((n, c), -1, dtype=np.int32)
        self.checkpoint_in_shard = np.zeros((n, c), dtype=np.int32)
        self.row_in_shard = np.zeros(n, dtype=np.int32)
        self.metrics = {m: np.full((n, c), np.nan, np.float32) for m in self.manifest.metrics}
        self.checkpoint_viable = np.zeros((n, c), dtype=bool)
        columns: dict[str, np.ndarray] = {}
        split_names = np.empty(n, dtype=object)
        for entry in entries:
            shard = ShardData(check_shard_present(self.zoo_dir, entry), entry)
            index = len(self.shards)
            self.shards.append(shard)
            first = local[entry.models[0]]
            rows = slice(first, first + entry.num_models)
            self.row_in_shard[rows] = np.arange(entry.num_models)
            split_names[rows] = entry.split
            for k, epoch in enumerate(entry.epochs):
                if epoch not in epoch_index:
                    continue
                j = epoch_index[epoch]
                self.shard_of[rows, j] = index
                self.checkpoint_in_shard[rows, j] = k
                self.checkpoint_viable[rows, j] = shard.checkpoint_viable[:, k]
                for name, values in shard.metrics.items():
                    if name in self.metrics:
                        self.metrics[name][rows, j] = values[:, k]
            for name, values in shard.columns.items():
                if name not in columns:
                    columns[name] = np.zeros((n, *values.shape[1:]), dtype=values.dtype)
                columns[name][rows] = values
        columns["split"] = split_names
        columns["position"] = self.positions.copy()
        self.columns = columns
        # A model counts only where every selected checkpoint is present.
        self.complete = (self.shard_of >= 0).all(axis=1)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()
        return state

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
        shard_ids = self.shard_of[models, checkpoints]
        return np.lexsort(
            (self.checkpoint_in_shard[models, checkpoints], self.row_in_shard[models], shard_ids)
        )

    def read(self, name: str, models: np.ndarray, checkpoints: np.ndarray) -> np.ndarray:
        """Read ``weights`` or ``stats`` rows for local model and epoch indices.

        Reads are fastest when the pairs come in :meth:`storage_order`; other orders cost one
        extra copy.

        Args:
            name: ``"weights"`` or ``"stats"``.
            models: local model indices ``[n]``.
            checkpoints: epoch indices ``[n]`` into :attr:`epochs`.

        Returns:
            float32 ``[n, params]`` (or ``[n, stats]``), in the order requested.
        """
        models = np.asarray(models, dtype=np.int64)
        checkpoints = np.asarray(checkpoints, dtype=np.int64)
        shard_ids = self.shard_of[models, checkpoints]
        if (shard_ids < 0).any():
            bad = int(np.flatnonzero(shard_ids < 0)[0])
            raise ShardCorruptError(
                f"model {int(self.positions[models[bad]])} has no shard holding epoch "
                f"{self.epochs[checkpoints[bad]]}; the zoo is incomplete"
            )
        order = self.storage_order(models, checkpoints)
        in_order = bool(np.all(order == np.arange(len(order))))
        if not in_order:
            models, checkpoints, shard_ids = models[order], checkpoints[order], shard_ids[order]
        width = self.manifest.num_params if name == "weights" else len(self.manifest.stats_names)
        out = np.empty((len(models), width), dtype=np.float32)
        rows = self.row_in_shard[models]
        ckpts = self.checkpoint_in_shard[models, checkpoints]
        starts = np.flatnonzero(np.diff(shard_ids, prepend=-2)).tolist() + [len(models)]
        for a, b in zip(starts[:-1], starts[1:], strict=True):
            shard = self._shard(int(shard_ids[a]))
            shard.read_into(name, rows[a:b], ckpts[a:b], out[a:b])
        if in_order:
            return out
        restored = np.empty_like(out)
        restored[order] = out
        return restored

    def _shard(self, index: int) -> ShardData:
        # Bound the number of open maps (each holds a file descriptor).
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
