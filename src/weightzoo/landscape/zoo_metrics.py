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

The checks, the loop over checkpoints and the side-file write are
:mod:`weightzoo.landscape.driver`'s, shared with the families' own engines; this module adds
what an image zoo's measurement needs (its task's data and loss, its BatchNorm choice).

This module sits beside :mod:`weightzoo.functional` and imports it (for the zoo's data, loss
and modules); :mod:`weightzoo.functional` never imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from weightzoo import functional
from weightzoo._types import EpochSelection, SplitSelection
from weightzoo.errors import InvalidOptionError
from weightzoo.families import family_hooks
from weightzoo.generate.base import Family, LandscapeParts
from weightzoo.landscape.batchnorm import batch_norm_layers
from weightzoo.landscape.driver import (
    Part,
    Selection,
    measure,
    metric_list,
    write_landscape,
)
from weightzoo.landscape.metrics import _CONNECTIVITY_METRICS
from weightzoo.landscape.options import Knobs, LandscapeOptions, check_counts, resolve_options
from weightzoo.landscape.taxonomy import LANDSCAPE_SIDECAR, write_phases
from weightzoo.storage.sidecar import SidecarRecord, sidecar_records
from weightzoo.zoo import Zoo

__all__ = [
    "LANDSCAPE_SIDECAR",
    "ZOO_LANDSCAPE",
    "compute_zoo_landscape",
    "siblings",
    "training_batches",
]

