"""``weightzoo behaviour`` and ``weightzoo landscape``: measurements kept in a zoo's side files.

Both run the zoo's models with torch, imported when a command runs, so that building the
parser (``weightzoo --help``, ``weightzoo list``) stays light.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from weightzoo.cli.options import (
    OwnedChoice,
    add_command,
    add_group,
    non_negative_float,
    parse_epochs,
    positive_int,
)
from weightzoo.cli.targets import each_group, group_prefix

__all__ = ["add_parsers", "cmd_behaviour", "cmd_landscape"]

_BEHAVIOUR_TEXT = """every checkpoint's outputs on a fixed query set, in a side file of the zoo

Run every checkpoint of the zoo (the models on disk) on one fixed query set and store the outputs
in <zoo>/sidecars/<name>.h5 (with its record <name>.json: sha256, shapes, the query set's kind, n
and seed).
"""
_LANDSCAPE_TEXT = """loss-landscape metrics of every checkpoint, in a side file of the zoo

Measure Hessian top eigenvalue and trace (and, against a seed sibling, CKA and mode connectivity)
of each selected checkpoint on the zoo's own training loss (image, MLDS, phase, PINN and tiny-LM
zoos), and store them in <zoo>/sidecars/<name>.h5; ZooDataset(..., targets=('hessian_top',))
then serves them.
"""
_DEFAULT_METRICS = ("hessian_top", "hessian_trace")
#: Power iteration's defaults: weightzoo.landscape.options.DEFAULT_ITERS and DEFAULT_TOL, kept
#: here as numbers so that building the parser imports no torch (a test checks they agree).
_DEFAULT_ITERS = 200
_DEFAULT_TOL = 1e-4


def _steps(text: str) -> int:
    """Curve-training steps: 0 (the linear path alone) or a positive integer.

    Raises:
        argparse.ArgumentTypeError: for anything else.
    """
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or a positive integer, got {text!r}")
    return value


def _per_group(args: argparse.Namespace, one: Callable[..., None]) -> int:
    """Run ``one(args, group, zoo)`` on the zoo, its ``--group``, or each of its groups."""
    for group, zoo in each_group(args.zoo, args.group):
        one(args, group, zoo)
    return 0


def _side_file_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options both measurements take (:func:`_add_side_file_options`), as keywords."""
    names = ("epochs", "seed", "device", "data_dir", "name")
    return {name: getattr(args, name) for name in names} | {"progress": True}


def cmd_behaviour(args: argparse.Namespace) -> int:
    """Store every checkpoint's outputs on the zoo's query set in a side file."""
    return _per_group(args, _behaviour_one)


def _behaviour_one(args: argparse.Namespace, group: str | None, zoo: Path) -> None:
    from weightzoo.functional import behaviour  # torch: it runs the models

    record = behaviour(zoo, kind=args.queries, n=args.n, **_side_file_options(args))
    shape = record.arrays["outputs"]["shape"]
    print(
        f"{group_prefix(group)}wrote {zoo / record.file}: outputs {shape} (models x "
        f"checkpoints x {args.n} {args.queries} queries x output), sha256 {record.sha256[:12]}"
    )


def cmd_landscape(args: argparse.Namespace) -> int:
    """Store loss-landscape metrics of every selected checkpoint in a side file."""
    return _per_group(args, _landscape_one)


def _landscape_one(args: argparse.Namespace, group: str | None, zoo: Path) -> None:
    # torch: it runs the models
    from weightzoo.landscape.zoo_metrics import compute_zoo_landscape

    side = _side_file_options(args)
    knobs = ("batches", "batch_size", "iters", "tol", "probes", "steps")
    # the knobs this command has, over the defaults of the engine that measures the zoo
    options = {name: getattr(args, name) for name in knobs} | {
        "seed": side.pop("seed"),
        "bn_update": False if args.no_bn_update else None,
    }
    record = compute_zoo_landscape(
        zoo, metrics=args.metrics, split=args.split, options=options, **side
    )
    shape = next(iter(record.arrays.values()))["shape"]
    print(
        f"{group_prefix(group)}wrote {zoo / record.file}: {', '.join(record.arrays)} "
        f"({shape[0]} models x {shape[1]} checkpoints), sha256 {record.sha256[:12]}; read them "
        "with ZooDataset(..., targets=(...))"
    )


