"""A tiny, fast family for testing the runner, storage and Datasets without real training.

"Training" is a seeded random walk of a linear layer's weights; metrics are functions of the
weights, so tests can check that what was stored is what was produced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from weightzoo.generate.base import ModelPlan, ModelRecord, ZooSpec
from weightzoo.storage.layout import Layout

CALLS: list[int] = []  # block sizes trained, for resume tests


@dataclass(frozen=True)
class ToySpec(ZooSpec):
    """Spec of the toy family."""

    name: str = "toy"
    family: str = "toy"
    num_models: int = 12
    num_epochs: int = 3
    width: int = 5
    diverge_every: int = 0  # every k-th model gets an Inf at its last checkpoint (0: none)

    def override(self, *, models=None, epochs=None, **rest):
        spec = super().override(**rest)
        if models is not None:
            spec = spec.replace(num_models=models)
        if epochs is not None:
            spec = spec.replace(num_epochs=epochs)
        return spec


class ToyFamily:
    """Implements the Family protocol for :class:`ToySpec`."""

    def layout(self, spec: ToySpec) -> Layout:
        return Layout.from_shapes({"fc.weight": (2, spec.width), "fc.bias": (2,)})

    def checkpoint_epochs(self, spec: ToySpec) -> list[int]:
        return list(range(spec.num_epochs + 1))

    def metric_names(self, spec: ToySpec) -> list[str]:
        return ["train_loss", "test_acc"]

    def plan(self, spec: ToySpec) -> list[ModelPlan]:
        return [
            ModelPlan(
                model_id=i,
                seed=1000 + i,
                stratum=f"class{i % 3}",
                columns={"kind": f"class{i % 3}", "lr": 10.0 ** -(1 + i % 2)},
            )
            for i in range(spec.num_models)
        ]

    def train(
        self, spec: ToySpec, plans: Sequence[ModelPlan], *, device: str, progress: bool = True
    ) -> list[ModelRecord]:
        CALLS.append(len(plans))
        params = self.layout(spec).num_params
        records = []
        for plan in plans:
            rng = np.random.default_rng(plan.seed)
            steps = rng.normal(size=(spec.num_epochs + 1, params)).astype(np.float32)
            weights = np.cumsum(steps, axis=0)
            if spec.diverge_every and plan.model_id % spec.diverge_every == 0:
                weights[-1, 0] = np.inf
            norm = np.linalg.norm(np.nan_to_num(weights, posinf=0), axis=1)
            records.append(
                ModelRecord(
                    model_id=plan.model_id,
                    weights=weights,
                    metrics={"train_loss": norm, "test_acc": 1.0 / (1.0 + norm)},
                    columns={"final_norm": float(norm[-1])},
                )
            )
        return records


def specs() -> list[ZooSpec]:
    return [ToySpec()]


def family(name: str) -> ToyFamily:
    return ToyFamily()
