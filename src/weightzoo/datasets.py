"""PyTorch Datasets over zoos: the core :class:`ZooDataset` and the named families.

Items are dicts of tensors, so the default ``collate_fn`` batches them. ``__getitems__`` reads a
whole batch with one read per shard. Nothing here opens a file before it is needed, and what is
open is dropped on pickling, so ``DataLoader(num_workers>0)`` works with ``fork`` and ``spawn``.
"""

from __future__ import annotations

import operator
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    ConcatDataset,
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    default_collate,
)

from weightzoo.errors import (
    InvalidOptionError,
    ManifestError,
    UnknownColumnError,
    WeightzooError,
    ZooNotFoundError,
)
from weightzoo.storage.manifest import MANIFEST_NAME, Manifest
from weightzoo.storage.verify import check_shard_present
from weightzoo.zoo import Zoo

Item = dict[str, torch.Tensor]
Transform = Callable[[Item], Item]
PathLike = str | os.PathLike[str]

STORED_STATS = "stats"
BASE_FEATURES = ("weights", STORED_STATS)
ID_KEYS = ("model", "epoch")


def _as_zoo(zoo: Zoo | PathLike) -> Zoo:
    return zoo if isinstance(zoo, Zoo) else Zoo(zoo)


def _as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


class ZooDataset(Dataset):
    """Checkpoints of a zoo as a map-style Dataset: one item per (model, checkpoint).

    Args:
        zoo: a zoo directory or :class:`Zoo`.
        split: ``"train"``, ``"val"``, ``"test"``, several, or ``"all"``.
        epochs: one checkpoint label, several, ``"last"`` or ``"all"``/``None``.
        features: any of ``"weights"``, ``"stats"`` (the stored ``modelzoo`` statistics) and
            ``"stats:<preset>"`` (``unterthiner``, ``nfn``, computed from the weights on read).
        targets: metric names (one value per checkpoint, e.g. ``"test_acc"``) or model columns
            (``"seed"``, ``"lr"``, ``"machine"``...). String columns become class indices;
            :attr:`classes` maps them back. ``"model"`` (storage position) and ``"epoch"``
            (checkpoint label) name the item itself.
        transform: applied to each item dict.
        filter_viable: drop models with a NaN/Inf or diverged checkpoint, as the papers do.
        ids: add ``"model"`` and ``"epoch"`` to every item (as ``targets=("model", "epoch")``).

    Each item is ``{feature: float32 tensor, target: tensor}``, plus ``"model"`` and
    ``"epoch"`` when asked for.

    Raises:
        ZooNotFoundError, UnknownSplitError, EpochError, UnknownColumnError: for bad input.
        InvalidOptionError: for an option of the wrong type.
    """

    def __init__(
        self,
        zoo: Zoo | PathLike,
        *,
        split: str | Sequence[str] = "train",
        epochs: int | str | Iterable[int] | None = None,
        features: str | Sequence[str] = ("weights",),
        targets: str | Sequence[str] = (),
        transform: Transform | None = None,
        filter_viable: bool = True,
        ids: bool = False,
    ) -> None:
        self.zoo = _as_zoo(zoo)
        self.features = _as_names(features, "features")
        self.targets = _as_names(targets, "targets")
        if ids:
            self.targets += tuple(k for k in ID_KEYS if k not in self.targets)
        if transform is not None and not callable(transform):
            raise InvalidOptionError(f"transform must be callable, got {transform!r}")
        self.transform = transform
        self.reader = self.zoo.reader(split, epochs)
        self._check_names()
        keep = self.reader.complete.copy()
        if filter_viable:
            keep &= self.reader.column("viable").astype(bool)
        self.model_indices = np.flatnonzero(keep)
        self.classes: dict[str, list[str]] = {}
        self._encoded: dict[str, np.ndarray] = {}
        for name in self.targets:
            if name in self.reader.columns and self.reader.columns[name].dtype == object:
                values = self.reader.columns[name].astype(str)
                # Classes of the whole zoo, so that every split uses the same indices.
                names = self.zoo.manifest.categories.get(name) or sorted(set(values))
                self.classes[name] = names
                lookup = {v: i for i, v in enumerate(names)}
                unknown = sorted(map(str, set(values) - set(lookup)))
                if unknown:
                    raise ManifestError(
                        f"column {name!r} of zoo {self.zoo.name!r} holds {unknown}, which the "
                        f"manifest's categories {names} do not list; the manifest does not "
                        "match its shards (fetch or generate the zoo again)"
                    )
                self._encoded[name] = np.asarray([lookup[v] for v in values], dtype=np.int64)

    def _check_names(self) -> None:
        for feature in self.features:
            base, _, preset = feature.partition(":")
            if base not in BASE_FEATURES or (preset and base != STORED_STATS):
                raise UnknownColumnError(
                    f"unknown feature {feature!r}; use 'weights', 'stats' or 'stats:<preset>' "
                    "(presets: modelzoo, unterthiner, nfn)"
                )
            if preset:
                from weightzoo.features import PRESETS

                if preset not in PRESETS:
                    raise UnknownColumnError(
                        f"unknown statistics preset {preset!r}; use one of {', '.join(PRESETS)}"
                    )
        for target in self.targets:
            known = self.reader.metrics.keys() | self.reader.columns.keys() | set(ID_KEYS)
            if target not in known:
                raise UnknownColumnError(
                    f"zoo {self.zoo.name!r} has no metric or column {target!r}. Metrics: "
                    f"{', '.join(self.reader.metrics)}; columns: "
                    f"{', '.join(sorted(self.reader.columns))}"
                )

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

    def __getitem__(self, index: Any) -> Item:
        """One item, or for a sequence of indices the whole collated batch (see :meth:`loader`).

        An index may be an ``int``, a numpy integer or a 0-d integer tensor; a list, array or
        1-d tensor of them reads a batch.
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

    def __getitems__(self, indices: Sequence[int]) -> list[Item]:
        """Read a batch of items with one read per shard (used by ``DataLoader``)."""
        models, checkpoints = self._locate(indices)
        # Read in file order into one buffer; items are views of it, put back in the asked
        # order (the data is not moved again).
        order = self.reader.storage_order(models, checkpoints)
        batch = self._read_batch(models[order], checkpoints[order])
        keys = list(batch)
        rows = [value.unbind(0) for value in batch.values()]
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
        if self.transform is not None:
            items = [self.transform(item) for item in items]
        return items

    def _read_batch(self, models: np.ndarray, checkpoints: np.ndarray) -> dict[str, torch.Tensor]:
        reader = self.reader
        batch: dict[str, torch.Tensor] = {}
        weights = None
        for feature in self.features:
            base, _, preset = feature.partition(":")
            if base == "weights" or preset:
                if weights is None:
                    weights = torch.from_numpy(reader.read("weights", models, checkpoints))
                if base == "weights":
                    batch[feature] = weights
                    continue
            if preset and preset != reader.manifest.stats_preset:
                from weightzoo.features import layer_statistics

                batch[feature] = layer_statistics(weights, reader.manifest.layout, preset=preset)
            else:
                batch[feature] = torch.from_numpy(reader.read("stats", models, checkpoints))
        for target in self.targets:
            if target in reader.metrics:
                batch[target] = torch.from_numpy(reader.metrics[target][models, checkpoints])
            elif target in self._encoded:
                batch[target] = torch.from_numpy(self._encoded[target][models])
            elif target in reader.columns:
                batch[target] = torch.from_numpy(np.asarray(reader.columns[target][models]))
            elif target == "model":
                batch[target] = torch.from_numpy(reader.positions[models])
            else:  # "epoch"
                batch[target] = torch.as_tensor(np.asarray(reader.epochs)[checkpoints])
        return batch


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
            batch = {k: v.pin_memory() for k, v in batch.items()}
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
        zoo: a zoo directory or :class:`Zoo`.
        mode: ``"sequence"`` (one item per model, ``[checkpoints, ...]``), ``"pairs"``
            (consecutive checkpoint pairs ``[2, ...]``) or ``"windows"`` (``[window, ...]``).
        window: window length for ``mode="windows"``.
        **kwargs: as for :class:`ZooDataset`; ``ids`` defaults to ``True`` here (each item
            carries its ``model`` and the ``epoch`` labels of its checkpoints).

    Raises:
        InvalidOptionError: for an unknown mode or a window that does not fit.
    """

    def __init__(
        self,
        zoo: Zoo | PathLike,
        *,
        mode: str = "sequence",
        window: int = 2,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("ids", True)  # a sequence's epochs are part of it
        super().__init__(zoo, **kwargs)
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
        if flat.size and (flat.min() < 0 or flat.max() >= len(self)):
            raise IndexError(f"index out of range for a dataset of {len(self)} items")
        models = self.model_indices[flat // self.starts_per_model]
        starts = flat % self.starts_per_model
        offsets = np.arange(self.length)
        all_models = np.repeat(models, self.length)
        all_checkpoints = (starts[:, None] + offsets[None, :]).ravel()
        batch = self._read_batch(all_models, all_checkpoints)
        items = []
        for i in range(len(flat)):
            rows = slice(i * self.length, (i + 1) * self.length)
            item = {k: v[rows] for k, v in batch.items()}
            if "model" in item:
                item["model"] = item["model"][0]
            items.append(item)
        if self.transform is not None:
            items = [self.transform(item) for item in items]
        return items


def resolve_zoo_dir(root: PathLike, name: str) -> Path:
    """Find zoo ``name`` under ``root``: ``root`` itself if it is that zoo, else ``root/name``.

    Raises:
        ZooNotFoundError: saying how to generate or fetch the zoo.
    """
    root = Path(root)
    if (root / MANIFEST_NAME).is_file():
        found = Manifest.load(root).name
        if found == name:
            return root
        raise ZooNotFoundError(f"{root} holds zoo {found!r}, not {name!r}")
    if (root / name / MANIFEST_NAME).is_file():
        return root / name
    raise ZooNotFoundError(
        f"zoo {name!r} not found under {root}. Generate it with "
        f"`weightzoo generate {name} --out {root / name}`, fetch it with "
        f"`weightzoo fetch {name} --local-dir {root / name}`, or pass download=True."
    )


def _family_dir(root: PathLike, name: str, download: bool, **fetch_options: Any) -> Path:
    if download:
        local = Path(root) / name
        if _selection_present(local, **fetch_options):
            return local  # fetched (and hash-checked) before: no network, no re-hashing
        from weightzoo.hub import fetch

        return Path(fetch(name, local_dir=local, **fetch_options))
    return resolve_zoo_dir(root, name)


def _selection_present(zoo_dir: Path, split: Any = None, epochs: Any = None) -> bool:
    """Whether ``zoo_dir`` holds every shard a split/epoch selection needs, at full size."""
    if not (zoo_dir / MANIFEST_NAME).is_file():
        return False
    try:
        manifest = Manifest.load(zoo_dir)
        for entry in manifest.shards_for(None if split == "all" else split, epochs):
            check_shard_present(zoo_dir, entry)
    except WeightzooError:
        return False  # missing or short shards, or a bad selection: fetch fixes or reports it
    return True


class MLDS(ZooDataset):
    """MLDS networks (RNNs mimicking machines) by subset name.

    Args:
        root: a directory holding ``mlds-ds1`` etc., or a zoo directory itself (which may
            also hold a variant such as ``mlds-ds1-paper``).
        subset: ``"ds1"``, ``"ds2"`` or ``"ds3"``.
        target: the label, by default the machine (DS1/DS2) or automaton (DS3).
        download: fetch the zoo from the hub first if it is not under ``root``.
        **kwargs: as for :class:`ZooDataset` (split, epochs, features, transform, ...).
    """

    def __init__(
        self,
        root: PathLike,
        *,
        subset: str = "ds1",
        target: str | Sequence[str] | None = None,
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        if subset not in ("ds1", "ds2", "ds3"):
            raise InvalidOptionError(f"subset must be 'ds1', 'ds2' or 'ds3', got {subset!r}")
        if target is None:
            target = "automaton" if subset == "ds3" else "machine"
        kwargs.setdefault("epochs", "last")
        fetch_opts = {k: kwargs[k] for k in ("split", "epochs") if k in kwargs}
        name = f"mlds-{subset}"
        manifest = Path(root) / MANIFEST_NAME
        if not download and manifest.is_file() and Manifest.load(root).name.startswith(name + "-"):
            path = Path(root)  # a variant of the subset, e.g. mlds-ds1-paper, given directly
        else:
            path = _family_dir(root, name, download, **fetch_opts)
        super().__init__(path, targets=target, **kwargs)


class MLDSBackdoor(ConcatDataset):
    """Clean (DS1) and backdoored (DS2) networks together, labelled by ``backdoor`` (0 / 1).

    Args:
        root: a directory holding ``mlds-ds1`` and ``mlds-ds2``.
        machine: keep only networks of this machine (``None``: all machines).
        **kwargs: as for :class:`MLDS`.
    """

    def __init__(self, root: PathLike, *, machine: str | None = None, **kwargs: Any) -> None:
        targets = ("backdoor", "machine")
        parts = [MLDS(root, subset=s, target=targets, **kwargs) for s in ("ds1", "ds2")]
        if machine is not None:
            for part in parts:
                names = part.reader.column("machine")[part.model_indices].astype(str)
                if machine not in set(part.reader.column("machine").astype(str)):
                    raise UnknownColumnError(
                        f"no machine {machine!r} in {part.zoo.name}; it has "
                        f"{sorted(set(part.reader.column('machine').astype(str)))}"
                    )
                part.model_indices = part.model_indices[names == machine]
        super().__init__(parts)


class ModelZoo(ZooDataset):
    """A Model Zoos population by its natural names.

    Args:
        root: a directory holding ``modelzoo-<dataset>-<architecture>-<config>``.
        dataset: ``mnist``, ``fashion-mnist``, ``svhn``, ``usps``, ``cifar10``, ``stl10``,
            ``cifar100``, ``tiny-imagenet`` or ``digits``.
        architecture: ``cnn-s``, ``cnn-m`` or ``resnet18``.
        config: ``seed``, ``hyp-10-rand`` or ``hyp-10-fix``.
        download: fetch the zoo from the hub first if it is not under ``root``.
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
        fetch_opts = {k: kwargs[k] for k in ("split", "epochs") if k in kwargs}
        super().__init__(_family_dir(root, name, download, **fetch_opts), **kwargs)


def TrajectoryZoo(  # noqa: N802 - reads as a class to users
    root: PathLike,
    *,
    dataset: str = "mnist",
    architecture: str = "mlp",
    download: bool = False,
    **kwargs: Any,
) -> Trajectories:
    """The trajectory zoo ``trajectory-<dataset>-<architecture>`` under ``root``.

    Args:
        root: a directory holding the zoo.
        dataset: ``mnist`` or ``digits``.
        architecture: ``mlp`` or ``cnn``.
        download: fetch the zoo from the hub first if it is not under ``root``.
        **kwargs: as for :class:`Trajectories`.
    """
    name = f"trajectory-{dataset}-{architecture}"
    fetch_opts = {k: kwargs[k] for k in ("split", "epochs") if k in kwargs}
    return Trajectories(_family_dir(root, name, download, **fetch_opts), **kwargs)
