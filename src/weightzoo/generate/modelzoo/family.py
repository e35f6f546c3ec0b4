"""The Model Zoos (Table 1 of the Model Zoos paper) and trajectory zoos as specs and a family.

Two spec classes, one family implementation:

- :class:`ModelZooSpec` (family ``"modelzoo"``): CNN-s / CNN-m / ResNet-18 zoos, names
  ``modelzoo-<dataset>-<arch>-<config>`` with config ``seed``, ``hyp-10-rand``, ``hyp-10-fix``;
- :class:`TrajectorySpec` (family ``"trajectory"``): the MLP and CNN zoos of the trajectory
  paper on 14x14 greyscale images, names ``trajectory-<dataset>-<arch>``.

Models are ordered node-major: every node of the hyperparameter grid (product of activation,
dropout, init, optimizer, lr, weight decay, in that nesting order) followed by its seeds. Each
block the runner hands to :meth:`ModelZooFamily.train` is split into populations of models
sharing activation and optimizer, trained together by
:func:`~weightzoo.generate.modelzoo.population.train_population`. ResNet-18 models are trained
one at a time (SGD with a one-cycle schedule) on the same toolkit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from weightzoo.generate.base import ModelPlan, ModelRecord, ZooSpec
from weightzoo.storage.layout import Layout
from weightzoo.tasks.images import load_splits

MODELZOO_DATASETS = (
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
SEED_DRAW_RANGE = 1_000_000


@dataclass(frozen=True)
class _CommonSpec(ZooSpec):
    """Fields shared by Model Zoos and trajectory specs.

    Attributes:
        dataset: name for :func:`weightzoo.tasks.imagedata.load_image_data`.
        architecture: ``cnn-s``, ``cnn-m``, ``resnet18``, ``mlp`` or ``cnn``.
        image_size: side the images are resized to.
        in_channels: image channels the network takes (1 = greyscale).
        num_classes: classes of the dataset.
        activations / dropouts / inits / optimizers / lrs / weight_decays: the grid axes;
            one value each for a Seed zoo.
        seeds_per_node: models per grid node.
        seed_mode: ``"fixed"`` (seeds ``seed_start .. seed_start + seeds_per_node - 1`` at every
            node) or ``"random"`` (distinct seeds drawn from ``[0, 1e6)`` by ``seed_draw_seed``).
        seed_start: first seed of ``"fixed"``.
        seed_draw_seed: seed of the random draw of ``"random"``.
        models: if set, only the first ``models`` models of the order (``--models``).
        epochs: training epochs; checkpoints are epochs ``0 .. epochs``.
        batch_size: per-model batch size.
        momentum: SGD momentum.
        loss: ``"ce"`` (cross-entropy) or ``"mse"`` (on one-hot targets).
        val_fraction: fraction of the official training set held out as validation split.
        data_seed: seed of the train/validation split of the images.
        data_dir: where the image data lives; not part of the spec's identity (excluded from
            :meth:`to_dict`, the fingerprint and equality), given at generate time.
    """

    dataset: str = "digits"
    architecture: str = "cnn-s"
    image_size: int = 28
    in_channels: int = 1
    num_classes: int = 10
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
    loss: str = "ce"
    val_fraction: float = 0.15
    data_seed: int = 42
    data_dir: str | None = field(default=None, compare=False)

    kind: ClassVar[str] = "common"

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON data, without ``data_dir`` (a machine's path is not identity)."""
        data = super().to_dict()
        data.pop("data_dir", None)
        return data

    def override(
        self,
        models: int | None = None,
        epochs: int | None = None,
        data_dir: str | None = None,
        **rest: Any,
    ) -> ZooSpec:
        """Apply ``--models``, ``--epochs`` and ``--data-dir``.

        Args:
            models: keep the first ``models`` models of the spec's order.
            epochs: train this many epochs instead.
            data_dir: directory of the image data.
            **rest: anything else; non-None values are rejected.

        Raises:
            ValueError: for an unknown option, or a non-positive count.
        """
        ZooSpec.override(self, **rest)
        changes: dict[str, Any] = {}
        if models is not None:
            if int(models) < 1:
                raise ValueError(f"--models must be at least 1, got {models}")
            changes["models"] = min(int(models), self.grid_models())
        if epochs is not None:
            if int(epochs) < 1:
                raise ValueError(f"--epochs must be at least 1, got {epochs}")
            changes["epochs"] = int(epochs)
        if data_dir is not None:
            changes["data_dir"] = str(data_dir)
        return dataclasses.replace(self, **changes) if changes else self

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

    def num_models(self) -> int:
        """Models of this spec (``models`` if set)."""
        full = self.grid_models()
        return full if self.models is None else min(self.models, full)

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

    def num_params(self) -> int:
        """Length of one flattened row (parameters plus stored buffers)."""
        return family(self.family).layout(self).num_params

    def estimate(self) -> dict[str, int]:
        """Size of the zoo: models, checkpoints, params per row, and bytes of ``weights``."""
        models = self.num_models()
        checkpoints = self.epochs + 1
        params = self.num_params()
        return {
            "models": models,
            "checkpoints": checkpoints,
            "params": params,
            "bytes": models * checkpoints * params * 4,
        }


