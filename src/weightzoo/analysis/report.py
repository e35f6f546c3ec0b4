"""``weightzoo report``: every paper table a zoo (or a DS1 + DS2 pair) supports, in one object.

Each table is computed where the zoo allows it and otherwise listed as skipped, with the
reason; nothing about a zoo's contents makes :func:`report` fail. The text and Markdown forms
show the computed tables, and the skipped ones only when asked (``weightzoo report --all``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from weightzoo._types import PathLike
from weightzoo.analysis import (
    lineage_recovery,
    mlds,
    phase_diagram,
    probes,
    property_inference,
    quality,
    trajectories,
)
from weightzoo.analysis.data import as_zoo, class_column, zoo_label
from weightzoo.analysis.tables import TEXT_WIDTH, Skipped, Table, wrap_text
from weightzoo.errors import InvalidOptionError, WeightzooError
from weightzoo.zoo import Zoo

REPORT_FORMAT = 1
TABLE_IDS = (
    "quality",
    "mlds.table1",
    "mlds.table2",
    "modelzoo.table3",
    "trajectories.clustering",
    "property.distinguish",
    "vit.finetune",
    "vit.lineage",
    "phase.diagram",
)


WHOLE_ZOO_TABLES = ("vit.finetune", "vit.lineage")
"""Tables that read every group of a grouped zoo together (lineage spans groups)."""


@dataclass
class Report:
    """The tables computed for one or two zoos, and those skipped with the reason.

    Attributes:
        zoos: ``{"name", "path", "family", "models", "checkpoints"}`` per zoo.
        tables: the computed tables, in :data:`TABLE_IDS` order.
        skipped: the tables not computed, each with the zoo and the reason.
    """

    zoos: list[dict[str, Any]]
    tables: list[Table] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def table(self, table_id: str, zoo: str | None = None) -> Table:
        """The first computed table with this id (and zoo label, for per-zoo tables).

        Raises:
            KeyError: if it was not computed (see :attr:`skipped` for why).
        """
        for table in self.tables:
            if table.id == table_id and (zoo is None or table.zoo == zoo):
                return table
        reasons = [s.line() for s in self.skipped if s.table == table_id]
        raise KeyError(f"no table {table_id!r} in this report. {' '.join(reasons)}".strip())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``report_format``, ``zoos``, ``tables``, ``skipped``."""
        return {
            "report_format": REPORT_FORMAT,
            "zoos": self.zoos,
            "tables": [t.to_dict() for t in self.tables],
            "skipped": [s.to_dict() for s in self.skipped],
        }

    def to_json(self, indent: int | None = 1) -> str:
        """The report as a JSON document (missing values and NaN as ``null``)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def _heading(self) -> str:
        return "weightzoo report: " + " + ".join(
            f"{z['name']} ({z['models']} models x {z['checkpoints']} checkpoints)"
            if z.get("checkpoints") is not None
            else f"{z['name']} ({z['models']} models in groups {', '.join(z['groups'])})"
            for z in self.zoos
        )

    def _left_out(self) -> str:
        """The line that stands for the skipped tables where they are not listed."""
        count = len(self.skipped)
        what = (
            "table this zoo does not support is"
            if count == 1
            else "tables this zoo does not support are"
        )
        return f"{count} {what} left out; `weightzoo report --all` lists them with the reason"

    def to_text(self, *, show_skipped: bool = False, width: int = TEXT_WIDTH) -> str:
        """Plain-text tables, no line longer than ``width``.

        Args:
            show_skipped: also list every skipped table, one wrapped line each with the reason;
                otherwise one line says how many were left out.
            width: the most characters of a line.

        Returns:
            The report, ending with a newline.
        """
        parts = ["\n".join(wrap_text(self._heading(), width))]
        parts += [t.to_text(width) for t in self.tables]
        if self.skipped and show_skipped:
            lines = [line for s in self.skipped for line in wrap_text(s.line(), width)]
            parts.append("\n".join(lines))
        elif self.skipped:
            parts.append("\n".join(wrap_text(self._left_out(), width)))
        return "\n\n".join(parts) + "\n"

    def to_markdown(self, *, show_skipped: bool = False) -> str:
        """A Markdown document: a section per table, then the skipped tables as a list.

        Args:
            show_skipped: list every skipped table with the reason (else one line counts them).

        Returns:
            The document, ending with a newline.
        """
        parts = [f"## {self._heading()}", *(t.to_markdown() for t in self.tables)]
        if self.skipped and show_skipped:
            parts.append("\n".join(f"- {s.line()}" for s in self.skipped))
        elif self.skipped:
            parts.append(self._left_out())
        return "\n\n".join(parts) + "\n"

    def __str__(self) -> str:
        return self.to_text()


def _describe(zoo: Zoo) -> dict[str, Any]:
    if zoo.grouped is not None and zoo.group_name is None:  # a whole grouped zoo
        return {
            "name": zoo.name,
            "path": str(zoo.root),
            "family": zoo.grouped.family,
            "models": len(zoo),
            "checkpoints": None,
            "groups": zoo.groups,
        }
    return {
        "name": zoo.name,
        "path": str(zoo.path),
        "family": zoo.manifest.family,
        "models": len(zoo),
        "checkpoints": len(zoo.epochs),
    }


def report(
    zoo: Zoo | PathLike,
    zoo2: Zoo | PathLike | None = None,
    *,
    tables: Iterable[str] | None = None,
) -> Report:
    """Run every table that ``zoo`` (and ``zoo2``) support.

    Args:
        zoo: a zoo or its directory.
        zoo2: a second zoo: the DS2 partner of an MLDS DS1 zoo (in either order) for the MLDS
            paper's Table 2; its other tables are reported as well.
        tables: only these table ids (see :data:`TABLE_IDS`); all by default.

    Returns:
        A :class:`Report`; tables a zoo cannot support are in ``report.skipped`` with the reason.

    Raises:
        ZooNotFoundError: if a path holds no zoo.
        InvalidOptionError: for an unknown table id.
    """
    wanted = list(TABLE_IDS if tables is None else tables)
    unknown = [t for t in wanted if t not in TABLE_IDS]
    if unknown:
        raise InvalidOptionError(
            f"unknown table id(s) {unknown}; choose from {', '.join(TABLE_IDS)}"
        )
    zoos = [as_zoo(zoo)] + ([] if zoo2 is None else [as_zoo(zoo2)])
    result = Report(zoos=[_describe(z) for z in zoos])
    whole = [z for z in zoos if z.grouped is not None and z.group_name is None]
    for table_id in TABLE_IDS:
        if table_id not in wanted:
            continue
        if whole and table_id not in WHOLE_ZOO_TABLES:
            labels = " + ".join(zoo_label(z) for z in whole)
            reason = "a grouped zoo: this table reads one group at a time; pass its group"
            result.skipped.append(Skipped(table_id, labels, reason))
            continue
        _RUNNERS[table_id](zoos, result)
    return result


def _attempt(result: Report, table_id: str, zoo: str, run: Callable[[], Table]) -> None:
    """Add ``run()``'s table to ``result``, or a skip line when the zoo cannot support it."""
    try:
        result.tables.append(run())
    except WeightzooError as exc:  # UnsupportedTableError, or a zoo that cannot be read
        result.skipped.append(Skipped(table_id, zoo, str(exc)))


