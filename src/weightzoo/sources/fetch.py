"""``weightzoo fetch zenodo:RECORD[/FILE]``: list a record, or turn a Model Zoos zip into a zoo.

The Model Zoos (Schürholt et al., "Model Zoos: A Dataset of Diverse Populations of Neural
Network Models", NeurIPS 2022 Datasets and Benchmarks, arXiv:2209.14764, CC-BY 4.0) are
published on Zenodo as zips of Ray Tune trial directories::

    <root>/<trial>/params.json                       the trial's configuration
    <root>/<trial>/result.json                       JSON lines, one per reported epoch
    <root>/<trial>/checkpoint_000050/checkpoints     torch.save(state_dict)
    <root>/<trial>/checkpoint_000050/optimizer       (never read)

:func:`fetch_zenodo` reads the record's listing and then, where the server answers range
requests, only the zip's central directory and the members the zoo needs (:func:`select_members`:
each chosen trial's ``params.json`` and ``result.json``, the checkpoints of the chosen epochs,
and ``<root>/config.json``). Without range support it downloads the whole zip (resumable,
md5-verified, :func:`weightzoo.sources.http.download`) and extracts the same members. The
members go through :func:`weightzoo.importers.modelzoo.import_modelzoo` into a hidden folder
beside the output, renamed into place only when the zoo is complete; the zoo's ``source.json``
records the record, the file, and each member read with its CRC-32 from the zip directory.

When only some epochs are read, each trial's ``result.json`` is cut to the lines of the chosen
checkpoints before the import (the importer matches lines to the checkpoints it finds by
position; see :func:`align_results`); ``source.json`` counts those files in ``results_cut``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import posixpath
import re
import shutil
import sys
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import httpx2

from weightzoo.errors import (
    DataFilesMissingError,
    EpochError,
    InvalidOptionError,
    SourceConnectionError,
    SourceContentError,
    UnreadableFileError,
    UnsafePathError,
)
from weightzoo.sources.archive import Member, check_zip, extract_zip, staging
from weightzoo.sources.http import download, new_client, zenodo_endpoint
from weightzoo.sources.remotezip import (
    Probe,
    RemoteChanged,
    RemoteFile,
    member_extent,
    open_zip,
    probe,
)
from weightzoo.sources.zenodo import Record, RecordFile, check_record_id, get_record

__all__ = ["Fetched", "Selection", "fetch_zenodo", "listing", "parse_target", "select_members"]

logger = logging.getLogger(__name__)

ZENODO_PREFIX = "zenodo:"
PROVENANCE_NAME = "source.json"
_DOI = re.compile(r"^10\.5281/zenodo\.(\d+)(?:/(.*))?$")
_CHECKPOINT = re.compile(r"^(?P<trial>.+)/checkpoint_(?P<epoch>\d+)/checkpoints$")
# File suffix -> the importer that converts it.
CONVERTIBLE = {".zip": "modelzoo"}


@dataclass(frozen=True)
class Target:
    """A ``zenodo:RECORD[/FILE]`` argument.

    Attributes:
        record: the record (or concept) id.
        file: the file name, or ``None`` to list the record.
    """

    record: str
    file: str | None


def parse_target(text: str) -> Target:
    """Parse ``zenodo:RECORD``, ``zenodo:RECORD/FILE`` or ``zenodo:10.5281/zenodo.RECORD[/FILE]``.

    Raises:
        InvalidOptionError: for anything else.
    """
    if not text.startswith(ZENODO_PREFIX):
        raise InvalidOptionError(f"{text!r} does not start with {ZENODO_PREFIX}")
    body = text[len(ZENODO_PREFIX) :]
    doi = _DOI.match(body)
    if doi:
        record, file = doi.group(1), doi.group(2)
    else:
        record, separator, rest = body.partition("/")
        file = rest if separator else None
    check_record_id(record)
    if file is not None and ("/" in file or file in (".", "..")):
        raise InvalidOptionError(
            f"{text!r} is not zenodo:RECORD or zenodo:RECORD/FILE (a file name, no folders), "
            "e.g. zenodo:13144018/cifar10_cnn_sample_ep21-25.zip"
        )
    return Target(record, file or None)


def _human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def convertible(key: str) -> str | None:
    """The importer that converts a file of this name (``None``: weightzoo cannot)."""
    return CONVERTIBLE.get(PurePosixPath(key).suffix.lower())


def listing(record: Record) -> list[str]:
    """The lines ``weightzoo fetch zenodo:RECORD`` prints: the record, then one per file."""
    head = f"zenodo:{record.id}"
    if record.requested != record.id:
        head += f" (the latest version of {record.requested})"
    details = [repr(record.title) if record.title else "untitled"]
    details += [f"version {record.version}"] if record.version else []
    details += [f"license {record.license}"] if record.license else []
    details += [f"doi {record.doi}"] if record.doi else []
    lines = [f"{head}: {', '.join(details)}"]
    width = max((len(f.key) for f in record.files), default=0)
    for entry in record.files:
        kind = convertible(entry.key)
        checksum = str(entry.checksum) if entry.checksum else "no checksum"
        lines.append(
            f"  {entry.key:<{width}}  {_human_bytes(entry.size):>9}  {checksum}  "
            f"{'converts (' + kind + ')' if kind else '-'}"
        )
    if not record.files:
        lines.append("  (no files: the record's files are restricted or it has none)")
    elif any(convertible(f.key) for f in record.files):
        lines.append(
            f"convert one with: weightzoo fetch zenodo:{record.id}/FILE --out DIR "
            "[--epochs E] [--models N]"
        )
    return lines


# -- which members a Model Zoos zip needs -----------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """The members of a Model Zoos zip that a zoo of some models and epochs needs.

    Attributes:
        root: the folder holding the trial directories (``""``: the zip's top).
        trials: the chosen trial directories, in the importer's (natural) order.
        epochs: the chosen checkpoint epochs.
        members: the member names to read.
        checkpoints: each chosen trial's checkpoint epochs in the zip (all, not only chosen).
    """

    root: str
    trials: tuple[str, ...]
    epochs: tuple[int, ...]
    members: frozenset[str]
    checkpoints: dict[str, tuple[int, ...]]


def _compact(epochs: Sequence[int]) -> str:
    if len(epochs) <= 8:
        return ", ".join(map(str, epochs))
    return f"{epochs[0]}..{epochs[-1]} ({len(epochs)} checkpoints)"


def _wanted_epochs(epochs: Any, available: list[int], source: str) -> list[int]:
    if epochs is None or epochs == "all":
        return available
    if epochs == "last":
        return available[-1:]
    values = sorted({epochs} if isinstance(epochs, int) else set(epochs))
    missing = [e for e in values if e not in available]
    if missing:
        raise EpochError(
            f"{source} has no checkpoint for epoch(s) {_compact(missing)}; it has "
            f"{_compact(available)}: pass --epochs with those, 'all' or 'last'"
        )
    return values


def select_members(
    names: Iterable[str], *, epochs: Any = None, models: int | None = None, source: str
) -> Selection:
    """Choose the members of a Model Zoos zip for the first ``models`` trials and ``epochs``.

    A trial is a folder with a ``params.json`` and at least one
    ``checkpoint_<N>/checkpoints``; all trials must share one parent folder.

    Args:
        names: the zip's member names.
        epochs: ``None``/``"all"``, ``"last"``, an epoch or a list of epochs.
        models: the number of trials to take (natural order), ``None`` for all.
        source: how to name the zip in messages.

    Raises:
        DataFilesMissingError: if the zip holds no trial directories.
        UnreadableFileError: if trials lie under several folders.
        EpochError: for an epoch no chosen trial has a checkpoint of.
    """
    from weightzoo.storage.layout import natural_key

    present = set(names)
    checkpoints: dict[str, dict[int, str]] = {}
    for name in present:
        match = _CHECKPOINT.match(name)
        if match:
            checkpoints.setdefault(match["trial"], {})[int(match["epoch"])] = name
    trials = [t for t in checkpoints if f"{t}/params.json" in present]
    if not trials:
        raise DataFilesMissingError(
            f"{source} holds no Model Zoos trial directories (<trial>/params.json beside "
            "<trial>/checkpoint_*/checkpoints); weightzoo cannot convert it: download it by "
            "hand from the record's page"
        )
    roots = sorted({posixpath.dirname(t) for t in trials})
    if len(roots) > 1:
        raise UnreadableFileError(
            f"{source} holds trial directories under several folders "
            f"({', '.join(r or '.' for r in roots[:4])}); weightzoo converts one population per "
            "zip: extract it by hand and run `weightzoo import modelzoo` on each folder"
        )
    trials.sort(key=lambda t: natural_key(posixpath.basename(t)))
    if models is not None and models > len(trials):
        logger.warning("%s has %d trials; taking all of them", source, len(trials))
    chosen = trials[:models] if models is not None else trials
    available = sorted({e for t in chosen for e in checkpoints[t]})
    wanted = _wanted_epochs(epochs, available, source)
    members = {posixpath.join(roots[0], "config.json")} & present
    for trial in chosen:
        members.add(f"{trial}/params.json")
        members |= {f"{trial}/result.json"} & present
        members |= {checkpoints[trial][e] for e in wanted if e in checkpoints[trial]}
    found = {t: tuple(sorted(checkpoints[t])) for t in chosen}
    return Selection(roots[0], tuple(chosen), tuple(wanted), frozenset(members), found)


def _kept_lines(lines: list[str], found: Sequence[int], wanted: Sequence[int]) -> list[str]:
    """The result lines of the ``wanted`` checkpoints, by the importer's matching rule.

    The importer matches a trial's result lines to its checkpoints in order: one to one when
    the counts agree, shifted by one (checkpoint 0 has no line) when there is one line fewer.
    Matched over all of the trial's checkpoints in the zip, and cut to the chosen ones, the
    lines it reads for those checkpoints are the ones it would read from the whole trial.
    """
    shift = 1 if len(lines) == len(found) - 1 else 0
    return [
        lines[position - shift]
        for position, epoch in enumerate(found)
        if epoch in wanted and 0 <= position - shift < len(lines)
    ]


def align_results(root: Path, selection: Selection) -> int:
    """Cut each extracted ``result.json`` to the lines of the chosen checkpoints.

    Needed when only some epochs were extracted: the importer matches lines to the checkpoints
    it finds by position (see :func:`_kept_lines`).

    Returns:
        The number of files rewritten.
    """
    rewritten = 0
    for trial in selection.trials:
        found = selection.checkpoints[trial]
        path = root / posixpath.basename(trial) / "result.json"
        if set(found) <= set(selection.epochs) or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        lines = [line for line in text.splitlines() if line.strip()]
        kept = _kept_lines(lines, found, selection.epochs)
        path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        rewritten += 1
    return rewritten


# -- fetch ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    """A Model Zoos zip turned into a zoo.

    Attributes:
        path: the zoo directory.
        record: the record read.
        file: the file converted.
        selection: the trials, epochs and members chosen.
        members: the members read, with their CRC-32 from the zip directory.
        partial: whether only those members were read (range requests) rather than the whole
            file downloaded.
        bytes_read: bytes received for the file (range reads or download, this call only).
    """

    path: Path
    record: Record
    file: RecordFile
    selection: Selection
    members: tuple[Member, ...]
    partial: bool
    bytes_read: int


@dataclass(frozen=True)
class _Read:
    selection: Selection
    members: list[Member]
    partial: bool
    bytes_read: int


def _check_out(out: Path) -> None:
    if out.is_symlink() or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
        raise InvalidOptionError(
            f"the output folder {out} already exists and is not empty; choose a new folder "
            "(a fetched zoo is never written over another)"
        )


def _partial(
    client: httpx2.Client,
    target: Probe,
    dest: Path,
    source: str,
    choose: dict[str, Any],
    progress: bool | None,
) -> _Read:
    from tqdm import tqdm

    bar = tqdm(
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=dest.name,
        disable=None if progress is None else not progress,
    )
    with bar, RemoteFile(client, target, on_bytes=bar.update) as remote:
        with open_zip(remote) as archive:
            check_zip(archive, source)  # a hostile zip is refused before anything is chosen
            selection = select_members(archive.namelist(), source=source, **choose)
            chosen = [i for i in archive.infolist() if i.filename in selection.members]
            extents = [member_extent(info) for info in chosen]
            bar.total = remote.received + sum(end - start for start, end in extents)
            bar.refresh()
            members = extract_zip(
                archive,
                dest,
                source=source,
                select=selection.members.__contains__,
                plan=lambda info: remote.plan(*member_extent(info)),
            )
        return _Read(selection, members, True, remote.received)


def _whole(
    client: httpx2.Client,
    file: RecordFile,
    work: Path,
    dest: Path,
    source: str,
    choose: dict[str, Any],
    progress: bool | None,
) -> _Read:
    got = download(
        file.url,
        work / "download" / file.key,
        size=file.size,
        checksum=file.checksum,
        client=client,
        progress=progress,
        mirror=False,
    )
    try:
        archive = zipfile.ZipFile(got.path)
    except zipfile.BadZipFile as exc:
        raise UnreadableFileError(
            f"{source} is not a readable zip ({exc}) although its checksum verifies; the record "
            "holds a damaged file: report it to its publisher"
        ) from exc
    with archive:
        check_zip(archive, source)
        selection = select_members(archive.namelist(), source=source, **choose)
        members = extract_zip(archive, dest, source=source, select=selection.members.__contains__)
    return _Read(selection, members, False, got.size - got.resumed_from)


def _read_members(
    client: httpx2.Client,
    record: Record,
    file: RecordFile,
    work: Path,
    choose: dict[str, Any],
    progress: bool | None,
) -> _Read:
    source = f"zenodo:{record.id}/{file.key}"
    dest = work / "src" / PurePosixPath(file.key).stem
    for attempt in range(2):
        target = probe(client, file.url, name=file.key)
        if not (target.ranges and target.size == file.size):
            # a size other than the listing's is judged by the download (a page, an error)
            return _whole(client, file, work, dest, source, choose, progress)
        try:
            return _partial(client, target, dest, source, choose, progress)
        except RemoteChanged as exc:
            if attempt:
                raise SourceContentError(
                    f"{file.url} changed twice while it was read ({exc}); rerun later"
                ) from exc
            logger.warning("%s changed while it was read; reading it again", file.url)
    raise AssertionError("unreachable")


def _provenance(record: Record, file: RecordFile, read: _Read) -> dict[str, Any]:
    verified = (
        "the CRC-32 of each member read (a partial read cannot check the whole file's md5)"
        if read.partial
        else f"the {file.checksum.algorithm} of the whole file"
        if file.checksum
        else "the size of the whole file (the record publishes no checksum)"
    )
    return {
        "source": "zenodo",
        "endpoint": zenodo_endpoint(),
        "record": record.id,
        "requested": record.requested,
        "concept": record.concept_id,
        "doi": record.doi,
        "title": record.title,
        "version": record.version,
        "license": record.license,
        "file": file.key,
        "url": file.url,
        "size": file.size,
        "checksum": str(file.checksum) if file.checksum else None,
        "verified": verified,
        "partial": read.partial,
        "bytes_read": read.bytes_read,
        "root": read.selection.root,
        "trials": len(read.selection.trials),
        "epochs": list(read.selection.epochs),
        "members": [m.to_json() for m in read.members],
    }


def _convert(root: Path, out: Path, provenance: dict[str, Any]) -> None:
    from weightzoo.importers.modelzoo import import_modelzoo

    with staging(out) as tmp:
        import_modelzoo(root, tmp)
        text = json.dumps(provenance, indent=1, ensure_ascii=False) + "\n"
        (tmp / PROVENANCE_NAME).write_text(text, encoding="utf-8")


def fetch_zenodo(
    target: str | Target,
    out: str | os.PathLike[str],
    *,
    epochs: Any = None,
    models: int | None = None,
    endpoint: str | None = None,
    progress: bool | None = None,
) -> Fetched:
    """Turn a Model Zoos zip of a Zenodo record into a zoo at ``out``.

    Args:
        target: ``zenodo:RECORD/FILE`` (or a parsed :class:`Target`).
        out: the zoo directory to create (must not exist, or be empty).
        epochs: ``None``/``"all"``, ``"last"``, an epoch or a list of epochs.
        models: only the first ``models`` trials (natural order of their names).
        endpoint: the Zenodo server (default: ``WEIGHTZOO_ZENODO_ENDPOINT``, else zenodo.org).
        progress: show byte progress bars (``None``: only on a terminal).

    Returns:
        What was fetched and how.

    Raises:
        SourceError: and its subclasses, for the record, the listing or the transfer.
        UnsafeArchiveError: for a hostile zip (nothing is kept).
        EpochError: for an epoch the zip has no checkpoint of.
        InvalidOptionError: for a target without a file, a file that is not a zip, or an
            occupied ``out``.
    """
    parsed = parse_target(target) if isinstance(target, str) else target
    if parsed.file is None:
        raise InvalidOptionError(
            f"zenodo:{parsed.record} names no file; pass zenodo:RECORD/FILE "
            f"(`weightzoo fetch zenodo:{parsed.record}` lists the record's files)"
        )
    out = Path(out)
    _check_out(out)
    with new_client() as client:
        record = get_record(parsed.record, endpoint=endpoint, client=client)
        file = record.file(parsed.file)
        if convertible(file.key) is None:
            raise InvalidOptionError(
                f"{file.key} of zenodo:{record.id} is not a zip; weightzoo converts Model Zoos "
                f"zips (of Ray Tune trial directories) only: download it from {record.url}"
            )
        work = out.parent / f".{out.name}.fetch"
        if work.is_symlink():
            raise UnsafePathError(
                f"{work} (the download folder of {out}) is a link; weightzoo never follows one "
                "out of the output's folder: remove the link and rerun"
            )
        shutil.rmtree(work / "src", ignore_errors=True)  # left by a killed run; never resumed
        keep_download = False
        try:
            choose = {"epochs": epochs, "models": models}
            read = _read_members(client, record, file, work, choose, progress)
            root = work / "src" / PurePosixPath(file.key).stem / read.selection.root
            cut = align_results(root, read.selection)
            _convert(root, out, _provenance(record, file, read) | {"results_cut": cut})
        except BaseException as exc:
            # a cut connection or an interrupt keeps the downloaded bytes for the rerun
            keep_download = isinstance(exc, SourceConnectionError) or not isinstance(exc, Exception)
            raise
        finally:
            shutil.rmtree(work / "src" if keep_download else work, ignore_errors=True)
    members = tuple(read.members)
    return Fetched(out, record, file, read.selection, members, read.partial, read.bytes_read)


def command(args: argparse.Namespace) -> int:
    """``weightzoo fetch zenodo:...``: list a record, or convert one of its zips.

    Returns:
        The exit code (0).
    """
    hub_options = ("split", "revision", "cache_dir", "local_dir", "group")
    hub_only = [f"--{k.replace('_', '-')}" for k in hub_options if getattr(args, k, None)]
    if hub_only:
        raise InvalidOptionError(
            f"{', '.join(hub_only)} apply to hub fetches only; a zenodo: fetch takes --out, "
            "--epochs and --models"
        )
    target = parse_target(args.name)
    if target.file is None:
        if args.out or args.models:
            raise InvalidOptionError(
                f"--out and --models need a file: zenodo:{target.record}/FILE (listed below "
                f"by `weightzoo fetch zenodo:{target.record}`)"
            )
        print("\n".join(listing(get_record(target.record))))
        return 0
    out = Path(args.out) if args.out else Path("zoos") / PurePosixPath(target.file).stem
    result = fetch_zenodo(target, out, epochs=args.epochs, models=args.models)
    how = (
        f"read {_human_bytes(result.bytes_read)} of {_human_bytes(result.file.size)} through "
        "range requests, each member's CRC-32 checked"
        if result.partial
        else f"downloaded {_human_bytes(result.bytes_read)}, checksum verified"
    )
    print(
        f"{len(result.selection.trials)} models x {len(result.selection.epochs)} checkpoints "
        f"(epochs {_compact(result.selection.epochs)}) from zenodo:{result.record.id}/"
        f"{result.file.key}: {how}",
        file=sys.stderr,
    )
    print(result.path)
    return 0
