"""Phase-transition zoos on image grids as specs and a family.

The grids of "A Model Zoo on Phase Transitions in Neural Networks" (Schürholt, Meynent, Zhou,
Lu, Yang, Borth; arXiv:2504.18072): the network's width is the load-like factor, the batch
size the temperature-like one, and every cell is trained from three seeds. The loss-landscape
phases of "Taxonomizing local versus global structure in neural network loss landscapes"
(Yang, Hodgkinson, Theisen, Zou, Gonzalez, Ramchandran, Mahoney; arXiv:2107.11228) are then
measured on every model (:meth:`PhaseFamily.finalize`).

Models of different widths have different layouts, so one width is one version-1 zoo:
:func:`width_spec` builds the spec of one width of a grid, named ``<grid>-w<width>``, and
:func:`grid_specs` every width of a grid; :class:`PhaseGridSpec` is the whole grid as one
grouped zoo (format version 2) with a group ``w<width>`` per width. Inside a zoo, models are
ordered batch-size-major with the seeds inner; the columns are ``width``, ``batch_size``,
``load`` (= width), ``temperature`` (= batch size), ``seed``, ``lr``, ``weight_decay`` and
``node`` (the cell, so that seed siblings share it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from weightzoo.errors import InvalidOptionError
from weightzoo.generate.base import GridOptions, GroupedSpec, ModelPlan, ModelRecord, ZooSpec
from weightzoo.storage.layout import Layout

METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "ggap")
"""Per-checkpoint metrics: losses, accuracies in [0, 1], ``ggap = train_acc - test_acc``."""

LANDSCAPE_METRICS = ("hessian_top", "hessian_trace", "cka", "mc")
"""The landscape metrics :meth:`PhaseFamily.finalize` stores in the ``landscape`` side file."""

ARCHITECTURES = ("cnn", "mlp", "resnet18", "resnet50", "vit")
SCHEDULES = ("constant", "onecycle")


class PhaseGridError(InvalidOptionError):
    """A phase spec whose grid (widths, batch sizes, seeds, epochs) cannot be trained."""


@dataclass(frozen=True)
class PhaseSpec(GridOptions, ZooSpec):
    """One width of a phase-transition grid (a complete zoo).

    Attributes:
        grid: the grid's name (the specs of one grid differ only in ``width`` and ``name``).
        dataset: name for :func:`weightzoo.tasks.imagedata.load_image_data`.
        architecture: one of :data:`ARCHITECTURES`.
        width: this zoo's load value (channels, hidden units or embedding dimension).
        widths: every width of the grid (this zoo trains ``width`` only).
        batch_sizes: the temperature values, the batch sizes this zoo trains.
        seeds: models per cell, seeds ``seed_start .. seed_start + seeds - 1``.
        seed_start: first seed.
        epochs: training epochs.
        checkpoint_every: a checkpoint every this many epochs, besides 0 and the last.
        optimizer: ``"sgd"`` (momentum ``momentum``), ``"adam"`` or ``"adamw"``.
        lr: learning rate (the maximum under one-cycle).
        weight_decay: weight decay.
        momentum: SGD momentum (cycled 0.95 -> 0.85 -> 0.95 under one-cycle).
        lr_schedule: ``"onecycle"`` or ``"constant"``.
        augment: random crop (padding 4) and horizontal flip of training batches.
        image_size: side the images are resized to.
        in_channels: image channels.
        num_classes: classes.
        loss: ``"ce"``.
        val_fraction: share of the training set held out as the validation split.
        data_seed: seed of that hold-out.
        landscape_epochs: checkpoints ``finalize`` measures: ``"last"`` or ``"all"``.
        landscape_batches / landscape_batch_size: training batches the landscape loss uses.
        landscape_probes: Hutchinson probes of ``hessian_trace``.
        landscape_steps: training steps of each mode-connectivity curve.
        models: if set, only the first ``models`` models (``--models``).
        data_dir: where the image files are; not part of the spec's identity.
    """

    family: str = "phase"
    grid: str = ""
    dataset: str = "digits"
    architecture: str = "cnn"
    width: int = 8
    widths: tuple[int, ...] = (2, 4, 8, 16, 32)
    batch_sizes: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
    seeds: int = 3
    seed_start: int = 0
    epochs: int = 20
    checkpoint_every: int = 5
    optimizer: str = "sgd"
    lr: float = 0.1
    weight_decay: float = 5e-4
    momentum: float = 0.9
    lr_schedule: str = "onecycle"
    augment: bool = False
    image_size: int = 8
    in_channels: int = 1
    num_classes: int = 10
    loss: str = "ce"
    val_fraction: float = 0.15
    data_seed: int = 42
    landscape_epochs: str = "last"
    landscape_batches: int = 4
    landscape_batch_size: int = 128
    landscape_probes: int = 20
    landscape_steps: int = 100
    models: int | None = None
    data_dir: str | None = field(default=None, compare=False)

    kind: ClassVar[str] = "phase"
    load_factor: ClassVar[str] = "width"
    temperature_factor: ClassVar[str] = "batch_size"

    def __post_init__(self) -> None:
        def positive_ints(name: str, values: Sequence[Any]) -> None:
            bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1]
            if bad or not values:
                raise PhaseGridError(
                    f"phase spec {self.name!r}: {name} must be positive integers, got "
                    f"{list(values)!r}; fix the spec's {name}"
                )
            if len(set(values)) != len(values):
                raise PhaseGridError(
                    f"phase spec {self.name!r}: {name} repeat a value: {list(values)!r}"
                )

        positive_ints("width", [self.width])
        positive_ints("widths", list(self.widths))
        positive_ints("batch_sizes", list(self.batch_sizes))
        positive_ints("seeds", [self.seeds])
        positive_ints("epochs", [self.epochs])
        positive_ints("checkpoint_every", [self.checkpoint_every])
        if self.width not in self.widths:
            raise PhaseGridError(
                f"phase spec {self.name!r}: width {self.width} is not on its grid "
                f"{list(self.widths)}; add it to widths or pick one of them"
            )
        if self.architecture not in ARCHITECTURES:
            raise PhaseGridError(
                f"phase spec {self.name!r}: unknown architecture {self.architecture!r}; "
                f"known: {', '.join(ARCHITECTURES)}"
            )
        if self.lr_schedule not in SCHEDULES:
            raise PhaseGridError(
                f"phase spec {self.name!r}: lr_schedule must be one of {', '.join(SCHEDULES)}, "
                f"got {self.lr_schedule!r}"
            )
        if self.landscape_epochs not in ("last", "all"):
            raise PhaseGridError(
                f"phase spec {self.name!r}: landscape_epochs must be 'last' or 'all', got "
                f"{self.landscape_epochs!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON data, without ``data_dir`` (a machine's path is not identity)."""
        data = super().to_dict()
        data.pop("data_dir", None)
        data["load_factor"], data["temperature_factor"] = self.load_factor, self.temperature_factor
        return data

    def grid_models(self) -> int:
        """Models of this width's cells (ignoring ``models``)."""
        return len(self.batch_sizes) * self.seeds

    def checkpoints(self) -> list[int]:
        """Checkpoint epochs: 0, every ``checkpoint_every``, and the last."""
        every = range(self.checkpoint_every, self.epochs, self.checkpoint_every)
        return sorted({0, self.epochs, *every})

    def estimate(self) -> dict[str, int]:
        """Size of the zoo: models, checkpoints, params per row, and bytes of ``weights``."""
        params = family().layout(self).num_params
        models, checkpoints = self.num_models(), len(self.checkpoints())
        return {
            "models": models,
            "checkpoints": checkpoints,
            "params": params,
            "bytes": models * checkpoints * params * 4,
        }


