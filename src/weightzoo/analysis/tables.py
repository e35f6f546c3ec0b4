"""Result tables: our numbers beside a paper's, as JSON data, Markdown or plain text."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from weightzoo.errors import WeightzooError

# A cell: a number, a count, a label, missing (None), or quantiles {"p10": .., "p50": .., ..}.
Value = float | int | str | None | dict[str, float]


class UnsupportedTableError(WeightzooError, ValueError):
    """A zoo (or pair of zoos) cannot support a table; the message says why and what to do."""


@dataclass
class Row:
    """One row of a table.

    Attributes:
        label: what the row is about (a zoo, a machine, a space, a class).
        ours: column name -> our value.
        paper: column name -> the paper's published value (``None`` where it has none).
        paper_label: the row of the paper's table that ``paper`` comes from.
    """

    label: str
    ours: dict[str, Value]
    paper: dict[str, float | None] | None = None
    paper_label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN becomes ``null``)."""
        return {
            "label": self.label,
            "ours": {k: _json_value(v) for k, v in self.ours.items()},
            "paper": None if self.paper is None else dict(self.paper),
            "paper_label": self.paper_label,
        }


@dataclass
class Table:
    """One table of a report.

    Attributes:
        id: a stable key, e.g. ``"mlds.table1"``.
        title: one line saying what the table computes.
        source: the paper and table it reproduces (title, authors, arXiv id), or ``"weightzoo"``.
        unit: what the numbers are, e.g. ``"accuracy on the test split, %"``.
        columns: the value columns, in order.
        rows: the rows.
        notes: protocol details worth reading beside the numbers.
        zoo: the zoo a per-zoo table is about (``None`` for tables with a row per zoo).
    """

    id: str
    title: str
    source: str
    unit: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    zoo: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "zoo": self.zoo,
            "title": self.title,
            "source": self.source,
            "unit": self.unit,
            "columns": list(self.columns),
            "rows": [row.to_dict() for row in self.rows],
            "notes": list(self.notes),
        }

    def grid(self) -> list[list[str]]:
        """Header and rows as strings, each cell ``ours (paper)`` where the paper has a value."""
        # The paper's row names are shown where they differ from ours.
        has_paper = any(row.paper and row.paper_label != row.label for row in self.rows)
        header = ["", *self.columns] + (["paper row"] if has_paper else [])
        lines = [header]
        for row in self.rows:
            cells = [row.label]
            for column in self.columns:
                text = format_value(row.ours.get(column))
                reference = (row.paper or {}).get(column)
                if reference is not None:
                    text += f" ({format_value(reference)})"
                cells.append(text)
            if has_paper:
                cells.append(row.paper_label or "-")
            lines.append(cells)
        return lines

    def to_text(self) -> str:
        """A plain-text table with aligned columns."""
        grid = self.grid()
        widths = [max(len(line[i]) for line in grid) for i in range(len(grid[0]))]
        out = [f"{self.title}", f"  source: {self.source}", f"  values: {self.unit}"]
        if any(row.paper for row in self.rows):
            out[-1] += "; the paper's value in parentheses"
        for line in grid:
            cells = [
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            ]
            out.append("  " + "  ".join(cells).rstrip())
        out.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(out)

    def to_markdown(self) -> str:
        """A Markdown section: title, source, a pipe table and the notes."""
        grid = self.grid()
        out = [f"### {self.title}", "", f"Source: {self.source}. Values: {self.unit}."]
        if any(row.paper for row in self.rows):
            out[-1] += " The paper's value in parentheses."
        out.append("")
        out.append("| " + " | ".join(_escape(c) for c in grid[0]) + " |")
        out.append("|" + "|".join(" --- " for _ in grid[0]) + "|")
        out.extend("| " + " | ".join(_escape(c) for c in line) + " |" for line in grid[1:])
        if self.notes:
            out.append("")
            out.extend(f"- {note}" for note in self.notes)
        return "\n".join(out)


@dataclass(frozen=True)
class Skipped:
    """A table that was not computed, and why."""

    table: str
    zoo: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return {"table": self.table, "zoo": self.zoo, "reason": self.reason}

    def line(self) -> str:
        """One line for the text and Markdown reports."""
        return f"skipped {self.table} for {self.zoo}: {self.reason}"


def format_value(value: Value) -> str:
    """A cell as text: 1 decimal from 10 up, 2 from 1, 3 from 0.01, then 2 digits; ``-`` if none."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        if {"p10", "p50", "p90"} <= set(value):
            return (
                f"{format_value(value['p50'])} "
                f"[{format_value(value['p10'])}, {format_value(value['p90'])}]"
            )
        if "phase" in value:  # a phase-diagram cell: "0.967 IV-B"
            others = [format_value(v) for k, v in value.items() if k != "phase"]
            return " ".join([*others, str(value["phase"])])
        return ", ".join(f"{k} {format_value(v)}" for k, v in value.items())
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    if not math.isfinite(value):
        return "nan"
    magnitude = abs(value)
    if magnitude >= 10 or value == 0:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude >= 0.01:
        return f"{value:.3f}"
    return f"{value:.2g}"


def _json_value(value: Value) -> Value:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


def _escape(text: str) -> str:
    return text.replace("|", "\\|")
