"""The Model Zoos (Table 1 of the Model Zoos paper) and trajectory zoos as specs and listings.

Two spec classes, one package:

- :class:`ModelZooSpec` (family ``"modelzoo"``): CNN-s / CNN-m / ResNet-18 zoos, names
  ``modelzoo-<dataset>-<arch>-<config>`` with config ``seed``, ``hyp-10-rand``, ``hyp-10-fix``
  (Schürholt, Taskiran, Knyazev, Giró-i-Nieto, Borth, *Model Zoos: A Dataset of Diverse
  Populations of Neural Network Models*, arXiv:2209.14764);
- :class:`TrajectorySpec` (family ``"trajectory"``): the MLP and CNN zoos of the trajectory
  paper on 14x14 greyscale images, names ``trajectory-<dataset>-<arch>``.

Models are ordered node-major: every node of the hyperparameter grid (product of activation,
dropout, init, optimizer, lr, weight decay, in that nesting order) followed by its seeds.

This module imports no torch: the parameter count of each architecture is counted here
(:func:`num_params`), so that listing and sizing the zoos is cheap.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from weightzoo.families import Listing
from weightzoo.families._fields import ImageSplitFields
from weightzoo.generate.base import GridOptions, ZooSpec, size_estimate

__all__ = [
    "DATASETS",
    "FAMILY_NAME",
    "METRICS",
    "TRAJECTORY_NAME",
    "ModelZooSpec",
    "TrajectorySpec",
    "listings",
    "name_seed",
    "num_params",
    "specs",
]

FAMILY_NAME = "modelzoo"
"""The registry name of the Model Zoos family, as its manifests record it."""
TRAJECTORY_NAME = "trajectory"
"""The registry name of the trajectory family, as its manifests record it."""

DATASETS = (
    "mnist",
    "fashion-mnist",
    "svhn",
    "usps",
    "cifar10",
    "stl10",
    "cifar100",
    "tiny-imagenet",
    "digits",
)
"""The image data sets of the named zoos."""
SEED_DRAW_RANGE = 1_000_000
"""Seeds of a ``"random"`` seed table are drawn from ``[0, SEED_DRAW_RANGE)``."""

METRICS = (
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "ggap",
)
"""Per-checkpoint metrics: losses, accuracies in [0, 1], ggap = train_acc - test_acc."""


@dataclass(frozen=True)
class _CommonSpec(GridOptions, ImageSplitFields, ZooSpec):
    """Fields shared by Model Zoos and trajectory specs, besides those of :class:`ImageSplitFields`.

    Attributes:
        architecture: ``cnn-s``, ``cnn-m``, ``resnet18``, ``mlp`` or ``cnn``.
        activations / dropouts / inits / optimizers / lrs / weight_decays: the grid axes;
            one value each for a Seed zoo.
        seeds_per_node: models per grid node.
        seed_mode: ``"fixed"`` (seeds ``seed_start .. seed_start + seeds_per_node - 1`` at every
            node) or ``"random"`` (distinct seeds drawn from ``[0, 1e6)`` by ``seed_draw_seed``).
        seed_start: first seed of ``"fixed"``.
        seed_draw_seed: seed of the random draw of ``"random"``.
        models: if set, only ``models`` models: the first, or a sample (``sample``).
        epochs: training epochs; checkpoints are epochs ``0 .. epochs``.
        batch_size: per-model batch size.
        momentum: SGD momentum.
    """

    architecture: str = "cnn-s"
    activations: tuple[str, ...] = ("tanh",)
    dropouts: tuple[float, ...] = (0.0,)
    inits: tuple[str, ...] = ("uniform",)
    optimizers: tuple[str, ...] = ("adam",)
    lrs: tuple[float, ...] = (3e-4,)
    weight_decays: tuple[float, ...] = (0.0,)
    seeds_per_node: int = 1000
    seed_mode: str = "fixed"
    seed_start: int = 1
    seed_draw_seed: int = 42
    models: int | None = None
    epochs: int = 50
    batch_size: int = 10
    momentum: float = 0.9

    kind: ClassVar[str] = "common"

    # ----------------------------------------------------------------- grid and seeds
    @property
    def is_seed_zoo(self) -> bool:
        """Whether the grid has a single node (a Seed zoo)."""
        return len(self.nodes()) == 1

    def nodes(self) -> list[dict[str, Any]]:
        """The grid nodes, in model order."""
        return [
            {
                "activation": act,
                "dropout": float(drop),
                "init": init,
                "optimizer": opt,
                "lr": float(lr),
                "weight_decay": float(wd),
            }
            for act, drop, init, opt, lr, wd in itertools.product(
                self.activations,
                self.dropouts,
                self.inits,
                self.optimizers,
                self.lrs,
                self.weight_decays,
            )
        ]

    def grid_models(self) -> int:
        """Models of the full grid (ignoring ``models``)."""
        return len(self.nodes()) * self.seeds_per_node

    def seed_table(self) -> np.ndarray:
        """Seeds ``[nodes, seeds_per_node]`` (int64).

        Raises:
            ValueError: for an unknown ``seed_mode``.
        """
        count = len(self.nodes())
        if self.seed_mode == "fixed":
            row = np.arange(self.seed_start, self.seed_start + self.seeds_per_node)
            return np.tile(row, (count, 1)).astype(np.int64)
        if self.seed_mode == "random":
            rng = np.random.default_rng(self.seed_draw_seed)
            draw = rng.choice(SEED_DRAW_RANGE, size=count * self.seeds_per_node, replace=False)
            return draw.reshape(count, self.seeds_per_node).astype(np.int64)
        raise ValueError(f"unknown seed_mode {self.seed_mode!r}; known: fixed, random")

    def checkpoint_epochs(self) -> list[int]:
        """Epochs 0 (before training) to ``epochs``."""
        return list(range(self.epochs + 1))

    def num_params(self) -> int:
        """Length of one flattened row (parameters plus stored buffers), without torch."""
        return num_params(self.to_dict())

    def estimate(self) -> dict[str, int]:
        """Size of the zoo: models, checkpoints, params per row, and bytes of ``weights``."""
        return size_estimate(self.num_models(), len(self.checkpoint_epochs()), self.num_params())


@dataclass(frozen=True)
class ModelZooSpec(_CommonSpec):
    """A zoo of the Model Zoos paper (Table 1).

    Attributes:
        config: ``"seed"``, ``"hyp-10-rand"`` or ``"hyp-10-fix"``.
        lr_schedule: ``"constant"`` or ``"onecycle"`` (ResNet-18: ``lrs`` is the max lr).
        augment: random crop (padding 4) and horizontal flip of training batches (ResNet-18).
    """

    family: str = FAMILY_NAME
    config: str = "seed"
    lr_schedule: str = "constant"
    augment: bool = False

    kind: ClassVar[str] = FAMILY_NAME


@dataclass(frozen=True)
class TrajectorySpec(_CommonSpec):
    """A zoo of the trajectory paper: one hyperparameter set, 250 seeds, SGD on MSE.

    Attributes:
        hidden: MLP hidden width.
        conv_channels: output channels of the CNN's two convs.
        bias: whether layers have biases (the paper's weight-space sizes count none).
    """

    family: str = TRAJECTORY_NAME
    hidden: int = 10
    conv_channels: tuple[int, int] = (16, 8)
    bias: bool = True

    kind: ClassVar[str] = TRAJECTORY_NAME


# ------------------------------------------------------------------ parameters, without torch
# architecture -> (conv channels, conv kernels, inputs of the first linear layer); Table 4 of
# the Model Zoos paper, as weightzoo.architectures.image builds CNN-s and CNN-m
_CNNS: dict[str, tuple[tuple[int, ...], tuple[int, ...], int]] = {
    "cnn-s": ((8, 6, 4), (5, 5, 2), 36),
    "cnn-m": ((16, 32, 15), (3, 3, 3), 60),
}
_CNN_HIDDEN = 20
_BATCH_NORM = 4  # weight, bias, running mean and running variance per channel


def _cnn(architecture: str, in_channels: int, classes: int) -> int:
    channels, kernels, flat = _CNNS[architecture]
    widths = (in_channels, *channels)
    layers = zip(itertools.pairwise(widths), kernels, strict=True)
    convs = sum((a * k * k + 1) * b for (a, b), k in layers)
    return convs + (flat + 1) * _CNN_HIDDEN + (_CNN_HIDDEN + 1) * classes


def resnet18_params(in_channels: int, classes: int, width: int = 64) -> int:
    """ResNet-18 with a 3x3 stem: convolutions, BatchNorm (with its statistics) and the head."""
    total = in_channels * 9 * width + _BATCH_NORM * width
    cin = width
    for scale, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
        cout = width * scale
        for block_in, block_stride in ((cin, stride), (cout, 1)):
            total += (block_in + cout) * 9 * cout + 2 * _BATCH_NORM * cout
            if block_stride != 1 or block_in != cout:  # the projection shortcut
                total += block_in * cout + _BATCH_NORM * cout
        cin = cout
    return total + (8 * width + 1) * classes


def _trajectory_cnn(spec: Mapping[str, Any], in_channels: int, classes: int, bias: int) -> int:
    first, second = (int(c) for c in spec.get("conv_channels", (16, 8)))
    spatial = int(spec["image_size"])
    for _ in range(2):  # conv k3 s2 p1, then max-pool 2
        spatial = ((spatial + 2 - 3) // 2 + 1) // 2
    convs = (in_channels * 9 + bias) * first + (first * 9 + bias) * second
    return convs + (second * spatial * spatial + bias) * classes


def num_params(spec: Mapping[str, Any]) -> int:
    """Length of one row of a spec dict's network, counted without building it.

    Raises:
        ValueError: for an unknown architecture.
    """
    architecture = spec.get("architecture")
    in_channels, classes = int(spec["in_channels"]), int(spec["num_classes"])
    bias = int(bool(spec.get("bias", True)))
    if architecture in _CNNS:
        return _cnn(str(architecture), in_channels, classes)
    if architecture == "resnet18":
        return resnet18_params(in_channels, classes)
    if architecture == "mlp":
        hidden = int(spec.get("hidden", 10))
        features = in_channels * int(spec["image_size"]) ** 2
        return (features + bias) * hidden + (hidden + bias) * (hidden + classes)
    if architecture == "cnn":
        return _trajectory_cnn(spec, in_channels, classes, bias)
    raise ValueError(
        f"unknown architecture {architecture!r}; known: cnn-s, cnn-m, resnet18, mlp, cnn"
    )


# ------------------------------------------------------------------------- the named specs
HYP_ACTIVATIONS = ("tanh", "relu", "sigmoid", "gelu")
HYP_INITS = ("uniform", "normal", "kaiming_uniform", "kaiming_normal")
HYP_OPTIMIZERS = ("adam", "sgd")

# dataset -> arch -> (seed-zoo node, hyp-grid deviations). Readings of Table 1 in docs.
_SEED_NODES: dict[tuple[str, str], dict[str, Any]] = {
    ("mnist", "cnn-s"): dict(init="uniform", act="tanh", lr=3e-4, wd=0.0),
    ("fashion-mnist", "cnn-s"): dict(init="uniform", act="tanh", lr=3e-4, wd=0.0),
    ("svhn", "cnn-s"): dict(init="uniform", act="tanh", lr=3e-3, wd=0.0),
    ("usps", "cnn-s"): dict(init="uniform", act="tanh", lr=3e-4, wd=1e-3),
    ("cifar10", "cnn-s"): dict(init="kaiming_uniform", act="gelu", lr=1e-4, wd=1e-2),
    ("cifar10", "cnn-m"): dict(init="kaiming_uniform", act="gelu", lr=1e-4, wd=1e-2),
    ("stl10", "cnn-s"): dict(init="kaiming_uniform", act="tanh", lr=1e-4, wd=1e-3),
    ("stl10", "cnn-m"): dict(init="kaiming_uniform", act="tanh", lr=1e-4, wd=1e-3),
    # digits: lr 1e-3 instead of MNIST's 3e-4 (docs/modelzoo.md, "Digits settings")
    ("digits", "cnn-s"): dict(init="uniform", act="tanh", lr=1e-3, wd=0.0),
}
_HYP_GRIDS: dict[tuple[str, str], dict[str, tuple[float, ...]]] = {
    ("mnist", "cnn-s"): dict(lrs=(1e-3, 1e-4), wds=(1e-3, 1e-4), drops=(0.0, 0.5)),
    ("fashion-mnist", "cnn-s"): dict(lrs=(1e-3, 1e-4), wds=(1e-3, 1e-4), drops=(0.0, 0.5)),
    ("svhn", "cnn-s"): dict(lrs=(1e-3, 1e-4), wds=(1e-3, 1e-4, 0.0), drops=(0.0, 0.3, 0.5)),
    ("usps", "cnn-s"): dict(lrs=(1e-3, 1e-4), wds=(1e-2, 1e-3), drops=(0.0, 0.5)),
    ("cifar10", "cnn-s"): dict(lrs=(1e-3,), wds=(1e-2, 1e-3), drops=(0.0, 0.5)),
    ("cifar10", "cnn-m"): dict(lrs=(1e-3,), wds=(1e-2, 1e-3), drops=(0.0, 0.5)),
    ("stl10", "cnn-s"): dict(lrs=(1e-3, 1e-4), wds=(1e-2, 1e-3), drops=(0.0, 0.5)),
    ("stl10", "cnn-m"): dict(lrs=(1e-3, 1e-4), wds=(1e-2, 1e-3), drops=(0.0, 0.5)),
    # digits: lrs 10x MNIST's, dropout 0.1 for 0.5 (docs/modelzoo.md, "Digits settings")
    ("digits", "cnn-s"): dict(lrs=(1e-2, 1e-3), wds=(1e-3, 1e-4), drops=(0.0, 0.1)),
}
_CHANNELS = {"mnist": 1, "fashion-mnist": 1, "usps": 1, "digits": 1}
_CLASSES = {"cifar100": 100, "tiny-imagenet": 200}
_CNN_BATCH = 10
_CNN_SIZE = {"cnn-s": 28, "cnn-m": 32}
# Table 1 trains 50 epochs; the digits zoos converge sooner (docs/modelzoo.md).
_CNN_EPOCHS = {"digits": 20}


def _one_node(activation: str, init: str, optimizer: str, lr: float, wd: float) -> dict[str, Any]:
    """The grid axes of a spec with one node (no dropout): a Seed zoo's, a trajectory zoo's."""
    return {
        "activations": (activation,),
        "inits": (init,),
        "optimizers": (optimizer,),
        "lrs": (lr,),
        "weight_decays": (wd,),
        "dropouts": (0.0,),
    }


def _hyp_grid(dataset: str, arch: str) -> dict[str, Any]:
    """The grid axes of a Hyp-10 zoo of a data set and architecture.

    Every activation, init and optimizer of Table 1, with the learning rates, weight decays and
    dropouts of that data set and architecture (:data:`_HYP_GRIDS`).
    """
    grid = _HYP_GRIDS[(dataset, arch)]
    return {
        "activations": HYP_ACTIVATIONS,
        "inits": HYP_INITS,
        "optimizers": HYP_OPTIMIZERS,
        "lrs": grid["lrs"],
        "weight_decays": grid["wds"],
        "dropouts": grid["drops"],
    }


def _modelzoo_specs() -> list[ModelZooSpec]:
    out: list[ModelZooSpec] = []
    for (dataset, arch), node in _SEED_NODES.items():
        base = dict(
            dataset=dataset,
            architecture=arch,
            image_size=_CNN_SIZE[arch],
            in_channels=_CHANNELS.get(dataset, 3),
            num_classes=10,
            batch_size=_CNN_BATCH,
            epochs=_CNN_EPOCHS.get(dataset, 50),
        )
        out.append(
            ModelZooSpec(
                name=f"modelzoo-{dataset}-{arch}-seed",
                config="seed",
                **_one_node(node["act"], node["init"], "adam", node["lr"], node["wd"]),
                seeds_per_node=1000,
                seed_mode="fixed",
                **base,
            )
        )
        for config, mode in (("hyp-10-rand", "random"), ("hyp-10-fix", "fixed")):
            if dataset == "digits" and config == "hyp-10-fix":
                continue
            name = f"modelzoo-{dataset}-{arch}-{config}"
            out.append(
                ModelZooSpec(
                    name=name,
                    config=config,
                    **_hyp_grid(dataset, arch),
                    seeds_per_node=10,
                    seed_mode=mode,
                    seed_draw_seed=name_seed(name),
                    **base,
                )
            )
    for dataset, epochs, batch in (
        ("cifar10", 50, 256),
        ("cifar100", 60, 128),
        ("tiny-imagenet", 60, 128),
    ):
        out.append(
            ModelZooSpec(
                name=f"modelzoo-{dataset}-resnet18-seed",
                dataset=dataset,
                architecture="resnet18",
                config="seed",
                image_size=64 if dataset == "tiny-imagenet" else 32,
                in_channels=3,
                num_classes=_CLASSES.get(dataset, 10),
                **_one_node("relu", "kaiming_uniform", "sgd", 0.1, 5e-4),
                seeds_per_node=1000,
                epochs=epochs,
                batch_size=batch,
                lr_schedule="onecycle",
                augment=True,
                shard_models=1,
            )
        )
    return out


# The trajectory paper's Table 1 (SGD with momentum 0.9 on MSE, both nets).
_TRAJECTORY_SETUPS: dict[str, dict[str, Any]] = {
    "mlp": dict(act="sigmoid", lr=0.03, wd=3e-4, batch=4, loss="mse"),
    "cnn": dict(act="leaky_relu", lr=3e-4, wd=0.1, batch=12, loss="mse"),
}
# Digits deviations, chosen by the sweeps in docs/trajectories.md: with lr 3e-4 and weight
# decay 0.1 the CNN stays near chance, and SGD on MSE through its 8-feature bottleneck ends
# below 0.65 at any lr; the MLP at lr 0.03 ends just under 0.9 after 50 epochs.
_TRAJECTORY_DIGITS: dict[str, dict[str, Any]] = {
    "mlp": dict(lr=0.1),
    "cnn": dict(lr=0.01, wd=1e-3, loss="ce"),
}


# Every trajectory zoo: 250 seeds of one setup on 14x14 greyscale images, one block.
_TRAJECTORY_ZOO: dict[str, Any] = dict(
    image_size=14, in_channels=1, num_classes=10, seeds_per_node=250, shard_models=250
)


def _trajectory_specs() -> list[TrajectorySpec]:
    out: list[TrajectorySpec] = []
    for dataset in ("mnist", "digits"):
        for arch, paper in _TRAJECTORY_SETUPS.items():
            setup = {**paper, **_TRAJECTORY_DIGITS.get(arch, {})} if dataset == "digits" else paper
            out.append(
                TrajectorySpec(
                    name=f"trajectory-{dataset}-{arch}",
                    dataset=dataset,
                    architecture=arch,
                    **_one_node(setup["act"], "kaiming_normal", "sgd", setup["lr"], setup["wd"]),
                    batch_size=setup["batch"],
                    loss=setup["loss"],
                    **_TRAJECTORY_ZOO,
                )
            )
    return out


def name_seed(name: str) -> int:
    """A stable 32-bit seed derived from a name (the Hyp-10-rand seed draw, dropout noise)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def specs() -> list[ZooSpec]:
    """Every named Model Zoos and trajectory spec."""
    return [*_modelzoo_specs(), *_trajectory_specs()]


def _summary(spec: _CommonSpec) -> str:
    what = f"{spec.architecture.upper()} on {spec.dataset}"
    if isinstance(spec, ModelZooSpec):
        return f"Model Zoos: {what}, {spec.config} configuration"
    return f"Training trajectories: {what}, every epoch"


def listings() -> list[Listing]:
    """The catalog's lines: each named zoo, with the image data set it reads (digits ships)."""
    return [
        Listing(
            spec.name,
            _summary(spec),
            () if spec.dataset == "digits" else (spec.dataset,),
            spec.family,
        )
        for spec in [*_modelzoo_specs(), *_trajectory_specs()]
    ]
