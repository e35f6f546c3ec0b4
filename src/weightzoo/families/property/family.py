"""The property family: what the runner and the engines ask of property-inference zoos.

Planning is torch-free (:mod:`.spec`); the module (:mod:`.model`) builds rows and
:mod:`.evaluate` rebuilds their test set. Training code (:mod:`.train`) and the report's table
(:mod:`weightzoo.analysis.property_inference`, scikit-learn) load when a hook that needs them
runs, so that building or evaluating a row never imports the training toolkit. No module of
the package imports this one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from weightzoo.families.property import model
from weightzoo.families.property.evaluate import PropertyEvalTask
from weightzoo.families.property.spec import FAMILY_NAME, METRICS, PropertySpec
from weightzoo.generate.base import Family, ModelPlan

if TYPE_CHECKING:
    from torch import nn

    from weightzoo.zoo import Zoo

__all__ = ["FAMILY", "PropertyFamily"]


class PropertyFamily(Family[PropertySpec]):
    """The :class:`~weightzoo.generate.base.Family` of property-inference specs."""

    name = FAMILY_NAME
    spec_class = PropertySpec
    metrics = METRICS
    trainer = "weightzoo.families.property.train:train_population"  # one population per block

    def plan(self, spec: PropertySpec) -> list[ModelPlan]:
        """One plan per model, replicate-major; stratum = pool and ratio."""
        return spec.cell_plans(
            ["pool", "ratio"], lambda pool, ratio: {"ratio": ratio, "pool": pool}
        )

    def progress_total(self, spec: PropertySpec, plans: Sequence[ModelPlan]) -> int:
        """Optimizer steps of one model: every model of the block steps together."""
        return math.ceil(spec.train_size / spec.batch_size) * spec.epochs

    def build_model(self, spec: Mapping[str, Any], columns: Mapping[str, Any]) -> nn.Module | None:
        """The MLP of the spec's ``features``, ``hidden`` and ``num_classes`` (for every row).

        ``None`` for a spec without ``hidden``: it names no weightzoo architecture.
        """
        return model.from_spec(spec) if "hidden" in spec else None

    def eval_task(self, zoo: Zoo, spec: Mapping[str, Any]) -> PropertyEvalTask:
        """:class:`~weightzoo.families.property.evaluate.PropertyEvalTask`: the shared test set."""
        return PropertyEvalTask(zoo, spec)

    def tables(self) -> Mapping[str, Callable[..., Any]]:
        """The report's ``property.distinguish`` table (the "0.5 vs X" meta-classifiers)."""
        # scikit-learn loads with the table, not with the family
        from weightzoo.analysis.property_inference import distinguish_table

        return {"property.distinguish": distinguish_table}


FAMILY = PropertyFamily()
"""The family object the registry hands out."""
