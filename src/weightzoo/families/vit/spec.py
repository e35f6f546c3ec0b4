"""The ViT zoo as specs: the two stages, the grouped zoo, the named zoos and their listings.

After Falk et al., *A Model Zoo of Vision Transformers* (arXiv:2504.10231): pre-trained ViTs
(supervised or SimCLR), each fine-tuned many ways (head x optimizer x learning rate x seed).

- :class:`ViTPretrainSpec` (family ``"vit-pretrain"``): one model per entry of
  ``pretrainings``, model ``i`` with seed ``seed_start + i``. Every pre-trained model carries
  the same head shape (``Linear(dim, outputs)``), as the paper's supervised and SimCLR models
  both do (its SimCLR models project to the classifier's 1,000 outputs): supervised models read
  it as class logits, SimCLR models as their projection.
- :class:`ViTFinetuneSpec` (family ``"vit-finetune"``): for every parent (a model id of the
  pre-training group), every optimizer, learning rate and seed, one child that starts from the
  parent's last checkpoint with a freshly initialised head of kind ``head``. Children are
  ordered parent-major, then optimizer, learning rate, seed. A fine-tuning zoo has one head
  kind (one layout): the linear and MLP children are two zoos (two groups of one grouped zoo).

Columns of both: ``parent`` (the parent's model id, -1 for a pre-trained model), ``stage``
(``pretrain`` / ``finetune``), ``pretraining`` (``supervised`` / ``simclr``), ``head``,
``optimizer``, ``lr`` and ``seed``.

This module imports no torch: the architecture presets and the parameter count of a spec are
here (:func:`num_params`), so that listing and sizing the zoos is cheap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from weightzoo.errors import InvalidOptionError
from weightzoo.families import Listing
from weightzoo.generate.base import GridOptions, GroupedSpec, ZooSpec, size_estimate

__all__ = [
    "DATASETS",
    "FINETUNE_METRICS",
    "FINETUNE_NAME",
    "HEADS",
    "PRESETS",
    "PRETRAIN_METRICS",
    "PRETRAIN_NAME",
    "ViTFinetuneSpec",
    "ViTPretrainSpec",
    "ViTZooSpec",
    "config_of",
    "finetune_group",
    "listings",
    "num_params",
    "specs",
]

ZOO_NAME = "vit"
"""The family name of a grouped ViT zoo (its top manifest's ``family``)."""
PRETRAIN_NAME = "vit-pretrain"
"""The family of the pre-training group."""
FINETUNE_NAME = "vit-finetune"
"""The family of each fine-tuning group."""

HEADS = ("linear", "mlp")
"""Head kinds: one ``Linear(dim, outputs)``, or ``Linear -> GELU -> Linear``."""
PRESETS: dict[str, dict[str, int]] = {
    "vit-digits": {
        "image_size": 8,
        "patch_size": 2,
        "in_channels": 1,
        "dim": 32,
        "depth": 2,
        "heads": 4,
        "mlp_dim": 64,
    },
    "vit-s": {
        "image_size": 224,
        "patch_size": 16,
        "in_channels": 3,
        "dim": 384,
        "depth": 12,
        "heads": 6,
        "mlp_dim": 1536,
    },
}
"""Architecture sizes by name: the CPU-sized digits ViT and the paper's ViT-S/16."""

PRETRAININGS = ("supervised", "simclr")
"""Pre-training objectives."""
FINETUNE_OPTIMIZERS = ("adamw", "sgd")
"""Optimizers of the fine-tuning grid."""
PAPER_LRS = (3e-3, 1e-3, 1e-4)
"""Fine-tuning learning rates of the paper."""
PRETRAIN_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "knn_acc")
"""Per-checkpoint metrics of a pre-trained model (see :mod:`weightzoo.families.vit.train`)."""
FINETUNE_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
"""Per-checkpoint metrics of a fine-tuned model, on the fine-tuning task."""
DATASETS = ("digits", "imagenet-1k", "cifar100")
"""Data of the stages: the offline digits tasks, or the paper's ImageNet-1k / CIFAR-100."""


def config_of(spec: Mapping[str, Any]) -> dict[str, int]:
    """The architecture sizes of a ViT zoo spec: its preset, with any sizes it sets itself.

    Raises:
        ValueError: for an unknown preset.
    """
    name = str(spec.get("architecture", "vit-digits"))
    if name not in PRESETS:
        raise ValueError(f"unknown ViT architecture {name!r}; known: {', '.join(PRESETS)}")
    config = dict(PRESETS[name])
    for key in config:
        if spec.get(key) is not None:
            config[key] = int(spec[key])
    return config


