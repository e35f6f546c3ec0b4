"""Phase-transition zoos on image grids as specs: the grids, the named specs, their listings.

The grids of "A Model Zoo on Phase Transitions in Neural Networks" (Schürholt, Meynent, Zhou,
Lu, Yang, Borth; arXiv:2504.18072): the network's width is the load-like factor, the batch
size the temperature-like one, and every cell is trained from three seeds. The loss-landscape
phases of "Taxonomizing local versus global structure in neural network loss landscapes"
(Yang, Hodgkinson, Theisen, Zou, Gonzalez, Ramchandran, Mahoney; arXiv:2107.11228) are then
measured on every model (the family's ``finalize``).

Models of different widths have different layouts, so one width is one version-1 zoo:
:func:`width_spec` builds the spec of one width of a grid, named ``<grid>-w<width>``, and
:func:`grid_specs` every width of a grid; :class:`PhaseGridSpec` is the whole grid as one
grouped zoo (format version 2) with a group ``w<width>`` per width. Inside a zoo, models are
ordered batch-size-major with the seeds inner; the columns are ``width``, ``batch_size``,
``load`` (= width), ``temperature`` (= batch size), ``seed``, ``lr``, ``weight_decay`` and
``node`` (the cell, so that seed siblings share it).

Listing and sizing the zoos stays cheap: no torch here, a row's length is
:func:`network_params`, counted in closed form.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from weightzoo.errors import InvalidOptionError
from weightzoo.families import Listing
from weightzoo.families._fields import ImageSplitFields, LandscapeFields
from weightzoo.families.modelzoo.spec import resnet18_params
from weightzoo.generate.base import GridOptions, GroupedSpec, ZooSpec, size_estimate

__all__ = [
    "ARCHITECTURES",
    "FAMILY_NAME",
    "LANDSCAPE_METRICS",
    "METRICS",
    "PhaseGridError",
    "PhaseGridSpec",
    "PhaseSpec",
    "grid_specs",
    "listings",
    "network_params",
    "phase_grid",
    "specs",
    "width_spec",
]

FAMILY_NAME = "phase"
"""The family's registry name, as every manifest of a phase zoo records it."""

METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "ggap")
"""Per-checkpoint metrics: losses, accuracies in [0, 1], ``ggap = train_acc - test_acc``."""

LANDSCAPE_METRICS = ("hessian_top", "hessian_trace", "cka", "mc")
"""The landscape metrics the family's ``finalize`` stores in the ``landscape`` side file."""

ARCHITECTURES = ("cnn", "mlp", "resnet18", "resnet50", "vit")
SCHEDULES = ("constant", "onecycle")

RESNET50_STAGES = ((1, 3, 1), (2, 4, 2), (4, 6, 2), (8, 3, 2))
"""ResNet-50's stages: (planes per ``width``, bottlenecks, stride of the first)."""
BOTTLENECK_EXPANSION = 4
"""Output channels of a bottleneck per plane."""
VIT_PATCH, VIT_DEPTH, VIT_HEADS, VIT_MLP_RATIO = 4, 6, 3, 2
"""The ViT's patch side, blocks, attention heads and MLP hidden units per embedding unit."""

_BATCH_NORM = 4  # weight, bias, running mean and running variance per channel


class PhaseGridError(InvalidOptionError):
    """A phase spec whose grid (widths, batch sizes, seeds, epochs) cannot be trained."""


@dataclass(frozen=True)
class PhaseSpec(GridOptions, ImageSplitFields, LandscapeFields, ZooSpec):
    """One width of a phase-transition grid (a complete zoo).

    The image data set and its splits are the fields of :class:`ImageSplitFields` (here with
    images of 8 x 8 pixels by default, the digits' own size), the landscape's probes and curve
    steps those of :class:`LandscapeFields`.

    Attributes:
        grid: the grid's name (the specs of one grid differ only in ``width`` and ``name``).
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
        landscape_epochs: checkpoints ``finalize`` measures: ``"last"`` or ``"all"``.
        landscape_batches / landscape_batch_size: training batches the landscape loss uses.
        models: if set, only ``models`` models: the first, or a sample (``sample``).
    """

    family: str = FAMILY_NAME
    grid: str = ""
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
    landscape_epochs: str = "last"
    landscape_batches: int = 4
    landscape_batch_size: int = 128
    models: int | None = None

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
        data["load_factor"], data["temperature_factor"] = self.load_factor, self.temperature_factor
        return data

    def grid_models(self) -> int:
        """Models of this width's cells (ignoring ``models``)."""
        return len(self.batch_sizes) * self.seeds

    def checkpoints(self) -> list[int]:
        """Checkpoint epochs: 0, every ``checkpoint_every``, and the last."""
        every = range(self.checkpoint_every, self.epochs, self.checkpoint_every)
        return sorted({0, self.epochs, *every})

    def num_params(self) -> int:
        """Length of one row: :func:`network_params` of this zoo's network."""
        return network_params(
            self.architecture, self.width, self.in_channels, self.num_classes, self.image_size
        )

    def estimate(self) -> dict[str, int]:
        """Size of the zoo: models, checkpoints, params per row, and bytes of ``weights``."""
        return size_estimate(self.num_models(), len(self.checkpoints()), self.num_params())


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

    family: str = FAMILY_NAME
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
        """As :class:`GroupedSpec`, without ``base``'s machine path (``data_dir``).

        ``base`` also leaves out its fields at their default that are newer than the published
        grids (the sample's kind and seed), so that those grids keep their fingerprint.
        """
        assert self.base is not None
        data = super().to_dict()
        data["base"].pop("data_dir", None)
        own = self.base.to_dict()
        for name in self.base.omitted_at_default:
            if name not in own:
                data["base"].pop(name, None)
        return data

    def override(self, **options: Any) -> ZooSpec:
        """Apply ``--models`` (per group), ``--epochs`` and ``--data-dir`` to every group."""
        assert self.base is not None
        return dataclasses.replace(self, base=self.base.override(**options))


