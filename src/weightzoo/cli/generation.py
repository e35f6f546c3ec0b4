"""``weightzoo generate``, ``merge`` and ``sparsify``: zoos trained here, and their twins.

The training code imports torch: each command imports it when it runs, so that building the
parser (``weightzoo --help``, ``weightzoo list``) stays light.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from weightzoo.cli.options import (
    OneLineParser,
    OwnedChoice,
    add_command,
    add_train_epochs,
    non_negative_float,
    parse_slice,
    positive_float,
    positive_int,
)
from weightzoo.cli.transfer import fetch_spec_data
from weightzoo.errors import (
    DataFilesMissingError,
    InvalidOptionError,
    WeightzooError,
    ZooLockedError,
)
from weightzoo.generate.base import GridOptions, ZooSpec
from weightzoo.generate.specs import get_spec
from weightzoo.sources.datasets import IMAGE_DATASETS
from weightzoo.storage.manifest import Manifest
from weightzoo.storage.merge import merge_slices
from weightzoo.storage.writer import ZooLock, is_own_top_name

__all__ = ["add_parsers", "cmd_generate", "cmd_merge", "cmd_sparsify"]

_GENERATE_TEXT = """train a zoo from its spec (resumes an interrupted run)

Train the zoo NAME into --out. Rerunning the same command after an interruption finishes the
missing shards; a different spec in the same directory is refused.
"""
_MERGE_TEXT = """join the finished slices of a zoo (generate --slice) into one zoo.json

Check that the slices in DIR are of one spec and cover every model once, recompute every shard's
sha256, and write the zoo's zoo.json.
"""
_SPARSIFY_TEXT = """write the sparsified twin of a trained Model Zoos / trajectory zoo

Sparsify every model of the zoo SRC (its last checkpoint) with variational dropout and write the
twin zoo, with sparsity and accuracy per sparsification epoch. Rerunning the same command after
an interruption finishes the missing shards.
"""
# The options of `generate` that a rerun with --download repeats (defaults: the parser's).
_REPEATED = (
    ("--out", "out"),
    ("--models", "models"),
    ("--first-models", "first_models"),
    ("--sample-seed", "sample_seed"),
    ("--train-epochs", "epochs"),
    ("--per-class", "per_class"),
    ("--machines", "machines"),
    ("--data-dir", "data_dir"),
    ("--device", "device"),
    ("--workers", "workers"),
    ("--engine", "engine"),
    ("--address", "address"),
    ("--cpus-per-block", "cpus_per_block"),
    ("--gpus-per-block", "gpus_per_block"),
    ("--resume-interval", "resume_interval"),
    ("--max-retries", "max_retries"),
)
# The options of the Ray engine: the local engine refuses them unless left at their defaults.
_RAY_ONLY = ("address", "cpus_per_block", "gpus_per_block", "max_retries")

# The folders whose files are a run's work (shards, resume states, side files), at the top of a
# zoo or of one of its groups: a file in any of them is worth resuming from.
_WORK_FOLDERS = frozenset({"shards", ".resume", "sidecars"})
log = logging.getLogger(__name__)

# What an interrupted `generate` keeps, said after Ctrl-C or SIGTERM.
RESUME_HINT = "completed shards are kept, rerun the same command to resume"


def _check_engine(engine: str, ray: Any, device: str) -> None:
    """The generator's own check of engine and device, before anything is fetched or written."""
    from weightzoo.generate.runner import _check_engine as check  # torch: a command that trains

    check(engine, ray, device)


def _ray_options(args: argparse.Namespace) -> Any:
    """The Ray engine's options (``None`` for the local engine), refusing the other's options."""
    if args.engine != "ray":
        defaults = _generate_defaults()
        if any(getattr(args, k) != defaults.get_default(k) for k in _RAY_ONLY):
            raise InvalidOptionError(
                "--address, --cpus-per-block, --gpus-per-block and --max-retries need --engine ray"
            )
        return None
    if args.workers is not None:
        raise InvalidOptionError(
            "--workers is for --engine local; with --engine ray every block is a task "
            "(size it with --cpus-per-block)"
        )
    from weightzoo.generate.ray_engine import RayOptions  # torch: a command that trains

    return RayOptions(**{key: getattr(args, key) for key in _RAY_ONLY})


def _samples_grid(spec: ZooSpec) -> bool:
    """Whether ``spec`` takes ``sample``/``sample_seed``: a grid spec, or a grid of them."""
    return hasattr(spec, "sample_seed") or isinstance(getattr(spec, "base", None), GridOptions)


def _sample_options(args: argparse.Namespace, spec: ZooSpec) -> dict[str, Any]:
    """``models`` and, for a grid, the sample: stratified for --models, first for --first-models.

    Raises:
        InvalidOptionError: for --sample-seed without --models on a grid spec.
    """
    first = args.first_models is not None
    count = args.first_models if first else args.models
    if not _samples_grid(spec):  # MLDS and the like keep their own meaning of --models
        return {"models": count}
    if args.sample_seed != 0 and (first or count is None):
        raise InvalidOptionError(
            f"weightzoo generate {args.name}: --sample-seed {args.sample_seed} chooses the "
            "models of --models N; give --models N too (or drop --sample-seed)"
        )
    if count is None:
        return {}
    return {"models": count, "sample": "first" if first else "stratified"} | (
        {} if first else {"sample_seed": args.sample_seed}
    )


