"""Property populations on the toolkit: every model on its own subset of its pool.

The population's MLPs run as batched matrix products
(:func:`~weightzoo.families.property.model.mlp_forward`) over the stacked
``layers.<k>.weight`` / ``layers.<k>.bias``. Each model's training subset is a row of the
per-model buffer ``subset [M, train_size]`` (positions into the concatenated pools), so a
model's batches are its own items in its own order, and compaction keeps the rows in step.
Training, the optimizer and evaluation are :mod:`weightzoo.generate.population`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from weightzoo.blocks import ModelRecord
from weightzoo.errors import InvalidOptionError
from weightzoo.families.property.data import PropertyData, load_property_data, training_subset
from weightzoo.families.property.model import from_spec, mlp_forward
from weightzoo.families.property.spec import METRICS, PropertySpec
from weightzoo.features import layout_of
from weightzoo.generate import population as toolkit
from weightzoo.generate.base import BlockReport, ModelPlan

__all__ = ["PropertyTask", "model_subsets", "train_population"]


class PropertyTask:
    """The :class:`~weightzoo.generate.population.TrainingTask` of a property population.

    Args:
        x / y: every pool's items, concatenated, on the device.
        test_x / test_y: the shared test set.
        train_size: items per model subset.
    """

    def __init__(
        self, x: Tensor, y: Tensor, test_x: Tensor, test_y: Tensor, train_size: int
    ) -> None:
        self.x, self.y, self.test_x, self.test_y = x, y, test_x, test_y
        self.train_size = train_size
        self.splits = {"train": train_size, "test": len(test_y)}

    def _items(self, pop: toolkit.Population, rows: Tensor) -> tuple[Tensor, Tensor]:
        index = torch.gather(pop.buffers["subset"], 1, rows)
        return self.x[index], self.y[index]

    def train_loss(self, pop: toolkit.Population, rows: Tensor, order: toolkit.DataOrder) -> Tensor:
        """Per-model mean cross-entropy on the items ``rows [M, B]`` of each model's subset."""
        xb, yb = self._items(pop, rows)
        out = mlp_forward(pop.params, xb)
        per = F.cross_entropy(out.reshape(-1, out.shape[-1]), yb.reshape(-1), reduction="none")
        return per.view(yb.shape).mean(1)

    def eval_sums(
        self, pop: toolkit.Population, split: str, start: int, stop: int
    ) -> dict[str, tuple[Tensor, Tensor]]:
        """Summed loss and correct predictions over items ``start:stop`` of ``split``."""
        if split == "train":
            rows = torch.arange(start, stop, device=pop.device).expand(pop.size, -1)
            xb, yb = self._items(pop, rows)
        else:
            xb = self.test_x[start:stop].expand(pop.size, -1, -1)
            yb = self.test_y[start:stop].expand(pop.size, -1)
        out = mlp_forward(pop.params, xb)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), yb.reshape(-1), reduction="none")
        count = torch.full((pop.size,), float(stop - start), device=pop.device)
        return {
            "loss": (loss.view(yb.shape).double().sum(1), count),
            "acc": ((out.argmax(-1) == yb).sum(1).double(), count),
        }

    def eval_chunk(self, split: str, models: int) -> int:
        """Items per evaluation pass (about a million logits at a time)."""
        return max(64, 1_000_000 // max(1, models * 16))


def _spec_data(spec: PropertySpec) -> PropertyData:
    """The pools and test set of ``spec`` (cached by :func:`load_property_data`)."""
    return load_property_data(
        spec.dataset, spec.data_seed, spec.pool_size, spec.test_size, spec.features
    )


def model_subsets(spec: PropertySpec, plans: Sequence[ModelPlan]) -> list[np.ndarray]:
    """Each model's training subset, as positions into its own pool."""
    data = _spec_data(spec)
    return [
        training_subset(
            data.pools[p.columns["pool"]], float(p.columns["ratio"]), spec.train_size, p.seed
        )
        for p in plans
    ]


def _checked_data(spec: PropertySpec) -> PropertyData:
    """:func:`_spec_data`, refused when its sizes are not the spec's.

    Raises:
        InvalidOptionError: for features or classes that differ from the data's.
    """
    data = _spec_data(spec)
    if (data.features, data.classes) != (spec.features, spec.num_classes):
        raise InvalidOptionError(
            f"spec {spec.name!r} says {spec.features} features and {spec.num_classes} classes, "
            f"but {spec.dataset} data has {data.features} and {data.classes}; set the spec's "
            "features and num_classes to the data's"
        )
    return data


def _population(
    spec: PropertySpec, plans: Sequence[ModelPlan], index: np.ndarray, device: str
) -> toolkit.Population:
    """The plans' MLPs, each initialised under ``torch.manual_seed(plan.seed)``, stacked."""
    models = toolkit.seeded_models(lambda: from_spec(spec.to_dict()), (p.seed for p in plans))
    params, _ = torch.func.stack_module_state(models)
    return toolkit.Population(params, {"subset": torch.from_numpy(index)}, device=device)


def train_population(
    spec: PropertySpec, plans: Sequence[ModelPlan], device: str, report: BlockReport
) -> list[ModelRecord]:
    """Train the models of ``plans`` together; one record per plan, in order.

    The family's ``train_block`` (:attr:`~weightzoo.generate.base.Family.trainer`):
    ``report`` is told the optimizer steps of each epoch.

    Each model is initialised by PyTorch's default ``nn.Linear`` init under
    ``torch.manual_seed(seed)`` and shuffles its subset by its own seed every epoch.

    Raises:
        InvalidOptionError: for a spec whose features or classes are not its data's.
    """
    data = _checked_data(spec)
    offsets = {}
    xs, ys = [], []
    for name, pool in data.pools.items():
        offsets[name] = sum(len(a) for a in ys)
        xs.append(pool.x)
        ys.append(pool.y)
    subsets = model_subsets(spec, plans)
    index = np.stack([s + offsets[p.columns["pool"]] for s, p in zip(subsets, plans, strict=True)])
    shares = [
        float(data.pools[p.columns["pool"]].prop[s].mean())
        for s, p in zip(subsets, plans, strict=True)
    ]
    pop = _population(spec, plans, index, device)
    task = PropertyTask(
        torch.from_numpy(np.concatenate(xs)).to(pop.device),
        torch.from_numpy(np.concatenate(ys)).to(pop.device),
        torch.from_numpy(data.test.x).to(pop.device),
        torch.from_numpy(data.test.y).to(pop.device),
        spec.train_size,
    )
    config = toolkit.TrainConfig.from_spec(
        spec,
        checkpoints=tuple(spec.checkpoint_epochs()),
        checkpoint_splits=("train", "test"),
    )
    names = layout_of(from_spec(spec.to_dict())).names
    progress_steps = toolkit.step_progress(report)
    result = toolkit.train_plans(task, pop, plans, names, config, progress=progress_steps)
    records = toolkit.plan_records(plans, result.weights, result.metrics, device, METRICS)
    for record, share in zip(records, shares, strict=True):
        record.columns["property_share"] = share
    return records
