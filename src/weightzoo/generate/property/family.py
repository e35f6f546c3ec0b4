"""Property-inference zoos as specs and a family.

Models are ordered replicate-major: for each replicate ``k``, every pool (victim, adversary)
and, inside it, every ratio of the grid. ``--models N`` therefore keeps a balanced subset of
pools and ratios. Each model trains on its own subset of its pool
(:func:`weightzoo.tasks.property.training_subset`), drawn from its seed; the columns ``ratio``,
``pool``, ``seed`` and the realised ``property_share`` of that subset are stored per model.
The protocol is that of Suri & Evans, *Formalizing and Estimating Distribution Inference
Risks* (arXiv:2109.06024).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from weightzoo.generate.base import GridOptions, ModelPlan, ModelRecord, ZooSpec
from weightzoo.storage.layout import Layout
from weightzoo.tasks.property import POOLS

RATIOS = tuple(round(0.1 * k, 1) for k in range(11))
"""The ratio grid 0.0, 0.1, ..., 1.0."""

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
"""Per-checkpoint metrics: on the model's own training subset and on the shared test set."""


@dataclass(frozen=True)
class PropertySpec(GridOptions, ZooSpec):
    """A property-inference zoo.

    Attributes:
        dataset: ``"synthetic"`` or ``"digits"`` (:mod:`weightzoo.tasks.property`).
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
        models: if set, only the first ``models`` models (``--models``).
    """

    family: str = "property"
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

    def grid_models(self) -> int:
        """Models of the full grid (ignoring ``models``)."""
        return len(self.ratios) * len(self.pools) * self.models_per_ratio

    def estimate(self) -> dict[str, int]:
        """Size of the zoo: models, checkpoints, params per row, and bytes of ``weights``."""
        params = family().layout(self).num_params
        models, checkpoints = self.num_models(), 2
        return {
            "models": models,
            "checkpoints": checkpoints,
            "params": params,
            "bytes": models * checkpoints * params * 4,
        }


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


class PropertyFamily:
    """The :class:`~weightzoo.generate.base.Family` of property-inference specs."""

    name = "property"

    def layout(self, spec: ZooSpec) -> Layout:
        """Layout of one row: the MLP's weights and biases, layer by layer."""
        from weightzoo.architectures import build_model
        from weightzoo.features import layout_of

        return layout_of(build_model(spec.to_dict()))

    def checkpoint_epochs(self, spec: ZooSpec) -> list[int]:
        """Epoch 0 (initialisation) and the last epoch."""
        assert isinstance(spec, PropertySpec)
        return [0, spec.epochs]

    def metric_names(self, spec: ZooSpec) -> list[str]:
        """train/test loss and accuracy."""
        return list(METRICS)

    def plan(self, spec: ZooSpec) -> list[ModelPlan]:
        """One plan per model, replicate-major; stratum = pool and ratio."""
        assert isinstance(spec, PropertySpec)
        cells = [(pool, float(r)) for pool in spec.pools for r in spec.ratios]
        plans = []
        for model_id in range(spec.num_models()):
            pool, ratio = cells[model_id % len(cells)]
            columns = {"ratio": ratio, "pool": pool}
            plans.append(
                ModelPlan(model_id, spec.seed_start + model_id, f"{pool}:{ratio}", columns)
            )
        return plans

    def train(
        self,
        spec: ZooSpec,
        plans: Sequence[ModelPlan],
        *,
        device: str,
        progress: bool = True,
        on_epoch: Callable[[int, int | None], None] | None = None,
    ) -> list[ModelRecord]:
        """Train ``plans`` as one population, each model on its own subset."""
        from tqdm.auto import tqdm

        from weightzoo.generate.property.population import train_population

        assert isinstance(spec, PropertySpec)
        steps = math.ceil(spec.train_size / spec.batch_size) * spec.epochs
        bar = tqdm(total=steps, disable=not progress, desc=spec.name, unit="step", leave=False)

        def report(done: int) -> None:
            bar.update(done)
            if on_epoch is not None:
                on_epoch(len(plans), None)

        try:
            return train_population(spec, plans, device=device, progress=report)
        finally:
            bar.close()


def family(name: str = "property") -> PropertyFamily:
    """The family object for ``"property"``.

    Raises:
        ValueError: for another name.
    """
    if name != "property":
        raise ValueError(f"this module trains property zoos, not {name!r}")
    return PropertyFamily()
