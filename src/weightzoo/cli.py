"""The ``weightzoo`` command line.

This is the one place that turns errors into a one-line message and an exit code; set
``WEIGHTZOO_DEBUG=1`` to see the traceback instead. Exit codes: 0 success, 1 an error of the
input or the system (a weightzoo error or an OS error), 2 a usage error, 130 Ctrl-C, 141 the
reader of the output went away (``weightzoo list | head -1``), 143 SIGTERM. Any other
exception is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from weightzoo.errors import DataFilesMissingError, InvalidOptionError, WeightzooError
from weightzoo.escaping import one_line
from weightzoo.storage.manifest import MAX_SLICES

EXIT_ERROR = 1
EXIT_USAGE = 2
# 128 + the signal's number, as a shell reports a process that the signal ended.
EXIT_INTERRUPTED = 130  # SIGINT
EXIT_BROKEN_PIPE = 141  # SIGPIPE
EXIT_TERMINATED = 143  # SIGTERM
RESUME_HINT = "completed shards are kept, rerun the same command to resume"


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that it unwinds (and cleans up) like Ctrl-C."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line that points to ``--help``."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE (see PROG --help)`` and exit with code 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _parse_slice(text: str) -> tuple[int, int]:
    """``"i/n"``: slice ``i`` of ``n``, numbered from 0."""
    index, _, count = text.partition("/")
    try:
        parsed = int(index), int(count)
    except ValueError:
        parsed = (-1, 0)
    if not 0 <= parsed[0] < parsed[1] <= MAX_SLICES:
        raise argparse.ArgumentTypeError(
            f"--slice takes I/N with 0 <= I < N <= {MAX_SLICES} (e.g. 0/4 ... 3/4), got {text!r}"
        )
    return parsed


def _human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _parse_epochs(text: str | None) -> Any:
    """``"all"``, ``"last"``, ``"50"`` or ``"0,10,50"``."""
    if text is None or text in ("all", "last"):
        return text
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--epochs takes 'all', 'last' or comma-separated integers, got {text!r}"
        ) from None
    return values[0] if len(values) == 1 else values


# -- commands ------------------------------------------------------------------------------


_LIST_FOOTER = (
    "sources: tried in order by `weightzoo fetch NAME` (hub copy, original release, generate)"
)


def _list_size(size: float) -> str:
    """Bytes in three significant digits (``584 MB``, ``50.3 MB``): the list stays narrow."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 999.5 or unit == "TB":
            return f"{size:.0f} {unit}" if size >= 99.95 or unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _list_rows(family: str | None) -> list[dict[str, Any]]:
    """Every catalog zoo (and spec outside the catalog) as ``list --json`` prints it."""
    from weightzoo import catalog
    from weightzoo.generate.base import GroupedSpec
    from weightzoo.generate.specs import all_specs

    specs = all_specs()
    rows = [entry.to_json() for entry in catalog.entries()]
    rows += [
        {"name": name, "family": spec.family, "summary": "", "models": None}
        | {"checkpoints": None, "params": None}
        | {"sources": [{"kind": "generate", "command": f"weightzoo generate {name}"}]}
        for name, spec in specs.items()
        if catalog.find(name) is None  # specs registered outside the catalog
    ]
    known = sorted({row["family"] for row in rows})
    if family is not None and family not in known:
        raise InvalidOptionError(
            f"--family {family!r} is not a family of `weightzoo list`; pass one of "
            f"{', '.join(known)}"
        )
    rows = [row for row in rows if family is None or row["family"] == family]
    for row in rows:  # estimating builds layouts: only the rows shown
        spec = specs.get(row["name"])
        estimate = _estimate(spec) if spec is not None else {}
        for key in ("models", "checkpoints", "params"):
            row[key] = estimate.get(key, row[key])
        counts = [row[k] for k in ("models", "checkpoints", "params")]
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
        *("-" if row[k] is None else str(row[k]) for k in ("models", "checkpoints", "params")),
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
    families: dict[str, list[list[str]]] = {}
    for row in rows:
        families.setdefault(row["family"], []).append(_list_cells(row))
    for table in families.values():
        _print_table(table)
    print(_LIST_FOOTER)
    return 0


def _estimate(spec: Any) -> dict[str, Any]:
    """A spec's size estimate; a grouped spec's is the sum over its groups (where all have one)."""
    from weightzoo.generate.base import GroupedSpec

    if hasattr(spec, "estimate") or not isinstance(spec, GroupedSpec):
        return spec.estimate() if hasattr(spec, "estimate") else {}
    parts = [_estimate(group) for _, group in spec.groups()]
    if not parts or not all(parts):
        return {}
    total = {k: sum(p[k] for p in parts) for k in ("models", "bytes") if all(k in p for p in parts)}
    for key in ("checkpoints", "params"):
        values = sorted({p[key] for p in parts if key in p})
        if values:
            total[key] = values[0] if len(values) == 1 else f"{values[0]}-{values[-1]}"
    return total


def _damaged_shards(path: str) -> list[str]:
    """The manifest's shards that are missing or have the wrong size (no hashing)."""
    from weightzoo.errors import ShardCorruptError, ShardMissingError
    from weightzoo.storage.manifest import Manifest
    from weightzoo.storage.verify import check_shard_present

    damaged = []
    for entry in Manifest.load(path).shards:
        try:
            check_shard_present(path, entry)
        except (ShardMissingError, ShardCorruptError):
            damaged.append(entry.file)
    return damaged


