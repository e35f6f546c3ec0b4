"""``weightzoo list``: every known zoo, its size and where it comes from."""

from __future__ import annotations

import argparse
import json
from typing import Any

from weightzoo import catalog, families
from weightzoo.cli.options import add_command
from weightzoo.errors import InvalidOptionError
from weightzoo.generate.base import GroupedSpec, ZooSpec
from weightzoo.generate.specs import all_specs

__all__ = ["add_parsers", "cmd_list"]

_LIST_FOOTER = (
    "sources: tried in order by `weightzoo fetch NAME` (hub copy, original release, generate)"
)
_LIST_TEXT = """list known zoos: sizes and where each comes from (hub, release, generate)

One table per family: models, checkpoints per model, parameters per model, the zoo's size in
weightzoo's format (estimated), the download's size where the catalog knows it, and the sources
`weightzoo fetch NAME` tries, in order. No network; --json has each source's address, licence
and citation.
"""
_COUNTS = ("models", "checkpoints", "params")


def _estimate(spec: ZooSpec) -> dict[str, Any]:
    """The size of a spec's zoo, from the spec alone; ``{}`` where it has no closed form.

    A spec's ``estimate()`` counts as its family's :meth:`~weightzoo.generate.base.Family.estimate`
    does (a grouped spec's too), without building a layout: ``list`` imports no torch.
    """
    estimate = getattr(spec, "estimate", None)
    return estimate() if estimate is not None else {}


def _list_size(size: float) -> str:
    """Bytes in three significant digits (``584 MB``, ``50.3 MB``): the list stays narrow."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 999.5 or unit == "TB":
            return f"{size:.0f} {unit}" if size >= 99.95 or unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _check_family(family: str | None, rows: list[dict[str, Any]]) -> None:
    """Refuse a ``--family`` that is neither registered nor a family of a catalog zoo."""
    known = sorted({*families.names(), *(row["family"] for row in rows)})
    if family is not None and family not in known:
        raise InvalidOptionError(
            f"--family {family!r} is not a family of `weightzoo list`; pass one of "
            f"{', '.join(known)}"
        )


def _list_rows(family: str | None) -> list[dict[str, Any]]:
    """Every catalog zoo (and spec outside the catalog) as ``list --json`` prints it."""
    specs = all_specs()
    rows = [entry.to_json() for entry in catalog.entries()]
    rows += [
        {"name": name, "family": spec.family, "summary": "", "models": None}
        | {"checkpoints": None, "params": None}
        | {"sources": [{"kind": "generate", "command": f"weightzoo generate {name}"}]}
        for name, spec in specs.items()
        if catalog.find(name) is None  # specs registered outside the catalog
    ]
    _check_family(family, rows)
    rows = [row for row in rows if family is None or row["family"] == family]
    for row in rows:  # estimating builds layouts: only the rows shown
        spec = specs.get(row["name"])
        estimate = _estimate(spec) if spec is not None else {}
        for key in _COUNTS:
            row[key] = estimate.get(key, row[key])
        counts = [row[key] for key in _COUNTS]
        if "bytes" in estimate:
            row["bytes"] = estimate["bytes"]
        elif all(isinstance(n, int) for n in counts):  # published counts, float32 weights
            row["bytes"] = counts[0] * counts[1] * counts[2] * 4
        else:
            row["bytes"] = None
        row["groups"] = len(spec.groups()) if isinstance(spec, GroupedSpec) else 0
    return rows


def _list_cells(row: dict[str, Any]) -> list[str]:
    sizes = [s["size"] for s in row["sources"] if s.get("size") is not None]
    groups = row["groups"]
    return [
        row["name"],
        f"{row['family']} ({groups} groups)" if groups else row["family"],
        *("-" if row[key] is None else str(row[key]) for key in _COUNTS),
        "-" if row["bytes"] is None else _list_size(row["bytes"]),
        _list_size(sizes[0]) if sizes else "-",
        ",".join(s["kind"] for s in row["sources"]),
    ]


def _print_table(rows: list[list[str]]) -> None:
    """One family's rows under its header; the download column only where a size is known."""
    header = ["name", "family", "models", "ckpts", "params", "size", "download", "sources"]
    keep = [i for i in range(len(header)) if i != 6 or any(r[6] != "-" for r in rows)]
    table = [[row[i] for i in keep] for row in [header, *rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(keep))]
    # text columns left-aligned, numbers right-aligned after one space
    numeric = {i for i, k in enumerate(keep) if 2 <= k <= 6}
    for row in table:
        line = ""
        for i, (cell, width) in enumerate(zip(row, widths, strict=True)):
            gap = "" if i == 0 else " " if i in numeric else "  "
            line += gap + (cell.rjust(width) if i in numeric else cell.ljust(width))
        print(line.rstrip())


def cmd_list(args: argparse.Namespace) -> int:
    """Print every known zoo: family, models, checkpoints, size, and where it comes from.

    One table per family (the columns fit in 100 characters); ``--json`` prints everything,
    with each source's address, licence and citation.
    """
    rows = _list_rows(args.family)
    if args.json:
        print(json.dumps(rows, indent=1, ensure_ascii=False))
        return 0
    tables: dict[str, list[list[str]]] = {}
    for row in rows:
        tables.setdefault(row["family"], []).append(_list_cells(row))
    for table in tables.values():
        _print_table(table)
    print(_LIST_FOOTER)
    return 0


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """``weightzoo list``."""
    p = add_command(sub, "list", parents, _LIST_TEXT, cmd_list)
    p.add_argument("--family", help="only this family (e.g. modelzoo, smallcnnzoo, phase)")
    p.add_argument("--json", action="store_true", help="print the catalog as JSON")
