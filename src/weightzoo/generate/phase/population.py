"""Phase zoos on the population toolkit: one population per batch size.

The batch size is the grid's temperature, and a population shares its batch size, so each
block of models is trained as one population per batch size. What is the image families'
(the batched forward, classification loss and accuracy, augmentation) is
:class:`weightzoo.generate.modelzoo.population.ImageTask`; training, SGD with per-model rates
and the one-cycle schedule are :mod:`weightzoo.generate.population`'s.

Each model is initialised by PyTorch's default initialisation under
``torch.manual_seed(seed)`` and shuffles the training split with its own
``torch.Generator().manual_seed(seed)`` every epoch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from weightzoo.architectures import build_model
from weightzoo.architectures.image import SeqNet
from weightzoo.generate import population as toolkit
from weightzoo.generate.base import ModelPlan, ModelRecord
from weightzoo.generate.modelzoo.population import ImageTask, Split, choose_path, stack_models
from weightzoo.generate.phase.family import METRICS, PhaseSpec, family
from weightzoo.tasks.images import load_splits


def device_splits(spec: PhaseSpec, device: str) -> dict[str, Split]:
    """The train, val and test splits of ``spec``'s dataset on ``device``.

    Raises:
        DataFilesMissingError: the dataset's files are not on disk (the message names them).
    """
    arrays = load_splits(
        spec.dataset,
        spec.data_dir,
        spec.image_size,
        spec.in_channels == 1,
        spec.val_fraction,
        spec.data_seed,
    )
    return {
        name: Split(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
        for name, (x, y) in zip(("train", "val", "test"), arrays, strict=True)
    }


def _init(spec: PhaseSpec, seed: int) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(spec.to_dict())


def _forward_path(net: torch.nn.Module, batch: int) -> str:
    """Grouped convolutions for the digits nets, the loop for BatchNorm nets, else vmap."""
    if isinstance(net, SeqNet):
        return choose_path(net, batch)
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
    has_batchnorm = any(isinstance(m, norms) for m in net.modules())
    # BatchNorm updates its running statistics in place: only the loop path does that
    return "loop" if has_batchnorm else "vmap"


def train_block(
    spec: PhaseSpec,
    plans: Sequence[ModelPlan],
    *,
    device: str = "cpu",
    progress: bool = False,
    on_epoch: Callable[[int, int | None], None] | None = None,
) -> list[ModelRecord]:
    """Train the models of ``plans``, one population per batch size; one record per plan.

    Args:
        spec: the zoo's spec.
        plans: the block's models.
        device: torch device.
        progress: show a step bar.
        on_epoch: called as ``on_epoch(models, None)`` after every epoch of every population.
    """
    from tqdm.auto import tqdm

    splits = device_splits(spec, device)
    size = splits["train"].x.shape[0]
    groups: dict[int, list[ModelPlan]] = {}
    for plan in plans:
        groups.setdefault(int(plan.columns["batch_size"]), []).append(plan)
    steps = sum(math.ceil(size / min(b, size)) for b in groups) * spec.epochs
    bar = tqdm(total=steps, disable=not progress, desc=spec.name, unit="step", leave=False)
    names = family().layout(spec).names
    records: dict[int, ModelRecord] = {}
    try:
        for batch, members in groups.items():
            models = [_init(spec, p.seed) for p in members]
            pop = stack_models(models, device=device)
            net = copy.deepcopy(models[0]).to(pop.device)
            path = _forward_path(net, batch)
            task = ImageTask(
                net, dict(splits), loss=spec.loss, path=path, dropout=False, augment=spec.augment
            )
            config = toolkit.TrainConfig(
                optimizer=spec.optimizer,
                lr=[float(p.columns["lr"]) for p in members],
                weight_decay=[float(p.columns["weight_decay"]) for p in members],
                momentum=spec.momentum if spec.optimizer == "sgd" else 0.0,
                epochs=spec.epochs,
                batch_size=batch,
                schedule=toolkit.Schedule(spec.lr_schedule),
                checkpoints=tuple(spec.checkpoints()),
                checkpoint_splits=("train", "val", "test"),
                noise_seed=members[0].seed,
            )

            def report(steps: int, _left: int, count: int = len(members)) -> None:
                bar.update(steps)
                if on_epoch is not None:
                    on_epoch(count, None)

            result = toolkit.train(
                task, pop, [p.seed for p in members], names, config, progress=report
            )
            for i, plan in enumerate(members):
                metrics = {m: result.metrics[m][i] for m in METRICS if m in result.metrics}
                metrics["ggap"] = metrics["train_acc"] - metrics["test_acc"]
                records[plan.model_id] = ModelRecord(
                    model_id=plan.model_id,
                    weights=result.weights[i],
                    metrics={k: np.asarray(v, dtype=np.float32) for k, v in metrics.items()},
                    columns={"device": str(device), "population": len(members)},
                )
    finally:
        bar.close()
    return [records[p.model_id] for p in plans]
