"""The phase diagram of a phase-transition grid: load x temperature, accuracy and phase.

"A Model Zoo on Phase Transitions in Neural Networks" (Schürholt, Meynent, Zhou, Lu, Yang,
Borth; arXiv:2504.18072) plots every zoo on its load-like x temperature-like grid. Here each
cell holds the mean held-out metric of its models at the last checkpoint (``test_acc`` where
the zoo has it, else ``test_loss``, else a validation metric such as a tiny LM's ``val_acc``)
and the majority of their phase labels (the ``phase`` array of the zoo's ``landscape`` side
file, :mod:`weightzoo.landscape.taxonomy`).

A grid whose models differ in width is stored as one zoo per load value: the groups of a
grouped zoo (``zoos/phase-digits-cnn/groups/w2`` ... ``w32``) or separate zoos
(``zoos/phase-digits-cnn-w2`` ...). Either way they sit in one folder, and :func:`grid_zoos`
collects the zoos there whose spec names the same ``grid``, so that the diagram of any of
them covers the whole grid (``weightzoo report`` on a grouped zoo shows it once, with the
first group).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from weightzoo.analysis.data import zoo_label
from weightzoo.analysis.tables import Row, Table, UnsupportedTableError
from weightzoo.errors import WeightzooError
from weightzoo.landscape.taxonomy import UNKNOWN, read_phases
from weightzoo.storage.manifest import MANIFEST_NAME
from weightzoo.zoo import Zoo

SOURCE = (
    "Schürholt, Meynent, Zhou, Lu, Yang, Borth, A Model Zoo on Phase Transitions in Neural "
    "Networks, arXiv:2504.18072; phases of Yang et al., arXiv:2107.11228"
)


def is_phase_zoo(zoo: Zoo) -> bool:
    """Whether the zoo has the phase columns ``load`` and ``temperature``."""
    return {"load", "temperature"} <= set(zoo.manifest.columns)


def grid_zoos(zoo: Zoo) -> list[Zoo]:
    """The zoos of ``zoo``'s grid: itself and the zoos beside it whose spec has its ``grid``.

    In width order; zoos that cannot be opened are left out. Without a ``grid`` in the spec,
    only ``zoo``.
    """
    grid = zoo.manifest.spec.get("grid")
    if not grid:
        return [zoo]
    found = [zoo]
    for folder in sorted(zoo.path.parent.iterdir()):
        if folder.resolve() == zoo.path.resolve() or not (folder / MANIFEST_NAME).is_file():
            continue
        try:  # a grouped zoo (or a damaged one) beside the grid is no cell of it
            other = Zoo(folder)
            same = other.manifest.family == zoo.manifest.family
            in_grid = same and other.manifest.spec.get("grid") == grid
        except WeightzooError:
            continue
        if in_grid:
            found.append(other)
    return sorted(found, key=lambda z: (float(z.manifest.spec.get("width", 0)), z.name))


def _in_grouped_zoo(zoo: Zoo) -> bool:
    """Whether ``zoo`` is a group (``<top>/groups/<name>``) of a grouped zoo."""
    if zoo.path.parent.name != "groups":
        return False
    try:
        return Zoo(zoo.path.parent.parent).grouped is not None
    except WeightzooError:
        return False


@dataclass
class PhaseDiagram:
    """A load x temperature grid of one zoo or of the zoos of one grid.

    Attributes:
        loads: load values (rows), ascending.
        temperatures: temperature values (columns), ascending.
        load_factor / temperature_factor: the natural names (``width``, ``batch_size``).
        metric: the held-out metric averaged in each cell.
        value: ``[loads, temperatures]`` mean of ``metric`` (NaN where the cell is empty).
        phase: ``[loads, temperatures]`` majority phase label (``""`` where no labels).
        models: ``[loads, temperatures]`` models per cell.
        zoos: the zoos read, and notes on those left out.
    """

    loads: list[float]
    temperatures: list[float]
    load_factor: str
    temperature_factor: str
    metric: str
    value: np.ndarray
    phase: np.ndarray
    models: np.ndarray
    zoos: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN as ``None``)."""
        return {
            "load_factor": self.load_factor,
            "temperature_factor": self.temperature_factor,
            "loads": self.loads,
            "temperatures": self.temperatures,
            "metric": self.metric,
            "value": [[None if np.isnan(v) else float(v) for v in row] for row in self.value],
            "phase": self.phase.tolist(),
            "models": self.models.tolist(),
            "zoos": self.zoos,
        }


def _metric(zoo: Zoo, metric: str | None) -> str:
    names = list(zoo.manifest.metrics)
    if metric is not None:
        if metric not in names:
            raise UnsupportedTableError(f"{zoo_label(zoo)} has no metric {metric!r}: {names}")
        return metric
    held_out = [
        *("test_acc", "test_loss", *sorted(n for n in names if n.startswith("test_"))),
        # a zoo without a test split (tiny LMs) holds its validation windows out
        *("val_acc", "val_loss", *sorted(n for n in names if n.startswith("val_"))),
    ]
    for name in held_out:
        if name in names:
            return name
    raise UnsupportedTableError(f"{zoo_label(zoo)} has no held-out test_* or val_* metric: {names}")


