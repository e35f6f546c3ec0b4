"""The sine family: what weightzoo's runner and engines ask of a sine zoo."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from weightzoo.generate.base import Family, ModelPlan

from . import model
from .spec import FAMILY_NAME, METRICS, SineSpec

__all__ = ["FAMILY", "SineFamily"]


class SineFamily(Family[SineSpec]):
    """The :class:`~weightzoo.generate.base.Family` of sine specs."""

    name = FAMILY_NAME
    spec_class = SineSpec
    # Every sine zoo stores the same metrics: mean squared error on the training and test
    # points. The layout of a row is, by default, that of build_model's module.
    metrics = METRICS
    # What trains a block: a function of train_block's arguments (spec, plans, device, report),
    # imported only when a block trains.
    trainer = f"{__package__}.train:train_population"

    def plan(self, spec: SineSpec) -> list[ModelPlan]:
        """One plan per model, seed-major; the stratum is the (width, lr) cell."""
        cells = spec.cells()
        plans = []
        for model_id in range(spec.num_models()):
            width, lr = cells[model_id % len(cells)]
            columns = {"width": width, "lr": lr}
            plans.append(ModelPlan(model_id, 1000 + model_id, f"{width}:{lr}", columns))
        return plans

    def progress_total(self, spec: SineSpec, plans: Sequence[ModelPlan]) -> int:
        """One full-batch step per epoch."""
        return spec.epochs

    def build_model(self, spec: Mapping[str, Any], columns: Mapping[str, Any]) -> nn.Module:
        """The MLP of a row, so that weightzoo can rebuild and evaluate it."""
        return model.from_spec(spec, columns)


FAMILY = SineFamily()
"""The family object the registry hands out."""