def epochs_text(epochs: Sequence[int]) -> str:
    """Checkpoint labels written so that they cannot be misread as a range.

    Runs of three or more equally spaced labels become ``first..last every step``; the
    rest are listed: ``[0, 1000]`` is ``0, 1000`` and ``[0, 1, ..., 50]`` is
    ``0..50 every 1``.
    """
    parts: list[str] = []
    i = 0
    while i < len(epochs):
        j = i + 1
        if j < len(epochs):
            step = epochs[j] - epochs[i]
            while j + 1 < len(epochs) and epochs[j + 1] - epochs[j] == step:
                j += 1
            if j - i >= 2:
                parts.append(f"{epochs[i]}..{epochs[j]} every {step}")
                i = j + 1
                continue
        parts.append(str(epochs[i]))
        i += 1
    return ", ".join(parts) or "none"


def _zoo_info(path: str | Path) -> dict[str, Any]:
    """``Zoo.info()`` plus the missing shards and the per-class quality table (if readable).

    For a grouped zoo: its own fields and ``groups``, one such summary per group (with
    ``group`` and ``first_model_id``); ``missing_shards`` then names files relative to ``path``.
    """
    from weightzoo.storage.groups import GroupedManifest, group_dir, is_grouped
    from weightzoo.zoo import Zoo

    if is_grouped(path):
        top = GroupedManifest.load(path)
        groups = []
        for entry in top.groups:
            directory = group_dir(path, entry)
            # only a group with no recorded hash may lack its manifest (not generated yet)
            if entry.manifest_sha256 is None and not (directory / "zoo.json").is_file():
                groups.append(
                    {
                        "group": entry.name,
                        "models": entry.num_models,
                        "complete": False,
                        "missing_shards": [],
                        "first_model_id": entry.first_model_id,
                    }
                )
                continue
            Zoo(path, group=entry.name)  # checks the group manifest against the chain
            info = _zoo_info(directory)
            info["missing_shards"] = [f"{entry.path}/{f}" for f in info["missing_shards"]]
            groups.append({"group": entry.name, "first_model_id": entry.first_model_id, **info})
        return {
            "name": top.name,
            "family": top.family,
            "path": str(path),
            "format_version": 2,
            "models": top.num_models,
            "finished": top.finished,
            "complete": top.finished and all(g["complete"] for g in groups),
            "bytes": sum(g.get("bytes", 0) for g in groups),
            "shards": sum(g.get("shards", 0) for g in groups),
            "missing_shards": [f for g in groups for f in g["missing_shards"]],
            "groups": groups,
        }
    zoo = Zoo(path)
    info = zoo.info()
    damaged = _damaged_shards(str(path))
    info["complete"] = info["complete"] and not damaged
    info["missing_shards"] = damaged
    info["quality"] = None
    if not damaged:
        from weightzoo.analysis.quality import quality_table
        from weightzoo.analysis.tables import UnsupportedTableError

        try:
            info["quality"] = quality_table(zoo).to_dict()
        except UnsupportedTableError as exc:
            info["quality_skipped"] = str(exc)
    return info


def _zoo_dirs(path: str) -> list[Path]:
    """The zoo directories directly under ``path`` (sorted), for ``info`` on a folder."""
    from weightzoo.storage.manifest import MANIFEST_NAME

    return sorted(p for p in Path(path).iterdir() if (p / MANIFEST_NAME).is_file())


def _info_folder(args: argparse.Namespace) -> int:
    """List the zoos in a folder: one line (or JSON object) each; exit 1 if one is damaged."""
    from weightzoo.storage.groups import is_grouped
    from weightzoo.zoo import Zoo

    rows = []
    for directory in _zoo_dirs(args.path):
        if is_grouped(directory):
            info = _zoo_info(directory)
            damaged = info["missing_shards"]
            info["checkpoints"] = info["params"] = "-"
            info["family"] = f"{info['family']} ({len(info['groups'])} groups)"
        else:
            info = Zoo(directory).info()
            damaged = _damaged_shards(str(directory))
        rows.append(
            {
                key: info[key]
                for key in ("name", "family", "path", "models", "checkpoints", "params", "bytes")
            }
            | {"complete": info["complete"] and not damaged, "missing_shards": damaged}
        )
    if not rows:
        from weightzoo.errors import ZooNotFoundError

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
                f"models {row['checkpoints']:>4} ckpts {_human_bytes(row['bytes']):>9}  {state}  "
                f"{one_line(row['path'], limit=None)}"
            )
    return EXIT_ERROR if any(row["missing_shards"] for row in rows) else 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print a zoo's summary; exit 1 naming the shards that are missing or damaged."""
    from weightzoo.storage.manifest import MANIFEST_NAME

    if Path(args.path).is_dir() and not (Path(args.path) / MANIFEST_NAME).exists():
        if _zoo_dirs(args.path):
            return _info_folder(args)
    info = _zoo_info(args.path)
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
            f"missing or damaged: {one_line(_first_few(damaged), limit=None)}; fetch them "
            "again or rerun `weightzoo generate` with the same --out to rebuild them "
            f"(`weightzoo verify {args.path}` names each)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return 0


def _first_few(names: list[str], shown: int = 5) -> str:
    """Up to ``shown`` names and how many more, so that an error stays one readable line."""
    rest = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {rest} more" if rest > 0 else "")


