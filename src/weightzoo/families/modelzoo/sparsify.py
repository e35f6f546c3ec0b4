"""Sparsified twins: variational-dropout sparsification of the models of a trained zoo.

The Model Zoos paper adds to each zoo a *sparsified twin*: every trained model is sparsified
with Variational Dropout (VD; Molchanov, Ashukha and Vetrov, ICML 2017) for 25 epochs, and the
sparsity, the accuracy and the sparsified weights are recorded along the way. Here:

- each conv / linear weight ``theta`` gets a learned log-variance ``log_sigma2`` (initialised
  to -10, i.e. almost no noise); ``log_alpha = log_sigma2 - log(theta**2)``;
- training uses the local reparameterisation trick (the pre-activations are sampled:
  ``mu = f(x, theta)``, ``var = f(x**2, sigma**2)``) and minimises the per-sample ELBO
  ``loss(source loss) + beta * KL / N_train`` with Molchanov's approximation of the KL term and
  ``beta`` ramped linearly from 0 to 1 over the first ``kl_warmup`` epochs;
- a weight counts as pruned where ``log_alpha > threshold`` (3, dropout rate above 0.95);
  checkpoints store the *masked* ``theta`` (pruned weights are exactly 0, biases are kept) in the
  source's layout, so the twin is a zoo in the standard format with the same layout;
- checkpoint 0 is the source model itself (the source zoo's last checkpoint), then one per
  sparsification epoch; ``sparsity`` (the share of conv / linear weights that are zero) is a
  metric next to the usual train/val/test loss and accuracy of the masked, deterministic net.

Models sharing an activation are sparsified together as a population (``torch.func.vmap`` over
stacked parameters, each model with its own data order and noise). Writing goes through
:class:`~weightzoo.storage.writer.ZooWriter`: shards are atomic, and rerunning
:func:`sparsify_zoo` with the same source and settings resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import math
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import vmap
from torch.nn import functional as F
from tqdm.auto import tqdm

from weightzoo.architectures.image import RateDropout
from weightzoo.blocks import STATS_PRESET, ModelRecord, write_block
from weightzoo.errors import WeightzooError
from weightzoo.families.modelzoo import model
from weightzoo.families.modelzoo.data import Split, device_splits
from weightzoo.families.modelzoo.spec import METRICS, ModelZooSpec, TrajectorySpec
from weightzoo.families.modelzoo.train import ImageTrainingTask, population_loss
from weightzoo.features import statistics_names, unflatten
from weightzoo.generate.population import DataOrder, Population, PopulationOptimizer, evaluate
from weightzoo.storage.layout import Layout
from weightzoo.storage.manifest import SPLITS, Manifest, shard_file_name
from weightzoo.storage.reader import ZooReader
from weightzoo.storage.writer import ZooWriter

__all__ = ["SparsifySettings", "kl_approximation", "sparsify_zoo", "spec_from_manifest"]

# Molchanov et al. (2017), eq. 14:
# -KL ~= k1 * sigmoid(k2 + k3 * log_alpha) - 0.5 log(1 + 1/alpha) - k1
_K1, _K2, _K3 = 0.63576, 1.87320, 1.48695
_EVAL_BATCH = 1000


@dataclass(frozen=True)
class SparsifySettings:
    """How a zoo is sparsified (part of the twin's identity: a change starts a new twin).

    Attributes:
        epochs: sparsification epochs (the paper: 25); the twin has ``epochs + 1`` checkpoints.
        lr: Adam learning rate of ``theta`` and ``log_sigma2``.
        batch_size: per-model batch size; ``None`` takes the source spec's.
        kl_warmup: epochs over which the KL weight rises linearly from 0 to 1.
        threshold: ``log_alpha`` above which a weight is pruned (3: dropout rate > 0.95).
        log_sigma2_init: initial ``log_sigma2`` of every weight.
        source_epoch: the source checkpoint (label) that is sparsified; ``None`` = the last.
        block_models: models per twin shard (and population).
    """

    epochs: int = 25
    lr: float = 1e-3
    batch_size: int | None = None
    kl_warmup: int = 5
    threshold: float = 3.0
    log_sigma2_init: float = -10.0
    source_epoch: int | None = None
    block_models: int = 64


def kl_approximation(log_alpha: torch.Tensor) -> torch.Tensor:
    """Molchanov et al.'s approximation of KL(q || log-uniform prior), elementwise, >= 0."""
    neg_kl = (
        _K1 * torch.sigmoid(_K2 + _K3 * log_alpha) - 0.5 * F.softplus(-log_alpha) - _K1
    )  # softplus(-a) = log(1 + exp(-a)) = log(1 + 1/alpha)
    return -neg_kl


def spec_from_manifest(spec: dict[str, Any]) -> ModelZooSpec | TrajectorySpec:
    """Rebuild the :class:`ModelZooSpec` / :class:`TrajectorySpec` stored in a manifest.

    Raises:
        WeightzooError: for a zoo that is not a Model Zoos or trajectory zoo.
    """
    classes = {"ModelZooSpec": ModelZooSpec, "TrajectorySpec": TrajectorySpec}
    cls = classes.get(spec.get("spec_class", ""))
    if cls is None:
        raise WeightzooError(
            f"cannot sparsify a zoo of spec class {spec.get('spec_class')!r} (family "
            f"{spec.get('family')!r}); sparsified twins exist for Model Zoos and trajectory zoos"
        )
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k in names}
    return cls(**kwargs)


