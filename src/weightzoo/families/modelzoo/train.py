"""Model Zoos and trajectory zoos trained as populations on the toolkit.

What is theirs: the batched forward of a population of one architecture, the classification
loss and accuracy (:class:`ImageTrainingTask`, which the phase zoos train with too), and the
blocks the runner hands out (:func:`train_block`: populations of models sharing activation and
optimizer; ResNet-18 models one at a time). Training, optimizers, schedules and evaluation are
:mod:`weightzoo.generate.population`'s. Each model draws its data order from
``torch.Generator().manual_seed(seed)``; dropout rates are per model (a ``[M]`` buffer of
:class:`~weightzoo.architectures.image.RateDropout`).

Three forward paths compute the same function (up to float rounding):

- ``"vmap"``: :func:`torch.func.vmap` over :func:`torch.func.functional_call` with
  ``randomness="different"`` (every model draws its own dropout masks);
- ``"grouped"``: for :class:`~weightzoo.architectures.image.SeqNet` stacks only, the
  population's convs run as ONE grouped convolution (``groups=M``) over channel-stacked inputs
  and its linear layers as one batched matrix product (``baddbmm``); the fastest on CPU at
  every batch size measured;
- ``"loop"``: one ``functional_call`` per model on slices of the stacked tensors, for very
  large per-model batches, where each model's batch alone saturates the device, and for
  networks with BatchNorm (ResNet-18), whose running statistics are updated in place.

``"auto"`` picks ``"grouped"`` for sequential nets when the batch is at most
:data:`GROUPED_MAX_BATCH` and ``"loop"`` otherwise (``"vmap"`` for other modules at small
batches); see ``benchmarks/bench_population.py`` for the measurements behind the rule.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from weightzoo.architectures.image import RateDropout, SeqNet, init_weights
from weightzoo.families.modelzoo import model
from weightzoo.families.modelzoo.data import Split
from weightzoo.families.modelzoo.spec import METRICS, ModelZooSpec, TrajectorySpec, name_seed
from weightzoo.generate import population as toolkit
from weightzoo.generate.base import BlockReport, ModelPlan, ModelRecord

GROUPED_MAX_BATCH = 128
"""Largest per-model batch for which ``path="auto"`` uses the grouped forward.

