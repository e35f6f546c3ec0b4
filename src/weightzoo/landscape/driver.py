"""What every zoo-level landscape engine does alike: checks, selection, the loop, the side file.

An engine (the generic :func:`weightzoo.landscape.zoo_metrics.compute_zoo_landscape`, or a family's
own, as :func:`weightzoo.families.pinn.landscape.pinn_landscape`) says only what differs: the
modules, data and loss of each group of models (:class:`Part`), each model's partner, the
knobs (:class:`~weightzoo.landscape.options.LandscapeOptions`) and the side file's attributes. This
module checks the metric names, counts and family, opens the selection (:class:`Selection`),
measures every part at every selected checkpoint under one progress bar (:func:`measure`) and
writes the ``[models, checkpoints]`` arrays to the side file (:func:`write_landscape`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from weightzoo._types import EpochSelection, PathLike, SplitSelection
from weightzoo.errors import InvalidOptionError
from weightzoo.landscape._per_model import Data, LossFn
from weightzoo.landscape.metrics import (
    _PAIR_METRICS,
    METRICS,
    UnknownMetricError,
    landscape_metrics,
)
from weightzoo.landscape.options import LandscapeOptions, check_counts
from weightzoo.storage.reader import ZooReader
from weightzoo.storage.selection import check_epochs
from weightzoo.storage.sidecar import SidecarRecord, sidecar_records, write_sidecar
from weightzoo.zoo import Zoo

__all__ = [
    "RECORDED_OPTIONS",
    "PairOptions",
    "Part",
    "Selection",
    "check_counts",
    "check_family",
    "landscape_is_complete",
    "measure",
    "metric_list",
    "write_landscape",
]

#: The knobs of :class:`LandscapeOptions` a side file records: those its values depend on
#: (``chunk``, ``vectorize`` and the data do not count; the engine records its data).
RECORDED_OPTIONS = (
    "seed",
    "iters",
    "tol",
    "probes",
    "steps",
    "points",
    "lr",
    "momentum",
    "weight_decay",
)

#: ``(rows of the part's models, their single-model results) -> options`` of the pair call.
PairOptions = Callable[[Tensor, Mapping[str, np.ndarray]], LandscapeOptions]


def check_family(zoo: Zoo, family: str, label: str) -> None:
    """Refuse a zoo whose spec is not of ``family`` (``label``: how its docs name the family).

    Raises:
        InvalidOptionError: naming the zoo, its family and the generic driver.
    """
    found = zoo.manifest.spec.get("family")
    if found != family:
        raise InvalidOptionError(
            f"zoo {zoo.name!r} at {zoo.path} is a {found!r} zoo, not a {label} zoo; "
            "use weightzoo.landscape.zoo_metrics.compute_zoo_landscape"
        )


def metric_list(
    metrics: str | Sequence[str], *, unmeasurable: Collection[str] = (), where: str = ""
) -> list[str]:
    """``metrics`` as a list of names that an engine measures.

    Args:
        metrics: one name or several, from :data:`weightzoo.landscape.METRICS`.
        unmeasurable: names the engine does not measure (a PINN has no accuracy:
            ``mc_error``).
        where: what the engine measures (``"PINN zoo 'x'"``); named by the error for an
            unmeasurable metric.

    Raises:
        InvalidOptionError: for no metric.
        UnknownMetricError: for a name that is no metric, or one in ``unmeasurable``.
    """
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    known = [m for m in METRICS if m not in unmeasurable]
    if not metrics:
        raise InvalidOptionError(f"name at least one landscape metric: {', '.join(known)}")
    unknown = [m for m in metrics if m not in known]
    if unknown and unmeasurable:
        raise UnknownMetricError(
            f"landscape metric(s) {unknown} not measurable on {where}; "
            f"choose from {', '.join(known)}"
        )
    if unknown:
        raise UnknownMetricError(
            f"unknown landscape metric(s) {unknown}; known: {', '.join(known)}"
        )
    return metrics


@dataclass(frozen=True)
class Selection:
    """The checkpoints an engine measures: a zoo's selected models at its selected epochs.

    Attributes:
        zoo: the zoo.
        reader: the reader over the selection.
        columns: the selected models' one-value-per-model columns.
    """

    zoo: Zoo
    reader: ZooReader
    columns: dict[str, np.ndarray]

    @classmethod
    def open(
        cls,
        zoo: Zoo,
        split: SplitSelection,
        epochs: EpochSelection,
    ) -> Selection:
        """The selection of ``split`` at ``epochs`` (see :meth:`weightzoo.zoo.Zoo.reader`)."""
        reader = zoo.reader(split, epochs)
        columns = {k: np.asarray(v) for k, v in reader.columns.items() if np.ndim(v) == 1}
        return cls(zoo, reader, columns)

    @property
    def count(self) -> int:
        """The number of selected models."""
        return len(self.reader.positions)

    def rows(self, column: int, device: torch.device) -> Tensor:
        """Every selected model's weights at the ``column``-th selected epoch, ``[count, P]``."""
        count = self.count
        found = self.reader.read("weights", np.arange(count), np.full(count, column))
        return torch.from_numpy(np.array(found)).to(device)  # a copy: the read may be read-only