def _vd_layers(net: nn.Module) -> list[str]:
    """Names (``module_list.<i>``) of the conv / linear layers of a sequential net."""
    return [
        f"module_list.{i}"
        for i, layer in enumerate(net.module_list)
        if isinstance(layer, nn.Conv2d | nn.Linear)
    ]


def _log_alpha(theta: torch.Tensor, log_sigma2: torch.Tensor) -> torch.Tensor:
    return (log_sigma2 - torch.log(theta * theta + 1e-8)).clamp(-10.0, 10.0)


def _apply(layer: nn.Module, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None):
    if isinstance(layer, nn.Conv2d):
        return F.conv2d(x, w, b, layer.stride, layer.padding, layer.dilation, layer.groups)
    return F.linear(x, w, b)


def _vd_forward(
    net: nn.Module, theta: dict[str, torch.Tensor], log_sigma2: dict[str, torch.Tensor], x
) -> torch.Tensor:
    """One model's stochastic VD forward (local reparameterisation); vmapped over models."""
    h = x
    for i, layer in enumerate(net.module_list):
        key = f"module_list.{i}"
        if isinstance(layer, nn.Conv2d | nn.Linear):
            w, b = theta[f"{key}.weight"], theta.get(f"{key}.bias")
            mu = _apply(layer, h, w, b)
            var = _apply(layer, h * h, torch.exp(log_sigma2[key]), None)
            h = mu + torch.sqrt(var + 1e-8) * torch.randn_like(mu)
        elif isinstance(layer, RateDropout):
            continue  # VD is the noise now; the source's dropout is off
        else:
            h = layer(h)
    return h


