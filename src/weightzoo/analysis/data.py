"""Zoo rows as numpy arrays for scikit-learn: one read per selection, through ``ZooDataset``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from weightzoo._types import EpochSelection, PathLike
from weightzoo.datasets import ZooDataset
from weightzoo.zoo import Zoo

FIT_SPLITS = ("train", "val")
CLASS_COLUMNS = ("machine", "automaton")


def as_zoo(zoo: Zoo | PathLike) -> Zoo:
    """A :class:`Zoo` from a zoo or its directory."""
    return zoo if isinstance(zoo, Zoo) else Zoo(zoo)


def arrays(
    zoo: Zoo,
    *,
    split: str | Sequence[str],
    epochs: EpochSelection = "last",
    features: Sequence[str] = ("weights",),
    targets: Sequence[str] = (),
    filter_viable: bool = True,
) -> dict[str, np.ndarray]:
    """Every selected checkpoint as arrays: ``{feature: [n, d], target: [n], "model", "epoch"}``.

    String columns come back as strings (not class indices), so that labels from two zoos
    compare. Rows are in storage order: model-major, then checkpoint.
    """
    data = ZooDataset(
        zoo,
        split=split,
        epochs=epochs,
        features=tuple(features),
        targets=tuple(targets),
        filter_viable=filter_viable,
        ids=True,
    )
    batch = data.batch(np.arange(len(data)))
    out = {name: tensor.numpy() for name, tensor in batch.items()}
    for name, classes in data.classes.items():
        out[name] = np.asarray(classes, dtype=object)[out[name]].astype(str)
    return out


def class_column(zoo: Zoo) -> str | None:
    """The column that labels an MLDS network's training data (``machine`` or ``automaton``)."""
    return next((c for c in CLASS_COLUMNS if c in zoo.manifest.columns), None)


def zoo_label(zoo: Zoo) -> str:
    """How a zoo is named in tables: its name, with the directory when that differs."""
    return zoo.name if zoo.path.name == zoo.name else f"{zoo.name} ({zoo.path.name})"
