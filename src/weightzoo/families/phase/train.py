"""Phase zoos on the population toolkit: one population per batch size.

The batch size is the grid's temperature, and a population shares its batch size, so each
block of models is trained as one population per batch size. What is the image families'
(the batched forward, classification loss and accuracy, augmentation) is
:class:`weightzoo.families.modelzoo.train.ImageTrainingTask`; training, SGD with per-model rates
and the one-cycle schedule are :mod:`weightzoo.generate.population`'s.

Each model is initialised by PyTorch's default initialisation under
``torch.manual_seed(seed)`` and shuffles the training split with its own
``torch.Generator().manual_seed(seed)`` every epoch.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Sequence

import numpy as np
import torch

from weightzoo.architectures.image import SeqNet
from weightzoo.families.modelzoo.data import Split
from weightzoo.families.modelzoo.train import ImageTrainingTask, choose_path, stack_models
from weightzoo.families.phase import model
from weightzoo.families.phase.spec import METRICS, PhaseSpec
from weightzoo.generate import population as toolkit
from weightzoo.generate.base import BlockReport, ModelPlan, ModelRecord
from weightzoo.storage.manifest import SPLITS

__all__ = ["block_steps", "train_block"]


def _by_batch_size(plans: Sequence[ModelPlan]) -> dict[int, list[ModelPlan]]:
    """The block's populations: its models by batch size, in order of first appearance."""
    groups: dict[int, list[ModelPlan]] = {}
    for plan in plans:
        groups.setdefault(int(plan.columns["batch_size"]), []).append(plan)
    return groups


def block_steps(spec: PhaseSpec, plans: Sequence[ModelPlan], train_size: int) -> int:
    """Optimizer steps of a block: every population's steps per epoch, times the epochs."""
    batches = _by_batch_size(plans)
    return sum(math.ceil(train_size / min(b, train_size)) for b in batches) * spec.epochs


def _forward_path(net: torch.nn.Module, batch: int) -> str:
    """Grouped convolutions for the digits nets, the loop for BatchNorm nets, else vmap."""
    if isinstance(net, SeqNet):
        return choose_path(net, batch)
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
    has_batchnorm = any(isinstance(m, norms) for m in net.modules())
    # BatchNorm updates its running statistics in place: only the loop path does that
    return "loop" if has_batchnorm else "vmap"


def _config(spec: PhaseSpec, members: Sequence[ModelPlan], batch: int) -> toolkit.TrainConfig:
    """The toolkit's configuration of one population (one batch size)."""
    return toolkit.TrainConfig(
        optimizer=spec.optimizer,
        lr=[float(p.columns["lr"]) for p in members],
        weight_decay=[float(p.columns["weight_decay"]) for p in members],
        momentum=spec.momentum if spec.optimizer == "sgd" else 0.0,
        epochs=spec.epochs,
        batch_size=batch,
        schedule=toolkit.Schedule(spec.lr_schedule),
        checkpoints=tuple(spec.checkpoints()),
        checkpoint_splits=SPLITS,
        noise_seed=members[0].seed,
    )


def train_block(
    spec: PhaseSpec,
    plans: Sequence[ModelPlan],
    splits: Sequence[Split],
    *,
    device: str,
    progress: BlockReport | None = None,
) -> list[ModelRecord]:
    """Train the models of ``plans``, one population per batch size; one record per plan.

    Args:
        spec: the zoo's spec.
        plans: the block's models (:func:`block_steps` optimizer steps in all).
        splits: the train, validation and test splits on ``device``
            (:func:`weightzoo.families.modelzoo.data.device_splits`).
        device: torch device.
        progress: called as ``progress(steps, models)`` after every epoch of every
            population: its optimizer steps and its size.
    """
    named = dict(zip(SPLITS, splits, strict=True))
    names = model.layout(spec).names
    build = functools.partial(model.from_spec, spec.to_dict())
    records: dict[int, ModelRecord] = {}
    for batch, members in _by_batch_size(plans).items():
        models = toolkit.seeded_models(build, (p.seed for p in members))
        pop = stack_models(models, device=device)
        net = copy.deepcopy(models[0]).to(pop.device)
        path = _forward_path(net, batch)
        task = ImageTrainingTask(
            net, named, loss=spec.loss, path=path, dropout=False, augment=spec.augment
        )

        def report(done: int, _left: int, count: int = len(members)) -> None:
            if progress is not None:
                progress(done, count)

        result = toolkit.train(
            task, pop, [p.seed for p in members], names, _config(spec, members, batch),
            progress=report,
        )  # fmt: skip
        for i, plan in enumerate(members):
            metrics = {m: result.metrics[m][i] for m in METRICS if m in result.metrics}
            metrics["ggap"] = metrics["train_acc"] - metrics["test_acc"]
            records[plan.model_id] = ModelRecord(
                model_id=plan.model_id,
                weights=result.weights[i],
                metrics={k: np.asarray(v, dtype=np.float32) for k, v in metrics.items()},
                columns={"device": str(device), "population": len(members)},
            )
    return [records[p.model_id] for p in plans]
