"""Result tables: our numbers beside a paper's, as JSON data, Markdown or plain text."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

from weightzoo.errors import WeightzooError

# A cell: a number, a count, a label, missing (None), or quantiles {"p10": .., "p50": .., ..}.
Value = float | int | str | None | dict[str, float]
#: Columns of a terminal that a text report fills at most.
TEXT_WIDTH = 100
#: Characters of one cell (a label, a column name) in a text table; longer ones are cut.
CELL_CHARS = 40


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
        """Header and rows as strings, each cell ``ours (paper)`` where the paper has a value.

        The numbers of a column (ours, the paper's, and those inside quantile cells) share one
        format (:func:`number_format`), so that they align and compare at a glance.
        """
        # The paper's row names are shown where they differ from ours.
        has_paper = any(row.paper and row.paper_label != row.label for row in self.rows)
        header = ["", *self.columns] + (["paper row"] if has_paper else [])
        lines = [header]
        specs = {column: number_format(self._column_numbers(column)) for column in self.columns}
        for row in self.rows:
            cells = [row.label]
            for column in self.columns:
                text = format_value(row.ours.get(column), specs[column])
                reference = (row.paper or {}).get(column)
                if reference is not None:
                    text += f" ({format_value(reference, specs[column])})"
                cells.append(text)
            if has_paper:
                cells.append(row.paper_label or "-")
            lines.append(cells)
        return lines

    def _column_numbers(self, column: str) -> list[float | int]:
        """Every number shown in ``column``: ours, inside quantile cells, and the paper's."""
        numbers: list[float | int] = []
        for row in self.rows:
            numbers.extend(_numbers(row.ours.get(column)))
            numbers.extend(_numbers((row.paper or {}).get(column)))
        return numbers

    def to_text(self, width: int = TEXT_WIDTH) -> str:
        """A plain-text table with aligned columns, no line longer than ``width``.

        Prose (title, source, notes) is wrapped; cells longer than :data:`CELL_CHARS` are cut
        in the middle; a table wider than ``width`` is printed in blocks of columns, each
        with the row labels.
        """
        out = wrap_text(self.title, width)
        out += wrap_text(f"source: {self.source}", width, "  ")
        unit = self.unit + ("; the paper's value in parentheses" if self._has_paper() else "")
        out += wrap_text(f"values: {unit}", width, "  ")
        # A label and one value column always fit, however narrow the width.
        limit = min(CELL_CHARS, (width - 4) // 2)
        grid = [[_cut(cell, limit) for cell in line] for line in self.grid()]
        widths = [max(len(line[i]) for line in grid) for i in range(len(grid[0]))]
        for block in _column_blocks(widths, width - 2):
            for line in grid:
                cells = [line[0].ljust(widths[0])] + [line[i].rjust(widths[i]) for i in block]
                out.append("  " + "  ".join(cells).rstrip())
        for note in self.notes:
            out += wrap_text(f"note: {note}", width, "  ")
        return "\n".join(out)

    def _has_paper(self) -> bool:
        return any(row.paper for row in self.rows)

    def to_markdown(self) -> str:
        """A Markdown section: title, source, a pipe table and the notes."""
        grid = self.grid()
        out = [f"### {self.title}", "", f"Source: {self.source}. Values: {self.unit}."]
        if self._has_paper():
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


def format_value(value: Value, spec: str | None = None) -> str:
    """A cell as text; ``-`` if missing.

    Args:
        value: the cell.
        spec: the format of every number in it (e.g. ``".2f"``, from :func:`number_format`);
            by default each number gets its own: 1 decimal from 10 up, 2 from 1, 3 from 0.01,
            then 2 significant digits.

    Returns:
        The text of the cell.
    """
    if value is None:
        return "-"
    if isinstance(value, dict):
        if {"p10", "p50", "p90"} <= set(value):
            return (
                f"{format_value(value['p50'], spec)} "
                f"[{format_value(value['p10'], spec)}, {format_value(value['p90'], spec)}]"
            )
        if "phase" in value:  # a phase-diagram cell: "0.967 IV-B"
            others = [format_value(v, spec) for k, v in value.items() if k != "phase"]
            return " ".join([*others, str(value["phase"])])
        return ", ".join(f"{k} {format_value(v, spec)}" for k, v in value.items())
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, Integral) and spec is None:
        return str(value)
    if not math.isfinite(value):
        return "nan"
    text = format(value, spec or _own_format(value))
    # "-0.00": a small negative number rounds to zero, which has no sign.
    return text[1:] if text.startswith("-") and not text.strip("-0.e+") else text


def _own_format(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 10 or value == 0:
        return ".1f"
    if magnitude >= 1:
        return ".2f"
    if magnitude >= 0.01:
        return ".3f"
    return ".2g"


def number_format(numbers: Iterable[float | int]) -> str | None:
    """The one format of a column's numbers: decimals for its largest, so that all align.

    A column of counts (ints only) is written as integers. Otherwise the largest magnitude sets
    the decimals (1 from 10 up, 2 from 1, 3 below), with more (up to 3) where the smallest
    non-zero value would otherwise show as 0; a column whose numbers are all below 0.01 is
    written in scientific notation.

    Args:
        numbers: the column's numbers (NaN and infinities are ignored).

    Returns:
        A format spec (``"d"``, ``".2f"``, ``".2e"``), or ``None`` for a column without a
        finite number.
    """
    numbers = list(numbers)
    finite = [abs(float(x)) for x in numbers if math.isfinite(x)]
    if not finite:
        return None
    if all(isinstance(x, Integral) for x in numbers):
        return "d"
    largest = max(finite)
    if largest == 0:
        return ".1f"
    if largest < 0.01:
        return ".2e"
    decimals = 1 if largest >= 10 else 2 if largest >= 1 else 3
    smallest = min(x for x in finite if x > 0)
    while decimals < 3 and round(smallest, decimals) == 0:
        decimals += 1
    return f".{decimals}f"


def _numbers(value: Value) -> Iterator[float | int]:
    """The numbers of a cell (counts too: in a column of fractions they share the format)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, Real) and not isinstance(value, bool):
        yield value


def _cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, cut in the middle where longer."""
    if len(text) <= limit:
        return text
    head = (limit - 3 + 1) // 2
    return f"{text[:head]}...{text[len(text) - (limit - 3 - head) :]}"


def wrap_text(text: str, width: int = TEXT_WIDTH, indent: str = "") -> list[str]:
    """``text`` as lines of at most ``width``; a word longer than a line (a path) is broken.

    Args:
        text: one line of prose.
        width: the most characters of a line.
        indent: put before the first line; later lines get two spaces more.

    Returns:
        The lines (one, ``indent`` alone, for empty text).
    """
    return textwrap.wrap(
        text,
        width,
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_on_hyphens=False,
    ) or [indent.rstrip()]


def _column_blocks(widths: list[int], width: int) -> list[list[int]]:
    """The value columns (indices 1..) in blocks that fit ``width`` beside the label column.

    As few blocks as fit, and of even widths: the narrowest line that needs no more blocks.
    """
    fewest = _fill_blocks(widths, width)
    for narrower in range(widths[0], width):
        blocks = _fill_blocks(widths, narrower)
        if len(blocks) == len(fewest):
            return blocks
    return fewest


def _fill_blocks(widths: list[int], width: int) -> list[list[int]]:
    """Fill each block with columns while its line fits ``width`` (a first column always)."""
    blocks: list[list[int]] = [[]]
    used = widths[0]
    for i in range(1, len(widths)):
        if blocks[-1] and used + 2 + widths[i] > width:
            blocks.append([])
            used = widths[0]
        blocks[-1].append(i)
        used += 2 + widths[i]
    return blocks


def _json_value(value: Value) -> Value:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


def _escape(text: str) -> str:
    return text.replace("|", "\\|")