def _plain(value: Any) -> Any:
    """``value`` with every string in it (keys too) as :func:`one_line` plain text.

    A zoo's names come from its publisher: escape sequences (colours, OSC window titles),
    bidi overrides and line breaks in them must not act on the terminal that prints them.
    """
    if isinstance(value, str):
        return one_line(value, limit=None)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _print_info(info: dict[str, Any]) -> None:
    path = one_line(info["path"], limit=None)  # the user's own path: never cut
    info = _plain(info)
    print(f"{info['name']} ({info['family']}) at {path}")
    print(f"  models {info['models']}, checkpoints {info['checkpoints']}, params {info['params']}")
    print(f"  checkpoint epochs: {epochs_text(info['epochs'])}")
    splits = ", ".join(f"{k} {v}" for k, v in info["splits"].items())
    state = "complete" if info["complete"] else "INCOMPLETE (rerun generate to finish)"
    print(f"  splits: {splits or 'none written'}; {state}")
    print(
        f"  shards {info['shards_present']}/{info['shards']} present, {_human_bytes(info['bytes'])}"
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
    if info["quality"]:
        from weightzoo.analysis.tables import Table

        table = Table(**{k: v for k, v in info["quality"].items() if k != "rows"})
        table.rows = [_row(r) for r in info["quality"]["rows"]]
        print("  " + table.to_text().replace("\n", "\n  "))
    elif info.get("quality_skipped"):
        print(f"  quality: {info['quality_skipped']}")


def _print_grouped_info(info: dict[str, Any]) -> None:
    path = one_line(info["path"], limit=None)
    info = _plain(info)
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


def _row(data: dict[str, Any]) -> Any:
    from weightzoo.analysis.tables import Row

    return Row(data["label"], data["ours"], data["paper"], data["paper_label"])


def cmd_verify(args: argparse.Namespace) -> int:
    """Recompute every shard hash; exit 1 naming the bad shards."""
    from tqdm.auto import tqdm

    from weightzoo.storage.groups import GroupedManifest, load_any
    from weightzoo.storage.verify import verify_zoo

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
        # a group without a recorded hash was checked against nothing: say so, never "match"
        unhashed = [g.name for g in manifest.groups if g.manifest_sha256 is None]
        hashed = len(manifest.groups) - len(unhashed)
        print(
            f"ok: {hashed} group manifests of {one_line(manifest.name)} match the top manifest, "
            f"and {total} shards match their sha256"
            + (
                f"; not finished: groups {one_line(', '.join(unhashed))} have no recorded hash yet "
                "(rerun `weightzoo generate` to finish them)"
                if unhashed
                else ""
            )
        )
        return 0
    print(f"ok: {total} shards of {one_line(manifest.name)} match their sha256")
    return 0


def _shard_count(path: str, manifest: Any) -> int:
    """Shards a zoo lists (over every group begun, for a grouped zoo)."""
    from weightzoo.storage.groups import GroupedManifest, group_dir
    from weightzoo.storage.manifest import Manifest

    if not isinstance(manifest, GroupedManifest):
        return len(manifest.shards)
    directories = [group_dir(path, entry) for entry in manifest.groups]
    return sum(len(Manifest.load(d).shards) for d in directories if (d / "zoo.json").is_file())


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate (or resume) a zoo."""
    from weightzoo.generate.devices import check_device
    from weightzoo.generate.runner import generate, zoo_dir_default
    from weightzoo.generate.specs import get_spec
    from weightzoo.storage.manifest import Manifest

    if args.engine == "local":  # a Ray cluster's GPUs are checked where its blocks run
        check_device(args.device)

    options = {
        "models": args.models,
        "epochs": args.epochs,
        "per_class": args.per_class,
        "machines": args.machines.split(",") if args.machines else None,
        "data_dir": args.data_dir,
    }
    spec = get_spec(args.name)
    try:
        spec = spec.override(**options)
    except WeightzooError:
        raise
    except ValueError as exc:  # the documented answer of override() to an unusable option
        raise InvalidOptionError(f"weightzoo generate {args.name}: {exc}") from exc
    out = Path(args.out) if args.out else zoo_dir_default(spec)
    ray = None
    if args.engine == "ray":
        from weightzoo.generate.ray_engine import RayOptions

        ray = RayOptions(
            address=args.address,
            cpus_per_block=args.cpus_per_block,
            gpus_per_block=args.gpus_per_block,
            max_retries=args.max_retries,
        )
        if args.workers is not None:
            raise InvalidOptionError(
                "--workers is for --engine local; with --engine ray every block is a task "
                "(size it with --cpus-per-block)"
            )
    elif args.address or args.cpus_per_block != 1 or args.gpus_per_block or args.max_retries != 3:
        raise InvalidOptionError(
            "--address, --cpus-per-block, --gpus-per-block and --max-retries need --engine ray"
        )
    if args.download:  # into the directory the spec reads
        _fetch_spec_data(spec, getattr(spec, "data_dir", None) or args.data_dir)
    try:
        manifest = generate(
            spec,
            out,
            device=args.device,
            workers=args.workers,
            engine=args.engine,
            ray=ray,
            slice=args.slice,
        )
    except DataFilesMissingError as exc:
        raise _offer_download(exc, args) from None
    if not isinstance(manifest, Manifest):  # a grouped zoo: its top manifest
        groups = ", ".join(f"{g.name} {g.num_models}" for g in manifest.groups)
        print(f"wrote {manifest.name} to {out}: {manifest.num_models} models in groups {groups}")
        return 0
    splits = ", ".join(f"{k} {v}" for k, v in manifest.splits().items())
    if args.slice is not None:
        index, count = args.slice
        print(
            f"wrote slice {index}/{count} of {manifest.name} to {out}: "
            f"{sum(manifest.splits().values())} models "
            f"({splits}); run `weightzoo merge {out}` once all {count} slices are done"
        )
        return 0
    print(f"wrote {manifest.name} to {out}: {manifest.num_models} models ({splits})")
    return 0


# The options of `generate` with their defaults, to spell out a rerun with --download.
_GENERATE_OPTIONS = (
    ("--out", "out", None),
    ("--models", "models", None),
    ("--train-epochs", "epochs", None),
    ("--per-class", "per_class", None),
    ("--machines", "machines", None),
    ("--data-dir", "data_dir", None),
    ("--device", "device", "cpu"),
    ("--workers", "workers", None),
    ("--engine", "engine", "local"),
    ("--address", "address", None),
    ("--cpus-per-block", "cpus_per_block", 1),
    ("--gpus-per-block", "gpus_per_block", 0),
    ("--max-retries", "max_retries", 3),
)


def _generate_command(args: argparse.Namespace, *extra: str) -> str:
    """The shell command ``weightzoo generate`` with the options of ``args``, then ``extra``."""
    argv = ["weightzoo", "generate", args.name]
    for flag, dest, default in _GENERATE_OPTIONS:
        value = getattr(args, dest)
        if value is not None and value != default:
            argv += [flag, str(value)]
    if args.slice is not None:
        argv += ["--slice", f"{args.slice[0]}/{args.slice[1]}"]
    return shlex.join([*argv, *extra])


def _offer_download(exc: DataFilesMissingError, args: argparse.Namespace) -> Exception:
    """``exc``, plus the rerun with ``--download`` where that fetches the missing dataset."""
    from weightzoo.sources.datasets import IMAGE_DATASETS

    if args.download or getattr(exc, "dataset", None) not in IMAGE_DATASETS:
        return exc
    command = _generate_command(args, "--download")
    return DataFilesMissingError(f"{exc}; or rerun with --download: `{command}`")


def _print_fetched(fetched: Any) -> None:
    """One line saying what ``fetch_dataset`` did."""
    if not fetched.files:
        print(f"{fetched.name}: already present in {fetched.folder}")
        return
    resumed = f", {_human_bytes(fetched.resumed)} of it resumed" if fetched.resumed else ""
    print(
        f"{fetched.name}: fetched {', '.join(fetched.files)} "
        f"({_human_bytes(fetched.received + fetched.resumed)}{resumed}), md5 verified, "
        f"into {fetched.folder}"
    )


def _fetch_spec_data(spec: Any, data_dir: str | None) -> None:
    """Download the image datasets a spec needs (``generate --download``)."""
    from weightzoo.sources.datafetch import fetch_dataset, spec_datasets

    names = spec_datasets(spec.to_dict())
    if not names:
        print(f"{spec.name}: no image data to download")
    for name in names:
        _print_fetched(fetch_dataset(name, data_dir))


def cmd_data_fetch(args: argparse.Namespace) -> int:
    """Download image datasets and lay them out where ``generate`` reads them."""
    from weightzoo.sources.datafetch import fetch_dataset

    for name in args.names:
        _print_fetched(fetch_dataset(name, args.data_dir))
    return 0


def cmd_data_list(args: argparse.Namespace) -> int:
    """Print every downloadable image dataset, its size, and whether its files are present."""
    from urllib.parse import urlsplit

    from weightzoo.sources.datafetch import status
    from weightzoo.sources.datasets import IMAGE_DATASETS

    rows = []
    for name, dataset in IMAGE_DATASETS.items():
        state = status(name, args.data_dir)
        size = dataset.size
        rows.append(
            (
                name,
                _human_bytes(size) if size is not None else "?",
                "yes" if state.present else f"no ({state.missing} missing)",
                urlsplit(dataset.downloads[0].urls[0]).netloc,
                str(state.folder),
            )
        )
    header = ("name", "download", "present", "source", "folder")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """Join the finished slices of a zoo into one verified zoo.json."""
    from tqdm.auto import tqdm

    from weightzoo.storage.merge import merge_slices

    with tqdm(unit="shard", desc="verifying", disable=not sys.stderr.isatty()) as bar:
        manifest = merge_slices(args.path, on_shard=lambda _entry: bar.update(1))
    splits = ", ".join(f"{k} {v}" for k, v in manifest.splits().items())
    print(
        f"merged {manifest.name} in {args.path}: {manifest.num_models} models ({splits}), "
        f"{len(manifest.shards)} shards verified"
    )
    return 0


def cmd_sparsify(args: argparse.Namespace) -> int:
    """Write the variational-dropout sparsified twin of a zoo (resumes an interrupted run)."""
    from weightzoo.generate.devices import check_device
    from weightzoo.generate.modelzoo.sparsify import default_twin_dir, sparsify_zoo

    check_device(args.device)
    if args.epochs < 1:
        raise InvalidOptionError(
            f"--train-epochs: sparsification epochs must be at least 1, got {args.epochs}"
        )
    out = Path(args.out) if args.out else default_twin_dir(args.src)
    manifest = sparsify_zoo(
        args.src, out, epochs=args.epochs, device=args.device, data_dir=args.data_dir
    )
    print(
        f"wrote {manifest.name} to {out}: {manifest.num_models} models x "
        f"{len(manifest.epochs)} sparsification checkpoints"
    )
    return 0


def _each_group(path: str, group: str | None) -> list[tuple[str | None, Path]]:
    """The zoo directories a per-zoo command runs on: ``path``, its ``group``, or every group.

    A version-1 zoo gives ``[(None, path)]``; a grouped zoo without ``group`` gives every group
    in order (each checked against the zoo's hash chain).

    Raises:
        UnknownGroupError: for a group the zoo does not have, or --group on a version-1 zoo.
    """
    from weightzoo.storage.groups import GroupedManifest, load_any, resolve_group

    manifest = load_any(path)
    if group is not None or not isinstance(manifest, GroupedManifest):
        return [(group, resolve_group(path, group)[0])]
    return [(name, resolve_group(path, name)[0]) for name in manifest.group_names]


def _group_prefix(group: str | None) -> str:
    return f"group {group}: " if group is not None else ""


def cmd_fetch(args: argparse.Namespace) -> int:
    """Fetch a catalog zoo from its first source, a hub repo, or list / convert a Zenodo record."""
    if args.name.startswith("zenodo:"):
        from weightzoo.sources.fetch import command

        return command(args)
    if "/" not in args.name:  # a catalog name: hub copy, original release or generation
        from weightzoo.sources.fetch import catalog_command

        return catalog_command(args)
    if args.out or args.models:
        raise InvalidOptionError(
            "--out and --models apply to catalog names and zenodo:RECORD/FILE fetches; a hub "
            "repo fetch writes to --local-dir (or the cache) and selects with --split, --epochs "
            "and --group"
        )
    from weightzoo.hub import fetch

    path = fetch(
        args.name,
        split=args.split,
        epochs=args.epochs,
        revision=args.revision,
        cache_dir=args.cache_dir,
        local_dir=args.local_dir,
        group=args.group,
    )
    print(path)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    """Upload a zoo to the hub."""
    from weightzoo.hub import push

    print(push(args.path, args.repo_id, private=args.private))
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    """Write a zoo's card (Markdown and figures)."""
    from weightzoo.card import write_card

    zoo = str(_each_group(args.zoo, args.group)[0][1]) if args.group else args.zoo
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


def _add_card_parser(sub: Any, verbose: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "card",
        parents=[verbose],
        help="write a zoo card: Markdown summary and figures (the card `push` uploads)",
        description="Write README.md (the dataset card `weightzoo push` uploads) and PNG "
        "figures: the main metric over training, weight mean vs std, a 2-D embedding of the "
        "final weights and trajectories in it, pairwise distances, and pass rates per class. "
        "Figures need the plots extra: pip install 'weightzoo[plots]'.",
    )
    p.add_argument("zoo", help="a complete zoo directory")
    p.add_argument("--out", help="card directory (default: ZOO-card beside ZOO)")
    p.add_argument("--color-by", help="column to colour the embedding by (default: the class)")
    p.add_argument("--embedding", choices=("pca", "umap"), default="pca", help="default: pca")
    p.add_argument("--repo-id", help="hub repo named in the card's usage snippet")
    p.add_argument("--no-plots", action="store_true", help="write the Markdown only")
    p.add_argument(
        "--group", help="grouped zoo: the card of this group alone (default: one card of all)"
    )
    p.set_defaults(func=cmd_card)


def cmd_import(args: argparse.Namespace) -> int:
    """Convert an existing zoo into the weightzoo format."""
    from weightzoo.importers import import_zoo

    path = import_zoo(args.kind, args.src, args.dest)
    print(f"imported {args.kind} zoo into {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Run the papers' tables that a zoo (or a DS1 + DS2 pair) supports; exit 1 if none."""
    from weightzoo.analysis import report

    groups = _each_group(args.zoo, args.group)
    if len(groups) > 1 or groups[0][0] is not None:
        return _report_groups(args, groups)
    result = report(args.zoo, args.zoo2)
    print(result.to_json() if args.json else result.to_text(), end="\n" if args.json else "")
    if args.out:
        out = Path(args.out)
        if args.json or out.suffix == ".json":
            content = result.to_json() + "\n"
        elif out.suffix == ".md":
            content = result.to_markdown()
        else:
            content = result.to_text()
        out.write_text(content, encoding="utf-8")
    if not result.tables:
        print(
            "weightzoo: error: no table could be computed (see the skipped lines)", file=sys.stderr
        )
        return EXIT_ERROR
    return 0


WHOLE_ZOO = "*"  # key of the whole grouped zoo's report in `report --json`


def _report_groups(args: argparse.Namespace, groups: list[tuple[str | None, Path]]) -> int:
    """``report`` on the groups of a grouped zoo: one report per group (JSON: by group).

    Without ``--group``, the tables that read all groups together (lineage recovery) come
    first, as ``== all groups ==`` (JSON key ``"*"``).
    """
    from weightzoo.analysis import report

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
    results = {name: report(str(path)) for name, path in groups}
    if args.group is None:  # tables that read every group together (lineage) come first
        from weightzoo.analysis.report import WHOLE_ZOO_TABLES

        whole = report(args.zoo, tables=WHOLE_ZOO_TABLES)
        if whole.tables:
            results = {WHOLE_ZOO: whole, **results}
    if args.json:
        print(json.dumps({name: json.loads(r.to_json()) for name, r in results.items()}, indent=1))
    else:
        for name, result in results.items():
            print("== all groups ==" if name == WHOLE_ZOO else f"== group {name} ==")
            print(result.to_text(), end="")
    if not any(result.tables for result in results.values()):
        print(
            "weightzoo: error: no table could be computed (see the skipped lines)", file=sys.stderr
        )
        return EXIT_ERROR
    return 0


def _add_report_parser(sub: Any, verbose: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "report",
        parents=[verbose],
        help="the papers' tables for a zoo (MLDS: pass DS1 and DS2 for Table 2)",
        description="Compute every paper table the zoo supports (training quality, MLDS "
        "Tables 1-2, Model Zoos Table 3, trajectory clustering, property inference), with the "
        "paper's numbers beside ours; tables the zoo cannot support are listed with the reason.",
    )
    p.add_argument("zoo", help="a zoo directory")
    p.add_argument("zoo2", nargs="?", help="a second zoo (the DS2 partner of a DS1 zoo)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--out", help="also write the report to FILE (.json: JSON, .md: Markdown, else text)"
    )
    p.add_argument("--group", help="grouped zoo: report on this group (default: every group)")
    p.set_defaults(func=cmd_report)


def cmd_behaviour(args: argparse.Namespace) -> int:
    """Store every checkpoint's outputs on the zoo's query set in a side file."""
    from weightzoo.functional import behaviour

    for group, zoo in _each_group(args.zoo, args.group):
        _behaviour_one(args, group, zoo, behaviour)
    return 0


def _behaviour_one(args: argparse.Namespace, group: str | None, zoo: Path, behaviour: Any) -> None:
    record = behaviour(
        zoo,
        kind=args.queries,
        n=args.n,
        seed=args.seed,
        epochs=args.epochs,
        device=args.device,
        data_dir=args.data_dir,
        name=args.name,
        progress=True,
    )
    shape = record.arrays["outputs"]["shape"]
    print(
        f"{_group_prefix(group)}wrote {zoo / record.file}: outputs {shape} (models x "
        f"checkpoints x {args.n} {args.queries} queries x output), sha256 {record.sha256[:12]}"
    )


def cmd_landscape(args: argparse.Namespace) -> int:
    """Store loss-landscape metrics of every selected checkpoint in a side file."""
    for group, zoo in _each_group(args.zoo, args.group):
        _landscape_one(args, group, zoo)
    return 0


def _landscape_one(args: argparse.Namespace, group: str | None, zoo: Path) -> None:
    from weightzoo.landscape.zoo import compute_zoo_landscape

    record = compute_zoo_landscape(
        zoo,
        metrics=args.metrics,
        split=args.split,
        epochs=args.epochs,
        batches=args.batches,
        batch_size=args.batch_size,
        data_dir=args.data_dir,
        device=args.device,
        seed=args.seed,
        iters=args.iters,
        probes=args.probes,
        steps=args.steps,
        bn_update=False if args.no_bn_update else None,
        name=args.name,
        progress=True,
    )
    shape = next(iter(record.arrays.values()))["shape"]
    print(
        f"{_group_prefix(group)}wrote {zoo / record.file}: {', '.join(record.arrays)} "
        f"({shape[0]} models x {shape[1]} checkpoints), sha256 {record.sha256[:12]}; read them "
        "with ZooDataset(..., targets=(...))"
    )


def _add_landscape_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "landscape",
        parents=parents,
        help="loss-landscape metrics of every checkpoint, in a side file of the zoo",
        description="Measure Hessian top eigenvalue and trace (and, against a seed sibling, "
        "CKA and mode connectivity) of each selected checkpoint on the zoo's own training "
        "loss (image, MLDS, phase, PINN and tiny-LM zoos), and store them in "
        "<zoo>/sidecars/<name>.h5; ZooDataset(..., targets=('hessian_top',)) then serves them.",
    )
    p.add_argument(
        "zoo",
        help="a zoo directory: Model Zoos, trajectory, MLDS, phase, PINN or tiny-LM family, or "
        "a ViT zoo's fine-tune group",
    )
    p.add_argument(
        "--metrics",
        type=lambda text: [m for m in text.split(",") if m],
        default=["hessian_top", "hessian_trace"],
        help="comma-separated: hessian_top, hessian_trace, cka, mc, mc_error, linear_barrier, "
        "curve_barrier (default hessian_top,hessian_trace)",
    )
    p.add_argument("--split", default="all", help="models to measure (default all)")
    p.add_argument(
        "--epochs", type=_parse_epochs, default="last", help="'last' (default), 'all' or 0,10,50"
    )
    p.add_argument("--batches", type=_positive_int, default=4, help="training batches (4)")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="images per batch (64)")
    p.add_argument("--iters", type=_positive_int, default=20, help="power-iteration steps (20)")
    p.add_argument("--probes", type=_positive_int, default=20, help="Hutchinson probes (20)")
    p.add_argument("--steps", type=_positive_int, default=100, help="curve-training steps (100)")
    p.add_argument(
        "--no-bn-update",
        action="store_true",
        help="connectivity of networks with BatchNorm: interpolate the endpoints' running "
        "statistics instead of recomputing them at every point of the path (the default)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of probes and start vectors (0)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--data-dir", help="where the image dataset files are (digits needs none)")
    p.add_argument("--name", default="landscape", help="the side file's name (landscape)")
    p.add_argument("--group", help="grouped zoo: only this group (default: every group)")
    p.set_defaults(func=cmd_landscape)


def _add_behaviour_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "behaviour",
        parents=parents,
        help="every checkpoint's outputs on a fixed query set, in a side file of the zoo",
        description="Run every checkpoint of the zoo (the models on disk) on one fixed query "
        "set and store the outputs in <zoo>/sidecars/<name>.h5 (with its record "
        "<name>.json: sha256, shapes, the query set's kind, n and seed).",
    )
    p.add_argument("zoo", help="a zoo directory")
    p.add_argument(
        "--queries",
        choices=("random", "data", "union"),
        default="random",
        help="noise, held-out data, or half of each (default: random)",
    )
    p.add_argument("--n", type=_positive_int, default=64, help="queries (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the query set (default 0)")
    p.add_argument(
        "--epochs", type=_parse_epochs, default=None, help="'all' (default), 'last' or 0,10,50"
    )
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--data-dir", help="where the image dataset files are (digits needs none)")
    p.add_argument("--name", default="behaviour", help="the side file's name (default behaviour)")
    p.add_argument("--group", help="grouped zoo: only this group (default: every group)")
    p.set_defaults(func=cmd_behaviour)