@dataclass(frozen=True)
class ModelZooSpec(_CommonSpec):
    """A zoo of the Model Zoos paper (Table 1).

    Attributes:
        config: ``"seed"``, ``"hyp-10-rand"`` or ``"hyp-10-fix"``.
        lr_schedule: ``"constant"`` or ``"onecycle"`` (ResNet-18: ``lrs`` is the max lr).
        augment: random crop (padding 4) and horizontal flip of training batches (ResNet-18).
    """

    family: str = "modelzoo"
    config: str = "seed"
    lr_schedule: str = "constant"
    augment: bool = False

    kind: ClassVar[str] = "modelzoo"


@dataclass(frozen=True)
class TrajectorySpec(_CommonSpec):
    """A zoo of the trajectory paper: one hyperparameter set, 250 seeds, SGD on MSE.

    Attributes:
        hidden: MLP hidden width.
        conv_channels: output channels of the CNN's two convs.
        bias: whether layers have biases (the paper's weight-space sizes count none).
    """

    family: str = "trajectory"
    hidden: int = 10
    conv_channels: tuple[int, int] = (16, 8)
    bias: bool = True

    kind: ClassVar[str] = "trajectory"


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
                activations=(node["act"],),
                inits=(node["init"],),
                optimizers=("adam",),
                lrs=(node["lr"],),
                weight_decays=(node["wd"],),
                dropouts=(0.0,),
                seeds_per_node=1000,
                seed_mode="fixed",
                **base,
            )
        )
        grid = _HYP_GRIDS[(dataset, arch)]
        for config, mode in (("hyp-10-rand", "random"), ("hyp-10-fix", "fixed")):
            if dataset == "digits" and config == "hyp-10-fix":
                continue
            out.append(
                ModelZooSpec(
                    name=f"modelzoo-{dataset}-{arch}-{config}",
                    config=config,
                    activations=HYP_ACTIVATIONS,
                    dropouts=grid["drops"],
                    inits=HYP_INITS,
                    optimizers=HYP_OPTIMIZERS,
                    lrs=grid["lrs"],
                    weight_decays=grid["wds"],
                    seeds_per_node=10,
                    seed_mode=mode,
                    seed_draw_seed=_name_seed(f"modelzoo-{dataset}-{arch}-{config}"),
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
                activations=("relu",),
                inits=("kaiming_uniform",),
                optimizers=("sgd",),
                lrs=(0.1,),
                weight_decays=(5e-4,),
                dropouts=(0.0,),
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
                    image_size=14,
                    in_channels=1,
                    num_classes=10,
                    activations=(setup["act"],),
                    inits=("kaiming_normal",),
                    optimizers=("sgd",),
                    lrs=(setup["lr"],),
                    weight_decays=(setup["wd"],),
                    dropouts=(0.0,),
                    seeds_per_node=250,
                    seed_mode="fixed",
                    batch_size=setup["batch"],
                    loss=setup["loss"],
                    shard_models=250,
                )
            )
    return out