def width_spec(grid: str, width: int, **fields: Any) -> PhaseSpec:
    """The spec of one width of grid ``grid``, named ``<grid>-w<width>``."""
    return PhaseSpec(name=f"{grid}-w{width}", grid=grid, width=width, **fields)


def grid_specs(grid: str, widths: Sequence[int], **fields: Any) -> list[PhaseSpec]:
    """One spec per width of a grid (each a complete zoo), in width order."""
    return [width_spec(grid, w, widths=tuple(widths), **fields) for w in widths]


@dataclass(frozen=True)
class PhaseGridSpec(GroupedSpec):
    """A whole phase grid as one grouped zoo (format version 2): one group per width.

    Group ``w<width>`` is ``base`` at that width (named ``<grid>-w<width>``), for every width of
    ``base.widths``; ``--models``, ``--epochs`` and ``--data-dir`` apply to every group.

    Attributes:
        base: the spec of one width; its ``grid`` names the grid.
    """

    family: str = "phase"
    base: PhaseSpec | None = None

    kind: ClassVar[str] = "phase-grid"
    load_factor: ClassVar[str] = PhaseSpec.load_factor
    temperature_factor: ClassVar[str] = PhaseSpec.temperature_factor

    def __post_init__(self) -> None:
        if not isinstance(self.base, PhaseSpec):
            raise PhaseGridError(f"phase grid {self.name!r} needs base=PhaseSpec(...)")

    def groups(self) -> list[tuple[str, ZooSpec]]:
        """``[("w<width>", the spec of that width), ...]`` in width order."""
        assert self.base is not None
        grid = self.base.grid or self.name
        return [
            (f"w{w}", dataclasses.replace(self.base, name=f"{grid}-w{w}", grid=grid, width=w))
            for w in self.base.widths
        ]

    def to_dict(self) -> dict[str, Any]:
        """As :class:`GroupedSpec`, without ``base``'s machine path (``data_dir``)."""
        data = super().to_dict()
        data["base"].pop("data_dir", None)
        return data

    def override(self, **options: Any) -> ZooSpec:
        """Apply ``--models`` (per group), ``--epochs`` and ``--data-dir`` to every group."""
        assert self.base is not None
        return dataclasses.replace(self, base=self.base.override(**options))

    def estimate(self) -> dict[str, int]:
        """The sum of the groups' estimates (params: the widest group's)."""
        parts = [spec.estimate() for _, spec in self.groups()]  # type: ignore[attr-defined]
        return {
            "models": sum(p["models"] for p in parts),
            "checkpoints": max(p["checkpoints"] for p in parts),
            "params": max(p["params"] for p in parts),
            "bytes": sum(p["bytes"] for p in parts),
        }


