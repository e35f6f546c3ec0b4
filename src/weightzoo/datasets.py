"""PyTorch Datasets over zoos: the core :class:`ZooDataset` and the named families.

Items are dicts of tensors, so the default ``collate_fn`` batches them. ``__getitems__`` reads a
whole batch with one read per shard. Nothing here opens a file before it is needed, and what is
open is dropped on pickling, so ``DataLoader(num_workers>0)`` works with ``fork`` and ``spawn``.
"""

from __future__ import annotations

import operator
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    default_collate,
)

from weightzoo import catalog
from weightzoo._types import EpochSelection, PathLike
from weightzoo.errors import (
    InvalidOptionError,
    ManifestError,
    SidecarNotFoundError,
    UnknownColumnError,
    UnknownGroupError,
    WeightzooError,
    ZooNotFoundError,
)
from weightzoo.features import tokenize, unflatten
from weightzoo.selection import (
    Where,
    build_parts,
    did_you_mean,
    items_across,
    matches,
    part_positions,
    select_models,
)
from weightzoo.selection import model_mask as model_mask
from weightzoo.storage.groups import GroupedManifest, check_group_manifest, is_grouped, zoo_name
from weightzoo.storage.manifest import MANIFEST_NAME, Manifest
from weightzoo.storage.sidecar import BEHAVIOUR_SIDECAR, Sidecar, list_sidecars, sidecar_records
from weightzoo.storage.verify import check_shard_present
from weightzoo.zoo import Zoo

Item = dict[str, torch.Tensor]
Transform = Callable[[Item], Item]

STORED_STATS = "stats"
TOKENS = "tokens"
OUTPUTS = "outputs"  # every checkpoint's outputs on the zoo's query set (a side file)
PARAMS = "params"  # {state_dict name: tensor}, for weight-space learning libraries
BASE_FEATURES = ("weights", STORED_STATS, TOKENS, OUTPUTS, PARAMS)
TOKEN_KEYS = ("tokens", "tokens_mask", "tokens_positions")
ID_KEYS = ("model", "epoch")
#: The checkpoint selection every point-wise Dataset starts from: the trained networks.
DEFAULT_EPOCHS = "last"
DEFAULT_SPLIT = "train"


def _as_zoo(zoo: Zoo | PathLike, group: str | None = None) -> Zoo:
    """The zoo (or group of a grouped zoo) a Dataset reads."""
    if not isinstance(zoo, Zoo):
        return Zoo(zoo, group=group)
    if group is None or group == zoo.group_name:
        return zoo
    return zoo.group(group)


def _as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _unbind(value: Any) -> Sequence[Any]:
    """A batch entry split into its items (a dict entry, such as ``params``, into dicts)."""
    if isinstance(value, dict):
        parts = [_unbind(v) for v in value.values()]
        return [dict(zip(value, row, strict=True)) for row in zip(*parts, strict=True)]
    return value.unbind(0)


