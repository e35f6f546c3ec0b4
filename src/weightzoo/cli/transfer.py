"""Zoos and data in and out: ``fetch``, ``push``, ``import``, ``data fetch`` and ``data list``."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import urlsplit

from weightzoo import hub
from weightzoo.cli.formatting import human_bytes
from weightzoo.cli.options import (
    OneLineParser,
    OwnedChoice,
    add_command,
    add_group,
    parse_epochs,
    positive_int,
)
from weightzoo.errors import InvalidOptionError
from weightzoo.importers import import_zoo
from weightzoo.sources import fetch as releases
from weightzoo.sources.datafetch import fetch_dataset, spec_datasets, status
from weightzoo.sources.datasets import IMAGE_DATASETS
from weightzoo.storage.manifest import SPLITS

__all__ = [
    "add_data_parsers",
    "add_parsers",
    "cmd_data_fetch",
    "cmd_data_list",
    "cmd_fetch",
    "cmd_import",
    "cmd_push",
    "fetch_spec_data",
    "print_fetched",
]

_FETCH_TEXT = """fetch a published zoo (hub copy or original release), or list a Zenodo record

NAME is a catalog name (its sources are tried in order: the hub copy, the original release
converted into --out, else the `weightzoo generate` command is named; `weightzoo list` shows
each zoo's sources), a hub dataset repo id, zenodo:RECORD (list the record's files) or
zenodo:RECORD/FILE (convert a Model Zoos zip into a zoo at --out). A zip is read in part (only
the members needed) where the server allows. Endpoints: WEIGHTZOO_ZENODO_ENDPOINT (default
https://zenodo.org), WEIGHTZOO_HTTP_MIRROR; see docs/sources.md.
"""
_DATA_TEXT = """download the image datasets that image zoos are generated from

fetch: download a dataset from its canonical address, check the md5 its publisher gives and lay
the files out where `weightzoo generate` reads them (resumable; WEIGHTZOO_HTTP_MIRROR replaces
the host). list: every dataset and whether its files are present.
"""


def cmd_fetch(args: argparse.Namespace) -> int:
    """Fetch a catalog zoo from its first source, a hub repo, or list / convert a Zenodo record."""
    if args.name.startswith("zenodo:"):
        return releases.command(args)
    if "/" not in args.name:  # a catalog name: hub copy, original release or generation
        return releases.catalog_command(args)
    if args.out or args.models:
        raise InvalidOptionError(
            "--out and --models apply to catalog names and zenodo:RECORD/FILE fetches; a hub "
            "repo fetch writes to --local-dir (or the cache) and selects with --split, --epochs "
            "and --group"
        )
    options = ("split", "epochs", "revision", "cache_dir", "local_dir", "group")
    print(hub.fetch(args.name, **{name: getattr(args, name) for name in options}))
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    """Upload a zoo to the hub."""
    print(hub.push(args.path, args.repo_id, private=args.private))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Convert an existing zoo into the weightzoo format."""
    path = import_zoo(args.kind, args.src, args.dest)
    print(f"imported {args.kind} zoo into {path}")
    return 0


def print_fetched(fetched: Any) -> None:
    """One line saying what ``fetch_dataset`` did."""
    if not fetched.files:
        print(f"{fetched.name}: already present in {fetched.folder}")
        return
    resumed = f", {human_bytes(fetched.resumed)} of it resumed" if fetched.resumed else ""
    print(
        f"{fetched.name}: fetched {', '.join(fetched.files)} "
        f"({human_bytes(fetched.received + fetched.resumed)}{resumed}), md5 verified, "
        f"into {fetched.folder}"
    )


def fetch_spec_data(spec: Any, data_dir: str | None) -> None:
    """Download the image datasets a spec needs (``generate --download``)."""
    names = spec_datasets(spec.to_dict())
    if not names:
        print(f"{spec.name}: no image data to download")
    for name in names:
        print_fetched(fetch_dataset(name, data_dir))


def cmd_data_fetch(args: argparse.Namespace) -> int:
    """Download image datasets and lay them out where ``generate`` reads them."""
    for name in args.names:
        print_fetched(fetch_dataset(name, args.data_dir))
    return 0


def cmd_data_list(args: argparse.Namespace) -> int:
    """Print every downloadable image dataset, its size, and whether its files are present."""
    rows = []
    for name, dataset in IMAGE_DATASETS.items():
        state = status(name, args.data_dir)
        size = dataset.size
        rows.append(
            (
                name,
                human_bytes(size) if size is not None else "?",
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


def _add_fetch_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = add_command(sub, "fetch", parents, _FETCH_TEXT, cmd_fetch)
    p.add_argument(
        "name", help="catalog name, hub dataset repo id (owner/name), or zenodo:RECORD[/FILE]"
    )
    p.add_argument(
        "--out",
        help="original releases: the zoo directory (default: $WEIGHTZOO_HOME/zoos/NAME, "
        "WEIGHTZOO_HOME defaulting to ~/.cache/weightzoo; zenodo:RECORD/FILE: zoos/FILE)",
    )
    p.add_argument("--models", type=positive_int, help="original releases: only the first N models")
    p.add_argument("--split", choices=(*SPLITS, "all"))
    p.add_argument("--epochs", type=parse_epochs, help="'all', 'last', N or N1,N2,...")
    p.add_argument("--revision")
    p.add_argument("--cache-dir")
    p.add_argument("--local-dir", help="download into this directory instead of the cache")
    add_group(p)


def add_data_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """``weightzoo data fetch NAME...`` and ``weightzoo data list``."""
    data = add_command(sub, "data", parents, _DATA_TEXT)
    commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    dirs = OneLineParser(add_help=False)
    dirs.add_argument(
        "--data-dir",
        help="the data directory (default: WEIGHTZOO_DATA_DIR, else ~/.cache/weightzoo/data)",
    )
    text = "download datasets into the data directory"
    p = add_command(commands, "fetch", [*parents, dirs], text, cmd_data_fetch)
    p.add_argument("names", nargs="+", metavar="NAME", help=", ".join(IMAGE_DATASETS))
    text = "the datasets, their size and whether present"
    add_command(commands, "list", [*parents, dirs], text, cmd_data_list)


_PUSH_TEXT = """upload a zoo to the Hugging Face Hub

Verify the zoo at PATH and upload its manifest, its shards and its card to the dataset
repository REPO_ID (created if missing); `weightzoo fetch REPO_ID` then gets it back.
"""
_IMPORT_TEXT = """convert an existing zoo into the weightzoo format

Read the published zoo SRC in its own layout (KIND: the family it belongs to, or cnn-zoo for
the Small CNN Zoo) without unpickling anything, and write it to DEST as a weightzoo zoo.
"""


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """``weightzoo fetch``, ``push`` and ``import`` (``data``: :func:`add_data_parsers`)."""
    _add_fetch_parser(sub, parents)
    p = add_command(sub, "push", parents, _PUSH_TEXT, cmd_push)
    p.add_argument("path", help="the zoo directory")
    p.add_argument("repo_id", help="the dataset repository, e.g. YOUR-USER/mlds-ds1")
    p.add_argument("--private", action="store_true", help="create the repository private")
    text = _IMPORT_TEXT
    p = add_command(sub, "import", parents, text, cmd_import)
    p.add_argument(
        "kind",
        # the kinds come from the families, whose importers load torch: asked only on `import`
        type=OwnedChoice("weightzoo.importers", "kinds"),
        metavar="KIND",
        help="the source format: cnn-zoo, or the name of a family that has an importer",
    )
    p.add_argument("src", help="the published zoo: its directory or archive (docs/import.md)")
    p.add_argument("dest", help="the new zoo directory (must not exist, or be empty)")
