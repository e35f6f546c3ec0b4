"""Landscape metrics of a zoo's checkpoints, kept in the zoo's ``landscape`` side file.

:func:`compute_zoo_landscape` (the ``weightzoo landscape`` command) measures every selected
checkpoint of an image zoo (Model Zoos and trajectory families) on the zoo's own training data
and loss, and writes one ``[models, checkpoints]`` array per metric into
``<zoo>/sidecars/landscape.h5`` (see :mod:`weightzoo.storage.sidecar`). ``ZooDataset(...,
targets=("hessian_top",))`` then serves them beside the stored metrics.

Pair metrics (``cka``, ``mc``, the barriers) compare each model with a *sibling*: the next
model, in storage order and cyclically, that shares its ``node`` (the same hyperparameters,
another seed) where the zoo has a ``node`` column, else the next model of the selection. A
model without a sibling gets NaN.

This module sits beside :mod:`weightzoo.functional` and imports it (for the zoo's data, loss
and modules); :mod:`weightzoo.functional` never imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from tqdm.auto import tqdm

from weightzoo import functional
from weightzoo.errors import InvalidOptionError
from weightzoo.landscape.metrics import _PAIR_METRICS, METRICS, landscape_metrics
from weightzoo.storage.sidecar import SidecarRecord, write_sidecar
from weightzoo.zoo import Zoo

__all__ = ["LANDSCAPE_SIDECAR", "compute_zoo_landscape", "siblings"]

#: The side file ``weightzoo landscape`` writes.
LANDSCAPE_SIDECAR = "landscape"


class UnsupportedZooError(InvalidOptionError):
    """A zoo whose family the zoo-level landscape driver does not measure."""


def siblings(columns: dict[str, np.ndarray], count: int) -> np.ndarray:
    """Each model's partner for the pair metrics, as an index into the selection (-1: none).

    Args:
        columns: the selection's model columns (``node`` is used where present).
        count: models in the selection.

    Returns:
        int64 ``[count]``: the next model (cyclically, in storage order) of the same node, or
        of the whole selection where there is no ``node`` column; -1 for a node of one model.
    """
    out = np.full(count, -1, dtype=np.int64)
    node = columns.get("node")
    groups = (
        [np.arange(count)]
        if node is None
        else [np.flatnonzero(node == value) for value in dict.fromkeys(node.tolist())]
    )
    for members in groups:
        if len(members) > 1:
            out[members] = np.roll(members, -1)
    return out


def _loss_functions(spec: dict[str, Any]) -> tuple[Any, Any]:
    classes = int(spec["num_classes"])

    def loss(outputs: Tensor, targets: Tensor) -> Tensor:
        if spec.get("loss", "ce") == "mse":
            return F.mse_loss(outputs, F.one_hot(targets, classes).to(outputs.dtype))
        return F.cross_entropy(outputs, targets)

    def accuracy(outputs: Tensor, targets: Tensor) -> Tensor:
        return (outputs.argmax(-1) == targets).to(outputs.dtype).mean()

    return loss, accuracy


def compute_zoo_landscape(  # noqa: C901 (one early branch per zoo family)
    zoo: Zoo | str,
    *,
    metrics: Sequence[str] = ("hessian_top", "hessian_trace"),
    split: str | Sequence[str] | None = "all",
    epochs: int | str | Iterable[int] | None = "last",
    batches: int = 4,
    batch_size: int = 64,
    data_dir: str | None = None,
    device: str = "cpu",
    chunk: int = 16,
    seed: int = 0,
    iters: int = 20,
    probes: int = 20,
    steps: int = 100,
    progress: bool = True,
    name: str = LANDSCAPE_SIDECAR,
) -> SidecarRecord:
    """Measure landscape metrics of every selected checkpoint and write them to a side file.

    The loss is the zoo's own (its spec's ``loss``), on the first ``batches`` batches of
    ``batch_size`` images of the zoo's training split, the same for every model.

    Args:
        zoo: an image zoo (Model Zoos or trajectory family), or a tiny-LM zoo (measured by
            :func:`weightzoo.landscape.tinylm.compute_lm_landscape`).
        metrics: names from :data:`weightzoo.landscape.METRICS`.
        split: the models to measure (``"all"`` by default).
        epochs: checkpoints to measure (``"last"`` by default, or labels, or ``"all"``).
        batches: training batches the loss is measured on.
        batch_size: images per batch.
        data_dir: where the dataset files are (digits needs none).
        device: torch device.
        chunk: models per vectorised call (bounds memory; results do not depend on it).
        seed: seeds the start vectors, probes and curve times.
        iters: power-iteration steps (``hessian_top``).
        probes: Hutchinson probes (``hessian_trace``).
        steps: curve-training steps (connectivity metrics).
        progress: show a progress bar over checkpoints.
        name: the side file's name.

    Returns:
        The side file's record.

    Raises:
        UnknownMetricError: for a metric name that does not exist.
        UnsupportedZooError: for a zoo that is not an image zoo.
        DataFilesMissingError: if the zoo's dataset files are not on disk.
    """
    zoo = zoo if isinstance(zoo, Zoo) else Zoo(zoo)
    if zoo.manifest.family == "tinylm":  # language models: their own text, windows and loss
        from weightzoo.landscape.tinylm import compute_lm_landscape

        return compute_lm_landscape(
            zoo, metrics=metrics, split=split, epochs=epochs, batches=batches,
            batch_size=batch_size, data_dir=data_dir, device=device, chunk=chunk, seed=seed,
            iters=iters, probes=probes, steps=steps, progress=progress, name=name,
        )  # fmt: skip
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if not metrics:
        raise InvalidOptionError(f"name at least one landscape metric: {', '.join(METRICS)}")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        from weightzoo.landscape.metrics import UnknownMetricError

        raise UnknownMetricError(
            f"unknown landscape metric(s) {unknown}; known: {', '.join(METRICS)}"
        )
    task = functional._task(zoo)
    if not isinstance(task, functional._ImageTask):
        raise UnsupportedZooError(
            f"zoo {zoo.name!r} ({zoo.manifest.family}): landscape metrics of a whole zoo are "
            "measured for image zoos (Model Zoos and trajectory families); for other zoos call "
            "weightzoo.landscape.landscape_metrics with your own data and loss"
        )
    for what, value in (("batches", batches), ("batch_size", batch_size), ("chunk", chunk)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidOptionError(f"{what} must be an int >= 1, got {value!r}")
    target = torch.device(device)
    reader = zoo.reader(split, epochs)
    positions = reader.positions
    count = len(positions)
    columns = {k: np.asarray(v) for k, v in reader.columns.items() if np.ndim(v) == 1}
    train = task.default_data("train", data_dir, columns, count)
    size = min(batches * batch_size, train.size)
    data = [
        (train.inputs[i : i + batch_size].to(target), train.targets[i : i + batch_size].to(target))
        for i in range(0, size, batch_size)
    ]
    loss, accuracy = _loss_functions(dict(task.spec))
    partner = siblings(columns, count)
    groups = task.group_keys(columns, count)
    out = {m: np.full((count, len(reader.epochs)), np.nan, dtype=np.float64) for m in metrics}
    bar = tqdm(total=count * len(reader.epochs), disable=not progress, desc=f"landscape {zoo.name}")
    with bar:
        for column, _epoch in enumerate(reader.epochs):
            rows = reader.read("weights", np.arange(count), np.full(count, column))
            for key in dict.fromkeys(groups.tolist()):
                module = task.module(key).to(target)
                members = np.flatnonzero(groups == key)
                paired = members[partner[members] >= 0]
                wanted_pairs = [m for m in metrics if m in _PAIR_METRICS]
                singles = [m for m in metrics if m not in _PAIR_METRICS]
                common = dict(layout=zoo.layout, chunk=chunk, seed=seed, iters=iters)
                common |= dict(probes=probes, steps=steps, accuracy_fn=accuracy)
                if singles:
                    values = landscape_metrics(
                        module, torch.from_numpy(rows[members]).to(target), data, loss,
                        singles, **common,
                    )  # fmt: skip
                    for metric, array in values.items():
                        out[metric][members, column] = array
                if wanted_pairs and len(paired):
                    values = landscape_metrics(
                        module,
                        torch.from_numpy(rows[paired]).to(target),
                        data,
                        loss,
                        wanted_pairs,
                        partners=torch.from_numpy(rows[partner[paired]]).to(target),
                        **common,
                    )
                    for metric, array in values.items():
                        out[metric][paired, column] = array
                bar.update(len(members))
    attrs = {
        "what": "loss-landscape metrics on the zoo's training loss",
        "metrics": metrics,
        "batches": len(data),
        "batch_size": batch_size,
        "seed": seed,
        "iters": iters,
        "probes": probes,
        "steps": steps,
        "partner": "next model of the same node (or of the selection), cyclic",
    }
    return write_sidecar(zoo.path, name, out, attrs, models=positions, epochs=reader.epochs)
