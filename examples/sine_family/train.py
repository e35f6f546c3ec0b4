"""Sine populations on weightzoo's population toolkit: full-batch Adam on ``sin(x)``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from weightzoo.blocks import ModelRecord
from weightzoo.features import layout_of
from weightzoo.generate import population as toolkit
from weightzoo.generate.base import BlockReport, ModelPlan

from .model import from_spec, population_forward
from .spec import METRICS, SineSpec

__all__ = ["SineTask", "train_population"]


class SineTask:
    """The toolkit task: squared error against ``sin(x)`` on training and test points."""

    def __init__(self, points: int, device: torch.device) -> None:
        train = torch.linspace(-math.pi, math.pi, points, device=device)
        step = train[1] - train[0]
        self.x = {"train": train, "test": train[:-1] + step / 2}
        self.train_size = points
        self.splits = {name: len(x) for name, x in self.x.items()}

    def train_loss(self, pop: toolkit.Population, rows: Tensor, order: toolkit.DataOrder) -> Tensor:
        """Per-model mean squared error on the points ``rows [M, B]``."""
        x = self.x["train"][rows]
        return ((population_forward(pop.params, x) - torch.sin(x)) ** 2).mean(1)

    def eval_sums(
        self, pop: toolkit.Population, split: str, start: int, stop: int
    ) -> dict[str, tuple[Tensor, Tensor]]:
        """Summed squared error over points ``start:stop`` of ``split``."""
        x = self.x[split][start:stop]
        error = (population_forward(pop.params, x) - torch.sin(x)) ** 2
        return {"loss": (error.double().sum(1), torch.full((pop.size,), float(stop - start)))}

    def eval_chunk(self, split: str, models: int) -> int:
        """Every point at once: the sets are tiny."""
        return self.splits[split]


def train_population(
    spec: SineSpec, plans: Sequence[ModelPlan], device: str, report: BlockReport
) -> list[ModelRecord]:
    """Train the models of ``plans`` (one width) together; one record per plan, in order.

    ``report`` is told the optimizer steps of each epoch.
    """
    build = lambda: from_spec(spec.to_dict(), plans[0].columns)  # noqa: E731
    pop = toolkit.Population.from_modules(
        toolkit.seeded_models(build, (p.seed for p in plans)), device=device
    )
    result = toolkit.train(
        SineTask(spec.points, pop.device),
        pop,
        [p.seed for p in plans],
        layout_of(build()).names,
        toolkit.TrainConfig(
            lr=[float(p.columns["lr"]) for p in plans],
            epochs=spec.epochs,
            batch_size=spec.points,
            checkpoints=tuple(spec.checkpoint_epochs()),
            checkpoint_splits=("train", "test"),
        ),
        progress=toolkit.step_progress(report),
    )
    return [
        ModelRecord(
            model_id=plan.model_id,
            weights=result.weights[i],
            metrics={m: result.metrics[m][i] for m in METRICS},
            columns={"device": str(device)},
        )
        for i, plan in enumerate(plans)
    ]
