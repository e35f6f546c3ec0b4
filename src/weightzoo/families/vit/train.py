"""The ViT stages on the population toolkit: supervised, SimCLR and fine-tuning populations.

A population of ViTs runs as :func:`torch.func.vmap` over :func:`torch.func.functional_call`
of one template :class:`~weightzoo.families.vit.model.ViT`, so a stored row run by
``zoo.module(row)`` computes what training measured. Training, the optimizers (AdamW, SGD with
per-model rates) and evaluation are :mod:`weightzoo.generate.population`'s; what is here is
each stage's loss and metrics:

- supervised pre-training: cross-entropy with label smoothing (none in evaluation); ``acc``
  is class accuracy;
- SimCLR pre-training: the NT-Xent loss of Chen et al., *A Simple Framework for Contrastive
  Learning of Visual Representations* (arXiv:2002.05709) over two views of each image of a
  batch (drawn from the model's own generator); ``acc`` is the share of views whose most
  similar other view is their pair. Evaluation uses views drawn once from a fixed seed, in
  batches of the training batch size;
- ``knn_acc`` (both pre-trainings): 5-nearest-neighbour accuracy (cosine similarity of the
  class-token features) on every digit of the test split, the training split as memory;
- fine-tuning: as supervised pre-training, on the fine-tuning task.

Each model is initialised under ``torch.manual_seed(seed)``; a child then takes its parent's
backbone (every tensor but ``head.*``) bit for bit, so its checkpoint 0 holds the parent's
last backbone and a fresh head.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from weightzoo.blocks import ModelRecord
from weightzoo.errors import InvalidOptionError, ZooNotFoundError
from weightzoo.families.vit.data import (
    ALL_DIGITS,
    FINETUNE_DIGITS,
    PRETRAIN_DIGITS,
    DigitTask,
    augment,
    digit_task,
)
from weightzoo.families.vit.model import backbone_names, from_spec
from weightzoo.families.vit.spec import (
    FINETUNE_METRICS,
    PRETRAIN_METRICS,
    ViTFinetuneSpec,
    ViTPretrainSpec,
)
from weightzoo.features import layout_of, unflatten
from weightzoo.generate import population as toolkit
from weightzoo.generate.base import BlockReport, ModelPlan
from weightzoo.storage.manifest import MANIFEST_NAME
from weightzoo.zoo import Zoo

KNN_K = 5
"""Neighbours of the ``knn_acc`` vote."""
EVAL_VIEW_SEED = 0
"""Seed of the fixed views a SimCLR population is evaluated on."""
_EVAL_ITEMS = 512  # images per model and evaluation pass


def population_forward(
    net: nn.Module, params: dict[str, Tensor], x: Tensor, *, features_only: bool = False
) -> Tensor:
    """Outputs ``[M, B, ...]`` of stacked ViTs ``params`` on per-model images ``x [M, B, ...]``."""

    def one(p: dict[str, Tensor], xi: Tensor) -> Tensor:
        return functional_call(net, p, (xi,), {"features_only": features_only})

    return vmap(one)(params, x)


def nt_xent(z: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """Per-view NT-Xent loss and pair hits ``[M, 2B]`` of projections ``z [M, 2B, D]``.

    Views ``i`` and ``i + B`` are the two views of one image.
    """
    twice = z.shape[1]
    half = twice // 2
    z = F.normalize(z, dim=-1)
    sim = z @ z.transpose(1, 2) / temperature
    eye = torch.eye(twice, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))
    target = (torch.arange(twice, device=z.device) + half) % twice
    loss = F.cross_entropy(
        sim.reshape(-1, twice), target.repeat(z.shape[0]), reduction="none"
    ).view(z.shape[0], twice)
    return loss, sim.argmax(-1) == target


class _ViTTask:
    """Data on the device and the metrics both kinds of task share (``knn``, supervised)."""

    def __init__(
        self, net: nn.Module, task: DigitTask, knn: DigitTask | None, device: torch.device
    ) -> None:
        self.net = net
        self.data = {
            "train": (torch.from_numpy(task.train_x), torch.from_numpy(task.train_y)),
            "test": (torch.from_numpy(task.test_x), torch.from_numpy(task.test_y)),
        }
        self.data = {k: (x.to(device), y.to(device)) for k, (x, y) in self.data.items()}
        self.train_size = len(task.train_y)
        self.splits = {"train": self.train_size, "test": len(task.test_y)}
        self.knn = None
        if knn is not None:
            self.knn = tuple(
                torch.from_numpy(a).to(device)
                for a in (knn.train_x, knn.train_y, knn.test_x, knn.test_y)
            )
            self.splits["knn"] = len(knn.test_y)

    def forward(self, pop: toolkit.Population, x: Tensor, **options) -> Tensor:
        return population_forward(self.net, pop.params, x, **options)

    def _batch(self, split: str, rows: Tensor) -> tuple[Tensor, Tensor]:
        x, y = self.data[split]
        return x[rows], y[rows]

    def eval_chunk(self, split: str, models: int) -> int:
        """Items per evaluation pass (``knn``: the whole split, its vote needs the memory)."""
        return self.splits[split] if split == "knn" else max(32, _EVAL_ITEMS)

    def knn_sums(self, pop: toolkit.Population, start: int, stop: int):
        """Correct 5-NN votes of test items ``start:stop`` of the ``knn`` data."""
        assert self.knn is not None
        mem_x, mem_y, query_x, query_y = self.knn
        models = pop.size
        memory = F.normalize(
            self.forward(pop, mem_x.expand(models, *mem_x.shape), features_only=True), dim=-1
        )
        query = query_x[start:stop]
        feats = F.normalize(
            self.forward(pop, query.expand(models, *query.shape), features_only=True), dim=-1
        )
        nearest = (feats @ memory.transpose(1, 2)).topk(KNN_K, dim=-1).indices
        votes = F.one_hot(mem_y[nearest], int(mem_y.max()) + 1).sum(2)
        hits = (votes.argmax(-1) == query_y[start:stop]).sum(1).double()
        count = torch.full((models,), float(stop - start), device=pop.device)
        return {"acc": (hits, count)}

    def classify_sums(self, pop: toolkit.Population, split: str, start: int, stop: int):
        """Summed cross-entropy and correct predictions over items ``start:stop``."""
        x, y = self.data[split]
        models = pop.size
        out = self.forward(pop, x[start:stop].expand(models, *x[start:stop].shape))
        yb = y[start:stop].expand(models, -1)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), yb.reshape(-1), reduction="none")
        count = torch.full((models,), float(stop - start), device=pop.device)
        return {
            "loss": (loss.view(yb.shape).double().sum(1), count),
            "acc": ((out.argmax(-1) == yb).sum(1).double(), count),
        }


class ClassifyTask(_ViTTask):
    """Supervised training (pre-training or fine-tuning) with label smoothing.

    Args:
        net: the template module.
        task: the images and labels.
        knn: the data of ``knn_acc`` (pre-training), or None.
        label_smoothing: of the training loss.
        device: where the data lives.
    """

    def __init__(
        self,
        net: nn.Module,
        task: DigitTask,
        knn: DigitTask | None,
        label_smoothing: float,
        device: torch.device,
    ) -> None:
        super().__init__(net, task, knn, device)
        self.label_smoothing = label_smoothing

    def train_loss(self, pop: toolkit.Population, rows: Tensor, order: toolkit.DataOrder) -> Tensor:
        """Per-model mean smoothed cross-entropy on items ``rows [M, B]``."""
        xb, yb = self._batch("train", rows)
        out = self.forward(pop, xb)
        loss = F.cross_entropy(
            out.reshape(-1, out.shape[-1]),
            yb.reshape(-1),
            reduction="none",
            label_smoothing=self.label_smoothing,
        )
        return loss.view(yb.shape).mean(1)

    def eval_sums(self, pop: toolkit.Population, split: str, start: int, stop: int):
        """Loss and accuracy (``knn``: the 5-NN vote)."""
        if split == "knn":
            return self.knn_sums(pop, start, stop)
        return self.classify_sums(pop, split, start, stop)


class ContrastiveTask(_ViTTask):
    """SimCLR training: NT-Xent over two augmented views of each image.

    Args:
        net: the template module.
        task: the images (labels unused).
        knn: the data of ``knn_acc``.
        spec: temperature, views and batch size.
        device: where the data lives.
    """

    def __init__(
        self,
        net: nn.Module,
        task: DigitTask,
        knn: DigitTask,
        spec: ViTPretrainSpec,
        device: torch.device,
    ) -> None:
        super().__init__(net, task, knn, device)
        self.temperature = spec.temperature
        self.shift, self.noise = spec.max_shift, spec.noise
        self.batch = max(2, spec.batch_size)
        fixed = torch.Generator().manual_seed(EVAL_VIEW_SEED)
        self.views = {
            split: tuple(
                augment(x.cpu(), fixed, max_shift=self.shift, noise=self.noise).to(device)
                for _ in range(2)
            )
            for split, (x, _) in self.data.items()
        }

    def _loss(self, pop: toolkit.Population, first: Tensor, second: Tensor):
        z = self.forward(pop, torch.cat([first, second], dim=1))
        return nt_xent(z, self.temperature)

    def train_loss(self, pop: toolkit.Population, rows: Tensor, order: toolkit.DataOrder) -> Tensor:
        """Per-model mean NT-Xent on two fresh views of items ``rows [M, B]``."""
        xb, _ = self._batch("train", rows)
        views = [
            torch.stack(
                [
                    augment(xb[m], g, max_shift=self.shift, noise=self.noise)
                    for m, g in enumerate(order.generators)
                ]
            )
            for _ in range(2)
        ]
        loss, _ = self._loss(pop, *views)
        return loss.mean(1)

    def eval_chunk(self, split: str, models: int) -> int:
        """The training batch size (the loss depends on the negatives a batch holds)."""
        return super().eval_chunk(split, models) if split == "knn" else self.batch

    def eval_sums(self, pop: toolkit.Population, split: str, start: int, stop: int):
        """NT-Xent and pair accuracy on the fixed views (``knn``: the 5-NN vote)."""
        if split == "knn":
            return self.knn_sums(pop, start, stop)
        first, second = (
            v[start:stop].expand(pop.size, *v[start:stop].shape) for v in self.views[split]
        )
        loss, hits = self._loss(pop, first, second)
        count = torch.full((pop.size,), float(2 * (stop - start)), device=pop.device)
        return {"loss": (loss.double().sum(1), count), "acc": (hits.sum(1).double(), count)}


# ------------------------------------------------------------------------------ training
def _initial(spec, plans: Sequence[ModelPlan]) -> list[nn.Module]:
    return toolkit.seeded_models(lambda: from_spec(spec.to_dict()), (p.seed for p in plans))


def _run(
    plans: Sequence[ModelPlan],
    models: Sequence[nn.Module],
    task,
    config: toolkit.TrainConfig,
    metrics: Sequence[str],
    device: str,
    report: BlockReport,
) -> list[ModelRecord]:
    pop = toolkit.Population.from_modules(models, device=device)
    names = layout_of(models[0]).names

    def progress(_steps: int, left: int) -> None:
        report(left, left)  # a model-epoch for each model still training

    result = toolkit.train_plans(task, pop, plans, names, config, progress=progress)
    return toolkit.plan_records(plans, result.weights, result.metrics, device, metrics)


def _by(plans: Sequence[ModelPlan], column: str) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for k, plan in enumerate(plans):
        groups.setdefault(str(plan.columns[column]), []).append(k)
    return groups


def pretrain(
    spec: ViTPretrainSpec, plans: Sequence[ModelPlan], device: str, report: BlockReport
) -> list[ModelRecord]:
    """Pre-train ``plans``: one population per pre-training objective; records in plan order."""
    dev = torch.device(device)
    template = from_spec(spec.to_dict())
    knn = digit_task(ALL_DIGITS)
    config = toolkit.TrainConfig.from_spec(
        spec, checkpoints=spec.checkpoints(), checkpoint_splits=("train", "test", "knn")
    )
    out: dict[int, ModelRecord] = {}
    for kind, index in _by(plans, "pretraining").items():
        members = [plans[k] for k in index]
        if kind == "supervised":
            task = ClassifyTask(
                template, digit_task(PRETRAIN_DIGITS), knn, spec.label_smoothing, dev
            )
        else:
            task = ContrastiveTask(template, knn, knn, spec, dev)
        models = _initial(spec, members)
        records = _run(members, models, task, config, PRETRAIN_METRICS, device, report)
        out.update(zip(index, records, strict=True))
    return [out[k] for k in range(len(plans))]


def parent_backbones(parents_dir: Path, ids: Sequence[int], child: nn.Module) -> list[dict]:
    """The last-checkpoint backbone tensors of the parents ``ids`` in the zoo ``parents_dir``.

    Raises:
        ZooNotFoundError: no zoo at ``parents_dir`` (generate the pre-training group first).
        InvalidOptionError: a parent id the zoo does not hold, or a parent whose backbone
            differs in shape from the child's.
    """
    if not (parents_dir / MANIFEST_NAME).is_file():
        raise ZooNotFoundError(
            f"the parents of this fine-tuning zoo are read from {parents_dir}, which holds no "
            "zoo; generate the pre-training group first (a grouped spec does so in order)"
        )
    zoo = Zoo(parents_dir)
    reader = zoo.reader(epochs="last")
    known = {
        int(m): int(p) for m, p in zip(reader.column("model_id"), reader.positions, strict=True)
    }
    missing = sorted({int(i) for i in ids} - set(known))
    if missing:
        raise InvalidOptionError(
            f"parents {missing} are not in the zoo at {parents_dir} (it holds model ids "
            f"{sorted(known)}); regenerate the pre-training group with the same spec"
        )
    wanted = backbone_names(layout_of(child).names)
    theirs = {e.name: e.shape for e in zoo.layout}
    ours = {e.name: e.shape for e in layout_of(child)}
    bad = [n for n in wanted if theirs.get(n) != ours[n]]
    if bad:
        raise InvalidOptionError(
            f"the backbone of the zoo at {parents_dir} differs from the fine-tuning spec's in "
            f"{bad[:3]}; give both stages the same architecture"
        )
    unique = sorted(set(int(i) for i in ids))
    rows = zoo.rows([known[i] for i in unique], "last")
    tensors = {
        i: unflatten(torch.from_numpy(row), zoo.layout) for i, row in zip(unique, rows, strict=True)
    }
    return [{n: tensors[int(i)][n] for n in wanted} for i in ids]


def finetune(
    spec: ViTFinetuneSpec,
    plans: Sequence[ModelPlan],
    parents_dir: Path,
    device: str,
    report: BlockReport,
) -> list[ModelRecord]:
    """Fine-tune ``plans`` from their parents: one population per optimizer."""
    dev = torch.device(device)
    template = from_spec(spec.to_dict())
    models = _initial(spec, plans)
    backbones = parent_backbones(parents_dir, [p.columns["parent"] for p in plans], template)
    with torch.no_grad():
        for model, backbone in zip(models, backbones, strict=True):
            state = model.state_dict()
            for name, tensor in backbone.items():
                state[name].copy_(tensor)
    task = ClassifyTask(template, digit_task(FINETUNE_DIGITS), None, spec.label_smoothing, dev)
    out: dict[int, ModelRecord] = {}
    for optimizer, index in _by(plans, "optimizer").items():
        members = [plans[k] for k in index]
        config = toolkit.TrainConfig(
            optimizer=optimizer,
            lr=[float(p.columns["lr"]) for p in members],
            weight_decay=spec.weight_decay,
            momentum=spec.momentum if optimizer == "sgd" else 0.0,
            epochs=spec.epochs,
            batch_size=spec.batch_size,
            checkpoints=spec.checkpoints(),
            checkpoint_splits=("train", "test"),
        )
        chosen = [models[k] for k in index]
        records = _run(members, chosen, task, config, FINETUNE_METRICS, device, report)
        out.update(zip(index, records, strict=True))
    return [out[k] for k in range(len(plans))]


def train_stage(
    spec: ViTPretrainSpec | ViTFinetuneSpec,
    plans: Sequence[ModelPlan],
    device: str,
    report: BlockReport,
    root: Path | None,
) -> list[ModelRecord]:
    """Pre-train ``plans``, or fine-tune them from the parents in ``root``'s sibling group.

    Args:
        spec: the stage's spec.
        plans: the block's models.
        device: torch device.
        report: told a population's size as its model-epochs after each of its epochs.
        root: this zoo's directory inside its grouped zoo; a fine-tuning stage reads its
            parents from ``root.parent / spec.parent_group``.

    Raises:
        InvalidOptionError: a fine-tuning stage without ``root``.
    """
    if isinstance(spec, ViTPretrainSpec):
        return pretrain(spec, plans, device, report)
    if root is None:
        raise InvalidOptionError(
            f"zoo spec {spec.name!r} fine-tunes the models of group "
            f"{spec.parent_group!r}: generate it as a group of a grouped ViT zoo "
            "(weightzoo generate vit-digits), which passes the group's directory"
        )
    return finetune(spec, plans, Path(root).parent / spec.parent_group, device, report)


__all__ = [
    "ClassifyTask",
    "ContrastiveTask",
    "finetune",
    "nt_xent",
    "parent_backbones",
    "population_forward",
    "pretrain",
    "train_stage",
]