def _name_seed(name: str) -> int:
    """A stable 32-bit seed derived from a spec name (for the Hyp-10-rand seed draw)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def specs() -> list[ZooSpec]:
    """Every named Model Zoos and trajectory spec."""
    return [*_modelzoo_specs(), *_trajectory_specs()]


# ------------------------------------------------------------------------------ the family
def build_model(spec: _CommonSpec, activation: str, dropout: float = 0.0):
    """The (uninitialised) network of ``spec`` with the given activation and dropout.

    Raises:
        UnbuildableSpecError: for an unknown architecture.
    """
    from weightzoo.architectures import build_model as build

    return build(spec.to_dict(), {"activation": activation, "dropout": dropout})


# The splits live with the data (below the generator), where evaluation finds them too; the
# name stays here so that callers (and tests) can substitute smaller splits for generation.
_load_splits = load_splits


class ModelZooFamily:
    """The :class:`~weightzoo.generate.base.Family` of Model Zoos and trajectory specs.

    Args:
        name: ``"modelzoo"`` or ``"trajectory"``.
    """

    def __init__(self, name: str = "modelzoo") -> None:
        self.name = name

    def layout(self, spec: ZooSpec) -> Layout:
        """Layout of one row: the network's parameters (and ResNet-18's BN running stats)."""
        assert isinstance(spec, _CommonSpec)
        return _layout(spec.architecture, _arch_key(spec))

    def checkpoint_epochs(self, spec: ZooSpec) -> list[int]:
        """Epochs 0 (before training) to ``spec.epochs``."""
        assert isinstance(spec, _CommonSpec)
        return list(range(spec.epochs + 1))

    def metric_names(self, spec: ZooSpec) -> list[str]:
        """train/val/test loss and accuracy, and ``ggap`` = train_acc - test_acc."""
        from weightzoo.generate.modelzoo.population import METRICS  # torch: only when training

        return list(METRICS)

    def plan(self, spec: ZooSpec) -> list[ModelPlan]:
        """One plan per model: node-major grid order, seeds inner; stratum = node."""
        assert isinstance(spec, _CommonSpec)
        nodes = spec.nodes()
        seeds = spec.seed_table()
        seed_zoo = spec.is_seed_zoo
        plans: list[ModelPlan] = []
        for model_id in range(spec.num_models()):
            node_id, k = divmod(model_id, spec.seeds_per_node)
            node = nodes[node_id]
            stratum = "" if seed_zoo else _node_key(node)
            columns = {**node, "node": node_id}
            plans.append(ModelPlan(model_id, int(seeds[node_id, k]), stratum, columns))
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
        """Train ``plans`` in populations of equal activation and optimizer.

        ``on_epoch(models, None)`` is called after every epoch of every population.
        """
        assert isinstance(spec, _CommonSpec)
        train = _train_singles if spec.architecture == "resnet18" else _train_populations
        return train(spec, plans, device=device, progress=progress, on_epoch=on_epoch)


_ARCH_FIELDS = ("architecture", "in_channels", "num_classes", "image_size", "hidden", "bias")


def _arch_key(spec: _CommonSpec) -> tuple:
    """What the layout depends on (not the grid's activations or rates)."""
    fields = tuple(getattr(spec, f, None) for f in _ARCH_FIELDS)
    return (*fields, tuple(getattr(spec, "conv_channels", (16, 8))))


@lru_cache(maxsize=64)
def _layout(architecture: str, key: tuple) -> Layout:
    """:func:`weightzoo.features.layout_of` of the architecture (cached: ResNet-18 is big)."""
    from weightzoo.architectures import build_model as build
    from weightzoo.features import layout_of

    spec = dict(zip(_ARCH_FIELDS, key[:-1], strict=True))
    spec |= {"family": "modelzoo", "conv_channels": list(key[-1]), "activations": ["relu"]}
    spec = {k: v for k, v in spec.items() if v is not None}
    return layout_of(build(spec))


def _node_key(node: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in node.items())


def _make_model(spec: _CommonSpec, plan: ModelPlan):
    import torch

    from weightzoo.architectures.image import init_weights

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(plan.seed)
        model = build_model(spec, plan.columns["activation"], plan.columns["dropout"])
        init_weights(model, plan.columns["init"])
    return model


def _device_splits(spec: _CommonSpec, device: str):
    import torch

    from weightzoo.generate.modelzoo.population import Split

    grayscale = spec.in_channels == 1
    arrays = _load_splits(
        spec.dataset,
        spec.data_dir,
        spec.image_size,
        grayscale,
        spec.val_fraction,
        spec.data_seed,
    )
    return [
        Split(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)) for x, y in arrays
    ]