#: :func:`compute_zoo_landscape`'s knobs (and ``weightzoo landscape``'s defaults): 16 models
#: per call, 20 Hutchinson probes, 100 curve-training steps, 4 batches of 64 training items.
ZOO_LANDSCAPE = LandscapeOptions(chunk=16, probes=20, steps=100, batches=4, batch_size=64)


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
    selection: Selection,
    hooks: Family | None,
    options: LandscapeOptions,
    data_dir: str | None,
    target: torch.device,
) -> LandscapeParts:
    zoo = selection.zoo
    task = functional._task(zoo)  # first: the spec is checked against the layout
    parts = None
    if hooks is not None:
        parts = hooks.landscape_parts(selection, options, target)
    if parts is not None:  # the family's own modules and data (MLDS: each class its own)
        return parts
    data = _task_batches(zoo, task, options.batches, options.batch_size, data_dir, target)
    loss, accuracy = _loss_functions(dict(task.spec))
    return LandscapeParts(
        groups=task.group_keys(selection.columns, selection.count),
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
    if not isinstance(task, functional.ImageEvalTask) or "train" not in task.splits:
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
    check_counts(batches=batches, batch_size=batch_size)
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


def compute_zoo_landscape(
    zoo: Zoo | str,
    *,
    metrics: Sequence[str] = ("hessian_top", "hessian_trace"),
    split: SplitSelection = "all",
    epochs: EpochSelection = "last",
    options: Knobs = None,
    data_dir: str | None = None,
    device: str = "cpu",
    progress: bool = True,
    name: str = LANDSCAPE_SIDECAR,
) -> SidecarRecord:
    """Measure landscape metrics of every selected checkpoint and write them to a side file.

    The loss is the zoo's own (its spec's ``loss``), on the first ``options.batches`` batches
    of ``options.batch_size`` images of the zoo's training split, the same for every model:
    the batches :func:`training_batches` returns.

    Connectivity metrics of networks with BatchNorm (ResNet-18) recompute the running
    statistics at every point of the paths on the same training batches, as Garipov et al.
    do (``options.bn_update``: ``None`` where the network has BatchNorm, ``False``: the
    endpoints' statistics interpolated); the side file records whether any did.

    Args:
        zoo: an image zoo (Model Zoos, trajectory, phase family or a ViT zoo's fine-tune
            group), a zoo whose family measures its own landscape
            (:meth:`~weightzoo.generate.base.Family.landscape_plan`: a PINN zoo on its PINN
            loss, where ``batches``, ``batch_size`` and ``data_dir`` do not apply; a tiny-LM
            zoo on its next-token loss, its windows and corpus read with them), which gets
            ``options`` as they are: a mapping changes only its knobs of that engine's defaults.
        metrics: names from :data:`weightzoo.landscape.METRICS`.
        split: the models to measure (``"all"`` by default).
        epochs: checkpoints to measure (``"last"`` by default, or labels, or ``"all"``).
        options: the knobs: a :class:`~weightzoo.landscape.options.LandscapeOptions`, a
            mapping of some knobs over the engine's defaults, or ``None`` (the defaults:
            :data:`ZOO_LANDSCAPE`, or the family engine's own).
        data_dir: where the dataset files are (digits needs none).
        device: torch device.
        progress: show a progress bar over checkpoints.
        name: the side file's name.

    On a phase-transition zoo (columns ``load`` and ``temperature``) whose ``landscape`` file
    gets ``mc`` and ``cka``, the phase labels are added as well
    (:func:`weightzoo.landscape.taxonomy.write_phases`, default thresholds).

    Returns:
        The side file's record.

    Raises:
        UnknownMetricError: for a metric name that does not exist.
        InvalidOptionError: for an unknown knob or a bad count.
        UnsupportedZooError: for a zoo of a family it does not measure (property zoos, a ViT
            zoo's pre-training group).
        DataFilesMissingError: if the zoo's dataset files are not on disk.
    """
    zoo = zoo if isinstance(zoo, Zoo) else Zoo(zoo)
    metrics = metric_list(metrics)
    hooks = family_hooks(zoo.manifest.family)
    measure_own = None if hooks is None else hooks.landscape_plan(zoo)
    if measure_own is not None:  # the family's own loss and data (a PINN's: the PDE's)
        # ``options`` as given: knobs left out keep that engine's own defaults
        record = measure_own(
            zoo, metrics=metrics, split=split, epochs=epochs, options=options,
            data_dir=data_dir, device=device, progress=progress, name=name,
        )  # fmt: skip
        return _with_phases(zoo, metrics, name, record)
    options = resolve_options(options, ZOO_LANDSCAPE)
    target = torch.device(device)
    selection = Selection.open(zoo, split, epochs)
    count = selection.count
    plan = _plan(selection, hooks, options, data_dir, target)
    partner = siblings(selection.columns | plan.sibling_columns, count)
    inputs = {"layout": zoo.layout, "accuracy_fn": plan.accuracy}
    parts, reestimated = _parts(plan, partner, metrics, options, inputs, target)
    out = measure(selection, parts, partner, metrics, device=target, progress=progress)
    attrs = {
        "batches": options.batches,
        "batch_size": options.batch_size,
        "bn_update": reestimated,
        "partner": "next model of the same node (MLDS: machine or automaton; else the "
        "selection), cyclic",
    }
    what = "loss-landscape metrics on the zoo's training loss"
    record = write_landscape(selection, name, out, what, options, attrs)
    return _with_phases(zoo, metrics, name, record)


def _parts(
    plan: LandscapeParts,
    partner: np.ndarray,
    metrics: list[str],
    options: LandscapeOptions,
    inputs: dict[str, Any],
    target: torch.device,
) -> tuple[list[Part], bool]:
    """One part per group of the plan, and whether any re-estimates BatchNorm statistics.

    Returns:
        ``(parts, reestimated)``: ``reestimated`` where a connectivity metric is measured on
        a group with BatchNorm (or ``options.bn_update``) and with a model that has a partner.
    """
    parts, reestimated = [], False
    connectivity = bool(set(metrics) & _CONNECTIVITY_METRICS)
    for key in dict.fromkeys(plan.groups.tolist()):
        module = plan.module(key).to(target)
        bn_update = options.bn_update
        uses = bool(batch_norm_layers(module)) if bn_update is None else bn_update
        members = np.flatnonzero(plan.groups == key)
        reestimated |= connectivity and uses and bool((partner[members] >= 0).any())
        data, pair = plan.data(key), options.replace(bn_update=uses)
        parts.append(Part(members, module, data, plan.loss, metrics, options, inputs, pair))
    return parts, reestimated


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