With channels-last tensors the grouped path beat both the vmap and the loop path at every
batch size measured on CPU (4, 12, 64, 128; docs/modelzoo.md); larger batches fall back to the
loop, which is what saturates a device once each model's batch is big.
"""

PATHS = ("auto", "vmap", "grouped", "loop")

_EVAL_PAIRS = 8192
"""Image-model pairs per evaluation pass (a population of 64 evaluates 128 images at a time)."""


def _dropout_rate(rate: torch.Tensor, h: torch.Tensor, models: int) -> torch.Tensor:
    """Broadcast a ``[M]`` rate to ``h`` in grouped (``[B, M*C, ...]``) or flat layout."""
    if h.dim() == 3:  # flat: [M, B, F]
        return rate.view(models, 1, 1)
    channels = h.shape[1] // models
    return rate.repeat_interleave(channels).view(1, -1, *([1] * (h.dim() - 2)))


def grouped_forward(
    net: SeqNet,
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    x: torch.Tensor,
    *,
    dropout: bool = True,
) -> torch.Tensor:
    """Population forward of a :class:`SeqNet` as grouped convs and batched matmuls.

    On CPU the image tensors are kept channels-last: oneDNN's grouped convolution and max-pool
    run 1.5-3x faster on that layout for these many-channel, tiny-kernel stacks (measured,
    ``benchmarks/bench_population.py``).

    Args:
        net: the architecture (its own parameters are not used).
        params: stacked parameters ``{name: [M, ...]}``.
        buffers: stacked buffers (dropout rates ``[M]``).
        x: inputs ``[M, B, ...]`` (one batch per model).
        dropout: False when every rate is 0, to skip drawing masks that would keep everything
            (the result is the same).

    Returns:
        outputs ``[M, B, classes]``.
    """
    models, batch = x.shape[0], x.shape[1]
    if x.dim() >= 4:
        h = x.transpose(0, 1).reshape(batch, models * x.shape[2], *x.shape[3:])
        if h.device.type == "cpu":
            h = h.contiguous(memory_format=torch.channels_last)
    else:
        h = x
    for index, layer in enumerate(net.module_list):
        key = f"module_list.{index}"
        if isinstance(layer, nn.Conv2d):
            weight = params[f"{key}.weight"]
            bias = params.get(f"{key}.bias")
            h = F.conv2d(
                h,
                weight.reshape(-1, *weight.shape[2:]),
                None if bias is None else bias.reshape(-1),
                layer.stride,
                layer.padding,
                layer.dilation,
                groups=models,
            )
        elif isinstance(layer, nn.Flatten):
            if h.dim() != 3:
                h = h.reshape(batch, models, -1).transpose(0, 1)
        elif isinstance(layer, nn.Linear):
            weight = params[f"{key}.weight"]
            bias = params.get(f"{key}.bias")
            if bias is None:
                h = torch.bmm(h, weight.transpose(1, 2))
            else:
                h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
        elif isinstance(layer, RateDropout):
            if layer.training and dropout:
                keep = 1.0 - _dropout_rate(buffers[f"{key}.p"], h, models)
                h = h * (torch.rand_like(h) < keep).to(h.dtype) / keep
        else:  # pooling and activations act per channel / element
            h = layer(h)
    return h


def choose_path(net: nn.Module, batch_size: int, path: str = "auto") -> str:
    """The forward path ``path="auto"`` resolves to for ``net`` at ``batch_size``.

    Raises:
        ValueError: for an unknown path, or ``"grouped"`` on a non-sequential net.
    """
    if path not in PATHS:
        raise ValueError(f"unknown population path {path!r}; known: {list(PATHS)}")
    sequential = isinstance(net, SeqNet)
    if path == "grouped" and not sequential:
        raise ValueError("the grouped path needs a SeqNet (CNN-s, CNN-m, trajectory nets)")
    if path != "auto":
        return path
    if batch_size > GROUPED_MAX_BATCH:
        return "loop"
    return "grouped" if sequential else "vmap"


def stack_models(
    models: Sequence[nn.Module],
    *,
    device: str | torch.device = "cpu",
    dropout: Sequence[float] | None = None,
) -> toolkit.Population:
    """A toolkit population of initialised models (same architecture).

    Args:
        models: the models; they are not modified.
        device: where the stacked tensors live.
        dropout: per-model dropout rates (default: the models' own).
    """
    pop = toolkit.Population.from_modules(models, device=device)
    if dropout is not None:
        rates = torch.tensor([float(p) for p in dropout], device=pop.device)
        for name in pop.buffers:
            if name.endswith(".p"):
                pop.buffers[name] = rates.clone()
    return pop


def has_dropout(pop: toolkit.Population) -> bool:
    """Whether any model of ``pop`` has a non-zero dropout rate (one device sync)."""
    return any(bool((v != 0).any()) for k, v in pop.buffers.items() if k.endswith(".p"))


def population_forward(
    net: nn.Module,
    pop: toolkit.Population,
    x: torch.Tensor,
    *,
    path: str,
    training: bool,
    dropout: bool = True,
) -> torch.Tensor:
    """Outputs ``[M, B, classes]`` of the population for per-model inputs ``x [M, B, ...]``.

    Args:
        net: the architecture (its own tensors are not used).
        pop: the stacked parameters and buffers.
        x: inputs, one batch per model.
        path: ``"grouped"``, ``"vmap"`` or ``"loop"`` (resolve ``"auto"`` with
            :func:`choose_path`).
        training: training mode (dropout on; BatchNorm uses and updates batch statistics).
        dropout: False when every rate is 0, to skip drawing masks (same result).
    """
    net.train(training)
    if path == "grouped":
        return grouped_forward(net, pop.params, pop.buffers, x, dropout=dropout)
    if path == "vmap":

        def one(p: dict, b: dict, xi: torch.Tensor) -> torch.Tensor:
            return functional_call(net, (p, b), (xi,))

        return vmap(one, randomness="different")(pop.params, pop.buffers, x)
    outs = []
    for i in range(pop.size):
        p = {k: v[i] for k, v in pop.params.items()}
        b = {k: v[i] for k, v in pop.buffers.items()}  # views: BatchNorm updates them in place
        outs.append(functional_call(net, (p, b), (x[i],)))
    return torch.stack(outs)


def population_loss(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-model mean loss ``[M]`` for outputs ``[M, B, K]`` and labels ``[M, B]``.

    ``"ce"`` is cross-entropy on logits; ``"mse"`` is the mean squared error against one-hot
    targets (PyTorch's ``MSELoss`` mean over batch and classes).
    """
    models, batch, classes = out.shape
    if loss == "ce":
        per = F.cross_entropy(out.reshape(-1, classes), y.reshape(-1), reduction="none")
        return per.view(models, batch).mean(1)
    target = F.one_hot(y, classes).to(out.dtype)
    return ((out - target) ** 2).mean(dim=(1, 2))


@dataclass
class TrainResult:
    """What :func:`train_population` returns.

    Attributes:
        weights: float32 ``[M, checkpoints, params]``.
        metrics: ``{name: float32 [M, checkpoints]}``.
        path: the forward path used.
    """

    weights: np.ndarray
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    path: str = ""


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding 4) and horizontal flip, drawn from ``generator`` (CPU)."""
    batch, _, height, width = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (batch,), generator=generator).tolist()
    dx = torch.randint(0, 9, (batch,), generator=generator).tolist()
    flip = (torch.rand(batch, generator=generator) < 0.5).tolist()
    out = torch.stack(
        [padded[i, :, dy[i] : dy[i] + height, dx[i] : dx[i] + width] for i in range(batch)]
    )
    flips = [i for i in range(batch) if flip[i]]
    if flips:
        out[flips] = out[flips].flip(-1)
    return out


class ImageTrainingTask:
    """The image :class:`~weightzoo.generate.population.TrainingTask`: shared-split classification.

    Args:
        net: the architecture.
        splits: ``{"train": Split, "val": Split | None, "test": Split | None}`` on the device.
        loss: ``"ce"`` or ``"mse"`` (see :func:`population_loss`).
        path: the resolved forward path.
        dropout: whether any model has dropout.
        augment: random crop and flip of training batches, drawn from each model's generator.
        eval_batch: images per evaluation pass.
    """

    def __init__(
        self,
        net: nn.Module,
        splits: dict[str, Split | None],
        *,
        loss: str,
        path: str,
        dropout: bool,
        augment: bool = False,
        eval_batch: int = 1000,
    ) -> None:
        self.net = net
        self.data = {k: v for k, v in splits.items() if v is not None}
        self.loss, self.path, self.dropout = loss, path, dropout
        self.augment, self.eval_batch = augment, eval_batch
        self.train_size = self.data["train"].x.shape[0]
        self.splits = {k: v.x.shape[0] for k, v in self.data.items()}

    def train_loss(
        self, pop: toolkit.Population, rows: torch.Tensor, order: toolkit.DataOrder
    ) -> torch.Tensor:
        """Per-model mean loss on images ``rows [M, B]`` of the training split."""
        train = self.data["train"]
        xb, yb = train.x[rows], train.y[rows]
        if self.augment:
            xb = torch.stack(
                [_augment(xb[i].cpu(), g).to(xb.device) for i, g in enumerate(order.generators)]
            )
        out = population_forward(
            self.net, pop, xb, path=self.path, training=True, dropout=self.dropout
        )
        return population_loss(out, yb, self.loss)

    def eval_sums(
        self, pop: toolkit.Population, split: str, start: int, stop: int
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Summed loss and correct predictions over images ``start:stop`` (eval mode)."""
        data = self.data[split]
        xb, yb = data.x[start:stop], data.y[start:stop]
        xs = xb.unsqueeze(0).expand(pop.size, *xb.shape)
        ys = yb.unsqueeze(0).expand(pop.size, -1)
        out = population_forward(self.net, pop, xs, path=self.path, training=False)
        count = torch.full((pop.size,), float(len(yb)), device=out.device)
        loss = population_loss(out, ys, self.loss).double() * len(yb)
        return {"loss": (loss, count), "acc": ((out.argmax(-1) == ys).sum(1).double(), count)}

    def eval_chunk(self, split: str, models: int) -> int:
        """Images per evaluation pass: ``eval_batch``, fewer for a large population.

        The activations of one pass grow with images x models; a block of 64 CNN-s models at
        1,000 images a pass peaked at 1.9 GB.
        """
        return max(1, min(self.eval_batch, _EVAL_PAIRS // max(models, 1)))


def train_population(
    models: Sequence[nn.Module],
    seeds: Sequence[int],
    *,
    train: Split,
    val: Split | None,
    test: Split | None,
    optimizer: str,
    lr: Sequence[float],
    weight_decay: Sequence[float],
    dropout: Sequence[float] | None = None,
    batch_size: int,
    epochs: int,
    names: Sequence[str],
    loss: str = "ce",
    momentum: float = 0.9,
    schedule: str = "constant",
    augment: bool = False,
    device: str = "cpu",
    path: str = "auto",
    noise_seed: int = 0,
    eval_batch: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train a population on the toolkit; checkpoint before training and after every epoch.

    Each model draws its data order (and augmentations) from
    ``torch.Generator().manual_seed(seed)`` (a fresh permutation of the training split every
    epoch, the last batch may be short), so a model's batches do not depend on the other
    models. Dropout masks come from the device's global generator, seeded with ``noise_seed``
    inside a forked RNG state.

    Args:
        models: initialised models of one architecture.
        seeds: per-model seeds (data order).
        train: training split (on ``device``).
        val: validation split, or None (metrics NaN).
        test: test split, or None.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        lr: per-model learning rates (the maximum under ``"onecycle"``).
        weight_decay: per-model weight decay.
        dropout: per-model dropout rates (default: the models' own).
        batch_size: per-model batch size.
        epochs: training epochs (``epochs + 1`` checkpoints).
        names: tensor names in layout order (parameters, then any buffers to store).
        loss: ``"ce"`` or ``"mse"``.
        momentum: SGD momentum (cycled under ``"onecycle"``).
        schedule: ``"constant"``, ``"cosine"`` or ``"onecycle"``.
        augment: random crop and flip of training batches.
        device: torch device.
        path: forward path (see module docs).
        noise_seed: seed of the dropout noise.
        eval_batch: images per evaluation pass.
        progress: called with the number of steps after each epoch.

    Returns:
        the stacked checkpoints and metrics.
    """
    pop = stack_models(models, device=device, dropout=dropout)
    net = copy.deepcopy(models[0]).to(pop.device)
    path = choose_path(net, batch_size, path)
    splits = {"train": train, "val": val, "test": test}
    task = ImageTrainingTask(
        net,
        splits,
        loss=loss,
        path=path,
        dropout=has_dropout(pop),
        augment=augment,
        eval_batch=eval_batch,
    )
    config = toolkit.TrainConfig(
        optimizer=optimizer,
        lr=[float(v) for v in lr],
        weight_decay=[float(v) for v in weight_decay],
        momentum=momentum if optimizer == "sgd" else 0.0,
        epochs=epochs,
        batch_size=batch_size,
        schedule=toolkit.Schedule(schedule),
        checkpoints=tuple(range(epochs + 1)),
        checkpoint_splits=tuple(task.splits),
        noise_seed=noise_seed,
    )
    result = toolkit.train(
        task,
        pop,
        seeds,
        names,
        config,
        progress=toolkit.step_progress(progress),
    )
    count = len(models)
    metrics = {m: np.full((count, epochs + 1), np.nan, dtype=np.float32) for m in METRICS}
    metrics |= {k: v for k, v in result.metrics.items() if k in metrics}
    if test is not None:
        metrics["ggap"] = metrics["train_acc"] - metrics["test_acc"]
    return TrainResult(weights=result.weights, metrics=metrics, path=path)


# ------------------------------------------------------------------- the runner's blocks
def initial_model(spec: ModelZooSpec | TrajectorySpec, plan: ModelPlan) -> nn.Module:
    """The model of ``plan`` before training: built and initialised under its own seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(plan.seed)
        net = model.from_spec(spec.to_dict(), plan.columns)
        init_weights(net, plan.columns["init"])
    return net


def populations(
    spec: ModelZooSpec | TrajectorySpec, plans: Sequence[ModelPlan]
) -> list[list[ModelPlan]]:
    """The populations a block trains as: equal activation and optimizer; ResNet-18 alone."""
    if spec.architecture == "resnet18":
        return [[plan] for plan in plans]
    groups: dict[tuple[str, str], list[ModelPlan]] = {}
    for plan in plans:
        key = (plan.columns["activation"], plan.columns["optimizer"])
        groups.setdefault(key, []).append(plan)
    return list(groups.values())


def block_steps(
    spec: ModelZooSpec | TrajectorySpec, plans: Sequence[ModelPlan], train_size: int
) -> int:
    """Optimizer steps of one block: every population steps through the training split."""
    return math.ceil(train_size / spec.batch_size) * spec.epochs * len(populations(spec, plans))


def _population_options(
    spec: ModelZooSpec | TrajectorySpec, members: Sequence[ModelPlan]
) -> dict[str, Any]:
    """What :func:`train_population` is told beyond the members' rates and the data."""
    if spec.architecture == "resnet18":  # SGD one-cycle, augmented, BatchNorm on the loop path
        return {
            "schedule": getattr(spec, "lr_schedule", "constant"),
            "augment": getattr(spec, "augment", False),
            "path": "loop",
            "noise_seed": members[0].seed,
            "eval_batch": 500,
        }
    return {
        "dropout": [p.columns["dropout"] for p in members],
        "noise_seed": name_seed(f"{spec.name}:{members[0].model_id}:{len(members)}"),
    }


def _reporter(progress: BlockReport, models: int) -> Callable[[int], None]:
    """A population's per-epoch callback: ``progress(steps, models)``."""
    return lambda steps: progress(steps, models)


def train_block(
    spec: ModelZooSpec | TrajectorySpec,
    plans: Sequence[ModelPlan],
    splits: Sequence[Split],
    *,
    device: str,
    progress: BlockReport,
) -> list[ModelRecord]:
    """Train the models of ``plans`` population by population; one record per plan, in order.

    Args:
        spec: the zoo's spec.
        plans: the block's models.
        splits: the train, validation and test splits on ``device``.
        device: torch device.
        progress: called as ``progress(steps, models)`` after every epoch of every population.
    """
    train, val, test = splits
    names = model.layout(spec.to_dict()).names
    records: dict[int, ModelRecord] = {}
    for members in populations(spec, plans):
        result = train_population(
            [initial_model(spec, p) for p in members],
            [p.seed for p in members],
            train=train,
            val=val,
            test=test,
            optimizer=members[0].columns["optimizer"],
            lr=[p.columns["lr"] for p in members],
            weight_decay=[p.columns["weight_decay"] for p in members],
            batch_size=spec.batch_size,
            epochs=spec.epochs,
            names=names,
            loss=spec.loss,
            momentum=spec.momentum,
            device=device,
            progress=_reporter(progress, len(members)),
            **_population_options(spec, members),
        )
        for record in toolkit.plan_records(members, result.weights, result.metrics, device):
            record.columns["population"] = len(members)
            records[record.model_id] = record
    return [records[p.model_id] for p in plans]
