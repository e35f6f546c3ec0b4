"""Property-inference zoos as specs: the grid, the named specs and their catalog listings.

Models are ordered replicate-major: for each replicate ``k``, every pool (victim, adversary)
and, inside it, every ratio of the grid. ``--models N`` therefore keeps a balanced subset of
pools and ratios. Each model trains on its own subset of its pool
(:func:`weightzoo.families.property.data.training_subset`), drawn from its seed; the columns
``ratio``, ``pool``, ``seed`` and the realised ``property_share`` of that subset are stored per
model. The protocol is that of Suri & Evans, *Formalizing and Estimating Distribution Inference
Risks* (arXiv:2109.06024). This module imports no torch, so that listing and sizing the zoos is
cheap.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import ClassVar

from weightzoo.families import Listing
from weightzoo.families.property.data import POOLS
from weightzoo.generate.base import GridOptions, ZooSpec, size_estimate

__all__ = ["FAMILY_NAME", "METRICS", "RATIOS", "PropertySpec", "listings", "specs"]

FAMILY_NAME = "property"
"""The family's registry name, as every manifest of a property zoo records it."""

RATIOS = tuple(round(0.1 * k, 1) for k in range(11))
"""The ratio grid 0.0, 0.1, ..., 1.0."""

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
"""Per-checkpoint metrics: on the model's own training subset and on the shared test set."""


@dataclass(frozen=True)
class PropertySpec(GridOptions, ZooSpec):
    """A property-inference zoo.

    Attributes:
        dataset: ``"synthetic"`` or ``"digits"`` (:mod:`weightzoo.families.property.data`).
        features: inputs per item (64 for digits).
        num_classes: classes (2 synthetic, 10 digits).
        hidden: hidden widths of the MLP.
        ratios: the property shares of the training subsets.
        pools: the data pools, victim and adversary (disjoint).
        models_per_ratio: models per ratio and pool.
        train_size: items in each model's training subset.
        pool_size: items per pool.
        test_size: items of the shared test set.
        epochs: training epochs; checkpoints are epoch 0 and the last.
        batch_size: per-model batch size.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        lr: learning rate.
        weight_decay: weight decay.
        seed_start: model ``i`` has seed ``seed_start + i``.
        data_seed: seed of the synthetic draw and of the pool split.
        models: if set, only ``models`` models: the first, or a sample (``sample``).
    """

    family: str = FAMILY_NAME
    dataset: str = "synthetic"
    features: int = 8
    num_classes: int = 2
    hidden: tuple[int, ...] = (16, 8)
    ratios: tuple[float, ...] = RATIOS
    pools: tuple[str, ...] = POOLS
    models_per_ratio: int = 50
    train_size: int = 500
    pool_size: int = 4000
    test_size: int = 2000
    epochs: int = 20
    batch_size: int = 50
    optimizer: str = "adam"
    lr: float = 3e-3
    weight_decay: float = 0.0
    seed_start: int = 1
    data_seed: int = 7
    models: int | None = None

    kind: ClassVar[str] = "property"

    def cells(self) -> list[tuple[str, float]]:
        """The (pool, ratio) cells in model order within one replicate."""
        return [(pool, float(r)) for pool in self.pools for r in self.ratios]

    def grid_models(self) -> int:
        """Models of the full grid (ignoring ``models``)."""
        return len(self.cells()) * self.models_per_ratio

    def checkpoint_epochs(self) -> list[int]:
        """Epoch 0 (initialisation) and the last epoch."""
        return [0, self.epochs]

    def num_params(self) -> int:
        """Parameters of one MLP: a weight matrix and a bias per layer."""
        widths = (self.features, *self.hidden, self.num_classes)
        return sum((int(a) + 1) * int(b) for a, b in itertools.pairwise(widths))

    def estimate(self) -> dict[str, int]:
        """Size of the zoo, without torch: models, checkpoints, params, bytes of ``weights``."""
        return size_estimate(self.num_models(), len(self.checkpoint_epochs()), self.num_params())


def specs() -> list[ZooSpec]:
    """The named property specs: a small synthetic zoo and the digits zoo."""
    return [
        PropertySpec(name="property-synthetic"),
        PropertySpec(
            name="property-digits-even",
            dataset="digits",
            features=64,
            num_classes=10,
            hidden=(32,),
            models_per_ratio=100,
            train_size=300,
            pool_size=700,
            test_size=397,
            epochs=30,
            batch_size=30,
            lr=3e-3,
        ),
    ]


def listings() -> list[Listing]:
    """The catalog's lines for the named specs (both generated offline)."""
    return [
        Listing(
            "property-synthetic",
            "Property inference: MLPs on synthetic data, property share 0.0-1.0",
        ),
        Listing(
            "property-digits-even",
            "Property inference: MLPs on digits, share of even digits 0.0-1.0",
        ),
    ]