def phase_grid(grid: str, widths: Sequence[int], **fields: Any) -> PhaseGridSpec:
    """The grouped spec of grid ``grid``: every width of ``widths`` as a group."""
    return PhaseGridSpec(
        name=grid, base=width_spec(grid, widths[0], widths=tuple(widths), **fields)
    )


# ------------------------------------------------------------------------- the named grids
DIGITS_WIDTHS = (2, 4, 8, 16, 32)
DIGITS_BATCH_SIZES = (8, 16, 32, 64, 128, 256)
RESNET_WIDTHS = (2, 4, 8, 16, 32, 64, 128, 256)
RESNET_BATCH_SIZES = (1024, 512, 256, 128, 64, 32, 16, 8)
VIT_WIDTHS = (6, 12, 24, 48, 60, 96, 192)
VIT_BATCH_SIZES = (512, 256, 128, 64, 32, 16, 8)
_IMAGE = {
    "svhn": dict(image_size=32, num_classes=10, augment=False),
    "cifar10": dict(image_size=32, num_classes=10, augment=True),
    "cifar100": dict(image_size=32, num_classes=100, augment=True),
    "tiny-imagenet": dict(image_size=64, num_classes=200, augment=True),
}


def _digits_grids() -> list[PhaseSpec]:
    common = dict(
        dataset="digits",
        batch_sizes=DIGITS_BATCH_SIZES,
        image_size=8,
        in_channels=1,
        num_classes=10,
        epochs=20,
        checkpoint_every=5,
        shard_models=len(DIGITS_BATCH_SIZES) * 3,
        landscape_batches=2,
        landscape_steps=400,
    )
    return [
        *grid_specs("phase-digits-cnn", DIGITS_WIDTHS, architecture="cnn", **common),
        *grid_specs("phase-digits-mlp", DIGITS_WIDTHS, architecture="mlp", **common),
    ]


def _paper_grids() -> list[PhaseSpec]:
    out: list[PhaseSpec] = []
    for arch in ("resnet18", "resnet50"):
        for dataset, image in _IMAGE.items():
            out += grid_specs(
                f"phase-{dataset}-{arch}",
                RESNET_WIDTHS,
                dataset=dataset,
                architecture=arch,
                batch_sizes=RESNET_BATCH_SIZES,
                in_channels=3,
                epochs=150,
                checkpoint_every=10,
                shard_models=1,
                **image,
            )
    for dataset in ("cifar10", "cifar100"):
        out += grid_specs(
            f"phase-{dataset}-vit",
            VIT_WIDTHS,
            dataset=dataset,
            architecture="vit",
            batch_sizes=VIT_BATCH_SIZES,
            in_channels=3,
            epochs=300,
            checkpoint_every=20,
            lr=0.006,
            shard_models=1,
            **_IMAGE[dataset],
        )
    return out


