"""Landscape metrics of a zoo's checkpoints, kept in the zoo's ``landscape`` side file.

:func:`compute_zoo_landscape` (the ``weightzoo landscape`` command) measures every selected
checkpoint of an image zoo (Model Zoos, trajectory and phase families, a ViT zoo's fine-tune
groups) or a zoo whose family gives its own parts
(:meth:`~weightzoo.generate.base.Family.landscape_parts`; an MLDS zoo: each network on its own
machine's or automaton's training sequences) on the zoo's own training data and loss, and
writes one ``[models, checkpoints]`` array per metric into ``<zoo>/sidecars/landscape.h5``
(see :mod:`weightzoo.storage.sidecar`). ``ZooDataset(..., targets=("hessian_top",))`` then
serves them beside the stored metrics.

Pair metrics (``cka``, ``mc``, the barriers) compare each model with a *sibling*: the next
model, in storage order and cyclically, that shares its ``node`` (the same hyperparameters,
another seed) where the zoo has a ``node`` column, the same machine or automaton in an MLDS
zoo, else the next model of the selection. A model without a sibling gets NaN.

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
from weightzoo.families import family_hooks
from weightzoo.generate.base import Family, LandscapeParts
from weightzoo.landscape.batchnorm import batch_norm_layers
from weightzoo.landscape.hessian import DEFAULT_ITERS, DEFAULT_TOL
from weightzoo.landscape.metrics import (
    _CONNECTIVITY_METRICS,
    _PAIR_METRICS,
    METRICS,
    landscape_metrics,
)
from weightzoo.landscape.phase import write_phases
from weightzoo.storage.sidecar import SidecarRecord, sidecar_records, write_sidecar
from weightzoo.zoo import Zoo

__all__ = ["LANDSCAPE_SIDECAR", "compute_zoo_landscape", "siblings", "training_batches"]

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


def _plan(
    zoo: Zoo,
    hooks: Family | None,
    columns: dict[str, np.ndarray],
    count: int,
    batches: int,
    batch_size: int,
    data_dir: str | None,
    target: torch.device,
) -> LandscapeParts:
    task = functional._task(zoo)  # first: the spec is checked against the layout
    parts = None
    if hooks is not None:
        parts = hooks.landscape_parts(zoo, columns, batches, batch_size, target)
    if parts is not None:  # the family's own modules and data (MLDS: each class its own)
        return parts
    data = _task_batches(zoo, task, batches, batch_size, data_dir, target)
    loss, accuracy = _loss_functions(dict(task.spec))
    return LandscapeParts(
        groups=task.group_keys(columns, count),
        module=task.module,
        data=lambda _key: data,
        loss=loss,
        accuracy=accuracy,
    )


def _task_batches(
    zoo: Zoo,
    task: Any,
    batches: int,
    batch_size: int,
    data_dir: str | None,
    target: torch.device,
) -> list[tuple[Tensor, Tensor]]:
    """The first ``batches`` batches of ``batch_size`` items of the task's training split.

    Raises:
        UnsupportedZooError: for a task without a training split every model shares.
    """
    # the loss is measured on training data every model shares (not a property zoo's subsets)
    if not isinstance(task, functional.ImageTask) or "train" not in task.splits:
        raise UnsupportedZooError(
            f"zoo {zoo.name!r} ({zoo.manifest.family}): landscape metrics of a whole zoo are "
            "measured for image, MLDS, phase, PINN and tiny-LM zoos and a ViT zoo's fine-tune "
            "groups; for other zoos call weightzoo.landscape.landscape_metrics with your own "
            "data and loss"
        )
    train = task.default_data("train", data_dir, {}, 0)  # image tasks: the same for all models
    size = min(batches * batch_size, train.size)
    return [
        (train.inputs[i : i + batch_size].to(target), train.targets[i : i + batch_size].to(target))
        for i in range(0, size, batch_size)
    ]


def _check_counts(**counts: Any) -> None:
    """Raise :class:`InvalidOptionError` unless every value is an int of at least 1."""
    for what, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidOptionError(f"{what} must be an int >= 1, got {value!r}")


def training_batches(
    zoo: Zoo | str,
    *,
    batches: int = 4,
    batch_size: int = 64,
    data_dir: str | None = None,
    device: str = "cpu",
) -> list[tuple[Tensor, Tensor]]:
    """The batches :func:`compute_zoo_landscape` (``weightzoo landscape``) measures a zoo on.

    The first ``batches`` batches of ``batch_size`` items of the zoo's training split, in the
    split's order, as its evaluation task rebuilds it (the validation items held out of the
    data set's official training set are not in it); fewer items when the split is shorter.
    Every model of an image zoo is measured on these.

    Args:
        zoo: an image zoo (Model Zoos, trajectory, phase family or a ViT zoo's fine-tune
            group).
        batches: the number of batches (the driver's ``batches``).
        batch_size: items per batch.
        data_dir: where the dataset files are (digits needs none).
        device: where the tensors go.

    Returns:
        ``[(inputs, targets)]``: float inputs and int64 class labels.

    Raises:
        UnsupportedZooError: for a zoo whose family measures its models on data of its own
            (MLDS, PINN, tiny-LM) or that has no shared training split (property zoos).
        InvalidOptionError: for ``batches`` or ``batch_size`` below 1.
        DataFilesMissingError: if the zoo's dataset files are not on disk.
    """
    zoo = zoo if isinstance(zoo, Zoo) else Zoo(zoo)
    _check_counts(batches=batches, batch_size=batch_size)
    hooks = family_hooks(zoo.manifest.family)
    if hooks is not None and _own_data(hooks):
        raise UnsupportedZooError(
            f"zoo {zoo.name!r} ({zoo.manifest.family}): its family measures each model on data "
            "of its own, not on one set of training batches; see docs/landscape.md for what "
            "compute_zoo_landscape measures it on"
        )
    task = functional._task(zoo)
    return _task_batches(zoo, task, batches, batch_size, data_dir, torch.device(device))


def _own_data(hooks: Family) -> bool:
    """Whether the family gives the driver its own data (a landscape plan or parts)."""
    kind = type(hooks)
    return (
        kind.landscape_plan is not Family.landscape_plan
        or kind.landscape_parts is not Family.landscape_parts
    )


def _metric_list(metrics: str | Sequence[str]) -> list[str]:
    """``metrics`` as a list of known names.

    Raises:
        InvalidOptionError: for no metric; UnknownMetricError for an unknown one.
    """
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if not metrics:
        raise InvalidOptionError(f"name at least one landscape metric: {', '.join(METRICS)}")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        from weightzoo.landscape.metrics import UnknownMetricError

        raise UnknownMetricError(
            f"unknown landscape metric(s) {unknown}; known: {', '.join(METRICS)}"
        )
    return metrics


def compute_zoo_landscape(
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
    iters: int = DEFAULT_ITERS,
    tol: float = DEFAULT_TOL,
    probes: int = 20,
    steps: int = 100,
    bn_update: bool | None = None,
    progress: bool = True,
    name: str = LANDSCAPE_SIDECAR,
) -> SidecarRecord:
    """Measure landscape metrics of every selected checkpoint and write them to a side file.

    The loss is the zoo's own (its spec's ``loss``), on the first ``batches`` batches of
    ``batch_size`` images of the zoo's training split, the same for every model: the batches
    :func:`training_batches` returns.

    Args:
        zoo: an image zoo (Model Zoos, trajectory, phase family or a ViT zoo's fine-tune
            group), a zoo whose family measures its own landscape
            (:meth:`~weightzoo.generate.base.Family.landscape_plan`: a PINN zoo on its PINN
            loss, where ``batches``, ``batch_size`` and ``data_dir`` do not apply; a tiny-LM
            zoo on its next-token loss, its windows and corpus read with them).
        metrics: names from :data:`weightzoo.landscape.METRICS`.
        split: the models to measure (``"all"`` by default).
        epochs: checkpoints to measure (``"last"`` by default, or labels, or ``"all"``).
        batches: training batches the loss is measured on.
        batch_size: images per batch.
        data_dir: where the dataset files are (digits needs none).
        device: torch device.
        chunk: models per vectorised call (bounds memory; results do not depend on it).
        seed: seeds the start vectors, probes and curve times.
        iters: most power-iteration steps (``hessian_top``).
        tol: relative change at which power iteration stops (``hessian_top``; a
            ``RuntimeWarning`` names the models that did not converge).
        probes: Hutchinson probes (``hessian_trace``).
        steps: curve-training steps (connectivity metrics; 0: the linear path alone, no
            curve trained or evaluated).
        bn_update: connectivity metrics of networks with BatchNorm (ResNet-18): recompute the
            running statistics at every point of the paths on the same training batches, as
            Garipov et al. do (``None``, the default: where the network has BatchNorm;
            ``False``: the endpoints' statistics interpolated). Recorded in the side file.
        progress: show a progress bar over checkpoints.
        name: the side file's name.

    On a phase-transition zoo (columns ``load`` and ``temperature``) whose ``landscape`` file
    gets ``mc`` and ``cka``, the phase labels are added as well
    (:func:`weightzoo.landscape.phase.write_phases`, default thresholds).

    Returns:
        The side file's record.

    Raises:
        UnknownMetricError: for a metric name that does not exist.
        UnsupportedZooError: for a zoo of a family it does not measure (property zoos, a ViT
            zoo's pre-training group).
        DataFilesMissingError: if the zoo's dataset files are not on disk.
    """
    zoo = zoo if isinstance(zoo, Zoo) else Zoo(zoo)
    metrics = _metric_list(metrics)
    hooks = family_hooks(zoo.manifest.family)
    measure = None if hooks is None else hooks.landscape_plan(zoo)
    if measure is not None:  # the family's own loss and data (a PINN's: the PDE's)
        record = measure(
            zoo, metrics=metrics, split=split, epochs=epochs, device=device, chunk=chunk,
            seed=seed, iters=iters, probes=probes, steps=steps, progress=progress, name=name,
            batches=batches, batch_size=batch_size, data_dir=data_dir,
        )  # fmt: skip
        return _with_phases(zoo, metrics, name, record)
    _check_counts(batches=batches, batch_size=batch_size, chunk=chunk)
    target = torch.device(device)
    reader = zoo.reader(split, epochs)
    positions = reader.positions
    count = len(positions)
    columns = {k: np.asarray(v) for k, v in reader.columns.items() if np.ndim(v) == 1}
    plan = _plan(zoo, hooks, columns, count, batches, batch_size, data_dir, target)
    partner = siblings(columns | plan.sibling_columns, count)
    out = {m: np.full((count, len(reader.epochs)), np.nan, dtype=np.float64) for m in metrics}
    wanted_pairs = [m for m in metrics if m in _PAIR_METRICS]
    singles = [m for m in metrics if m not in _PAIR_METRICS]
    common = dict(layout=zoo.layout, chunk=chunk, seed=seed, iters=iters, tol=tol)
    common |= dict(probes=probes, steps=steps, accuracy_fn=plan.accuracy)
    reestimated = False  # whether any group's connectivity re-estimated BatchNorm statistics
    bar = tqdm(total=count * len(reader.epochs), disable=not progress, desc=f"landscape {zoo.name}")
    with bar:
        for column, _epoch in enumerate(reader.epochs):
            rows = reader.read("weights", np.arange(count), np.full(count, column))
            for key in dict.fromkeys(plan.groups.tolist()):
                module = plan.module(key).to(target)
                data = plan.data(key)
                members = np.flatnonzero(plan.groups == key)
                paired = members[partner[members] >= 0]
                if singles:
                    values = landscape_metrics(
                        module, torch.from_numpy(rows[members]).to(target), data, plan.loss,
                        singles, **common,
                    )  # fmt: skip
                    for metric, array in values.items():
                        out[metric][members, column] = array
                if wanted_pairs and len(paired):
                    uses = bool(batch_norm_layers(module)) if bn_update is None else bn_update
                    reestimated |= uses and bool(set(wanted_pairs) & _CONNECTIVITY_METRICS)
                    values = landscape_metrics(
                        module,
                        torch.from_numpy(rows[paired]).to(target),
                        data,
                        plan.loss,
                        wanted_pairs,
                        partners=torch.from_numpy(rows[partner[paired]]).to(target),
                        bn_update=uses,
                        **common,
                    )
                    for metric, array in values.items():
                        out[metric][paired, column] = array
                bar.update(len(members))
    attrs = {
        "what": "loss-landscape metrics on the zoo's training loss",
        "metrics": metrics,
        "batches": batches,
        "batch_size": batch_size,
        "seed": seed,
        "iters": iters,
        "tol": tol,
        "probes": probes,
        "steps": steps,
        "bn_update": reestimated,
        "partner": "next model of the same node (MLDS: machine or automaton; else the "
        "selection), cyclic",
    }
    record = write_sidecar(zoo.path, name, out, attrs, models=positions, epochs=reader.epochs)
    return _with_phases(zoo, metrics, name, record)


def _with_phases(zoo: Zoo, metrics: Sequence[str], name: str, record: SidecarRecord):
    """Add ``phase`` labels to a phase zoo's own ``landscape`` file that has ``mc`` and ``cka``.

    Returns:
        The side file's record (rewritten with ``phase``, or ``record`` unchanged).
    """
    known = {*zoo.manifest.columns, *zoo.manifest.metrics}
    if not {"load", "temperature", "train_loss"} <= known or name != LANDSCAPE_SIDECAR:
        return record
    if not {"mc", "cka"} <= set(metrics):
        return record
    write_phases(zoo.path, name=name)
    return sidecar_records(zoo.path)[name]