def num_params(spec: Mapping[str, Any]) -> int:
    """Parameters of the ViT of a spec dict, counted without building it (see :mod:`.model`)."""
    c = config_of(spec)
    dim, mlp, outputs = c["dim"], c["mlp_dim"], int(spec["outputs"])
    tokens = (c["image_size"] // c["patch_size"]) ** 2 + 1  # the patches and the class token
    embed = (c["in_channels"] * c["patch_size"] ** 2 + 1) * dim + tokens * dim + dim
    # two LayerNorms, qkv, the output projection and the two MLP layers of a block
    block = 4 * dim + (dim + 1) * 3 * dim + (dim + 1) * dim + (dim + 1) * mlp + (mlp + 1) * dim
    hidden = int(spec.get("head_hidden", 32))
    linear = str(spec.get("head", "linear")) == "linear"
    head = (dim + 1) * outputs if linear else (dim + 1) * hidden + (hidden + 1) * outputs
    return embed + c["depth"] * block + 2 * dim + head


def _check_choice(spec: str, what: str, values: Sequence[Any], known: Sequence[Any]) -> None:
    bad = [v for v in values if v not in known]
    if bad:
        raise InvalidOptionError(
            f"zoo spec {spec!r}: unknown {what} {bad}; choose from {', '.join(map(str, known))}"
        )


@dataclass(frozen=True)
class _SharedFields:
    """The fields of a grouped ViT zoo that each of its groups has too, with the same value.

    Attributes:
        architecture: a preset of :data:`PRESETS`.
        checkpoint_every: a checkpoint every this many epochs (and at 0 and the last epoch).
        data_dir: where the paper's image data lives; not part of the spec's identity.
    """

    architecture: str = "vit-digits"
    checkpoint_every: int = 5
    data_dir: str | None = field(default=None, compare=False)


# what every group's spec copies from its grouped zoo's spec: those fields and the base spec's
# split seed, shard size and divergence threshold
_SHARED = (
    *(f.name for f in dataclasses.fields(_SharedFields)),
    "split_seed",
    "shard_models",
    "diverge_threshold",
)


@dataclass(frozen=True)
class _ViTSpec(GridOptions, _SharedFields, ZooSpec):
    """Fields of both stages, besides those of :class:`_SharedFields`.

    Attributes:
        dataset: ``"digits"`` (offline) or the paper's data (see :data:`DATASETS`).
        outputs: outputs of the head.
        head: ``"linear"`` or ``"mlp"``.
        head_hidden: hidden width of the ``"mlp"`` head.
        epochs: training epochs.
        batch_size: per-model batch size.
        label_smoothing: of the classification loss in training (the paper's 0.1).
        seed_start: first seed.
        models: if set, only ``models`` models: the first, or a sample (``sample``).
    """

    dataset: str = "digits"
    outputs: int = 10
    head: str = "linear"
    head_hidden: int = 32
    epochs: int = 20
    batch_size: int = 64
    label_smoothing: float = 0.1
    seed_start: int = 1
    models: int | None = None

    kind: ClassVar[str] = ZOO_NAME

    def __post_init__(self) -> None:
        _check_choice(self.name, "architecture", [self.architecture], list(PRESETS))
        _check_choice(self.name, "dataset", [self.dataset], DATASETS)
        _check_choice(self.name, "head", [self.head], HEADS)

    def grid_models(self) -> int:  # pragma: no cover - each stage defines it
        """Models of the full grid (ignoring ``models``)."""
        raise NotImplementedError

    def checkpoints(self) -> list[int]:
        """Checkpoint epochs: 0, every ``checkpoint_every``, and the last."""
        every = max(1, self.checkpoint_every)
        return sorted({0, self.epochs, *range(0, self.epochs + 1, every)})

    def estimate(self) -> dict[str, int]:
        """Size of the zoo: models, checkpoints, params per row, and bytes of ``weights``."""
        return size_estimate(self.num_models(), len(self.checkpoints()), num_params(self.to_dict()))


@dataclass(frozen=True)
class ViTPretrainSpec(_ViTSpec):
    """Pre-trained ViTs: one per entry of ``pretrainings``.

    Attributes:
        pretrainings: ``"supervised"`` or ``"simclr"`` per model, in model order.
        optimizer: the pre-training optimizer (the paper's AdamW).
        lr: its learning rate.
        weight_decay: its weight decay.
        temperature: of the SimCLR (NT-Xent) loss.
        max_shift / noise: the SimCLR views (:func:`weightzoo.families.vit.data.augment`).
    """

    family: str = PRETRAIN_NAME
    pretrainings: tuple[str, ...] = ("supervised", "supervised", "simclr", "simclr")
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.2
    max_shift: int = 1
    noise: float = 0.1

    kind: ClassVar[str] = PRETRAIN_NAME

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice(self.name, "pretraining", self.pretrainings, PRETRAININGS)
        _check_choice(self.name, "optimizer", [self.optimizer], ("adam", "adamw", "sgd"))

    def grid_models(self) -> int:
        """One model per entry of ``pretrainings``."""
        return len(self.pretrainings)


@dataclass(frozen=True)
class ViTFinetuneSpec(_ViTSpec):
    """Children of pre-trained ViTs: parents x optimizers x learning rates x seeds.

    Attributes:
        parent_group: the group of the same grouped zoo that holds the parents.
        parents: the parents' model ids.
        parent_pretrainings: each parent's pre-training (for the ``pretraining`` column).
        optimizers: the optimizer axis.
        lrs: the learning-rate axis.
        seeds: seeds per (parent, optimizer, lr): ``seed_start .. seed_start + seeds - 1``.
        momentum: SGD momentum.
        weight_decay: weight decay of both optimizers.
    """

    family: str = FINETUNE_NAME
    outputs: int = 5
    parent_group: str = "pretrain"
    parents: tuple[int, ...] = ()
    parent_pretrainings: tuple[str, ...] = ()
    optimizers: tuple[str, ...] = FINETUNE_OPTIMIZERS
    lrs: tuple[float, ...] = PAPER_LRS
    seeds: int = 2
    momentum: float = 0.9
    weight_decay: float = 0.0

    kind: ClassVar[str] = FINETUNE_NAME

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice(self.name, "optimizer", self.optimizers, FINETUNE_OPTIMIZERS)
        _check_choice(self.name, "pretraining", self.parent_pretrainings, PRETRAININGS)
        if len(self.parents) != len(self.parent_pretrainings):
            raise InvalidOptionError(
                f"zoo spec {self.name!r}: {len(self.parents)} parents but "
                f"{len(self.parent_pretrainings)} parent_pretrainings; give one each"
            )
        bad = [lr for lr in self.lrs if not lr > 0]
        if bad or self.seeds < 1:
            raise InvalidOptionError(
                f"zoo spec {self.name!r}: learning rates must be > 0 (got {list(self.lrs)}) and "
                f"seeds >= 1 (got {self.seeds})"
            )

    def cells(self) -> list[dict[str, Any]]:
        """Every child's grid values, in model order (parent-major)."""
        return [
            {
                "parent": int(parent),
                "pretraining": kind,
                "optimizer": optimizer,
                "lr": float(lr),
                "seed": self.seed_start + k,
            }
            for parent, kind in zip(self.parents, self.parent_pretrainings, strict=True)
            for optimizer in self.optimizers
            for lr in self.lrs
            for k in range(self.seeds)
        ]

    def grid_models(self) -> int:
        """Children of the full grid."""
        return len(self.parents) * len(self.optimizers) * len(self.lrs) * self.seeds


PRETRAIN_GROUP = "pretrain"
"""Name of the group of pre-trained models in a grouped ViT zoo."""


def finetune_group(head: str) -> str:
    """Name of the group of fine-tuned models with ``head``: ``finetune-<head>``."""
    return f"finetune-{head}"


@dataclass(frozen=True)
class ViTZooSpec(_SharedFields, GroupedSpec):
    """A grouped ViT zoo: group ``pretrain``, then one fine-tuning group per head.

    The pre-trained models have ids ``0 .. len(pretrainings)-1`` (the first group); every one
    of them is the parent of ``len(optimizers) * len(lrs) * seeds`` children in each
    fine-tuning group. All pre-trained models are in the ``train`` split (they are the
    parents); each fine-tuning group splits its children 70/15/15, stratified by parent.
    The fields of :class:`_SharedFields` (the architecture, the checkpoint interval and the
    data directory) are every group's.

    Attributes:
        pretrain_dataset / finetune_dataset: ``"digits"`` for both, or the paper's
            ``"imagenet-1k"`` / ``"cifar100"``.
        pretrainings: the objective of each pre-trained model.
        pretrain_outputs: the pre-training head's outputs (classes, or the SimCLR projection).
        pretrain_epochs / pretrain_batch_size / pretrain_lr: pre-training (AdamW).
        temperature: of the SimCLR loss.
        heads: the fine-tuning heads, one group each.
        head_hidden: hidden width of the ``"mlp"`` head.
        finetune_outputs: classes of the fine-tuning task.
        optimizers / lrs / seeds: the fine-tuning grid per parent and head.
        finetune_epochs / finetune_batch_size: fine-tuning.
        parents: if set, only the first ``parents`` pre-trained models and their children
            (``--models``).
    """

    family: str = ZOO_NAME
    pretrain_dataset: str = "digits"
    finetune_dataset: str = "digits"
    pretrainings: tuple[str, ...] = ("supervised", "supervised", "simclr", "simclr")
    pretrain_outputs: int = 10
    pretrain_epochs: int = 30
    pretrain_batch_size: int = 64
    pretrain_lr: float = 1e-3
    temperature: float = 0.2
    heads: tuple[str, ...] = ("linear", "mlp")
    head_hidden: int = 32
    finetune_outputs: int = 5
    optimizers: tuple[str, ...] = FINETUNE_OPTIMIZERS
    lrs: tuple[float, ...] = PAPER_LRS
    seeds: int = 1
    finetune_epochs: int = 15
    finetune_batch_size: int = 64
    parents: int | None = None

    kind: ClassVar[str] = ZOO_NAME

    def __post_init__(self) -> None:
        self.groups()  # every group's spec checks its own values (unknown grid values...)

    def override(
        self,
        models: int | None = None,
        epochs: int | None = None,
        data_dir: str | None = None,
        **rest: Any,
    ) -> ZooSpec:
        """Apply ``--models`` (pre-trained models kept), ``--train-epochs`` and ``--data-dir``.

        ``--models N`` keeps the first N pre-trained models and their children; ``--train-epochs``
        sets both stages.

        Raises:
            ValueError: for another option, or a non-positive count.
        """
        ZooSpec.override(self, **rest)
        changes: dict[str, Any] = {}
        if models is not None:
            if int(models) < 1:
                raise ValueError(f"--models must be at least 1, got {models}")
            changes["parents"] = min(int(models), len(self.pretrainings))
        if epochs is not None:
            if int(epochs) < 1:
                raise ValueError(f"--train-epochs must be at least 1, got {epochs}")
            changes["pretrain_epochs"] = changes["finetune_epochs"] = int(epochs)
        if data_dir is not None:
            changes["data_dir"] = str(data_dir)
        return dataclasses.replace(self, **changes) if changes else self

    def groups(self) -> list[tuple[str, ZooSpec]]:
        """``pretrain``, then ``finetune-<head>`` for every head."""
        kinds = self.pretrainings[: self.parents]
        common = {name: getattr(self, name) for name in _SHARED}
        out: list[tuple[str, ZooSpec]] = [
            (
                PRETRAIN_GROUP,
                ViTPretrainSpec(
                    name=f"{self.name}-{PRETRAIN_GROUP}",
                    dataset=self.pretrain_dataset,
                    pretrainings=kinds,
                    outputs=self.pretrain_outputs,
                    epochs=self.pretrain_epochs,
                    batch_size=self.pretrain_batch_size,
                    lr=self.pretrain_lr,
                    temperature=self.temperature,
                    split_fractions=(1.0, 0.0, 0.0),
                    **common,
                ),
            )
        ]
        for head in self.heads:
            group = finetune_group(head)
            spec = ViTFinetuneSpec(
                name=f"{self.name}-{group}",
                dataset=self.finetune_dataset,
                head=head,
                head_hidden=self.head_hidden,
                outputs=self.finetune_outputs,
                parent_group=PRETRAIN_GROUP,
                parents=tuple(range(len(kinds))),
                parent_pretrainings=kinds,
                optimizers=self.optimizers,
                lrs=self.lrs,
                seeds=self.seeds,
                epochs=self.finetune_epochs,
                batch_size=self.finetune_batch_size,
                split_fractions=self.split_fractions,
                **common,
            )
            out.append((group, spec))
        return out


def specs() -> list[ZooSpec]:
    """The named ViT zoos: ``vit-digits`` (offline, minutes on a CPU) and ``vit-zoo-paper``."""
    return list(_named())


def _named() -> list[ViTZooSpec]:
    return [
        ViTZooSpec(name="vit-digits"),
        ViTZooSpec(
            name="vit-zoo-paper",
            architecture="vit-s",
            pretrain_dataset="imagenet-1k",
            finetune_dataset="cifar100",
            pretrainings=("supervised",) * 7 + ("simclr",) * 3,
            pretrain_outputs=1000,
            pretrain_epochs=90,
            pretrain_batch_size=256,
            temperature=0.07,
            head_hidden=384,
            finetune_outputs=100,
            seeds=2,
            finetune_epochs=50,
            finetune_batch_size=256,
            checkpoint_every=1,
            shard_models=4,
        ),
    ]


_SUMMARIES = {
    "vit-digits": "ViTs pre-trained on digits (supervised, SimCLR) and fine-tuned, with lineage",
    "vit-zoo-paper": "ViT-S pre-trained on ImageNet-1k, fine-tuned on CIFAR-100 (250 models)",
}


def listings() -> list[Listing]:
    """The catalog's lines: each named zoo, with the outside data its two stages read."""
    out = []
    for spec in _named():
        data = tuple(d for d in (spec.pretrain_dataset, spec.finetune_dataset) if d != "digits")
        out.append(Listing(spec.name, _SUMMARIES[spec.name], data))
    return out