def _spec(args: argparse.Namespace) -> ZooSpec:
    """The named spec with the command line's options applied."""
    spec = get_spec(args.name)
    options = {
        **_sample_options(args, spec),
        "epochs": args.epochs,
        "per_class": args.per_class,
        "machines": args.machines.split(",") if args.machines else None,
        "data_dir": args.data_dir,
    }
    try:
        return spec.override(**options)
    except WeightzooError:
        raise
    except ValueError as exc:  # the documented answer of override() to an unusable option
        raise InvalidOptionError(f"weightzoo generate {args.name}: {exc}") from exc


def _print_generated(args: argparse.Namespace, manifest: Any, out: Path) -> None:
    """One line saying what ``generate`` wrote: the zoo, its groups, or one slice."""
    if not isinstance(manifest, Manifest):  # a grouped zoo: its top manifest
        groups = ", ".join(f"{g.name} {g.num_models}" for g in manifest.groups)
        print(f"wrote {manifest.name} to {out}: {manifest.num_models} models in groups {groups}")
        return
    splits = ", ".join(f"{k} {v}" for k, v in manifest.splits().items())
    if args.slice is None:
        print(f"wrote {manifest.name} to {out}: {manifest.num_models} models ({splits})")
        return
    index, count = args.slice
    print(
        f"wrote slice {index}/{count} of {manifest.name} to {out}: "
        f"{sum(manifest.splits().values())} models "
        f"({splits}); run `weightzoo merge {out}` once all {count} slices are done"
    )


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate (or resume) a zoo."""
    from weightzoo.generate.runner import generate, zoo_dir_default  # torch: it trains

    ray = _ray_options(args)
    _check_engine(args.engine, ray, args.device)
    spec = _spec(args)
    out = Path(args.out) if args.out else zoo_dir_default(spec)
    if args.download:  # into the directory the spec reads
        fetch_spec_data(spec, getattr(spec, "data_dir", None) or args.data_dir)
    # None: the runner's own default interval
    interval = {} if args.resume_interval is None else {"resume_interval": args.resume_interval}
    try:
        with _no_debris(out):
            manifest = generate(
                spec,
                out,
                device=args.device,
                workers=args.workers,
                engine=args.engine,
                ray=ray,
                slice=args.slice,
                **interval,
            )
    except DataFilesMissingError as exc:
        raise _offer_download(exc, args) from None
    _print_generated(args, manifest, out)
    return 0


@contextmanager
def _no_debris(out: Path) -> Iterator[None]:
    """On failure, remove what this run wrote to a new ``out`` if it stored no work.

    A run that fails before its first shard or resume state (missing data, a bad device)
    would otherwise leave a ``zoo.json`` that promises models and holds none. A directory that
    held anything before the run, or holds work now, is left as it is.
    """
    created = not out.exists()
    was_empty = created or (out.is_dir() and not out.is_symlink() and not any(out.iterdir()))
    try:
        yield
    except BaseException:
        if was_empty:
            try:
                _remove_unfinished(out, created=created)
            except OSError as exc:  # the run's own error matters more than its debris
                log.warning("could not remove the unfinished zoo at %s: %s", out, exc)
        raise


def _remove_unfinished(out: Path, *, created: bool) -> None:
    """Empty ``out`` (and remove it if ``created``) unless it holds work or another writer."""
    if not out.is_dir() or out.is_symlink():
        return
    try:
        lock = ZooLock(out)  # a writer still at work owns what is there
    except (ZooLockedError, OSError):
        return
    try:
        entries = list(out.iterdir())
        # only what a writer names its files: anything else is someone's, and stays
        if not all(is_own_top_name(e.name) and not e.is_symlink() for e in entries):
            return
        if _holds_work(out):
            return
        for entry in entries:
            if entry.is_dir():
                shutil.rmtree(entry)
            elif entry.name != lock.path.name:
                entry.unlink()
    finally:
        lock.release()
    lock.path.unlink(missing_ok=True)
    if created:
        try:
            out.rmdir()
        except OSError:  # a writer that started meanwhile owns it now
            pass


def _holds_work(out: Path) -> bool:
    """Whether a file lies in a work folder of the zoo or of a group (a linked folder counts)."""
    for folder, dirs, files in os.walk(out):  # links to folders are listed, never followed
        path = Path(folder)
        if any((path / name).is_symlink() for name in dirs):
            return True
        inside = path.relative_to(out).parts
        if files and (path.name in _WORK_FOLDERS or "sidecars" in inside):
            return True
    return False


def _generate_command(args: argparse.Namespace, *extra: str) -> str:
    """The shell command ``weightzoo generate`` with the options of ``args``, then ``extra``."""
    defaults = _generate_defaults()
    argv = ["weightzoo", "generate", args.name]
    for flag, dest in _REPEATED:
        value = getattr(args, dest)
        if value is not None and value != defaults.get_default(dest):
            argv += [flag, str(value)]
    if args.slice is not None:
        argv += ["--slice", f"{args.slice[0]}/{args.slice[1]}"]
    return shlex.join([*argv, *extra])


def _offer_download(exc: DataFilesMissingError, args: argparse.Namespace) -> Exception:
    """``exc``, plus the rerun with ``--download`` where that fetches the missing dataset."""
    if args.download or getattr(exc, "dataset", None) not in IMAGE_DATASETS:
        return exc
    command = _generate_command(args, "--download")
    return DataFilesMissingError(f"{exc}; or rerun with --download: `{command}`")


def cmd_merge(args: argparse.Namespace) -> int:
    """Join the finished slices of a zoo into one verified zoo.json."""
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
    # torch: a command that trains
    from weightzoo.families.modelzoo.sparsify import default_twin_dir, sparsify_zoo

    _check_engine("local", None, args.device)
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


def _add_generate_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``weightzoo generate``."""
    p.add_argument("name", help="zoo spec name (see `weightzoo list`)")
    p.add_argument("--out", help="zoo directory (default: zoos/NAME)")
    count = p.add_mutually_exclusive_group()
    count.add_argument(
        "--models",
        type=positive_int,
        help="only N models: for a grid spec a seeded sample that holds every value of every "
        "hyperparameter where N allows (recorded in the spec); MLDS: the first N networks. "
        "Not with --first-models",
    )
    count.add_argument(
        "--first-models",
        type=positive_int,
        metavar="N",
        help="only the first N models of the spec's order (the grid order); not with --models",
    )
    p.add_argument(
        "--sample-seed",
        type=int,
        default=0,
        metavar="S",
        help="grid specs: seed of the sample that --models N takes (default 0)",
    )
    add_train_epochs(p, "train N epochs (image zoos) / at most N (MLDS)")
    p.add_argument("--per-class", type=positive_int, help="MLDS: networks per machine or automaton")
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
        type=positive_int,
        help="local engine: parallel training processes (default: one per CPU core on cpu, "
        "1 on cuda)",
    )
    p.add_argument(
        "--engine",
        type=OwnedChoice("weightzoo.generate.runner", "ENGINES"),
        metavar="ENGINE",
        default="local",
        help="where blocks train: local (processes on this machine, the default) or ray (Ray "
        'tasks; pip install "weightzoo[ray]")',
    )
    _add_ray_arguments(p)
    p.add_argument(
        "--slice",
        type=parse_slice,
        metavar="I/N",
        help="train only slice I of N (blocks I, I+N, ...; I from 0) into --out, beside the "
        "other slices; then `weightzoo merge DIR`",
    )
    p.add_argument(
        "--resume-interval",
        type=non_negative_float,
        metavar="SECONDS",
        help="save an unfinished block's training state at most every SECONDS (default 60; 0: "
        "every epoch), so that a killed run resumes from its last saved epoch",
    )