@dataclass(frozen=True)
class Part:
    """Models measured together: one module, one data set, one loss.

    Attributes:
        members: the models, as indices into the selection.
        module: their architecture (its own weights are never used).
        data: the batches ``[(inputs, targets)]`` they are measured on.
        loss: ``loss(outputs, targets)``, a scalar.
        metrics: what is measured on them (pair metrics: against each one's partner).
        options: the knobs of every :func:`~weightzoo.landscape.landscape_metrics` call.
        inputs: its other keywords (``layout``, ``accuracy_fn``, ``cka_inputs``,
            ``cka_layer``).
        pair_options: the knobs of the pair-metric call instead of ``options``: fixed, or
            made from the models' rows and their single-model results (measured first).
    """

    members: np.ndarray
    module: nn.Module
    data: Data
    loss: LossFn
    metrics: Sequence[str]
    options: LandscapeOptions
    inputs: Mapping[str, Any] = field(default_factory=dict)
    pair_options: LandscapeOptions | PairOptions | None = None


def measure(
    selection: Selection,
    parts: Sequence[Part],
    partner: np.ndarray,
    metrics: Sequence[str],
    *,
    device: torch.device,
    progress: bool,
) -> dict[str, np.ndarray]:
    """Measure every part at every selected checkpoint.

    Args:
        selection: the checkpoints.
        parts: what is measured, and on what.
        partner: each model's partner for the pair metrics, an index into the selection
            (-1: none, its pair metrics stay NaN).
        metrics: every metric the parts measure.
        device: where the rows go.
        progress: show a progress bar over the parts' models and the checkpoints.

    Returns:
        ``{metric: float64 [models, checkpoints]}``, NaN where not measured.
    """
    epochs = len(selection.reader.epochs)
    out = {m: np.full((selection.count, epochs), np.nan, dtype=np.float64) for m in metrics}
    total = epochs * sum(len(part.members) for part in parts)
    desc = f"landscape {selection.zoo.name}"
    with tqdm(total=total, disable=not progress, desc=desc) as bar:
        for column in range(epochs):
            rows = selection.rows(column, device)
            for part in parts:
                for metric, (models, values) in _measure_part(part, rows, partner).items():
                    out[metric][models, column] = values
                bar.update(len(part.members))
    return out


def _measure_part(
    part: Part, rows: Tensor, partner: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{metric: (models, values)}`` of one part at one checkpoint."""
    members = part.members
    paired = members[partner[members] >= 0]
    singles = [m for m in part.metrics if m not in _PAIR_METRICS]
    pairs = [m for m in part.metrics if m in _PAIR_METRICS]
    found: dict[str, np.ndarray] = {}
    if singles:
        found = landscape_metrics(
            part.module,
            rows[members],
            part.data,
            part.loss,
            singles,
            options=part.options,
            **part.inputs,
        )
    out = {metric: (members, values) for metric, values in found.items()}
    if pairs and len(paired):
        options = part.options if part.pair_options is None else part.pair_options
        if callable(options):
            options = options(rows[members], found)
        values = landscape_metrics(
            part.module, rows[paired], part.data, part.loss, pairs,
            partners=rows[partner[paired]], options=options, **part.inputs,
        )  # fmt: skip
        out |= {metric: (paired, array) for metric, array in values.items()}
    return out


def write_landscape(
    selection: Selection,
    name: str,
    values: Mapping[str, np.ndarray],
    what: str,
    options: LandscapeOptions,
    attrs: Mapping[str, Any],
) -> SidecarRecord:
    """Write ``values`` of the selection's checkpoints to the zoo's side file ``name``.

    The side file's attributes are ``what``, ``metrics`` (the arrays, in order), the knobs
    of ``options`` that the values depend on (:data:`RECORDED_OPTIONS`), then ``attrs``.

    Args:
        selection: the checkpoints measured.
        name: the side file's name.
        values: ``{metric: [models, checkpoints]}``, as :func:`measure` returns.
        what: the loss the metrics are of.
        options: the knobs the parts measured with (:attr:`Part.options`).
        attrs: what else the engine measured with (data, partners).

    Returns:
        The side file's record.
    """
    attrs = {"what": what, "metrics": list(values), **options.pick(RECORDED_OPTIONS), **attrs}
    reader = selection.reader
    return write_sidecar(
        selection.zoo.path, name, values, attrs, models=reader.positions, epochs=reader.epochs
    )


def landscape_is_complete(
    zoo: Zoo | PathLike, metrics: Sequence[str], name: str, epochs: EpochSelection = "all"
) -> bool:
    """Whether side file ``name`` holds ``metrics`` of every model at exactly ``epochs``.

    What a family's ``finalize`` asks before measuring again: a side file that a measurement
    of some models or other checkpoints wrote (``weightzoo landscape --split train``) is not
    complete, whatever metrics it has.
    """
    zoo = zoo if isinstance(zoo, Zoo) else Zoo(zoo)
    record = sidecar_records(zoo.path).get(name)
    if record is None:
        return False
    return (
        set(metrics) <= set(record.arrays)
        and len(record.models) == zoo.manifest.num_models
        and list(record.epochs) == check_epochs(epochs, zoo.manifest)
    )
