"""weightzoo: populations of trained neural networks (model zoos) as lazy PyTorch Datasets.

Quick use::

    import weightzoo
    zoo = weightzoo.Zoo("zoos/mlds-ds1")
    data = weightzoo.MLDS("zoos", subset="ds1", split="train")

Importing weightzoo is cheap: the Datasets (and torch) load on first use, and the generator,
the CLI and the network are never touched by the import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from weightzoo.errors import WeightzooError
from weightzoo.storage import Layout, Manifest
from weightzoo.zoo import Zoo

if TYPE_CHECKING:
    from weightzoo.datasets import (
        MLDS,
        MLDSBackdoor,
        ModelZoo,
        Trajectories,
        TrajectoryZoo,
        ZooDataset,
    )
    from weightzoo.functional import Evaluation, evaluate, queries

__version__ = "0.1.0"

_LAZY = {
    name: "weightzoo.datasets"
    for name in ("MLDS", "MLDSBackdoor", "ModelZoo", "Trajectories", "TrajectoryZoo", "ZooDataset")
} | {name: "weightzoo.functional" for name in ("Evaluation", "evaluate", "queries")}

__all__ = [
    "MLDS",
    "Evaluation",
    "Layout",
    "MLDSBackdoor",
    "Manifest",
    "ModelZoo",
    "Trajectories",
    "TrajectoryZoo",
    "WeightzooError",
    "Zoo",
    "ZooDataset",
    "__version__",
    "evaluate",
    "fetch",
    "queries",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'weightzoo' has no attribute {name!r}")


def fetch(name_or_repo: str, **kwargs: Any) -> Any:
    """Download a zoo from the Hugging Face Hub; see :func:`weightzoo.hub.fetch`."""
    from weightzoo.hub import fetch as _fetch

    return _fetch(name_or_repo, **kwargs)