def phase_grid(grid: str, widths: Sequence[int], **fields: Any) -> PhaseGridSpec:
    """The grouped spec of grid ``grid``: every width of ``widths`` as a group."""
    return PhaseGridSpec(
        name=grid, base=width_spec(grid, widths[0], widths=tuple(widths), **fields)
    )


# ------------------------------------------------------------------ parameters, without torch
def _resnet50(in_channels: int, classes: int, width: int) -> int:
    """ResNet-50 with a 3x3 stem: convolutions, BatchNorm (with its statistics) and the head."""
    total = in_channels * 9 * width + _BATCH_NORM * width
    cin = width
    for scale, blocks, stride in RESNET50_STAGES:
        planes = width * scale
        cout = planes * BOTTLENECK_EXPANSION
        for k in range(blocks):
            total += (cin + 9 * planes + cout) * planes + _BATCH_NORM * (2 * planes + cout)
            if (k == 0 and stride != 1) or cin != cout:  # the projection shortcut
                total += cin * cout + _BATCH_NORM * cout
            cin = cout
    return total + (cin + 1) * classes


def _vit(dim: int, in_channels: int, classes: int, size: int) -> int:
    """The ViT: patch embedding, class token, positions, pre-norm blocks, norm and head."""
    hidden, tokens = VIT_MLP_RATIO * dim, (size // VIT_PATCH) ** 2
    embed = (in_channels * VIT_PATCH**2 + 1) * dim + dim + (tokens + 1) * dim
    # two LayerNorms, qkv, projection and the MLP's two layers, each with its bias
    block = 4 * dim + (dim + 1) * 4 * dim + (dim + 1) * hidden + (hidden + 1) * dim
    return embed + VIT_DEPTH * block + 2 * dim + (dim + 1) * classes


def network_params(
    architecture: str, width: int, in_channels: int, classes: int, image_size: int
) -> int:
    """Length of one row of a phase network, counted without building it.

    BatchNorm running statistics count (they are part of a row).

    Raises:
        PhaseGridError: for an unknown architecture.
    """
    if architecture == "cnn":
        spatial = image_size // 4  # two 2x2 max-pools
        convs = (in_channels * 9 + 1) * width + (width * 9 + 1) * 2 * width
        return convs + (2 * width * spatial * spatial + 1) * classes
    if architecture == "mlp":
        features = in_channels * image_size**2
        return (features + 1) * width + (width + 1) * (width + classes)
    if architecture == "resnet18":
        return resnet18_params(in_channels, classes, width)
    if architecture == "resnet50":
        return _resnet50(in_channels, classes, width)
    if architecture == "vit":
        return _vit(width, in_channels, classes, image_size)
    raise PhaseGridError(
        f"unknown phase architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}"
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
    # (datasets, architecture, widths, batch sizes, and what else differs)
    resnet = dict(epochs=150, checkpoint_every=10)
    vit = dict(epochs=300, checkpoint_every=20, lr=0.006)
    grids = [
        (tuple(_IMAGE), "resnet18", RESNET_WIDTHS, RESNET_BATCH_SIZES, resnet),
        (tuple(_IMAGE), "resnet50", RESNET_WIDTHS, RESNET_BATCH_SIZES, resnet),
        (("cifar10", "cifar100"), "vit", VIT_WIDTHS, VIT_BATCH_SIZES, vit),
    ]
    return [
        spec
        for datasets, architecture, widths, batch_sizes, training in grids
        for dataset in datasets
        for spec in grid_specs(
            f"phase-{dataset}-{architecture}",
            widths,
            dataset=dataset,
            architecture=architecture,
            batch_sizes=batch_sizes,
            in_channels=3,
            shard_models=1,
            **training,
            **_IMAGE[dataset],
        )
    ]


def _grids() -> dict[str, list[PhaseSpec]]:
    """Every named grid's width specs, by grid: the digits grids, then the paper's."""
    grids: dict[str, list[PhaseSpec]] = {}
    for spec in [*_digits_grids(), *_paper_grids()]:
        grids.setdefault(spec.grid, []).append(spec)
    return grids


def specs() -> list[ZooSpec]:
    """The named phase specs: every grid whole and width by width.

    Each grid is a grouped zoo ``<grid>`` and each of its widths a version-1 zoo
    ``<grid>-w<width>``: the digits grids, then the paper's ResNet and ViT grids.
    """
    grids = _grids()
    grouped = [PhaseGridSpec(name=grid, base=members[0]) for grid, members in grids.items()]
    return [*grouped, *(spec for members in grids.values() for spec in members)]


def listings() -> list[Listing]:
    """The catalog's lines: each grid, then its widths, with the image data set it reads."""
    out: list[Listing] = []
    for grid, members in _grids().items():
        base = members[0]
        what = f"Phase transitions: {base.architecture.upper()} on {base.dataset}"
        data = () if base.dataset == "digits" else (base.dataset,)
        summary = f"{what}, width x batch size x {base.seeds} seeds, one group per width"
        out.append(Listing(grid, summary, data))
        out += [Listing(spec.name, f"{what}, width {spec.width}", data) for spec in members]
    return out