def specs() -> list[ZooSpec]:
    """The named phase specs: every grid whole and width by width.

    Each grid is a grouped zoo ``<grid>`` and each of its widths a version-1 zoo
    ``<grid>-w<width>``: the digits grids, then the paper's ResNet and ViT grids.
    """
    widths = [*_digits_grids(), *_paper_grids()]
    grids: dict[str, list[PhaseSpec]] = {}
    for spec in widths:
        grids.setdefault(spec.grid, []).append(spec)
    grouped = [PhaseGridSpec(name=grid, base=members[0]) for grid, members in grids.items()]
    return [*grouped, *widths]


# ------------------------------------------------------------------------------ the family
class PhaseFamily:
    """The :class:`~weightzoo.generate.base.Family` of phase-transition specs."""

    name = "phase"

    def layout(self, spec: ZooSpec) -> Layout:
        """Layout of one row: the network's parameters (and BatchNorm running statistics)."""
        assert isinstance(spec, PhaseSpec)
        key = (spec.architecture, spec.width, spec.in_channels, spec.num_classes, spec.image_size)
        return _layout(*key)

    def checkpoint_epochs(self, spec: ZooSpec) -> list[int]:
        """Epoch 0, every ``checkpoint_every`` epochs, and the last."""
        assert isinstance(spec, PhaseSpec)
        return spec.checkpoints()

    def metric_names(self, spec: ZooSpec) -> list[str]:
        """train/val/test loss and accuracy, and ``ggap``."""
        return list(METRICS)

    def plan(self, spec: ZooSpec) -> list[ModelPlan]:
        """One plan per model: batch-size-major, seeds inner; stratum = the cell."""
        assert isinstance(spec, PhaseSpec)
        plans = []
        for model_id in range(spec.num_models()):
            cell, k = divmod(model_id, spec.seeds)
            batch = spec.batch_sizes[cell]
            columns = {
                "width": spec.width,
                "batch_size": batch,
                "load": float(spec.width),
                "temperature": float(batch),
                "lr": float(spec.lr),
                "weight_decay": float(spec.weight_decay),
                "node": cell,
            }
            plans.append(ModelPlan(model_id, spec.seed_start + k, f"batch={batch}", columns))
        return plans

    def train(
        self,
        spec: ZooSpec,
        plans: Sequence[ModelPlan],
        *,
        device: str,
        progress: bool = True,
        on_epoch: Callable[[int, int | None], None] | None = None,
    ) -> list[ModelRecord]:
        """Train ``plans`` as one population per batch size.

        ``on_epoch(models, None)`` is called after every epoch of every population.
        """
        from weightzoo.generate.phase.population import train_block

        assert isinstance(spec, PhaseSpec)
        return train_block(spec, plans, device=device, progress=progress, on_epoch=on_epoch)

    def finalize(self, spec: ZooSpec, root: str | Path, device: str = "cpu") -> None:
        """Measure the landscape side file and the phases of a finished zoo (idempotent).

        Skips what is already there: a ``landscape`` side file that holds every metric of
        :data:`LANDSCAPE_METRICS` is kept (only ``phase`` is added if missing).
        """
        from weightzoo.generate.phase.landscape import finalize_zoo

        assert isinstance(spec, PhaseSpec)
        finalize_zoo(spec, Path(root), device=device)


@lru_cache(maxsize=64)
def _layout(architecture: str, width: int, channels: int, classes: int, size: int) -> Layout:
    """The layout of a phase network, built on the meta device (no memory, no init work).

    The widest paper networks have hundreds of millions of parameters; listing their specs
    must not allocate them.
    """
    import torch

    from weightzoo.architectures.phase import from_spec
    from weightzoo.features import layout_of

    fields = dict(
        architecture=architecture,
        width=width,
        in_channels=channels,
        num_classes=classes,
        image_size=size,
    )
    with torch.device("meta"):
        return layout_of(from_spec(fields))


def family(name: str = "phase") -> PhaseFamily:
    """The family object for ``"phase"``.

    Raises:
        ValueError: for another name.
    """
    if name != "phase":
        raise ValueError(f"this module trains phase zoos, not {name!r}")
    return PhaseFamily()
