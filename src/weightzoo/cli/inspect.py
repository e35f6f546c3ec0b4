"""``weightzoo info`` and ``weightzoo verify``: a zoo's summary, and its shards' hashes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from weightzoo.cli.exit_codes import EXIT_ERROR
from weightzoo.cli.formatting import epochs_text, first_few, human_bytes, plain
from weightzoo.cli.options import add_command
from weightzoo.errors import ShardCorruptError, ShardMissingError, ZooNotFoundError
from weightzoo.escaping import one_line
from weightzoo.storage.groups import GroupedManifest, group_dir, load_any
from weightzoo.storage.manifest import MANIFEST_NAME, Manifest
from weightzoo.storage.verify import check_shard_present, verify_zoo
from weightzoo.zoo import Zoo

__all__ = ["add_parsers", "cmd_info", "cmd_verify"]

_INFO_TEXT = """summarise a zoo directory (or list the zoos in a folder)

Counts, checkpoints, splits, shards, metric ranges and per-class training quality of a zoo;
exit 1 if a shard is missing or damaged. On a folder of zoos, one line per zoo. The --json
schema is in docs/cli.md.
"""


def _damaged_shards(path: str | Path) -> list[str]:
    """The manifest's shards that are missing or have the wrong size (no hashing)."""
    damaged = []
    for entry in Manifest.load(path).shards:
        try:
            check_shard_present(path, entry)
        except (ShardMissingError, ShardCorruptError):
            damaged.append(entry.file)
    return damaged


def _quality(zoo: Zoo, info: dict[str, Any]) -> None:
    """Add the per-class quality table of a complete zoo to its ``info``, or why there is none."""
    # the table reads the models with torch: only `info` on a zoo with every shard pays for it
    from weightzoo.analysis.quality import quality_table
    from weightzoo.analysis.tables import UnsupportedTableError

    try:
        info["quality"] = quality_table(zoo).to_dict()
    except UnsupportedTableError as exc:
        info["quality_skipped"] = str(exc)


def _add_shard_state(zoo: Zoo, info: dict[str, Any]) -> dict[str, Any]:
    """A version-1 ``info`` with its missing shards and, when none is, the quality table."""
    damaged = _damaged_shards(zoo.path)
    info["complete"] = info["complete"] and not damaged
    info["missing_shards"] = damaged
    info["quality"] = None
    if not damaged:
        _quality(zoo, info)
    return info


def _zoo_info(zoo: Zoo) -> dict[str, Any]:
    """:meth:`Zoo.whole_info` plus the missing shards and the per-class quality table.

    For a grouped zoo, each generated group's summary gets the same (``missing_shards`` then
    names files relative to the zoo), and the zoo's own ``shards`` and ``missing_shards``
    count over its groups; it is complete once finished with every group complete.
    """
    if zoo.grouped is None:
        return _add_shard_state(zoo, zoo.info())
    info = zoo.whole_info()
    where = {entry.name: entry.path for entry in zoo.grouped.groups}
    for group in info["groups"]:
        group.setdefault("missing_shards", [])
        if "params" in group:  # generated: its version-1 summary was read
            _add_shard_state(zoo.group(group["group"]), group)
            group["missing_shards"] = [
                f"{where[group['group']]}/{file}" for file in group["missing_shards"]
            ]
    groups = info["groups"]
    info["complete"] = info["finished"] and all(g["complete"] for g in groups)
    info["shards"] = sum(g.get("shards", 0) for g in groups)
    info["missing_shards"] = [file for g in groups for file in g["missing_shards"]]
    return info


def _zoo_dirs(path: str) -> list[Path]:
    """The zoo directories directly under ``path`` (sorted), for ``info`` on a folder."""
    return sorted(p for p in Path(path).iterdir() if (p / MANIFEST_NAME).is_file())


def _folder_row(directory: Path) -> dict[str, Any]:
    """One zoo of a folder as ``info FOLDER --json`` lists it."""
    zoo = Zoo(directory)
    if zoo.grouped is not None:
        info = _zoo_info(zoo)
        damaged = info["missing_shards"]
        info["checkpoints"] = info["params"] = "-"
        info["family"] = f"{info['family']} ({len(info['groups'])} groups)"
    else:
        info = zoo.info()
        damaged = _damaged_shards(directory)
    return {
        key: info[key]
        for key in ("name", "family", "path", "models", "checkpoints", "params", "bytes")
    } | {"complete": info["complete"] and not damaged, "missing_shards": damaged}