# -- parser --------------------------------------------------------------------------------


class _DeprecatedEpochs(argparse.Action):
    """``--epochs`` of a training command: the old name of ``--train-epochs``, with a note."""

    def __call__(self, _parser: Any, namespace: Any, values: Any, _option: Any = None) -> None:
        print(
            "weightzoo: note: --epochs of this command is deprecated (it sets the training "
            "length); use --train-epochs (--epochs elsewhere selects checkpoints)",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def _add_train_epochs(
    p: Any, text: str, *, default: int | None = None, checked: bool = True
) -> None:
    """``--train-epochs`` (the training length), and ``--epochs`` as its deprecated alias."""
    kind = _positive_int if checked else int
    p.add_argument("--train-epochs", dest="epochs", type=kind, default=default, help=text)
    p.add_argument(
        "--epochs", dest="epochs", type=kind, action=_DeprecatedEpochs, help=argparse.SUPPRESS
    )


def _add_data_parser(sub: Any, verbose: argparse.ArgumentParser) -> None:
    """``weightzoo data fetch NAME...`` and ``weightzoo data list``."""
    from weightzoo.sources.datasets import IMAGE_DATASETS

    data = sub.add_parser(
        "data",
        parents=[verbose],
        help="download the image datasets that image zoos are generated from",
        description="fetch: download a dataset from its canonical address, check the md5 its "
        "publisher gives and lay the files out where `weightzoo generate` reads them "
        "(resumable; WEIGHTZOO_HTTP_MIRROR replaces the host). list: every dataset and "
        "whether its files are present.",
    )
    commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    dirs = OneLineParser(add_help=False)
    dirs.add_argument(
        "--data-dir",
        help="the data directory (default: WEIGHTZOO_DATA_DIR, else ~/.cache/weightzoo/data)",
    )
    p = commands.add_parser(
        "fetch", parents=[verbose, dirs], help="download datasets into the data directory"
    )
    p.add_argument("names", nargs="+", metavar="NAME", help=", ".join(IMAGE_DATASETS))
    p.set_defaults(func=cmd_data_fetch)
    p = commands.add_parser(
        "list", parents=[verbose, dirs], help="the datasets, their size and whether present"
    )
    p.set_defaults(func=cmd_data_list)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = OneLineParser(
        prog="weightzoo",
        description="Model zoos for weight-space learning: generate, inspect, fetch, push.",
        epilog="Set WEIGHTZOO_DEBUG=1 to see tracebacks.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    # The same flag after the subcommand; SUPPRESS keeps it from resetting a flag given before.
    verbose = OneLineParser(add_help=False)
    verbose.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log messages"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "list",
        parents=[verbose],
        help="list known zoos: sizes and where each comes from (hub, release, generate)",
        description="One table per family: models, checkpoints per model, parameters per "
        "model, the zoo's size in weightzoo's format (estimated), the download's size where "
        "the catalog knows it, and the sources `weightzoo fetch NAME` tries, in order. No "
        "network; --json has each source's address, licence and citation.",
    )
    p.add_argument("--family", help="only this family (e.g. modelzoo, smallcnnzoo, phase)")
    p.add_argument("--json", action="store_true", help="print the catalog as JSON")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "info",
        parents=[verbose],
        help="summarise a zoo directory (or list the zoos in a folder)",
        description="Counts, checkpoints, splits, shards, metric ranges and per-class training "
        "quality of a zoo; exit 1 if a shard is missing or damaged. On a folder of zoos, one "
        "line per zoo. The --json schema is in docs/cli.md.",
    )
    p.add_argument("path", help="a zoo directory, or a folder holding zoo directories")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("verify", parents=[verbose], help="recompute every shard hash of a zoo")
    p.add_argument("path")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "generate",
        parents=[verbose],
        help="train a zoo from its spec (resumes an interrupted run)",
        description="Train the zoo NAME into --out. Rerunning the same command after an "
        "interruption finishes the missing shards; a different spec in the same directory "
        "is refused.",
    )
    p.add_argument("name", help="zoo spec name (see `weightzoo list`)")
    p.add_argument("--out", help="zoo directory (default: zoos/NAME)")
    p.add_argument("--models", type=_positive_int, help="only the first N models of the spec")
    _add_train_epochs(p, "train N epochs (image zoos) / at most N (MLDS)")
    p.add_argument(
        "--per-class", type=_positive_int, help="MLDS: networks per machine or automaton"
    )
    p.add_argument("--machines", help="MLDS: comma-separated machine names or automaton seeds")
    p.add_argument("--data-dir", help="image zoos: directory with the raw dataset files")
    p.add_argument(
        "--download",
        action="store_true",
        help="image zoos: first download the spec's image data into --data-dir (as "
        "`weightzoo data fetch`; files already there are kept)",
    )
    p.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda")
    p.add_argument(
        "--workers",
        type=_positive_int,
        help="local engine: parallel training processes (default: one per CPU core on cpu, "
        "1 on cuda)",
    )
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="where blocks train: local processes (default) or Ray tasks (pip install "
        '"weightzoo[ray]")',
    )
    p.add_argument(
        "--address", help="Ray: cluster to join (default: RAY_ADDRESS, else a local Ray)"
    )
    p.add_argument(
        "--cpus-per-block",
        type=_positive_float,
        default=1,
        help="Ray: CPUs reserved per block (default 1)",
    )
    p.add_argument(
        "--gpus-per-block",
        type=_non_negative_float,
        default=0,
        help="Ray: GPUs reserved per block (default 0; needed with --device cuda)",
    )
    p.add_argument(
        "--max-retries",
        type=int,
        default=3,
        help="Ray: retries of a block whose worker died (default 3)",
    )
    p.add_argument(
        "--slice",
        type=_parse_slice,
        metavar="I/N",
        help="train only slice I of N (blocks I, I+N, ...; I from 0) into --out, beside the "
        "other slices; then `weightzoo merge DIR`",
    )
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser(
        "merge",
        parents=[verbose],
        help="join the finished slices of a zoo (generate --slice) into one zoo.json",
        description="Check that the slices in DIR are of one spec and cover every model once, "
        "recompute every shard's sha256, and write the zoo's zoo.json.",
    )
    p.add_argument("path", help="the --out directory of the slices")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser(
        "sparsify",
        parents=[verbose],
        help="write the sparsified twin of a trained Model Zoos / trajectory zoo",
        description="Sparsify every model of the zoo SRC (its last checkpoint) with variational "
        "dropout and write the twin zoo, with sparsity and accuracy per sparsification epoch. "
        "Rerunning the same command after an interruption finishes the missing shards.",
    )
    p.add_argument("src", help="a generated Model Zoos or trajectory zoo directory")
    p.add_argument("--out", help="twin directory (default: SRC-sparse beside SRC)")
    _add_train_epochs(p, "sparsification epochs (default 25)", default=25, checked=False)
    p.add_argument("--data-dir", help="directory with the raw image files of SRC's dataset")
    p.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda")
    p.set_defaults(func=cmd_sparsify)

    p = sub.add_parser(
        "fetch",
        parents=[verbose],
        help="fetch a published zoo (hub copy or original release), or list a Zenodo record",
        description="NAME is a catalog name (its sources are tried in order: the hub copy, the "
        "original release converted into --out, else the `weightzoo generate` command is "
        "named; `weightzoo list` shows each zoo's sources), a hub dataset repo id, "
        "zenodo:RECORD (list the record's files) or zenodo:RECORD/FILE (convert a Model Zoos "
        "zip into a zoo at --out). A zip is read in part (only the members needed) where the "
        "server allows. Endpoints: WEIGHTZOO_ZENODO_ENDPOINT (default https://zenodo.org), "
        "WEIGHTZOO_HTTP_MIRROR; see docs/sources.md.",
    )
    p.add_argument(
        "name", help="catalog name, hub dataset repo id (owner/name), or zenodo:RECORD[/FILE]"
    )
    p.add_argument(
        "--out",
        help="original releases: the zoo directory (default: $WEIGHTZOO_HOME/zoos/NAME, "
        "WEIGHTZOO_HOME defaulting to ~/.cache/weightzoo; zenodo:RECORD/FILE: zoos/FILE)",
    )
    p.add_argument(
        "--models", type=_positive_int, help="original releases: only the first N models"
    )
    p.add_argument("--split", choices=("train", "val", "test", "all"))
    p.add_argument("--epochs", type=_parse_epochs, help="'all', 'last', N or N1,N2,...")
    p.add_argument("--revision")
    p.add_argument("--cache-dir")
    p.add_argument("--local-dir", help="download into this directory instead of the cache")
    p.add_argument("--group", help="grouped zoo: only this group (default: every group)")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("push", parents=[verbose], help="upload a zoo to the Hugging Face Hub")
    p.add_argument("path")
    p.add_argument("repo_id")
    p.add_argument("--private", action="store_true")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser(
        "import", parents=[verbose], help="convert an existing zoo into the weightzoo format"
    )
    p.add_argument("kind", choices=("modelzoo", "cnn-zoo", "mlds"))
    p.add_argument("src")
    p.add_argument("dest")
    p.set_defaults(func=cmd_import)

    _add_report_parser(sub, verbose)
    _add_card_parser(sub, verbose)
    _add_behaviour_parser(sub, [verbose])
    _add_landscape_parser(sub, [verbose])
    _add_data_parser(sub, verbose)
    return parser


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while a command runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: FrameType | None) -> NoReturn:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _silence_stdout() -> None:
    """Point stdout at the null device, so that its final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass  # stdout is not a file descriptor (captured): nothing to flush at exit


def _call(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    if os.environ.get("WEIGHTZOO_DEBUG") == "1":
        return func(args)
    try:
        return func(args)
    except KeyboardInterrupt:
        print(f"weightzoo: interrupted; {RESUME_HINT}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print(f"weightzoo: terminated (SIGTERM); {RESUME_HINT}", file=sys.stderr)
        return EXIT_TERMINATED
    except (WeightzooError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        name = type(exc).__name__
        # One line, whatever a file name or a publisher's string in the message holds.
        text = one_line(str(exc), limit=None)
        print(f"weightzoo: error: {text} [{name}; WEIGHTZOO_DEBUG=1 for details]", file=sys.stderr)
        return EXIT_ERROR


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; errors become one line on stderr.

    Returns:
        The exit code (see the module's documentation).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        with _sigterm_raises():
            return _call(args.func, args)
    except BrokenPipeError:
        # The reader of our output is gone (`weightzoo list | head -1`): stop quietly.
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def main() -> None:
    """Console-script entry point."""
    code = run()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        code = EXIT_BROKEN_PIPE
    sys.exit(code)


if __name__ == "__main__":
    main()