def _apply(value: Any, function: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``function`` of a batch entry, or of each tensor of a dict entry such as ``params``."""
    if isinstance(value, dict):
        return {k: _apply(v, function) for k, v in value.items()}
    return function(value)


def _cat(values: list[Any], order: np.ndarray) -> Any:
    """Batch entries concatenated and put in ``order`` (dict entries key by key)."""
    if isinstance(values[0], dict):
        return {k: _cat([v[k] for v in values], order) for k in values[0]}
    return torch.cat(values)[order]


class _BatchedDataset(Dataset):
    """Indexing and the fast loader for Datasets that read whole batches (:meth:`batch`)."""

    def batch(self, indices: Sequence[int] | np.ndarray) -> Item:  # pragma: no cover - abstract
        """Read items as one batch dict of stacked tensors."""
        raise NotImplementedError

    def __getitems__(self, indices: Sequence[int]) -> list[Item]:  # pragma: no cover
        raise NotImplementedError

    def __getitem__(self, index: Any) -> Item:
        """One item, or for a sequence of indices the whole collated batch (see :meth:`loader`).

        An index may be an ``int``, a numpy integer or a 0-d integer tensor; a list, array or
        1-d tensor of them reads a batch. Negative indices count from the end.

        Raises:
            IndexError: for an index out of range.
            InvalidOptionError: for an index that is not an integer or a sequence of them.
        """
        if hasattr(index, "__index__") and getattr(index, "ndim", 0) == 0:
            try:
                position = operator.index(index)
            except TypeError:
                raise InvalidOptionError(
                    f"a dataset index must be an integer, got {index!r}"
                ) from None
            return self.__getitems__([position])[0]
        if isinstance(index, (str, bytes, float)) or not hasattr(index, "__len__"):
            raise InvalidOptionError(
                f"a dataset index must be an integer or a sequence of integers, got {index!r}"
            )
        return self.batch(index)

    def loader(
        self,
        batch_size: int = 64,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
        num_workers: int = 0,
        worker_type: str = "thread",
        pin_memory: bool = False,
        **dataloader_options: Any,
    ) -> Iterable[Item]:
        """Batches read whole, each with one :meth:`batch` call (the fast path).

        Draws the same batches as ``DataLoader(self, batch_size=..., shuffle=...)`` but orders
        the items *within* a batch by index (the order in the file); pass ``ids=True`` to the
        Dataset to know which item is which.

        Reading a batch is a copy out of the page cache, so worker *processes* cost more in
        passing the batch back than they save (measured in ``docs/performance.md``). With
        ``num_workers > 0`` batches are therefore read ahead by that many threads of this
        process (``worker_type="thread"``, the default); ``worker_type="process"`` gives a
        ``DataLoader`` with worker processes instead (for heavy per-item ``transform`` code).

        Args:
            batch_size: items per batch.
            shuffle: draw items in random order each epoch.
            drop_last: drop the last incomplete batch.
            seed: seed of the shuffling generator (``None``: torch's default generator).
            num_workers: threads (or processes) reading ahead; 0 reads in the caller.
            worker_type: ``"thread"`` or ``"process"``.
            pin_memory: copy each batch into pinned memory (for fast host-to-GPU transfer).
            **dataloader_options: passed on to ``DataLoader`` (``num_workers=0`` or
                ``worker_type="process"`` only).

        Returns:
            An iterable of batch dicts with ``len()``: a ``DataLoader``, or with thread workers
            a :class:`ThreadedLoader`.

        Raises:
            InvalidOptionError: for a bad ``batch_size``, ``num_workers`` or ``worker_type``.
        """
        if worker_type not in ("thread", "process"):
            raise InvalidOptionError(
                f"worker_type must be 'thread' or 'process', got {worker_type!r}"
            )
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise InvalidOptionError(f"num_workers must be an int >= 0, got {num_workers!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidOptionError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if shuffle:
            generator = None if seed is None else torch.Generator().manual_seed(seed)
            sampler: Sampler[int] = RandomSampler(self, generator=generator)
        else:
            sampler = SequentialSampler(self)
        batches = SortedBatchSampler(sampler, batch_size=batch_size, drop_last=drop_last)
        if num_workers > 0 and worker_type == "thread":
            if dataloader_options:
                raise InvalidOptionError(
                    f"options {sorted(dataloader_options)} apply to DataLoader worker "
                    "processes; pass worker_type='process' to use them"
                )
            return ThreadedLoader(self, batches, num_workers, pin_memory=pin_memory)
        return DataLoader(
            self,
            batch_size=None,
            sampler=batches,
            num_workers=num_workers,
            pin_memory=pin_memory,
            **dataloader_options,
        )


class ZooDataset(_BatchedDataset):
    """Checkpoints of a zoo as a map-style Dataset: one item per (model, checkpoint).

    Args:
        root: a zoo directory (holding ``zoo.json``) or a :class:`Zoo`.
        split: ``"train"`` (default), ``"val"``, ``"test"``, several, or ``"all"``.
        epochs: one checkpoint label, several, ``"last"`` (default: the trained networks) or
            ``"all"``/``None``.
        features: any of ``"weights"``, ``"stats"`` (the stored ``modelzoo`` statistics),
            ``"stats:<preset>"`` (``unterthiner``, ``nfn``, computed from the weights on read)
            and ``"tokens"`` / ``"tokens:<width>"`` (per-neuron tokens, see
            :func:`weightzoo.features.tokenize`; with a width, wide neurons are cut into
            several tokens of that width). Tokens come as three entries: ``tokens``
            ``[T, width]``, ``tokens_mask`` (True on real values) and ``tokens_positions``
            ``[T, 3]``. ``"outputs"`` / ``"outputs:<name>"``: the checkpoint's outputs on the
            zoo's fixed query set, read from the side file ``weightzoo behaviour`` writes
            (``behaviour``, or the one named). ``"params"``: a dict ``{state_dict name:
            tensor}`` of the row's tensors in their ``state_dict`` shapes (as
            :func:`weightzoo.features.unflatten`; the default collate batches them to
            ``[B, ...]``), ready for ``torch.func.functional_call`` and for the converters of
            :mod:`weightzoo.interop` (nfn, DWSNets, neural graphs).
        targets: metric names (one value per checkpoint, e.g. ``"test_acc"``), model columns
            (``"seed"``, ``"lr"``, ``"machine"``...) or per-checkpoint values of a side file
            (e.g. ``"hessian_top"`` after ``weightzoo landscape``). String columns become class
            indices; :attr:`classes` maps them back. ``"model"`` (storage position) and
            ``"epoch"`` (checkpoint label) name the item itself.
        where: keep only models that match: ``{"machine": "ParityMachine", "lr": 1e-3}``
            (per column a value, a list/tuple/set/range/array of allowed values, or a function
            of one value that returns a bool; floats compare with a relative tolerance of
            1e-9), or a function that takes the metadata dict (``{column: array}``, as
            :meth:`Zoo.metadata`, over the selected split) and returns a bool mask, e.g.
            ``lambda m: m["final_test_acc"] > 0.5``. See :mod:`weightzoo.selection`.
        transform: applied to each item dict (after ``target_transform``).
        target_transform: applied to each item's targets, as a dict ``{name: tensor}`` of the
            names in ``targets``; returns the new dict.
        filter_viable: drop models with a NaN/Inf or diverged checkpoint, as the papers do.
        ids: add ``"model"`` and ``"epoch"`` to every item (as ``targets=("model", "epoch")``).
        group: for a grouped zoo (format version 2), the group to read; ``None`` picks the only
            group of a one-group zoo. :class:`GroupedBatches` reads every group.
        allow_empty: serve an empty Dataset where the selection keeps no model, instead of
            raising :class:`~weightzoo.errors.EmptySelectionError`.

    Each item is ``{feature: float32 tensor, target: tensor}``, plus ``"model"`` and
    ``"epoch"`` when asked for.

    Raises:
        ZooNotFoundError, UnknownSplitError, EpochError, UnknownColumnError: for bad input;
            each lists what the zoo has.
        EmptySelectionError: for a selection that keeps no model (and no ``allow_empty``),
            naming the step that emptied it and the values present.
        InvalidOptionError: for an option of the wrong type.
        GroupRequiredError: for a grouped zoo with several groups and no ``group``.
        UnknownGroupError: for a group the zoo does not have.
    """

    def __init__(
        self,
        root: Zoo | PathLike,
        *,
        group: str | None = None,
        split: str | Sequence[str] = DEFAULT_SPLIT,
        epochs: EpochSelection = DEFAULT_EPOCHS,
        features: str | Sequence[str] = ("weights",),
        targets: str | Sequence[str] = (),
        where: Where | None = None,
        transform: Transform | None = None,
        target_transform: Transform | None = None,
        filter_viable: bool = True,
        ids: bool = False,
        allow_empty: bool = False,
    ) -> None:
        self.zoo = _as_zoo(root, group)
        self.features = _as_names(features, "features")
        self.targets = _as_names(targets, "targets")
        self.ids = tuple(k for k in ID_KEYS if ids and k not in self.targets)
        for name, function in (("transform", transform), ("target_transform", target_transform)):
            if function is not None and not callable(function):
                raise InvalidOptionError(f"{name} must be callable, got {function!r}")
        self.transform = transform
        self.target_transform = target_transform
        self.split = split
        self.reader = self.zoo.reader(split, epochs)
        self._sidecars: dict[str, Sidecar] = {}
        self._from_sidecar: dict[str, tuple[str, str]] = {}
        self._check_names()
        self.token_width = self._token_width()
        self.model_indices = select_models(
            self.zoo,
            self.reader,
            split=split,
            where=where,
            filter_viable=filter_viable,
            allow_empty=allow_empty,
        )
        for sidecar in self._sidecars.values():
            # Refuse now, not mid-epoch, a side file that lacks a served model or checkpoint.
            sidecar.index(self.reader.positions[self.model_indices], self.reader.epochs)
        self.classes: dict[str, list[Any]] = {}
        self._encoded: dict[str, np.ndarray] = {}
        for name in self.targets:
            if name in self.reader.columns and self.reader.columns[name].dtype == object:
                values = self.reader.columns[name].astype(str)
                # Classes of the whole zoo, so that every split uses the same indices.
                names = self.zoo.manifest.categories.get(name) or sorted(set(values))
                self.encode_classes(name, names)

    def encode_classes(self, name: str, names: Sequence[Any]) -> None:
        """Serve column ``name`` as indices into ``names`` (recorded in :attr:`classes`).

        Args:
            name: a model column among the targets.
            names: every class, in index order (the whole zoo's, so that splits agree).

        Raises:
            ManifestError: if the column holds a value that ``names`` does not list.
        """
        values = self.reader.columns[name]
        as_text = [str(v) for v in names]
        lookup = {v: i for i, v in enumerate(as_text)}
        texts = values.astype(str)
        unknown = sorted(set(texts.tolist()) - set(lookup))
        if unknown:
            raise ManifestError(
                f"column {name!r} of zoo {self.zoo.name!r} holds {unknown}, which the "
                f"manifest's categories {as_text} do not list; the manifest does not "
                "match its shards (fetch or generate the zoo again)"
            )
        self.classes[name] = list(names)
        self._encoded[name] = np.asarray([lookup[v] for v in texts], dtype=np.int64)

    def _token_width(self) -> int | None:
        """The chunk width of a ``tokens:<width>`` feature (``None``: one token per neuron)."""
        for feature in self.features:
            base, _, option = feature.partition(":")
            if base == TOKENS and option:
                return int(option)
        return None

    def _check_names(self) -> None:
        if sum(f.partition(":")[0] == TOKENS for f in self.features) > 1:
            raise InvalidOptionError(f"features name tokens more than once: {self.features}")
        for feature in self.features:
            base, _, preset = feature.partition(":")
            if base not in BASE_FEATURES or (preset and base in ("weights", PARAMS)):
                raise UnknownColumnError(
                    f"unknown feature {feature!r}; use 'weights', 'params', 'stats', "
                    "'stats:<preset>' (presets: modelzoo, unterthiner, nfn), 'tokens', "
                    "'tokens:<width>', 'outputs' or 'outputs:<side file>'"
                )
            if base == OUTPUTS:
                self._use_sidecar(feature, preset or BEHAVIOUR_SIDECAR, OUTPUTS)
                continue
            if base == TOKENS:
                if preset and not (preset.isdigit() and int(preset) > 0):
                    raise InvalidOptionError(
                        f"feature {feature!r}: the token width must be a positive integer"
                    )
                continue
            if preset:
                from weightzoo.features import PRESETS

                if preset not in PRESETS:
                    raise UnknownColumnError(
                        f"unknown statistics preset {preset!r}; use one of {', '.join(PRESETS)}"
                    )
        for target in self.targets:
            known = self.reader.metrics.keys() | self.reader.columns.keys() | set(ID_KEYS)
            if target in known:
                continue
            holder = self._sidecar_holding(target)
            if holder is None:
                sidecars = list_sidecars(self.zoo.path)
                raise UnknownColumnError(
                    f"zoo {self.zoo.name!r} has no metric or column {target!r}. Metrics: "
                    f"{', '.join(self.reader.metrics)}; columns: "
                    f"{', '.join(sorted(self.reader.columns))}; side files: "
                    f"{', '.join(sidecars) or 'none'} (landscape metrics come from "
                    f"`weightzoo landscape ZOO`).{did_you_mean(target, sorted(known))}"
                )
            self._use_sidecar(target, holder, target)

    def _sidecar_holding(self, array: str) -> str | None:
        """The side file with a per-checkpoint array ``array`` (``None``: no such file).

        Reads the records only: just the side file that is used gets opened and hashed.
        """
        for name, record in sidecar_records(self.zoo.path).items():
            if array in record.arrays:
                return name
        return None

    def _use_sidecar(self, key: str, name: str, array: str) -> None:
        """Serve item entry ``key`` from array ``array`` of side file ``name``."""
        if name not in self._sidecars:
            try:
                self._sidecars[name] = Sidecar(self.zoo.path, name)
            except SidecarNotFoundError:
                option = "" if name == BEHAVIOUR_SIDECAR else f" --name {name}"
                present = ", ".join(list_sidecars(self.zoo.path)) or "none"
                raise SidecarNotFoundError(
                    f"zoo {self.zoo.name!r} has no side file {name!r} for {key!r} (side files: "
                    f"{present}); compute it with `weightzoo behaviour {self.zoo.path}{option}`"
                ) from None
        if array not in self._sidecars[name].arrays:
            raise UnknownColumnError(
                f"side file {name!r} of zoo {self.zoo.name!r} has no per-checkpoint array "
                f"{array!r}; it has {', '.join(self._sidecars[name].arrays)}"
            )
        self._from_sidecar[key] = (name, array)

    @property
    def num_models(self) -> int:
        """Number of models served."""
        return len(self.model_indices)

    @property
    def epochs(self) -> list[int]:
        """Checkpoint labels served."""
        return self.reader.epochs

    def __len__(self) -> int:
        return self.num_models * len(self.epochs)

    def _locate(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        flat = np.asarray(indices, dtype=np.int64)
        size = len(self)
        if flat.size:
            low, high = int(flat.min()), int(flat.max())
            if low < -size or high >= size:
                raise IndexError(f"index out of range for a dataset of {size} items")
            if low < 0:
                flat = flat % size
        models, checkpoints = np.divmod(flat, len(self.reader.epochs))
        return self.model_indices[models], checkpoints

    def batch(self, indices: Sequence[int] | np.ndarray) -> Item:
        """Read items as one batch dict of stacked tensors, as the default collate would build.

        Rows are copied once, straight into the batch tensors, in the order asked. This skips
        splitting a batch into items and stacking them again, which costs more than the read
        itself for small rows. With a ``transform``, items are transformed one by one and then
        collated.
        """
        if self.transform is not None:
            return default_collate(self.__getitems__(_index_list(indices)))
        models, checkpoints = self._locate(indices)
        return self._read_batch(models, checkpoints)

    def __getitems__(self, indices: Sequence[int]) -> list[Item]:
        """Read a batch of items with one read per shard (used by ``DataLoader``)."""
        models, checkpoints = self._locate(indices)
        # Read in file order into one buffer; items are views of it, put back in the asked
        # order (the data is not moved again).
        order = self.reader.storage_order(models, checkpoints)
        batch = self._read_batch(models[order], checkpoints[order])
        keys = list(batch)
        rows = [_unbind(value) for value in batch.values()]
        if len(keys) == 1:
            key = keys[0]
            built = [{key: row} for row in rows[0]]
        else:
            built = [dict(zip(keys, values, strict=True)) for values in zip(*rows, strict=True)]
        if np.array_equal(order, np.arange(len(order))):
            items = built
        else:
            items = [built[0]] * len(built)
            for position, item in zip(order.tolist(), built, strict=True):
                items[position] = item
        return [self._transformed(item) for item in items]

    def _transformed(self, item: Item) -> Item:
        if self.target_transform is not None:
            targets = {k: item.pop(k) for k in self.targets}
            item.update(self.target_transform(targets))
        return self.transform(item) if self.transform is not None else item

    def _params(self, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        # copies, so that a transform writing into one tensor leaves the rest of the row alone
        return {
            name: value.clone(memory_format=torch.contiguous_format)
            for name, value in unflatten(weights, self.zoo.layout).items()
        }

    def _tokens(self, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        width = self.token_width
        out = tokenize(weights, self.zoo.layout, token_size=width, chunk=width is not None)
        positions = out["positions"].expand(len(weights), *out["positions"].shape)
        return dict(zip(TOKEN_KEYS, (out["tokens"], out["mask"], positions), strict=True))

    def _read_batch(self, models: np.ndarray, checkpoints: np.ndarray) -> dict[str, torch.Tensor]:
        reader = self.reader
        batch: dict[str, torch.Tensor] = {}
        weights = None
        for feature in self.features:
            base, _, preset = feature.partition(":")
            if feature in self._from_sidecar:
                batch[feature] = self._sidecar_values(feature, models, checkpoints)
                continue
            if base in ("weights", TOKENS, PARAMS) or preset:
                if weights is None:
                    weights = torch.from_numpy(reader.read("weights", models, checkpoints))
                if base == "weights":
                    batch[feature] = weights
                    continue
                if base == PARAMS:
                    batch[feature] = self._params(weights)
                    continue
                if base == TOKENS:
                    batch.update(self._tokens(weights))
                    continue
            if preset and preset != reader.manifest.stats_preset:
                from weightzoo.features import layer_statistics

                batch[feature] = layer_statistics(weights, reader.manifest.layout, preset=preset)
            else:
                batch[feature] = torch.from_numpy(reader.read("stats", models, checkpoints))
        for target in self.targets + self.ids:
            batch[target] = self._target_values(target, models, checkpoints)
        return batch

    def _target_values(
        self, target: str, models: np.ndarray, checkpoints: np.ndarray
    ) -> torch.Tensor:
        reader = self.reader
        if target in reader.metrics:
            return torch.from_numpy(reader.metrics[target][models, checkpoints])
        if target in self._encoded:
            return torch.from_numpy(self._encoded[target][models])
        if target in reader.columns:
            return torch.from_numpy(np.asarray(reader.columns[target][models]))
        if target == "model":
            return torch.from_numpy(reader.positions[models])
        if target == "epoch":
            return torch.as_tensor(np.asarray(reader.epochs)[checkpoints])
        return self._sidecar_values(target, models, checkpoints)

    def _sidecar_values(
        self, key: str, models: np.ndarray, checkpoints: np.ndarray
    ) -> torch.Tensor:
        name, array = self._from_sidecar[key]
        labels = np.asarray(self.reader.epochs)[checkpoints]
        values = self._sidecars[name].read(array, self.reader.positions[models], labels)
        return torch.from_numpy(np.ascontiguousarray(values))


def _as_names(value: Any, what: str) -> tuple[str, ...]:
    """A name or a sequence of names as a tuple, refusing anything else by name."""
    names = _as_tuple(value) if isinstance(value, (str, list, tuple, type(None))) else None
    if names is None or not all(isinstance(n, str) for n in names):
        raise InvalidOptionError(f"{what} must be a name or a sequence of names, got {value!r}")
    return names


def _index_list(indices: Any) -> list[int]:
    return np.asarray(indices, dtype=np.int64).tolist()


class ThreadedLoader:
    """Batches of a :class:`ZooDataset` read ahead by threads, yielded in sampler order.

    Reads are copies out of mapped files (numpy releases the GIL for them), so threads overlap
    reading with the caller's work without moving any batch between processes.

    Args:
        dataset: the dataset.
        batch_sampler: yields one list of indices per batch.
        num_workers: reading threads.
        prefetch: batches in flight per thread.
        pin_memory: copy each batch into pinned memory.
    """

    def __init__(
        self,
        dataset: ZooDataset,
        batch_sampler: Iterable[list[int]],
        num_workers: int,
        *,
        prefetch: int = 2,
        pin_memory: bool = False,
    ) -> None:
        self.dataset = dataset
        self.batch_sampler = batch_sampler
        self.num_workers = num_workers
        self.prefetch = prefetch
        self.pin_memory = pin_memory

    def __len__(self) -> int:
        return len(self.batch_sampler)  # type: ignore[arg-type]

    def _read(self, indices: list[int]) -> Item:
        batch = self.dataset.batch(indices)
        if self.pin_memory:
            batch = {k: _apply(v, torch.Tensor.pin_memory) for k, v in batch.items()}
        return batch

    def __iter__(self) -> Iterator[Item]:
        pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="weightzoo-read")
        pending: deque[Future[Item]] = deque()
        try:
            for indices in self.batch_sampler:
                pending.append(pool.submit(self._read, indices))
                if len(pending) >= self.num_workers * self.prefetch:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class SortedBatchSampler(BatchSampler):
    """A ``BatchSampler`` whose batches list their indices in ascending order.

    Which items form a batch is unchanged; only their order inside it, so that a batch reads
    forward through the files.
    """

    def __iter__(self):
        for batch in super().__iter__():
            yield sorted(batch)


class Trajectories(ZooDataset):
    """Whole per-model sequences of checkpoints: one item per model (or pair / window).

    Args:
        root: a zoo directory or :class:`Zoo`.
        mode: ``"sequence"`` (one item per model, ``[checkpoints, ...]``), ``"pairs"``
            (consecutive checkpoint pairs ``[2, ...]``) or ``"windows"`` (``[window, ...]``).
        window: window length for ``mode="windows"``.
        **kwargs: as for :class:`ZooDataset`, except that ``epochs`` defaults to ``"all"``
            (a trajectory is its checkpoints) and ``ids`` to ``True`` (each item carries its
            ``model`` and the ``epoch`` labels of its checkpoints).

    Raises:
        InvalidOptionError: for an unknown mode or a window that does not fit.
    """

    def __init__(
        self,
        root: Zoo | PathLike,
        *,
        mode: str = "sequence",
        window: int = 2,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("ids", True)  # a sequence's epochs are part of it
        kwargs.setdefault("epochs", "all")
        super().__init__(root, **kwargs)
        if mode not in ("sequence", "pairs", "windows"):
            raise InvalidOptionError(f"mode must be 'sequence', 'pairs' or 'windows', got {mode!r}")
        length = {"sequence": len(self.epochs), "pairs": 2, "windows": window}[mode]
        if isinstance(length, bool) or not isinstance(length, int):
            raise InvalidOptionError(f"window must be an int, got {window!r}")
        if not 1 <= length <= len(self.epochs):
            raise InvalidOptionError(
                f"window {length} does not fit the {len(self.epochs)} selected checkpoints"
            )
        self.mode = mode
        self.length = length
        self.starts_per_model = len(self.epochs) - length + 1

    def __len__(self) -> int:
        return self.num_models * self.starts_per_model

    def batch(self, indices: Sequence[int] | np.ndarray) -> Item:
        """Items as one collated batch (``[batch, length, ...]`` tensors)."""
        return default_collate(self.__getitems__(_index_list(indices)))

    def __getitems__(self, indices: Sequence[int]) -> list[Item]:
        flat = np.asarray(indices, dtype=np.int64)
        size = len(self)
        if flat.size and (flat.min() < -size or flat.max() >= size):
            raise IndexError(f"index out of range for a dataset of {size} items")
        flat = flat % size if size else flat
        models = self.model_indices[flat // self.starts_per_model]
        starts = flat % self.starts_per_model
        offsets = np.arange(self.length)
        all_models = np.repeat(models, self.length)
        all_checkpoints = (starts[:, None] + offsets[None, :]).ravel()
        batch = self._read_batch(all_models, all_checkpoints)
        items = []
        for i in range(len(flat)):
            rows = slice(i * self.length, (i + 1) * self.length)
            item = {k: _apply(v, lambda t, rows=rows: t[rows]) for k, v in batch.items()}
            if "model" in item:
                item["model"] = item["model"][0]
            items.append(self._transformed(item))
        return items


def resolve_zoo_dir(root: PathLike, name: str) -> Path:
    """Find zoo ``name`` under ``root``: ``root`` itself if it is that zoo, else ``root/name``.

    Raises:
        ZooNotFoundError: saying how to generate or fetch the zoo.
    """
    root = Path(root)
    if (root / MANIFEST_NAME).is_file():
        found = zoo_name(root)
        if found == name:
            return root
        raise ZooNotFoundError(f"{root} holds zoo {found!r}, not {name!r}")
    if (root / name / MANIFEST_NAME).is_file():
        return root / name
    entry = catalog.find(name)
    fetchable = entry is not None and entry.fetchable
    download = " (or pass download=True)" if fetchable else ""
    raise ZooNotFoundError(
        f"zoo {name!r} not found under {root}: pass the zoo's own directory if it is elsewhere. "
        f"{catalog.how_to_get(name, str(root / name))}{download}"
    )


def _family_dir(root: PathLike, name: str, download: bool, **fetch_options: Any) -> Path:
    """The zoo ``name`` under ``root``; with ``download``, fetched first if absent.

    A download tries the zoo's sources in the catalog's order (the hub copy, else the original
    release converted into ``root/name``; see :func:`weightzoo.sources.fetch.fetch_zoo`).
    """
    if download:
        local = Path(root) / name
        if _selection_present(local, **fetch_options):
            return local  # fetched (and hash-checked) before: no network, no re-hashing
        from weightzoo.sources.fetch import fetch_zoo  # the network stack: only to download

        return fetch_zoo(name, local, **fetch_options).path
    return resolve_zoo_dir(root, name)


def _selection_present(zoo_dir: Path, split: Any = None, epochs: Any = None) -> bool:
    """Whether ``zoo_dir`` holds every shard a split/epoch selection needs, at full size."""
    if not (zoo_dir / MANIFEST_NAME).is_file():
        return False
    try:
        if is_grouped(zoo_dir):
            top = GroupedManifest.load(zoo_dir)
            directories = [check_group_manifest(zoo_dir, entry) for entry in top.groups]
        else:
            directories = [zoo_dir]
        for directory in directories:
            manifest = Manifest.load(directory)
            for entry in manifest.shards_for(None if split == "all" else split, epochs):
                check_shard_present(directory, entry)
    except WeightzooError:
        return False  # missing or short shards, or a bad selection: fetch fixes or reports it
    return True


def _fetch_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The split and epochs a family will read, as ``fetch`` options (defaults included)."""
    return {
        "split": kwargs.get("split", DEFAULT_SPLIT),
        "epochs": kwargs.get("epochs", DEFAULT_EPOCHS),
    }


def _targets_option(
    targets: str | Sequence[str] | None, target: str | Sequence[str] | None, owner: str
) -> str | Sequence[str] | None:
    """``targets``, or the deprecated ``target`` spelling of it (with a warning)."""
    if target is None:
        return targets
    if targets is not None:
        raise InvalidOptionError(f"{owner}: pass targets= only (target= is its old name)")
    warnings.warn(
        f"{owner}(target=...) is deprecated; use targets=... (the name every Dataset uses)",
        FutureWarning,
        stacklevel=3,
    )
    return target


class MLDS(ZooDataset):
    """MLDS networks (RNNs mimicking machines) by subset name.

    Args:
        root: a directory holding ``mlds-ds1`` etc., or a zoo directory itself (which may
            also hold a variant such as ``mlds-ds1-paper``).
        subset: ``"ds1"``, ``"ds2"`` or ``"ds3"``.
        targets: the labels, by default the machine (DS1/DS2) or automaton (DS3). Both are
            served as class indices; :attr:`classes` names them (DS3: automaton seeds).
        download: fetch the zoo first if it is not under ``root`` (its hub copy, else its
            original release; see docs/sources.md).
        target: deprecated spelling of ``targets``.
        **kwargs: as for :class:`ZooDataset` (split, epochs, features, where, transform...).
    """

    def __init__(
        self,
        root: PathLike,
        *,
        subset: str = "ds1",
        targets: str | Sequence[str] | None = None,
        download: bool = False,
        target: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if subset not in ("ds1", "ds2", "ds3"):
            raise InvalidOptionError(f"subset must be 'ds1', 'ds2' or 'ds3', got {subset!r}")
        targets = _targets_option(targets, target, "MLDS")
        if targets is None:
            targets = "automaton" if subset == "ds3" else "machine"
        name = f"mlds-{subset}"
        manifest = Path(root) / MANIFEST_NAME
        if not download and manifest.is_file() and zoo_name(root).startswith(name + "-"):
            path = Path(root)  # a variant of the subset, e.g. mlds-ds1-paper, given directly
        else:
            path = _family_dir(root, name, download, **_fetch_options(kwargs))
        super().__init__(path, targets=targets, **kwargs)
        if "automaton" in self.targets and "automaton" not in self.classes:
            # DS3's label is an automaton seed: a class index like DS1's machine names.
            listed = self.zoo.manifest.spec.get("automata") or sorted(
                set(self.reader.column("automaton").tolist())
            )
            self.encode_classes("automaton", [int(a) for a in listed])


class MLDSBackdoor(_BatchedDataset):
    """Clean (DS1) and backdoored (DS2) networks together, labelled by ``backdoor`` (0 / 1).

    Items are DS1's then DS2's, each as :class:`MLDS` serves them, with targets ``backdoor``
    and ``machine`` (a class index into :attr:`classes` ``["machine"]``, the same for both).

    Args:
        root: a directory holding ``mlds-ds1`` and ``mlds-ds2``.
        machine: keep only networks of this machine (``None``: all machines).
        allow_empty: serve an empty Dataset where neither subset has a selected network.
        **kwargs: as for :class:`MLDS` (split, epochs, features, where, transform...).

    Raises:
        UnknownColumnError: for a machine that neither zoo has.
        EmptySelectionError: for a selection that keeps no network of either subset.
    """

    def __init__(
        self,
        root: PathLike,
        *,
        machine: str | None = None,
        allow_empty: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("targets", ("backdoor", "machine"))
        if machine is not None:
            where = kwargs.pop("where", None)
            kwargs["where"] = _and_where(where, {"machine": machine})
        subsets = ("ds1", "ds2")

        def build(subset: str, empty: bool) -> MLDS:
            return MLDS(root, subset=subset, allow_empty=empty, **kwargs)

        lenient = allow_empty or machine is not None  # one subset may lack the machine
        self.parts = build_parts(build, subsets, subsets, allow_empty=lenient)
        if machine is not None and not allow_empty and not any(len(p) for p in self.parts):
            known = sorted({m for p in self.parts for m in p.zoo.manifest.categories["machine"]})
            if machine not in known:
                raise UnknownColumnError(
                    f"no network of machine {machine!r} in DS1 or DS2 under {root}; machines: "
                    f"{', '.join(known)}.{did_you_mean(machine, known)}"
                )
            build_parts(build, subsets, subsets)  # raises, naming what emptied each subset
        self.classes: dict[str, list[Any]] = {}
        if "machine" in self.parts[0].classes:
            # One machine list for both zoos, so that an index means the same machine.
            names = list(self.parts[0].classes["machine"])
            names += [m for m in self.parts[1].classes["machine"] if m not in names]
            for part in self.parts:
                part.encode_classes("machine", names)
            self.classes["machine"] = names
        self.cumulative = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.cumulative[-1])

    def __getitems__(self, indices: Sequence[int]) -> list[Item]:
        return items_across(
            self.parts, self.cumulative, indices, lambda part, local: part.__getitems__(local)
        )

    def batch(self, indices: Sequence[int] | np.ndarray) -> Item:
        """Items as one collated batch, in the order asked (one read per zoo)."""
        part, local = part_positions(indices, self.cumulative)
        if not len(part):
            return self.parts[0].batch([])  # empty tensors of the right shapes
        pieces, order = [], []
        for p, dataset in enumerate(self.parts):
            where = np.flatnonzero(part == p)
            if where.size:
                pieces.append(dataset.batch(local[where]))
                order.append(where)
        inverse = np.argsort(np.concatenate(order), kind="stable")
        return {k: _cat([b[k] for b in pieces], inverse) for k in pieces[0]}


def _and_where(first: Where | None, second: Mapping[str, Any]) -> Where:
    """Both filters: a dict merged, or a function and a dict applied together."""
    if first is None:
        return dict(second)
    if isinstance(first, Mapping):
        return {**first, **second}
    return lambda table: np.asarray(first(table), dtype=bool) & _dict_mask(table, second)


def _dict_mask(table: dict[str, np.ndarray], where: Mapping[str, Any]) -> np.ndarray:
    mask = np.ones(len(next(iter(table.values()))), dtype=bool)
    for name, wanted in where.items():
        mask &= matches(table[name], wanted)  # a missing column raises UnknownColumnError
    return mask


class ModelZoo(ZooDataset):
    """A Model Zoos population by its natural names.

    Args:
        root: a directory holding ``modelzoo-<dataset>-<architecture>-<config>``, or that zoo
            directory itself.
        dataset: ``mnist``, ``fashion-mnist``, ``svhn``, ``usps``, ``cifar10``, ``stl10``,
            ``cifar100``, ``tiny-imagenet`` or ``digits``.
        architecture: ``cnn-s``, ``cnn-m`` or ``resnet18``.
        config: ``seed``, ``hyp-10-rand`` or ``hyp-10-fix``.
        download: fetch the zoo first if it is not under ``root`` (its hub copy, else its
            original release; see docs/sources.md).
        **kwargs: as for :class:`ZooDataset`.
    """

    def __init__(
        self,
        root: PathLike,
        *,
        dataset: str = "mnist",
        architecture: str = "cnn-s",
        config: str = "seed",
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        name = f"modelzoo-{dataset}-{architecture}-{config}"
        super().__init__(_family_dir(root, name, download, **_fetch_options(kwargs)), **kwargs)


class TrajectoryZoo(Trajectories):
    """The trajectory zoo ``trajectory-<dataset>-<architecture>`` by its natural names.

    Args:
        root: a directory holding the zoo, or the zoo directory itself.
        dataset: ``mnist`` or ``digits``.
        architecture: ``mlp`` or ``cnn``.
        download: fetch the zoo first if it is not under ``root`` (its hub copy, else its
            original release; see docs/sources.md).
        **kwargs: as for :class:`Trajectories` (mode, window, split, epochs...).
    """

    def __init__(
        self,
        root: PathLike,
        *,
        dataset: str = "mnist",
        architecture: str = "mlp",
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        name = f"trajectory-{dataset}-{architecture}"
        options = {**_fetch_options(kwargs), "epochs": kwargs.get("epochs", "all")}
        super().__init__(_family_dir(root, name, download, **options), **kwargs)


class GroupedBatchSampler(Sampler[list[int]]):
    """Batches of indices that each stay within one group: for :class:`GroupedBatches`.

    Every index of every group is served once per pass. With ``shuffle``, the items of each
    group and the order of all batches (of all groups, interleaved) are drawn anew each pass
    from ``seed`` and the pass number (:meth:`set_epoch` sets it, else it counts passes).

    Args:
        sizes: items per group, in group order; group ``k`` owns the global indices
            ``sum(sizes[:k]) .. sum(sizes[:k+1]) - 1``.
        batch_size: items per batch (the last batch of a group may be smaller).
        shuffle: shuffle items within groups and batches across groups.
        drop_last: drop each group's last batch when it is smaller than ``batch_size``.
        seed: seed of the shuffling.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidOptionError(f"batch_size must be a positive int, got {batch_size!r}")
        self.sizes = [int(n) for n in sizes]
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the shuffling of pass ``epoch`` next (as ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)

    def _batches_of(self, group: int, rng: np.random.Generator | None) -> list[list[int]]:
        start, size = int(self.starts[group]), self.sizes[group]
        order = rng.permutation(size) if rng is not None else np.arange(size)
        batches = [
            (order[i : i + self.batch_size] + start).tolist()
            for i in range(0, size, self.batch_size)
        ]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch]) if self.shuffle else None
        self.epoch += 1
        batches = [b for group in range(len(self.sizes)) for b in self._batches_of(group, rng)]
        if rng is not None:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return iter(batches)

    def __len__(self) -> int:
        if self.drop_last:
            return sum(n // self.batch_size for n in self.sizes)
        return sum(-(-n // self.batch_size) for n in self.sizes)


class GroupedBatches(Dataset):
    """Every group of a grouped zoo as one Dataset whose batches stay within one group.

    Groups differ in layout (widths, heads), so a batch cannot mix them; this Dataset holds
    one Dataset per group (a :class:`ZooDataset` by default, with the same options) and a
    :class:`GroupedBatchSampler` that yields batches of one group at a time, interleaved, so
    that a training loop sees every model of every group each pass. Each item also carries
    ``"group"``, the index of its group in :attr:`groups`.

    Example::

        batches = GroupedBatches(root, batch_size=32, shuffle=True, split="train")
        for batch in batches.loader(num_workers=2):
            head = heads[batches.groups[int(batch["group"][0])]]

    Args:
        root: a grouped zoo directory or :class:`Zoo` (a version-1 zoo counts as one group).
        batch_size: items per batch.
        shuffle: shuffle items within groups and batches across groups, anew each pass.
        drop_last: drop each group's last, smaller batch.
        seed: seed of the shuffling.
        groups: the groups to read, in this order (default: all, in the zoo's order).
        dataset: the Dataset class built for each group (``ZooDataset``, ``Trajectories``...).
        allow_empty: accept a selection that keeps no model of any group (a group without a
            selected model is always accepted, as long as another group has one).
        **kwargs: options of ``dataset`` (split, epochs, features, targets, where...).

    Raises:
        UnknownGroupError: for a group the zoo does not have, or ``groups`` on a version-1 zoo.
        InvalidOptionError: for an empty ``groups`` or one that names a group twice.
        EmptySelectionError: for a selection that keeps no model of any group.
    """

    def __init__(
        self,
        root: Zoo | PathLike,
        *,
        batch_size: int = 64,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        groups: Sequence[str] | None = None,
        dataset: type[ZooDataset] = ZooDataset,
        allow_empty: bool = False,
        **kwargs: Any,
    ) -> None:
        zoo = root if isinstance(root, Zoo) else Zoo(root)
        if zoo.grouped is None:
            if groups is not None:
                raise UnknownGroupError(
                    f"{zoo.root} is a version-1 zoo without groups; drop groups={groups!r}"
                )
            names, zoos = [zoo.name], [zoo]
        else:
            names = list(groups) if groups is not None else zoo.groups
            if not names or len(set(names)) != len(names):
                # a repeated group would serve its models twice a pass, under two indices
                raise InvalidOptionError(
                    f"groups={names!r}: name each group of {zoo.root} at most once, and at "
                    f"least one (its groups are {', '.join(zoo.groups)})"
                )
            zoos = [zoo.group(name) for name in names]
        self.groups: list[str] = names
        self.datasets: list[ZooDataset] = build_parts(
            lambda part, empty: dataset(part, allow_empty=empty, **kwargs),
            zoos,
            names,
            allow_empty=allow_empty,
        )
        self.sampler = GroupedBatchSampler(
            [len(d) for d in self.datasets],
            batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            seed=seed,
        )

    def __len__(self) -> int:
        return int(self.sampler.starts[-1])

    def _split(self, indices: Sequence[int]) -> list[tuple[int, list[int], list[int]]]:
        """``(group, positions in indices, local indices)`` for each group the indices touch."""
        flat = np.asarray(indices, dtype=np.int64)
        if flat.size and (flat.min() < 0 or flat.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} items")
        group_of = np.searchsorted(self.sampler.starts, flat, side="right") - 1
        parts = []
        for group in np.unique(group_of).tolist():
            mine = group_of == group
            local = flat[mine] - self.sampler.starts[group]
            parts.append((group, np.flatnonzero(mine).tolist(), local.tolist()))
        return parts

    def __getitems__(self, indices: Sequence[int]) -> list[Item]:
        """Items of ``indices`` (of one group or several), in their order."""
        out: list[Item | None] = [None] * len(indices)
        for group, positions, local in self._split(indices):
            label = torch.tensor(group)
            items = self.datasets[group].__getitems__(local)
            for position, item in zip(positions, items, strict=True):
                item["group"] = label
                out[position] = item
        return out  # type: ignore[return-value]

    def __getitem__(self, index: int) -> Item:
        return self.__getitems__([operator.index(index)])[0]

    def loader(self, **options: Any) -> DataLoader:
        """A ``DataLoader`` over :attr:`sampler`'s batches (options: ``num_workers``...)."""
        return DataLoader(self, batch_sampler=self.sampler, **options)