def _add_ray_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``generate --engine ray``."""
    p.add_argument(
        "--address", help="Ray: cluster to join (default: RAY_ADDRESS, else a local Ray)"
    )
    p.add_argument(
        "--cpus-per-block",
        type=positive_float,
        default=1,
        help="Ray: CPUs reserved per block (default 1)",
    )
    p.add_argument(
        "--gpus-per-block",
        type=non_negative_float,
        default=0,
        help="Ray: GPUs reserved per block (default 0; needed with --device cuda)",
    )
    p.add_argument(
        "--max-retries",
        type=int,
        default=3,
        help="Ray: retries of a block whose worker died (default 3)",
    )


def _generate_defaults() -> argparse.ArgumentParser:
    """A parser of ``generate``'s arguments alone, to read their defaults from."""
    parser = OneLineParser(add_help=False)
    _add_generate_arguments(parser)
    return parser


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """``weightzoo generate``, ``weightzoo merge`` and ``weightzoo sparsify``."""
    _add_generate_arguments(
        add_command(sub, "generate", parents, _GENERATE_TEXT, cmd_generate, resume_hint=RESUME_HINT)
    )
    p = add_command(sub, "merge", parents, _MERGE_TEXT, cmd_merge)
    p.add_argument("path", help="the --out directory of the slices")
    p = add_command(sub, "sparsify", parents, _SPARSIFY_TEXT, cmd_sparsify)
    p.add_argument("src", help="a generated Model Zoos or trajectory zoo directory")
    p.add_argument("--out", help="twin directory (default: SRC-sparse beside SRC)")
    add_train_epochs(p, "sparsification epochs (default 25)", default=25, checked=False)
    p.add_argument("--data-dir", help="directory with the raw image files of SRC's dataset")
    p.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda")