def _masked(
    theta: dict[str, torch.Tensor], log_sigma2: dict[str, torch.Tensor], threshold: float
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Weights with pruned entries set to 0, and the per-model sparsity ``[M]``."""
    out = {k: v.detach().clone() for k, v in theta.items()}
    pruned = 0
    total = 0
    for key, ls2 in log_sigma2.items():
        weight = out[f"{key}.weight"]
        drop = _log_alpha(weight, ls2.detach()) > threshold
        weight[drop] = 0.0
        pruned = pruned + drop.reshape(len(weight), -1).sum(1)
        total += weight[0].numel()
    return out, pruned.double() / total


def _evaluate(net, params, splits, loss: str) -> dict[str, torch.Tensor]:
    """``{"<split>_loss"|"<split>_acc": [M]}`` of the deterministic (masked) nets."""
    task = ImageTrainingTask(
        net, splits, loss=loss, path="vmap", dropout=False, eval_batch=_EVAL_BATCH
    )
    return evaluate(task, Population(params, device=_device(params)), list(task.splits))


def _device(params: dict[str, torch.Tensor]) -> torch.device:
    """The device of a population's tensors."""
    return next(iter(params.values())).device


def sparsify_population(
    net: nn.Module,
    weights: np.ndarray,
    seeds: Sequence[int],
    *,
    names: Sequence[str],
    train,
    val,
    test,
    loss: str,
    batch_size: int,
    settings: SparsifySettings,
    noise_seed: int,
    progress=None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Sparsify trained models of one architecture together.

    Args:
        net: the architecture (a :class:`~weightzoo.architectures.image.SeqNet`); its own
            weights are unused.
        weights: float32 ``[M, params]`` rows in the order of ``names``.
        seeds: per-model seeds of the data order.
        names: tensor names of a row (the zoo's layout order).
        train: training :class:`~weightzoo.families.modelzoo.data.Split` on the training device.
        val: validation split.
        test: test split.
        loss: the source's training loss, ``"ce"`` or ``"mse"``.
        batch_size: per-model batch size.
        settings: the sparsification settings.
        noise_seed: seed of the VD noise.
        progress: called with the number of steps after each epoch.

    Returns:
        rows ``[M, epochs + 1, params]`` (masked weights) and metrics ``{name: [M, epochs + 1]}``
        (the population's ``METRICS`` and ``sparsity``).
    """
    dev = train.x.device
    count = len(weights)
    state = net.state_dict()
    layout = Layout.from_shapes({n: tuple(state[n].shape) for n in names})
    rows = torch.from_numpy(np.ascontiguousarray(weights)).to(dev)
    theta = {
        k: v.clone().requires_grad_(True) for k, v in unflatten(rows, layout).items()
    }  # views of rows -> own leaves
    log_sigma2 = {
        key: torch.full_like(theta[f"{key}.weight"], settings.log_sigma2_init).requires_grad_(True)
        for key in _vd_layers(net)
    }
    params = {**theta, **{f"{k}.log_sigma2": v for k, v in log_sigma2.items()}}
    opt = PopulationOptimizer("adam", settings.lr, count=count, device=dev)
    order = DataOrder(seeds, train.x.shape[0])
    n = train.x.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    out_rows = np.zeros((count, settings.epochs + 1, layout.num_params), dtype=np.float32)
    metrics = {
        m: np.full((count, settings.epochs + 1), np.nan, dtype=np.float32)
        for m in (*METRICS, "sparsity")
    }

    def checkpoint(epoch: int) -> None:
        # checkpoint 0 is the source model, unmasked (its tiny weights would already pass the
        # threshold at log_sigma2_init)
        threshold = settings.threshold if epoch else math.inf
        masked, sparsity = _masked(theta, log_sigma2, threshold)
        out_rows[:, epoch] = (
            torch.cat([masked[k].reshape(count, -1) for k in names], dim=1).cpu().numpy()
        )
        metrics["sparsity"][:, epoch] = sparsity.cpu().numpy()
        values = _evaluate(net, masked, {"train": train, "val": val, "test": test}, loss)
        for name, value in values.items():
            metrics[name][:, epoch] = value.cpu().numpy()
        metrics["ggap"][:, epoch] = metrics["train_acc"][:, epoch] - metrics["test_acc"][:, epoch]

    def one(th, ls2, xi):
        return _vd_forward(net, th, ls2, xi)

    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=dev.type):
        torch.manual_seed(noise_seed)
        checkpoint(0)
        step = 0
        for epoch in range(1, settings.epochs + 1):
            rows = order.epoch(dev)
            for start in range(0, n, batch_size):
                idx = rows[:, start : start + batch_size]
                out = vmap(one, randomness="different")(theta, log_sigma2, train.x[idx])
                data_loss = population_loss(out, train.y[idx], loss)
                kl = sum(
                    kl_approximation(_log_alpha(theta[f"{k}.weight"], v)).reshape(count, -1).sum(1)
                    for k, v in log_sigma2.items()
                )
                # KL weight ramps 0 -> 1 so the nets first adapt to the noise, then prune
                beta = min(1.0, step / max(1, settings.kl_warmup * steps_per_epoch))
                (data_loss + beta * kl / n).sum().backward()
                opt.step(params)
                for tensor in params.values():
                    tensor.grad = None
                step += 1
            checkpoint(epoch)
            if progress is not None:
                progress(steps_per_epoch)
    return out_rows, metrics


def _blocks(positions: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Contiguous runs of storage positions cut into ``[first, last)`` blocks of ``size``."""
    out: list[tuple[int, int]] = []
    if not len(positions):
        return out
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    for run in np.split(positions, breaks):
        for start in range(0, len(run), size):
            part = run[start : start + size]
            out.append((int(part[0]), int(part[-1]) + 1))
    return out


def sparsify_zoo(
    src_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    epochs: int = 25,
    device: str = "cpu",
    progress: bool = True,
    data_dir: str | None = None,
    settings: SparsifySettings | None = None,
) -> Manifest:
    """Write the sparsified twin of the zoo at ``src_dir`` into ``out_dir``.

    Every model's source checkpoint (the last by default) is sparsified for ``epochs`` epochs
    on the source zoo's own training data; the twin has the source's layout, model ids, splits
    and per-model columns, checkpoints ``0 .. epochs`` (0 = the source model) and the metrics
    ``train/val/test_loss``, ``train/val/test_acc``, ``ggap`` and ``sparsity``. An interrupted
    run resumes when called again with the same arguments.

    Args:
        src_dir: a complete Model Zoos or trajectory zoo (CNN-s, CNN-m, MLP or CNN).
        out_dir: the twin's directory (created; an unfinished twin of the same source and
            settings is resumed, anything else is refused).
        epochs: sparsification epochs (overrides ``settings.epochs``).
        device: torch device.
        progress: show tqdm bars.
        data_dir: directory with the image data (as ``weightzoo generate --data-dir``);
            ``digits`` needs none.
        settings: further settings (:class:`SparsifySettings`).

    Returns:
        The twin's manifest.

    Raises:
        WeightzooError: for a source that is not a sequential image zoo, or is incomplete.
        SpecMismatchError: if ``out_dir`` holds another zoo.
    """
    if int(epochs) < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    settings = dataclasses.replace(settings or SparsifySettings(), epochs=int(epochs))
    src = Manifest.load(src_dir)
    spec = spec_from_manifest(src.spec)
    if spec.architecture == "resnet18":
        raise WeightzooError(
            f"{src_dir}: sparsified twins are made for the sequential nets (CNN-s, CNN-m, the "
            "trajectory MLP and CNN); ResNet-18 zoos are not supported"
        )
    if data_dir is not None:
        spec = dataclasses.replace(spec, data_dir=str(data_dir))
    counts = src.splits()
    if sum(counts.values()) != src.num_models:
        raise WeightzooError(
            f"{src_dir} is incomplete ({sum(counts.values())} of {src.num_models} models "
            "written); finish it with `weightzoo generate` first"
        )
    source_epoch = settings.source_epoch if settings.source_epoch is not None else src.epochs[-1]
    if source_epoch not in src.epochs:
        raise ValueError(f"source_epoch {source_epoch} is not among {src_dir}'s {src.epochs}")
    batch_size = settings.batch_size or spec.batch_size
    twin_spec = {
        "name": f"{src.name}-sparse",
        "family": src.family,
        "spec_class": "SparsifiedTwin",
        "source": {"name": src.name, "spec_fingerprint": src.spec_fingerprint},
        "source_spec": src.spec,
        "sparsify": {**dataclasses.asdict(settings), "source_epoch": source_epoch},
        "batch_size": batch_size,
    }
    with ZooWriter(
        out_dir,
        name=twin_spec["name"],
        family=src.family,
        spec=twin_spec,
        layout=src.layout,
        epochs=list(range(settings.epochs + 1)),
        metrics=[*METRICS, "sparsity"],
        stats_names=statistics_names(src.layout, STATS_PRESET),
        stats_preset=STATS_PRESET,
        num_models=src.num_models,
        split_counts=counts,
        diverge_threshold=spec.diverge_threshold,
        extra={"generator": "weightzoo sparsify", "sparsified_from": src.name},
    ) as writer:
        reader = ZooReader(src_dir, split="all", epochs=[source_epoch], manifest=src)
        try:
            todo = [
                (split, first, last)
                for split in SPLITS
                for first, last in _blocks(
                    np.sort(reader.positions[reader.columns["split"] == split]),
                    settings.block_models,
                )
                if not writer.has_shard(shard_file_name(split, first))
            ]
            if todo:
                twin = _Twin(src, spec, settings, batch_size, source_epoch, reader)
                twin.write(writer, todo, device, progress)
        finally:
            reader.close()
        return writer.finish()


@dataclass
class _Twin:
    """What sparsifying the blocks of one source zoo shares: the source, its reader, settings."""

    src: Manifest
    spec: ModelZooSpec | TrajectorySpec
    settings: SparsifySettings
    batch_size: int
    source_epoch: int
    reader: ZooReader
    local: dict[int, int] = field(init=False)  # storage position -> the reader's row

    def __post_init__(self) -> None:
        self.local = {int(p): i for i, p in enumerate(self.reader.positions)}

    def write(
        self, writer: ZooWriter, todo: list[tuple[str, int, int]], device: str, progress: bool
    ) -> None:
        """Sparsify and write each ``(split, first, last)`` block of storage positions."""
        splits = device_splits(self.spec, device)
        steps = math.ceil(splits[0].x.shape[0] / self.batch_size) * self.settings.epochs
        total = sum(last - first for _, first, last in todo)
        bar = tqdm(
            total=total * steps, disable=not progress, desc=f"sparsify {self.src.name}", unit="step"
        )
        with bar:
            for split, first, last in todo:
                records, columns = self._block(first, last, splits, device, bar.update)
                write_block(writer, records, split=split, first=first, columns=columns)

    def _block(
        self,
        first: int,
        last: int,
        splits: list[Split],
        device: str,
        update: Callable[[int], Any],
    ) -> tuple[list[ModelRecord], dict[str, np.ndarray]]:
        """The records and columns of the twin's models at storage positions ``first:last``."""
        reader, settings, src = self.reader, self.settings, self.src
        rows = np.asarray([self.local[p] for p in range(first, last)])
        weights = reader.read("weights", rows, np.zeros(len(rows), dtype=np.int64))
        activations = np.asarray([str(a) for a in reader.columns["activation"][rows]])
        metric_names = [*METRICS, "sparsity"]
        out_w = np.zeros((len(rows), settings.epochs + 1, src.num_params), np.float32)
        out_m = {m: np.zeros(out_w.shape[:2], np.float32) for m in metric_names}
        train, val, test = splits
        for activation in dict.fromkeys(activations.tolist()):
            members = np.flatnonzero(activations == activation)
            columns = {"activation": activation, "dropout": 0.0}
            net = model.from_spec(self.spec.to_dict(), columns).to(device)
            w, m = sparsify_population(
                net,
                weights[members],
                [int(s) for s in reader.columns["seed"][rows[members]]],
                names=src.layout.names,
                train=train,
                val=val,
                test=test,
                loss=self.spec.loss,
                batch_size=self.batch_size,
                settings=settings,
                noise_seed=zlib.crc32(f"{src.name}:{first}:{activation}".encode()),
                progress=lambda k, size=members.size: update(k * size),
            )
            out_w[members] = w
            for name in metric_names:
                out_m[name][members] = m[name]
        skip = {"viable", "split", "position"}
        columns = {
            k: v[rows] for k, v in reader.columns.items() if k not in skip and np.ndim(v) >= 1
        }
        columns["source_epoch"] = np.full(len(rows), self.source_epoch, dtype=np.int64)
        records = [
            ModelRecord(
                int(columns["model_id"][k]),
                out_w[k],
                {name: out_m[name][k] for name in metric_names},
            )
            for k in range(len(rows))
        ]
        return records, columns


def default_twin_dir(src_dir: str | os.PathLike[str]) -> Path:
    """``<src_dir>-sparse`` beside the source zoo."""
    src = Path(src_dir)
    return src.with_name(src.name + "-sparse")