def _cells(zoo: Zoo, metric: str) -> list[tuple[float, float, float, str]]:
    """``(load, temperature, metric, phase)`` of every model at the last checkpoint."""
    labels, models, epochs = read_phases(zoo.path)
    reader = zoo.reader(None, epochs="last")
    local = {int(p): i for i, p in enumerate(reader.positions.tolist())}
    last = epochs.index(max(epochs))
    phase_of = {int(p): str(labels[k, last]) for k, p in enumerate(models.tolist())}
    load, temperature = reader.columns["load"], reader.columns["temperature"]
    values = reader.metrics[metric][:, 0]
    return [
        (float(load[i]), float(temperature[i]), float(values[i]), phase_of.get(p, UNKNOWN))
        for p, i in local.items()
    ]


def phase_diagram(zoos: Zoo | Sequence[Zoo], *, metric: str | None = None) -> PhaseDiagram:
    """The phase diagram of one zoo or several zoos of one grid.

    Args:
        zoos: phase zoos (columns ``load`` and ``temperature``, a ``landscape`` side file with
            ``phase``); a zoo without phases is left out with a note, unless it is the only one.
        metric: the metric to average (default ``test_acc``, else ``test_loss``).

    Raises:
        UnsupportedTableError: not a phase zoo, or no zoo has phase labels.
    """
    zoos = [zoos] if isinstance(zoos, Zoo) else list(zoos)
    first = zoos[0]
    if not is_phase_zoo(first):
        raise UnsupportedTableError(
            f"{zoo_label(first)} is not a phase-transition zoo (no load and temperature columns)"
        )
    chosen = _metric(first, metric)
    cells, read, notes = [], [], []
    for zoo in zoos:
        try:
            cells += _cells(zoo, chosen)
            read.append(zoo_label(zoo))
        except WeightzooError as exc:
            if zoo is first:
                raise UnsupportedTableError(
                    f"{zoo_label(zoo)} has no phase labels ({exc}); run `weightzoo generate` "
                    "for it again (its last step measures them) or `weightzoo landscape` and "
                    "weightzoo.landscape.taxonomy.write_phases"
                ) from exc
            notes.append(f"{zoo_label(zoo)} left out: {exc}")
    loads = sorted({c[0] for c in cells})
    temperatures = sorted({c[1] for c in cells})
    shape = (len(loads), len(temperatures))
    totals, counts = np.zeros(shape), np.zeros(shape, dtype=np.int64)
    votes: dict[tuple[int, int], Counter] = {}
    for load, temperature, value, label in cells:
        key = (loads.index(load), temperatures.index(temperature))
        counts[key] += 1
        totals[key] += value
        if label != UNKNOWN:
            votes.setdefault(key, Counter())[label] += 1
    phase = np.full(shape, "", dtype=object)
    for key, counter in votes.items():
        phase[key] = counter.most_common(1)[0][0]
    spec = first.manifest.spec
    with np.errstate(invalid="ignore"):
        value = np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)
    return PhaseDiagram(
        loads=loads,
        temperatures=temperatures,
        load_factor=str(spec.get("load_factor", "load")),
        temperature_factor=str(spec.get("temperature_factor", "temperature")),
        metric=chosen,
        value=value,
        phase=phase,
        models=counts,
        zoos=read,
        notes=notes,
    )


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def diagram_table(zoo: Zoo, *, metric: str | None = None) -> Table:
    """The phase diagram of ``zoo``'s grid (:func:`grid_zoos`) as a report table.

    Rows are load values, columns temperature values; a cell is ``{metric: mean, "phase":
    majority label}``.

    Raises:
        UnsupportedTableError: as :func:`phase_diagram`.
    """
    if not is_phase_zoo(zoo):
        raise UnsupportedTableError(
            f"{zoo_label(zoo)} is not a phase-transition zoo (no load and temperature columns)"
        )
    zoos = grid_zoos(zoo)
    first = min(zoos, key=lambda z: float(z.reader(None, "last").columns["load"].min()))
    if _in_grouped_zoo(zoo) and first.path != zoo.path:
        raise UnsupportedTableError(
            f"the diagram of grid {zoo.manifest.spec.get('grid')!r} is reported once, with its "
            f"first group ({first.path.name})"
        )
    diagram = phase_diagram(zoos, metric=metric)
    temperature = [f"{diagram.temperature_factor}={_number(t)}" for t in diagram.temperatures]
    table = Table(
        id="phase.diagram",
        title=f"Phase diagram of {zoo.manifest.spec.get('grid') or zoo_label(zoo)}: "
        f"{diagram.load_factor} (load) x {diagram.temperature_factor} (temperature), "
        f"last checkpoint",
        source=SOURCE,
        unit=f"mean {diagram.metric} over a cell's models, then its majority phase",
        columns=temperature,
        zoo=zoo_label(zoo),
    )
    for i, load in enumerate(diagram.loads):
        ours: dict[str, Any] = {}
        for j, column in enumerate(temperature):
            if diagram.models[i, j]:
                value = diagram.value[i, j]
                ours[column] = {
                    diagram.metric: None if np.isnan(value) else float(value),
                    "phase": diagram.phase[i, j] or UNKNOWN,
                }
        table.rows.append(Row(f"{diagram.load_factor}={_number(load)}", ours))
    table.notes.append(f"zoos: {', '.join(diagram.zoos)}")
    table.notes.extend(diagram.notes)
    return table