def _add_side_file_options(
    p: argparse.ArgumentParser, name: str, epochs: tuple[str | None, str], seed: str
) -> None:
    """What both measurements take: checkpoints, seed, device, data, side file, group.

    Args:
        p: the command's parser.
        name: the side file's default name.
        epochs: ``--epochs``'s default and help.
        seed: what ``--seed`` seeds.
    """
    default, text = epochs
    p.add_argument("--epochs", type=parse_epochs, default=default, help=text)
    p.add_argument("--seed", type=int, default=0, help=f"seed of {seed} (default 0)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--data-dir", help="where the image dataset files are (digits needs none)")
    p.add_argument("--name", default=name, help=f"the side file's name (default {name})")
    add_group(p)


def _add_landscape_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = add_command(sub, "landscape", parents, _LANDSCAPE_TEXT, cmd_landscape)
    p.add_argument(
        "zoo",
        help="a zoo directory: Model Zoos, trajectory, MLDS, phase, PINN or tiny-LM family, or "
        "a ViT zoo's fine-tune group",
    )
    p.add_argument(
        "--metrics",
        type=lambda text: [m for m in text.split(",") if m],
        default=list(_DEFAULT_METRICS),
        help="comma-separated: hessian_top, hessian_trace, cka, mc, mc_error, linear_barrier, "
        "curve_barrier (default hessian_top,hessian_trace)",
    )
    p.add_argument("--split", default="all", help="models to measure (default all)")
    p.add_argument("--batches", type=positive_int, default=4, help="training batches (4)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per batch (64)")
    p.add_argument(
        "--iters",
        type=positive_int,
        default=_DEFAULT_ITERS,
        help=f"most power-iteration steps ({_DEFAULT_ITERS}; a warning names the models that "
        "did not converge)",
    )
    p.add_argument(
        "--tol",
        type=non_negative_float,
        default=_DEFAULT_TOL,
        help=f"relative change of the top eigenvalue at which power iteration stops "
        f"({_DEFAULT_TOL:g})",
    )
    p.add_argument("--probes", type=positive_int, default=20, help="Hutchinson probes (20)")
    p.add_argument(
        "--steps",
        type=_steps,
        default=100,
        help="curve-training steps (100; 0: the linear path alone, no curve)",
    )
    p.add_argument(
        "--no-bn-update",
        action="store_true",
        help="connectivity of networks with BatchNorm: interpolate the endpoints' running "
        "statistics instead of recomputing them at every point of the path (the default)",
    )
    _add_side_file_options(
        p,
        "landscape",
        ("last", "'last' (default), 'all' or 0,10,50"),
        "probes and start vectors",
    )


def _add_behaviour_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = add_command(sub, "behaviour", parents, _BEHAVIOUR_TEXT, cmd_behaviour)
    p.add_argument("zoo", help="a zoo directory")
    p.add_argument(
        "--queries",
        type=OwnedChoice("weightzoo.functional", "QUERY_KINDS"),
        metavar="KIND",
        default="random",
        help="random (noise, the default), data (held-out data) or union (half of each)",
    )
    p.add_argument("--n", type=positive_int, default=64, help="queries (default 64)")
    _add_side_file_options(
        p, "behaviour", (None, "'all' (default), 'last' or 0,10,50"), "the query set"
    )


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """``weightzoo behaviour`` and ``weightzoo landscape``."""
    _add_behaviour_parser(sub, parents)
    _add_landscape_parser(sub, parents)
