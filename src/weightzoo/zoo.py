"""A zoo on disk as one object: manifest, layout, metadata, summary (no torch needed)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from weightzoo.errors import require
from weightzoo.storage.layout import Layout
from weightzoo.storage.manifest import Manifest
from weightzoo.storage.reader import ZooReader
from weightzoo.storage.verify import check_shard

PathLike = str | os.PathLike[str]


class Zoo:
    """A zoo on disk: its manifest, layout and per-model metadata.

    Args:
        path: the zoo directory (holding ``zoo.json``).

    Raises:
        ZooNotFoundError: if there is no zoo at ``path``.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self.manifest = Manifest.load(self.path)

    def __repr__(self) -> str:
        return (
            f"Zoo({self.name!r}, {self.manifest.num_models} models x {len(self.epochs)} "
            f"checkpoints x {self.layout.num_params} params, path={str(self.path)!r})"
        )

    def __len__(self) -> int:
        """Number of models in the complete zoo."""
        return self.manifest.num_models

    @property
    def name(self) -> str:
        """The zoo's name."""
        return self.manifest.name

    @property
    def layout(self) -> Layout:
        """The layer layout of a weight row."""
        return self.manifest.layout

    @property
    def epochs(self) -> list[int]:
        """Checkpoint labels."""
        return self.manifest.epochs

    def reader(
        self,
        split: str | Sequence[str] | None = None,
        epochs: int | str | Iterable[int] | None = None,
    ) -> ZooReader:
        """A :class:`ZooReader` over some splits and epochs (all by default)."""
        return ZooReader(self.path, split=split, epochs=epochs, manifest=self.manifest)

    def metadata(self, split: str | Sequence[str] | None = None) -> dict[str, np.ndarray]:
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

    def to_pandas(self, split: str | Sequence[str] | None = None) -> Any:
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
        import torch

        from weightzoo.features import unflatten

        return unflatten(torch.as_tensor(row), self.layout)

    def info(self) -> dict[str, Any]:
        """Summary for ``weightzoo info``: counts, sizes, splits, columns, metric ranges.

        ``range_<metric>`` is ``(min, max)`` of each accuracy and loss metric at the last
        checkpoint over the viable models (only when every shard is present).

        Every shard on disk is checked against the manifest (size and attributes, no hashing).

        Raises:
            ShardCorruptError, UnsafePathError: for a shard that does not match the manifest.
        """
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
