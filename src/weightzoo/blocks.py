"""The one block writer: a block of models' records -> statistics -> viability -> shards.

Everything that writes models into a zoo (the generator's runner, sparsified twins, the
importers) hands a block of :class:`ModelRecord` s to :func:`write_block`, which stacks them,
computes the per-layer statistics and the viability flags, and writes the block's shard (or one
shard per group of epochs) through :class:`~weightzoo.storage.writer.ZooWriter`. The split of
models into train/val/test is one rule too, :func:`stratified_splits`.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from weightzoo.features import layer_statistics_numpy
from weightzoo.storage.manifest import SPLITS, shard_file_name
from weightzoo.storage.writer import ZooWriter, checkpoint_viability

__all__ = [
    "STATS_PRESET",
    "ModelRecord",
    "epoch_groups",
    "stack_records",
    "stratified_splits",
    "write_block",
]

STATS_PRESET = "modelzoo"
"""The statistics definition stored in every shard (the Model Zoos paper's, Table 3)."""


@dataclass
class ModelRecord:
    """What is stored for one model.

    Attributes:
        model_id: the model's global id.
        weights: float32 ``[checkpoints, params]``, rows flattened by the zoo's layout.
        metrics: ``{name: float32 [checkpoints]}``, one value per checkpoint (NaN where unknown).
        columns: per-model results (epochs taken, passed, device, loss histories, ...): scalars,
            strings, or fixed-length 1-D arrays (pad with NaN to a length the family fixes).
    """

    model_id: int
    weights: np.ndarray
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    columns: dict[str, Any] = field(default_factory=dict)


def stratified_splits(
    model_ids: Sequence[int],
    strata: Sequence[str],
    *,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 42,
) -> dict[int, str]:
    """Split models train/val/test by ``fractions``, stratified by ``strata``.

    Within each stratum (a class, a hyperparameter node; ``""`` for none), models are shuffled
    with a seed derived from ``seed`` and the stratum name, and ranked; all models are then
    ordered by their relative rank in their stratum, and the split boundaries are drawn on that
    order. Every stratum is thus spread over the splits in proportion even when it is small,
    and the result depends only on the ids, strata, fractions and seed.

    Args:
        model_ids: the models' ids.
        strata: each model's stratum, in the order of ``model_ids``.
        fractions: train/val/test fractions (normalised).
        seed: seed of the permutations.

    Returns:
        ``{model_id: split}``.
    """
    if len(model_ids) != len(strata):
        raise ValueError(f"{len(strata)} strata given for {len(model_ids)} models")
    groups: dict[str, list[int]] = {}
    for model_id, stratum in zip(model_ids, strata, strict=True):
        groups.setdefault(str(stratum), []).append(int(model_id))
    keyed: list[tuple[float, int, int]] = []
    for name, ids in groups.items():
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        order = rng.permutation(sorted(ids))
        keyed += [
            ((rank + 0.5) / len(order), zlib.crc32(name.encode()), int(model_id))
            for rank, model_id in enumerate(order)
        ]
    keyed.sort()
    total = len(keyed)
    parts = np.asarray(fractions, dtype=float)
    bounds = np.round(np.cumsum(parts / parts.sum()) * total).astype(int)
    return {
        model_id: SPLITS[int(np.searchsorted(bounds, index, side="right"))]
        for index, (_, _, model_id) in enumerate(keyed)
    }


def epoch_groups(epochs: Sequence[int], per_shard: int | None) -> list[list[int]]:
    """Consecutive groups of checkpoint labels, one group per shard file of a block."""
    if not per_shard or per_shard >= len(epochs):
        return [list(epochs)]
    return [list(epochs[i : i + per_shard]) for i in range(0, len(epochs), per_shard)]


def stack_records(
    records: Sequence[ModelRecord],
    metric_names: Sequence[str],
    *,
    order: Sequence[int] | None = None,
    columns: Mapping[str, Sequence[Any]] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """Stack a block's records into ``weights``, ``metrics`` and per-model ``columns``.

    Args:
        records: one record per model.
        metric_names: the metrics every record must carry.
        order: model ids in block order (default: the records' order); every id needs a record.
        columns: per-model columns known beforehand, in block order (``model_id``, ``seed``,
            hyperparameters); a record's own columns are added to them.
        defaults: ``{column: value}`` for columns that neither gives (e.g. the device).

    Returns:
        float32 ``weights [models, checkpoints, params]``, ``metrics {name: [models,
        checkpoints]}`` and ``columns {name: array or list of str}``.

    Raises:
        RuntimeError: for a model without a record, or a column not given for every model.
    """
    by_id = {r.model_id: r for r in records}
    order = [r.model_id for r in records] if order is None else list(order)
    missing = [model_id for model_id in order if model_id not in by_id]
    if missing:
        raise RuntimeError(f"no record was produced for models {missing}")
    ordered = [by_id[model_id] for model_id in order]
    weights = np.stack([np.asarray(r.weights, dtype=np.float32) for r in ordered])
    metrics = {
        name: np.stack([np.asarray(r.metrics[name], dtype=np.float32) for r in ordered])
        for name in metric_names
    }
    lists: dict[str, list] = {k: list(v) for k, v in (columns or {}).items()}
    lists.setdefault("model_id", list(order))
    for record in ordered:
        for key, value in record.columns.items():
            lists.setdefault(key, []).append(value)
    for key, value in (defaults or {}).items():
        lists.setdefault(key, [value] * len(ordered))
    table: dict[str, Any] = {}
    for key, values in lists.items():
        if len(values) != len(ordered):
            raise RuntimeError(f"column {key!r} is not given for every model of the block")
        table[key] = values if isinstance(values[0], str) else np.asarray(values)
    return weights, metrics, table


def write_block(
    writer: ZooWriter,
    records: Sequence[ModelRecord],
    *,
    split: str,
    first: int,
    order: Sequence[int] | None = None,
    columns: Mapping[str, Sequence[Any]] | None = None,
    defaults: Mapping[str, Any] | None = None,
    groups: Sequence[Sequence[int]] | None = None,
) -> list[str]:
    """Write one block of models: statistics, viability, and one shard per epoch group.

    The ``viable`` column is False for a model with any non-viable checkpoint (NaN, Inf, or a
    weight beyond the zoo's divergence threshold) in any group.

    Args:
        writer: the zoo's writer (its manifest gives layout, metrics, statistics preset).
        records: the block's records.
        split: the block's split.
        first: storage position of the block's first model.
        order: model ids in storage order (default: the records' order).
        columns: per-model columns known beforehand, in storage order.
        defaults: values of columns that neither the records nor ``columns`` give.
        groups: checkpoint labels of each shard (default: all in one shard).

    Returns:
        The shard files written.
    """
    manifest = writer.manifest
    weights, metrics, table = stack_records(
        records, manifest.metrics, order=order, columns=columns, defaults=defaults
    )
    rows = weights.reshape(-1, weights.shape[-1])
    stats = layer_statistics_numpy(rows, manifest.layout, manifest.stats_preset)
    stats = stats.reshape(*weights.shape[:2], -1)
    viable = checkpoint_viability(weights, writer.diverge_threshold)
    given = table.get("viable")
    table["viable"] = viable.all(axis=1) & (True if given is None else np.asarray(given, bool))
    groups = [list(manifest.epochs)] if groups is None else [list(g) for g in groups]
    last = first + len(weights)
    files, start = [], 0
    for index, group in enumerate(groups):
        part = slice(start, start + len(group))
        start += len(group)
        file = shard_file_name(split, first, index)
        writer.write_shard(
            file,
            split=split,
            models=(first, last),
            epochs=group,
            weights=weights[:, part],
            stats=stats[:, part],
            metrics={k: v[:, part] for k, v in metrics.items()},
            columns=table,
            checkpoint_viable=viable[:, part],
        )
        files.append(file)
    return files
