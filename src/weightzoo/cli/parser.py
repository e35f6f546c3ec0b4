"""The argument parser of ``weightzoo``: each command group adds its own subcommands."""

from __future__ import annotations

import argparse

from weightzoo.cli import documents, generation, inspect, listing, measure, transfer
from weightzoo.cli.options import OneLineParser, verbose_parent

__all__ = ["build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = OneLineParser(
        prog="weightzoo",
        description="Model zoos for weight-space learning: generate, inspect, fetch, push.",
        epilog="Set WEIGHTZOO_DEBUG=1 to see tracebacks.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parents = [verbose_parent()]  # the same flag after the subcommand
    listing.add_parsers(sub, parents)
    inspect.add_parsers(sub, parents)
    generation.add_parsers(sub, parents)
    transfer.add_parsers(sub, parents)
    documents.add_parsers(sub, parents)
    measure.add_parsers(sub, parents)
    transfer.add_data_parsers(sub, parents)
    return parser
