"""weightzoo: populations of trained neural networks (model zoos) as lazy PyTorch Datasets.

Quick use::

    import weightzoo
    zoo = weightzoo.Zoo("zoos/mlds-ds1")
    data = weightzoo.MLDS("zoos", subset="ds1", split="train")

Importing weightzoo is cheap: the Datasets (and torch) load on first use, and the generator,
the CLI and the network are never touched by the import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from weightzoo._lazy import lazy_getattr
from weightzoo.errors import WeightzooError
from weightzoo.storage import Layout, Manifest
from weightzoo.zoo import Zoo

if TYPE_CHECKING:
    from weightzoo.datasets import (
        MLDS,
        GroupedBatches,
        MLDSBackdoor,
        ModelZoo,
        Trajectories,
        TrajectoryZoo,
        ZooDataset,
    )
    from weightzoo.functional import Evaluation, evaluate, queries
    from weightzoo.hub import fetch
    from weightzoo.lineage import LineagePairs

__version__ = "0.1.0"

# Attributes loaded on first use, so that `import weightzoo` stays light (no torch, no
# huggingface_hub): name -> the module that defines it.
_LAZY = {
    **{
        name: "weightzoo.datasets"
        for name in (
            "GroupedBatches",
            "MLDS",
            "MLDSBackdoor",
            "ModelZoo",
            "Trajectories",
            "TrajectoryZoo",
            "ZooDataset",
        )
    },
    "fetch": "weightzoo.hub",
    "LineagePairs": "weightzoo.lineage",
    **{name: "weightzoo.functional" for name in ("Evaluation", "evaluate", "queries")},
}
# Submodules reachable as attributes after a plain `import weightzoo` (weightzoo.features...).
_SUBMODULES = (
    "analysis",
    "architectures",
    "blocks",
    "card",
    "catalog",
    "datasets",
    "errors",
    "features",
    "functional",
    "generate",
    "hub",
    "importers",
    "landscape",
    "lineage",
    "storage",
    "tasks",
    "zoo",
)

__all__ = [
    "MLDS",
    "Evaluation",
    "GroupedBatches",
    "Layout",
    "LineagePairs",
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


__getattr__ = lazy_getattr(__name__, _LAZY, _SUBMODULES)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
