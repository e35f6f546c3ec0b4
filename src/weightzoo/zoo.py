"""A zoo on disk as one object: manifest, layout, metadata, summary (no torch needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from weightzoo._types import EpochSelection, PathLike, SplitSelection
from weightzoo.errors import ShardMissingError, UnknownColumnError, require
from weightzoo.selection import check_epoch_names, check_split_names, listing
from weightzoo.storage.groups import GroupedManifest, load_any, resolve_group
from weightzoo.storage.layout import Layout
from weightzoo.storage.manifest import MANIFEST_NAME, Manifest
from weightzoo.storage.reader import ZooReader
from weightzoo.storage.sidecar import sidecar_records
from weightzoo.storage.verify import check_shard

#: The per-model column of a zoo with lineage: the id of the model another one started from.
PARENT_COLUMN = "parent"
NO_PARENT = -1  # in PARENT_COLUMN: trained from scratch


class Zoo:
    """A zoo on disk: its manifest, layout and per-model metadata.

    A grouped zoo (format version 2, see ``docs/format.md``) opens as a whole: :attr:`groups`
    names its groups and :meth:`group` opens one, a :class:`Zoo` of its own. ``Zoo(path,
    group=NAME)`` opens group ``NAME`` directly, and a grouped zoo with one group opens as that
    group. Everything that reads models (:attr:`manifest`, :meth:`reader`, :meth:`rows`...)
    needs one group and raises :class:`GroupRequiredError` otherwise.

    Args:
        path: the zoo directory (holding ``zoo.json``).
        group: for a grouped zoo, the group to open.

    Attributes:
        path: the directory of the zoo read (a group's directory for a group).
        root: the directory given (the grouped zoo's own, for a group).
        group_name: the open group's name, ``None`` for a version-1 zoo or a whole grouped zoo.
        grouped: the top manifest of a grouped zoo, else ``None``.

    Raises:
        ZooNotFoundError: if there is no zoo at ``path``.
        UnknownGroupError: for a group the zoo does not have.
        GroupManifestError: for a group manifest that breaks the zoo's hash chain.
    """

    def __init__(self, path: PathLike, group: str | None = None) -> None:
        self.root = Path(path)
        top = load_any(self.root)
        self.grouped: GroupedManifest | None = top if isinstance(top, GroupedManifest) else None
        self.group_name: str | None = None
        self._manifest: Manifest | None = top if isinstance(top, Manifest) else None
        self.path = self.root
        if self.grouped is not None and (group is not None or len(self.grouped.groups) == 1):
            self.path, self.group_name = resolve_group(self.root, group)
            self._manifest = Manifest.load(self.path)
        elif group is not None:
            resolve_group(self.root, group)  # raises UnknownGroupError for a version-1 zoo

    @classmethod
    def open(cls, path: PathLike, group: str | None = None) -> Zoo:
        """Open a zoo of either format version (the same as ``Zoo(path, group)``)."""
        return cls(path, group)

    @property
    def manifest(self) -> Manifest:
        """The (version-1) manifest of the zoo or of the open group.

        Raises:
            GroupRequiredError: on a grouped zoo opened without a group.
        """
        if self._manifest is None:
            resolve_group(self.root, None)  # raises GroupRequiredError naming the groups
            raise AssertionError("unreachable")  # pragma: no cover
        return self._manifest

    @property
    def groups(self) -> list[str]:
        """The group names of a grouped zoo, in order (empty for a version-1 zoo)."""
        return [] if self.grouped is None else self.grouped.group_names

    def group(self, name: str) -> Zoo:
        """Group ``name`` of a grouped zoo, as a :class:`Zoo`.

        Raises:
            UnknownGroupError: for a group the zoo does not have (or a version-1 zoo).
        """
        return Zoo(self.root, group=name)

    def parent_of(self, model_id: int) -> int | None:
        """The id of the model that ``model_id`` was fine-tuned from; ``None``: from scratch.

        Read from the ``parent`` column of whichever group holds the model.

        Raises:
            UnknownColumnError: for a zoo without lineage, or an id it does not hold.
        """
        for part in self.parts():
            reader = part.reader(epochs="last")
            hits = np.flatnonzero(reader.column("model_id") == int(model_id))
            if hits.size:
                if PARENT_COLUMN not in reader.columns:
                    raise UnknownColumnError(
                        f"zoo {self.name!r} at {self.root} records no lineage (no "
                        f"{PARENT_COLUMN!r} column in {part.group_name or 'the zoo'}); parent_of "
                        "needs a zoo of pre-trained and fine-tuned models such as vit-digits"
                    )
                parent = int(reader.column(PARENT_COLUMN)[hits[0]])
                return None if parent == NO_PARENT else parent
        raise UnknownColumnError(
            f"zoo {self.name!r} at {self.root} has no model with id {model_id} on disk "
            f"(it holds {len(self)} models; ids run on across groups)"
        )

    def parts(self) -> list[Zoo]:
        """Every version-1 part of this zoo: its groups, or the zoo itself."""
        return [self.group(g) for g in self.groups] if self.grouped is not None else [self]

    def __repr__(self) -> str:
        if self._manifest is None:
            assert self.grouped is not None
            return (
                f"Zoo({self.name!r}, grouped: {len(self)} models in groups "
                f"{', '.join(self.groups)}, path={str(self.root)!r})"
            )
        if self.group_name is not None:
            return (
                f"Zoo({self.name!r}, group {self.group_name!r}: {self.manifest.num_models} "
                f"models x {len(self.epochs)} checkpoints x {self.layout.num_params} params, "
                f"path={str(self.root)!r})"
            )
        return (
            f"Zoo({self.name!r}, {self.manifest.num_models} models x {len(self.epochs)} "
            f"checkpoints x {self.layout.num_params} params, path={str(self.path)!r})"
        )

    def __len__(self) -> int:
        """Number of models in the complete zoo, the open group, or all groups of a zoo."""
        if self._manifest is None and self.grouped is not None:
            return self.grouped.num_models
        return self.manifest.num_models

    @property
    def name(self) -> str:
        """The zoo's name (for a group: the group's own zoo name, as its shards carry it)."""
        if self._manifest is None and self.grouped is not None:
            return self.grouped.name
        return self.manifest.name

    @property
    def layout(self) -> Layout:
        """The layer layout of a weight row."""
        return self.manifest.layout

    @property
    def manifest_file(self) -> str:
        """The path of the open zoo's (or group's) ``zoo.json``, for messages."""
        return str(self.path / MANIFEST_NAME)

    @property
    def epochs(self) -> list[int]:
        """Checkpoint labels."""
        return self.manifest.epochs

    def reader(
        self,
        split: SplitSelection = None,
        epochs: EpochSelection = None,
    ) -> ZooReader:
        """A :class:`ZooReader` over some splits and epochs (all by default).

        Raises:
            UnknownSplitError: for a split name that is no split, naming the zoo's splits and
                a near miss (``"validation"``: ``"val"``).
            EpochError: for an epoch the zoo has no checkpoint for, naming those it has.
        """
        check_split_names(split, self.manifest, self.path)
        check_epoch_names(epochs, self.manifest, self.path)
        return ZooReader(self.path, split=split, epochs=epochs, manifest=self.manifest)

    def metadata(self, split: SplitSelection = None) -> dict[str, np.ndarray]:
        """Per-model columns (``model_id``, ``seed``, hyperparameters, ``split``, ``viable``...).

        Also the last checkpoint's value of every metric, as ``final_<metric>``.
        :meth:`to_pandas` gives the same as a table.

        Args:
            split: one split, several, or ``None``/``"all"`` for every model.

        Returns:
            ``{column: array}``, one value per model, in storage order.
        """
        reader = self.reader(split, epochs="last")
        table = {k: v for k, v in reader.columns.items() if np.ndim(v) == 1}
        for name, values in reader.metrics.items():
            table[f"final_{name}"] = values[:, 0]
        return table

    def to_pandas(self, split: SplitSelection = None) -> Any:
        """:meth:`metadata` as a ``pandas.DataFrame``, one row per model (``analysis`` extra).

        Args:
            split: one split, several, or ``None``/``"all"`` for every model.

        Raises:
            MissingExtraError: if pandas is not installed.
        """
        pandas: Any = require("pandas", "analysis", "Zoo.to_pandas()")
        return pandas.DataFrame(self.metadata(split))

    def state_dict(self, row: Any) -> dict[str, Any]:
        """Turn one weight row (array or tensor) back into a ``state_dict`` of tensors."""
        import torch  # here, not at the top: opening a zoo needs no torch

        from weightzoo.features import unflatten

        return unflatten(torch.as_tensor(row), self.layout)

    def rows(
        self, models: int | Sequence[int] | None = None, epoch: int | str = "last"
    ) -> np.ndarray:
        """Weight rows of some models at one checkpoint, float32 ``[n, params]``.

        Args:
            models: model positions (``0..len(zoo)-1``, the storage order, as the ``position``
                column); ``None``: every model whose shards are on disk.
            epoch: a checkpoint label, or ``"last"``.

        Raises:
            EpochError: for an epoch the zoo has no checkpoint for.
            UnknownColumnError: for a position that is not in the zoo (or not on disk).
        """
        if isinstance(epoch, str) and epoch != "last":
            from weightzoo.errors import EpochError

            raise EpochError(
                f"epoch must be a checkpoint label or 'last', got {epoch!r}; zoo {self.name!r} "
                f"at {self.path} has epochs {listing(self.epochs)}"
            )
        reader = self.reader(epochs=epoch)  # one checkpoint: EpochError names the labels
        local = self._local_indices(reader, models)
        return reader.read("weights", local, np.zeros(len(local), dtype=np.int64))

    def model_columns(self, models: int | Sequence[int]) -> dict[str, Any]:
        """The per-model columns of some models (by position): ``{column: values [n]}``.

        Raises:
            UnknownColumnError: for a position that is not in the zoo (or not on disk).
        """
        reader = self.reader(epochs="last")
        local = self._local_indices(reader, models)
        return {k: v[local] for k, v in reader.columns.items() if len(v) == reader.num_models}

    def positions(self, model_ids: int | Sequence[int]) -> np.ndarray:
        """Storage positions of models given by their ``model_id`` column.

        :meth:`rows`, :meth:`module`, :meth:`model_columns` and :meth:`build_model` take
        positions (the storage order, split by split), which differ from ``model_id`` (the
        order the zoo's spec planned) wherever the splits interleave:
        ``zoo.module((zoo.positions(17)[0], "last"))`` is the model with ``model_id`` 17.

        Raises:
            UnknownColumnError: for an id that is not in the zoo (or not on disk).
        """
        ids_on_disk, positions = [], []
        for split in self.manifest.splits():  # a split whose shards were not fetched is skipped
            try:
                reader = self.reader(split, epochs="last")
            except ShardMissingError:
                continue
            ids_on_disk.append(np.asarray(reader.column("model_id"), dtype=np.int64))
            positions.append(reader.positions)
        ids = np.concatenate(ids_on_disk) if ids_on_disk else np.zeros(0, np.int64)
        where = np.concatenate(positions) if positions else np.zeros(0, np.int64)
        wanted = np.atleast_1d(np.asarray(model_ids, dtype=np.int64))
        order = np.argsort(ids, kind="stable")
        found = np.minimum(np.searchsorted(ids[order], wanted), max(len(ids) - 1, 0))
        bad = ids[order][found] != wanted if len(ids) else np.ones(len(wanted), dtype=bool)
        if bad.any():
            missing = wanted[bad]
            known = (missing >= 0) & (missing < self.manifest.num_models)
            where_to = (
                "fetch the split that holds it"
                if known.all()
                else f"model ids run 0..{self.manifest.num_models - 1}"
            )
            raise UnknownColumnError(
                f"zoo {self.name!r} at {self.path} has no model with model_id "
                f"{missing.tolist()[:5]} on disk ({where_to})"
            )
        return where[order[found]]

    def _local_indices(self, reader: ZooReader, models: int | Sequence[int] | None) -> np.ndarray:
        if models is None:
            return np.arange(reader.num_models)
        wanted = np.atleast_1d(np.asarray(models, dtype=np.int64))
        local = np.searchsorted(reader.positions, wanted)
        bad = (local >= len(reader.positions)) | (
            reader.positions[np.minimum(local, len(reader.positions) - 1)] != wanted
        )
        if len(reader.positions) == 0 or bad.any():
            missing = wanted[bad] if len(reader.positions) else wanted
            raise UnknownColumnError(
                f"zoo {self.name!r} at {self.path} has no model at position(s) "
                f"{missing.tolist()[:5]} on disk; positions run 0..{len(self) - 1} (fetch the "
                "split that holds them)"
            )
        return local

    def build_model(self, model: int | None = None) -> Any:
        """A fresh ``nn.Module`` of the zoo's architecture (eval mode).

        The manifest's spec is checked against its layout on the ``meta`` device first, so a
        damaged spec allocates nothing (see :func:`weightzoo.architectures.check_layout`).

        Args:
            model: the position of the model whose columns pick the module (the activation of
                a hyperparameter-grid zoo); needed only where the zoo's models differ.

        Raises:
            UnbuildableSpecError: for an imported zoo (its spec names no weightzoo
                architecture), or a grid zoo without ``model``.
            LayoutError: for a spec whose module has other tensors than the zoo's layout.
        """
        from weightzoo.architectures import UnbuildableSpecError, build_model  # torch: on use

        columns = self.model_columns(model) if model is not None else {}
        columns = {k: v[0] for k, v in columns.items()}
        try:
            return build_model(
                self.manifest.spec, columns, layout=self.layout, source=self.manifest_file
            ).eval()
        except UnbuildableSpecError as exc:
            if model is None and "several activations" in str(exc):
                raise UnbuildableSpecError(
                    f"zoo {self.name!r} at {self.path} gives each model its own activation; "
                    "pass the model: zoo.build_model(model=POSITION) or "
                    "zoo.module(row, model=POSITION)"
                ) from None
            raise

    def module(self, row: Any, model: int | None = None) -> Any:
        """A working ``nn.Module`` (eval mode) holding one row.

        Args:
            row: a weight row (numpy array or tensor of ``params`` values), or a
                ``(model, epoch)`` pair read from the zoo (``epoch`` a label or ``"last"``).
            model: the row's model position, where the zoo's models differ in architecture
                (taken from the pair when a pair is given).

        Raises:
            LayoutError: for a row of the wrong length, or a spec whose module differs from
                the layout.
            UnbuildableSpecError: as :meth:`build_model`.
        """
        from weightzoo.features import load_vector  # torch: on use

        if isinstance(row, tuple):
            model, epoch = row
            row = self.rows(int(model), epoch)[0]
        return load_vector(self.build_model(model), row, self.layout)

    def info(self) -> dict[str, Any]:
        """Summary for ``weightzoo info``: counts, sizes, splits, columns, metric ranges.

        ``range_<metric>`` is ``(min, max)`` of each accuracy and loss metric at the last
        checkpoint over the viable models (only when every shard is present).

        Every shard on disk is checked against the manifest (size and attributes, no hashing).

        Raises:
            ShardCorruptError, UnsafePathError: for a shard that does not match the manifest.
        """
        if self._manifest is None and self.grouped is not None:
            return self._grouped_info()
        manifest = self.manifest
        present = [s for s in manifest.shards if (self.path / s.file).exists()]
        for entry in present:
            check_shard(self.path, entry, manifest)
        summary: dict[str, Any] = {
            "name": manifest.name,
            "family": manifest.family,
            "path": str(self.path),
            "models": manifest.num_models,
            "checkpoints": len(manifest.epochs),
            "epochs": manifest.epochs,
            "params": manifest.num_params,
            "complete": manifest.complete,
            "splits": manifest.splits(),
            "shards": len(manifest.shards),
            "shards_present": len(present),
            "bytes": sum(s.bytes for s in manifest.shards),
            "metrics": manifest.metrics,
            "columns": sorted(manifest.columns),
            "stats": f"{manifest.stats_preset} ({len(manifest.stats_names)} values)",
            "side_files": {
                name: sorted(record.arrays) for name, record in sidecar_records(self.path).items()
            },
        }
        if present and len(present) == len(manifest.shards):
            reader = self.reader(epochs="last")
            viable = reader.column("viable").astype(bool) & reader.complete
            for metric in manifest.metrics:
                if "acc" in metric or metric.endswith("loss"):
                    values = reader.metrics[metric][viable]
                    finite = values[np.isfinite(values)]
                    if finite.size:
                        summary[f"range_{metric}"] = (float(finite.min()), float(finite.max()))
        return summary

    def whole_info(self) -> dict[str, Any]:
        """:meth:`info` of the whole zoo at :attr:`root`, whichever group is open.

        A grouped zoo gives its own fields and every group's summary (``groups``), also when
        it has one group (which :class:`Zoo` opens as that group); a version-1 zoo gives
        :meth:`info`.
        """
        return self._grouped_info() if self.grouped is not None else self.info()

    def _grouped_info(self) -> dict[str, Any]:
        """:meth:`info` of a whole grouped zoo: its own fields and every group's summary."""
        assert self.grouped is not None
        groups = []
        for entry in self.grouped.groups:
            summary: dict[str, Any] = {
                "group": entry.name,
                "first_model_id": entry.first_model_id,
                "finished": entry.manifest_sha256 is not None,
            }
            # a finished group (hash recorded) is opened even without its manifest: that raises
            manifest_file = self.root / entry.path / MANIFEST_NAME
            if summary["finished"] or manifest_file.is_file():
                summary.update(self.group(entry.name).info())
            else:
                summary.update(models=entry.num_models, complete=False)
            groups.append(summary)
        return {
            "name": self.grouped.name,
            "family": self.grouped.family,
            "path": str(self.root),
            "format_version": 2,
            "models": self.grouped.num_models,
            "finished": self.grouped.finished,
            "complete": all(g.get("complete") for g in groups),
            "bytes": sum(g.get("bytes", 0) for g in groups),
            "groups": groups,
        }