def _epoch_reporter(bar, on_epoch, models: int) -> Callable[[int], None]:
    """A population's per-epoch callback: the step bar, and ``on_epoch(models, None)``."""

    def report(steps: int) -> None:
        bar.update(steps)
        if on_epoch is not None:
            on_epoch(models, None)

    return report


def _train_populations(
    spec: _CommonSpec,
    plans: Sequence[ModelPlan],
    *,
    device: str,
    progress: bool,
    on_epoch: Callable[[int, int | None], None] | None = None,
) -> list[ModelRecord]:
    from tqdm.auto import tqdm

    from weightzoo.generate.modelzoo.population import train_population

    train, val, test = _device_splits(spec, device)
    groups: dict[tuple[str, str], list[ModelPlan]] = {}
    for plan in plans:
        key = (plan.columns["activation"], plan.columns["optimizer"])
        groups.setdefault(key, []).append(plan)
    names = _layout(spec.architecture, _arch_key(spec)).names
    steps = math.ceil(train.x.shape[0] / spec.batch_size) * spec.epochs * len(groups)
    bar = tqdm(total=steps, disable=not progress, desc=spec.name, unit="step", leave=False)
    records: dict[int, ModelRecord] = {}
    for (_activation, optimizer), members in groups.items():
        models = [_make_model(spec, p) for p in members]
        result = train_population(
            models,
            [p.seed for p in members],
            train=train,
            val=val,
            test=test,
            optimizer=optimizer,
            lr=[p.columns["lr"] for p in members],
            weight_decay=[p.columns["weight_decay"] for p in members],
            dropout=[p.columns["dropout"] for p in members],
            batch_size=spec.batch_size,
            epochs=spec.epochs,
            names=names,
            loss=spec.loss,
            momentum=spec.momentum,
            device=device,
            noise_seed=_name_seed(f"{spec.name}:{members[0].model_id}:{len(members)}"),
            progress=_epoch_reporter(bar, on_epoch, len(members)),
        )
        for i, plan in enumerate(members):
            records[plan.model_id] = ModelRecord(
                model_id=plan.model_id,
                weights=result.weights[i],
                metrics={k: v[i] for k, v in result.metrics.items()},
                columns={"device": str(device), "population": len(members)},
            )
    bar.close()
    return [records[p.model_id] for p in plans]


def _train_singles(
    spec: _CommonSpec,
    plans: Sequence[ModelPlan],
    *,
    device: str,
    progress: bool,
    on_epoch: Callable[[int, int | None], None] | None = None,
) -> list[ModelRecord]:
    """ResNet-18: one model at a time (a population of one, BatchNorm on the loop path)."""
    from tqdm.auto import tqdm

    from weightzoo.generate.modelzoo.population import train_population

    train, val, test = _device_splits(spec, device)
    names = _layout(spec.architecture, _arch_key(spec)).names
    steps = math.ceil(train.x.shape[0] / spec.batch_size) * spec.epochs * len(plans)
    bar = tqdm(total=steps, disable=not progress, desc=spec.name, unit="step", leave=False)
    records = []
    for plan in plans:
        result = train_population(
            [_make_model(spec, plan)],
            [plan.seed],
            train=train,
            val=val,
            test=test,
            optimizer=plan.columns["optimizer"],
            lr=[plan.columns["lr"]],
            weight_decay=[plan.columns["weight_decay"]],
            batch_size=spec.batch_size,
            epochs=spec.epochs,
            names=names,
            loss=spec.loss,
            momentum=spec.momentum,
            schedule=getattr(spec, "lr_schedule", "constant"),
            augment=getattr(spec, "augment", False),
            device=device,
            path="loop",
            noise_seed=plan.seed,
            eval_batch=500,
            progress=_epoch_reporter(bar, on_epoch, 1),
        )
        records.append(
            ModelRecord(
                model_id=plan.model_id,
                weights=result.weights[0],
                metrics={k: v[0] for k, v in result.metrics.items()},
                columns={"device": str(device), "population": 1},
            )
        )
    bar.close()
    return records


def family(name: str = "modelzoo") -> ModelZooFamily:
    """The family object for ``"modelzoo"`` or ``"trajectory"``.

    Raises:
        ValueError: for another name.
    """
    if name not in ("modelzoo", "trajectory"):
        raise ValueError(f"this module trains modelzoo and trajectory zoos, not {name!r}")
    return ModelZooFamily(name)