def _info_folder(args: argparse.Namespace) -> int:
    """List the zoos in a folder: one line (or JSON object) each; exit 1 if one is damaged."""
    rows = [_folder_row(directory) for directory in _zoo_dirs(args.path)]
    if not rows:
        raise ZooNotFoundError(
            f"no zoo at {args.path}: it has no zoo.json, and no folder in it has one; pass a "
            "zoo directory or a folder of zoos"
        )
    if args.json:
        print(json.dumps({"zoos": rows}, indent=1))
    else:
        for row in rows:
            state = (
                "complete" if row["complete"] else f"{len(row['missing_shards'])} shards missing"
            )
            # a publisher's name and family reach the terminal as plain text, never as controls
            print(
                f"{one_line(row['name']):<32} {one_line(row['family']):<10} {row['models']:>6} "
                f"models {row['checkpoints']:>4} ckpts {human_bytes(row['bytes']):>9}  {state}  "
                f"{one_line(row['path'], limit=None)}"
            )
    return EXIT_ERROR if any(row["missing_shards"] for row in rows) else 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print a zoo's summary; exit 1 naming the shards that are missing or damaged."""
    if Path(args.path).is_dir() and not (Path(args.path) / MANIFEST_NAME).exists():
        if _zoo_dirs(args.path):
            return _info_folder(args)
    info = _zoo_info(Zoo(args.path))
    damaged = info["missing_shards"]
    if args.json:
        print(json.dumps(info, indent=1))
        return EXIT_ERROR if damaged else 0
    if "groups" in info:
        _print_grouped_info(info)
    else:
        _print_info(info)
    if damaged:
        print(
            f"weightzoo: error: {len(damaged)} of {info['shards']} shards of {args.path} are "
            f"missing or damaged: {one_line(first_few(damaged), limit=None)}; fetch them "
            "again or rerun `weightzoo generate` with the same --out to rebuild them "
            f"(`weightzoo verify {args.path}` names each)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return 0


def _print_quality(info: dict[str, Any]) -> None:
    """The quality table of a summary, or why there is none."""
    if info["quality"]:
        # the table's classes live with the torch-reading analysis: only imported here
        from weightzoo.analysis.tables import Row, Table

        table = Table(**{k: v for k, v in info["quality"].items() if k != "rows"})
        table.rows = [
            Row(r["label"], r["ours"], r["paper"], r["paper_label"])
            for r in info["quality"]["rows"]
        ]
        print("  " + table.to_text(width=98).replace("\n", "\n  "))  # 100 with the indent
    elif info.get("quality_skipped"):
        print(f"  quality: {info['quality_skipped']}")


def _print_info(info: dict[str, Any]) -> None:
    path = one_line(info["path"], limit=None)  # the user's own path: never cut
    info = plain(info)
    print(f"{info['name']} ({info['family']}) at {path}")
    print(f"  models {info['models']}, checkpoints {info['checkpoints']}, params {info['params']}")
    print(f"  checkpoint epochs: {epochs_text(info['epochs'])}")
    splits = ", ".join(f"{k} {v}" for k, v in info["splits"].items())
    state = "complete" if info["complete"] else "INCOMPLETE (rerun generate to finish)"
    print(f"  splits: {splits or 'none written'}; {state}")
    print(
        f"  shards {info['shards_present']}/{info['shards']} present, {human_bytes(info['bytes'])}"
    )
    print(f"  stats: {info['stats']}")
    print(f"  metrics: {', '.join(info['metrics']) or '-'}")
    print(f"  columns: {', '.join(info['columns'])}")
    for name, arrays in info.get("side_files", {}).items():
        print(f"  side file {name}: {', '.join(arrays)}")
    ranges = {k[6:]: v for k, v in info.items() if k.startswith("range_")}
    if ranges:
        print(f"  range over viable models at the last checkpoint (epoch {info['epochs'][-1]}):")
        width = max(map(len, ranges))
        for name, (low, high) in ranges.items():
            print(f"    {name:<{width}}  {low:.4g} .. {high:.4g}")
    _print_quality(info)


def _print_grouped_info(info: dict[str, Any]) -> None:
    path = one_line(info["path"], limit=None)
    info = plain(info)
    state = "finished" if info["finished"] else "UNFINISHED (rerun generate to finish)"
    print(f"{info['name']} ({info['family']}, grouped) at {path}")
    print(f"  models {info['models']} in {len(info['groups'])} groups; {state}")
    for group in info["groups"]:
        last = group["first_model_id"] + group["models"] - 1
        print(f"group {group['group']} (model ids {group['first_model_id']}..{last})")
        if "params" not in group:
            print("  not generated yet")
            continue
        _print_info(group)


def _shard_count(path: str, manifest: Any) -> int:
    """Shards a zoo lists (over every group begun, for a grouped zoo)."""
    if not isinstance(manifest, GroupedManifest):
        return len(manifest.shards)
    directories = [group_dir(path, entry) for entry in manifest.groups]
    return sum(len(Manifest.load(d).shards) for d in directories if (d / MANIFEST_NAME).is_file())


def _verified_groups(manifest: GroupedManifest, total: int) -> str:
    """The ``ok`` line of a grouped zoo whose shards all match."""
    # a group without a recorded hash was checked against nothing: say so, never "match"
    unhashed = [g.name for g in manifest.groups if g.manifest_sha256 is None]
    hashed = len(manifest.groups) - len(unhashed)
    return (
        f"ok: {hashed} group manifests of {one_line(manifest.name)} match the top manifest, "
        f"and {total} shards match their sha256"
        + (
            f"; not finished: groups {one_line(', '.join(unhashed))} have no recorded hash yet "
            "(rerun `weightzoo generate` to finish them)"
            if unhashed
            else ""
        )
    )


def cmd_verify(args: argparse.Namespace) -> int:
    """Recompute every shard hash; exit 1 naming the bad shards."""
    manifest = load_any(args.path)
    total = _shard_count(args.path, manifest)
    with tqdm(total=total, unit="shard", desc="verify") as bar:
        failures = verify_zoo(args.path, on_shard=lambda _: bar.update())
    if failures:
        for entry, error in failures:
            print(
                f"BAD  {one_line(entry.file)}: {one_line(str(error), limit=None)}",
                file=sys.stderr,
            )
        print(
            f"weightzoo: error: {len(failures)} of {total} shards failed verification",
            file=sys.stderr,
        )
        return EXIT_ERROR
    if isinstance(manifest, GroupedManifest):
        print(_verified_groups(manifest, total))
        return 0
    print(f"ok: {total} shards of {one_line(manifest.name)} match their sha256")
    return 0


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """``weightzoo info`` and ``weightzoo verify``."""
    p = add_command(sub, "info", parents, _INFO_TEXT, cmd_info)
    p.add_argument("path", help="a zoo directory, or a folder holding zoo directories")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p = add_command(sub, "verify", parents, "recompute every shard hash of a zoo", cmd_verify)
    p.add_argument("path")