def _collect(result: Report, found: tuple[Table | None, list[Skipped]]) -> None:
    table, skipped = found
    if table is not None:
        result.tables.append(table)
    result.skipped.extend(skipped)


def _mlds_table1(zoos: list[Zoo], result: Report) -> None:
    _collect(result, mlds.table1(zoos))


def _mlds_table2(zoos: list[Zoo], result: Report) -> None:
    labels = " + ".join(zoo_label(z) for z in zoos)
    if len(zoos) < 2:
        hint = (
            "pass the DS1 and the DS2 zoo: `weightzoo report DS1_DIR DS2_DIR`"
            if class_column(zoos[0]) == "machine"
            else "it compares clean (DS1) and backdoored (DS2) MLDS zoos"
        )
        result.skipped.append(Skipped("mlds.table2", labels, f"Table 2 needs a second zoo; {hint}"))
        return
    _attempt(result, "mlds.table2", labels, lambda: mlds.table2(zoos[0], zoos[1]))


def _modelzoo_table3(zoos: list[Zoo], result: Report) -> None:
    _collect(result, probes.table3(zoos))


def _per_zoo(table_id: str, make: Callable[[Zoo], Table]) -> Callable[[list[Zoo], Report], None]:
    """A runner of a table computed from each zoo on its own."""

    def run(zoos: list[Zoo], result: Report) -> None:
        for zoo in zoos:
            _attempt(result, table_id, zoo_label(zoo), lambda zoo=zoo: make(zoo))

    return run


_RUNNERS: dict[str, Callable[[list[Zoo], Report], None]] = {
    "quality": _per_zoo("quality", quality.quality_table),
    "mlds.table1": _mlds_table1,
    "mlds.table2": _mlds_table2,
    "modelzoo.table3": _modelzoo_table3,
    "trajectories.clustering": _per_zoo("trajectories.clustering", trajectories.trajectory_table),
    "property.distinguish": _per_zoo("property.distinguish", property_inference.distinguish_table),
    "vit.finetune": _per_zoo("vit.finetune", lineage_recovery.finetune_table),
    "vit.lineage": _per_zoo("vit.lineage", lineage_recovery.lineage_table),
    "phase.diagram": _per_zoo("phase.diagram", phase_diagram.diagram_table),
}
