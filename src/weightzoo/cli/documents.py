"""``weightzoo card`` and ``weightzoo report``: what a zoo is, and the papers' tables for it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from weightzoo.card import write_card
from weightzoo.cli.exit_codes import EXIT_ERROR
from weightzoo.cli.options import add_command, add_group
from weightzoo.cli.targets import each_group
from weightzoo.errors import InvalidOptionError

__all__ = ["WHOLE_ZOO", "add_parsers", "cmd_card", "cmd_report"]

WHOLE_ZOO = "*"  # key of the whole grouped zoo's report in `report --json`
_REPORT_TEXT = """the papers' tables for a zoo (MLDS: pass DS1 and DS2 for Table 2)

Compute every paper table the zoo supports (training quality, MLDS Tables 1-2, Model Zoos Table
3, trajectory clustering, property inference, ViT lineage, phase diagram), with the paper's
numbers beside ours. Only the computed tables are printed (lines of at most 100 characters, one
number format per column); --all also lists each table the zoo cannot support, with the reason.
"""
_CARD_TEXT = """write a zoo card: Markdown summary and figures (the card `push` uploads)

Write README.md (the dataset card `weightzoo push` uploads) and PNG figures: the main metric over
training, weight mean vs std, a 2-D embedding of the final weights and trajectories in it,
pairwise distances, and pass rates per class. Figures need the plots extra: pip install
'weightzoo[plots]'.
"""
_NO_TABLE = "weightzoo: error: no table could be computed (see the skipped lines above)"


def cmd_card(args: argparse.Namespace) -> int:
    """Write a zoo's card (Markdown and figures)."""
    zoo = str(each_group(args.zoo, args.group)[0][1]) if args.group else args.zoo
    default = f"{Path(args.zoo).resolve()}" + (f"-{args.group}" if args.group else "") + "-card"
    out = Path(args.out) if args.out else Path(default)
    card = write_card(
        zoo,
        out,
        repo_id=args.repo_id,
        plots=not args.no_plots,
        color_by=args.color_by,
        embedding=args.embedding,
    )
    figures = sorted(p.name for p in (out / "figures").rglob("*.png")) if not args.no_plots else []
    print(
        f"wrote {card}" + (f" and {len(figures)} figures in {out / 'figures'}" if figures else "")
    )
    return 0


def _report_text(result: Any, out: Path, args: argparse.Namespace) -> str:
    """What ``report --out FILE`` writes: JSON, Markdown or text, by the flag or the suffix."""
    if args.json or out.suffix == ".json":
        return result.to_json() + "\n"  # data: the skipped tables always
    if out.suffix == ".md":
        return result.to_markdown(show_skipped=_show_skipped(result, args))
    return result.to_text(show_skipped=_show_skipped(result, args))


def _show_skipped(result: Any, args: argparse.Namespace) -> bool:
    """List the skipped tables with ``--all``, and where none was computed (to say why)."""
    return bool(args.all or not result.tables)


def cmd_report(args: argparse.Namespace) -> int:
    """Run the papers' tables that a zoo (or a DS1 + DS2 pair) supports; exit 1 if none."""
    # the tables read the models with torch: only a report pays for it
    from weightzoo.analysis.report import report

    groups = each_group(args.zoo, args.group)
    if len(groups) > 1 or groups[0][0] is not None:
        return _report_groups(args, groups)
    result = report(args.zoo, args.zoo2)
    if args.json:
        print(result.to_json())
    else:
        print(result.to_text(show_skipped=_show_skipped(result, args)), end="")
    if args.out:
        out = Path(args.out)
        out.write_text(_report_text(result, out, args), encoding="utf-8")
    if not result.tables:
        print(_NO_TABLE, file=sys.stderr)
        return EXIT_ERROR
    return 0


def _check_group_report(args: argparse.Namespace, groups: list[tuple[str | None, Path]]) -> None:
    """Refuse the options of ``report`` that do not apply to the groups of a grouped zoo."""
    if args.zoo2 is not None:
        raise InvalidOptionError(
            "weightzoo report: a second zoo is for a DS1 + DS2 pair of version-1 zoos, not for "
            "a grouped zoo; pass the group directories (ZOO/groups/NAME) instead"
        )
    if args.out:
        raise InvalidOptionError(
            "weightzoo report --out: write one group's report at a time (with --group NAME)"
            if len(groups) > 1
            else "weightzoo report --out: pass the group's directory (ZOO/groups/NAME) instead"
        )


def _report_groups(args: argparse.Namespace, groups: list[tuple[str | None, Path]]) -> int:
    """``report`` on the groups of a grouped zoo: one report per group (JSON: by group).

    Without ``--group``, the tables that read all groups together (lineage recovery) come
    first, as ``== all groups ==`` (JSON key ``"*"``).
    """
    from weightzoo.analysis.report import WHOLE_ZOO_TABLES, report  # torch, as cmd_report

    _check_group_report(args, groups)
    results = {name: report(str(path)) for name, path in groups}
    if args.group is None:  # tables that read every group together (lineage) come first
        whole = report(args.zoo, tables=WHOLE_ZOO_TABLES)
        if whole.tables:
            results = {WHOLE_ZOO: whole, **results}
    if args.json:
        print(json.dumps({name: json.loads(r.to_json()) for name, r in results.items()}, indent=1))
    else:
        for name, result in results.items():
            print("== all groups ==" if name == WHOLE_ZOO else f"== group {name} ==")
            print(result.to_text(show_skipped=_show_skipped(result, args)), end="")
    if not any(result.tables for result in results.values()):
        print(_NO_TABLE, file=sys.stderr)
        return EXIT_ERROR
    return 0


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """``weightzoo report`` and ``weightzoo card``."""
    p = add_command(sub, "report", parents, _REPORT_TEXT, cmd_report)
    p.add_argument("zoo", help="a zoo directory")
    p.add_argument("zoo2", nargs="?", help="a second zoo (the DS2 partner of a DS1 zoo)")
    p.add_argument(
        "--all",
        action="store_true",
        help="also list the tables the zoo cannot support, one line each with the reason",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON (all tables)")
    p.add_argument(
        "--out", help="also write the report to FILE (.json: JSON, .md: Markdown, else text)"
    )
    add_group(p, "grouped zoo: report on this group (default: every group)")
    p = add_command(sub, "card", parents, _CARD_TEXT, cmd_card)
    p.add_argument("zoo", help="a complete zoo directory")
    p.add_argument("--out", help="card directory (default: ZOO-card beside ZOO)")
    p.add_argument("--color-by", help="column to colour the embedding by (default: the class)")
    p.add_argument("--embedding", choices=("pca", "umap"), default="pca", help="default: pca")
    p.add_argument("--repo-id", help="hub repo named in the card's usage snippet")
    p.add_argument("--no-plots", action="store_true", help="write the Markdown only")
    add_group(p, "grouped zoo: the card of this group alone (default: one card of all)")
