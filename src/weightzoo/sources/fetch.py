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
members go through :func:`weightzoo.families.modelzoo.importer.import_modelzoo` into a hidden
folder beside the output, renamed into place only when the zoo is complete; the zoo's
``source.json`` records the record, the file, and each member read with its CRC-32 from the zip
directory. When only some epochs are read, each trial's whole ``result.json`` is read: the
importer matches its lines to the checkpoints by ``training_iteration``.

The work folder ``.OUT.fetch`` beside the output holds the download and the extracted members;
every folder and file in it is checked with ``lstat`` before use (no links, only regular files
and folders), and a lock file in it (``fcntl.flock``) keeps a second fetch into the same output
out. Under that lock, hidden ``.OUT.<random>.partial`` folders that a killed fetch left beside
the output are removed.

``weightzoo fetch NAME`` (:func:`fetch_zoo`) fetches a zoo of the catalog
(:mod:`weightzoo.catalog`) from its sources in order: the hub copy, else the original release
(a Zenodo record, whose file is chosen from the record's listing by the entry's
:class:`~weightzoo.catalog.FileMatch`, converted by the same :func:`convert_file` as
``zenodo:RECORD/FILE``; or a Small CNN Zoo archive in a bucket), else it names the
``weightzoo generate`` command. Original releases go to ``--out``, by default
``$WEIGHTZOO_HOME/zoos/NAME`` (``WEIGHTZOO_HOME`` defaults to ``~/.cache/weightzoo``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import posixpath
import re
import shlex
import shutil
import stat
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import httpx2

from weightzoo import catalog
from weightzoo._types import EpochSelection, SplitSelection
from weightzoo.errors import (
    DataFilesMissingError,
    EpochError,
    HubError,
    InvalidOptionError,
    SourceConnectionError,
    SourceContentError,
    SourceNotFoundError,
    UnreadableFileError,
    UnsafePathError,
    ZooLockedError,
)
from weightzoo.escaping import one_line
from weightzoo.sources.archive import Member, check_zip, extract_zip, staging
from weightzoo.sources.archive import open_zip as open_zip_file
from weightzoo.sources.http import PART_SUFFIX, STATE_SUFFIX, download, new_client, zenodo_endpoint
from weightzoo.sources.remotezip import (
    Probe,
    RemoteChanged,
    RemoteFile,
    member_extent,
    open_zip,
    probe,
)
from weightzoo.sources.zenodo import Record, RecordFile, check_record_id, get_record
from weightzoo.storage.manifest import MANIFEST_NAME

__all__ = [
    "Fetched",
    "FetchedZoo",
    "Selection",
    "choose_file",
    "convert_file",
    "fetch_zenodo",
    "fetch_zoo",
    "listing",
    "parse_target",
    "select_members",
    "zoo_home",
]

logger = logging.getLogger(__name__)

ZENODO_PREFIX = "zenodo:"
PROVENANCE_NAME = "source.json"
_DOI = re.compile(r"^10\.5281/zenodo\.(\d+)(?:/(.*))?$")
_CHECKPOINT = re.compile(r"^(?P<trial>.+)/checkpoint_(?P<epoch>\d+)/checkpoints$")
# File suffix -> the importer that converts it.
CONVERTIBLE = {".zip": "modelzoo"}
WORK_LOCK = ".lock"


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
    """The lines ``weightzoo fetch zenodo:RECORD`` prints: the record, then one per file.

    Every string from the listing goes through :func:`weightzoo.escaping.one_line`, so no
    control character, escape sequence or line break of a publisher reaches the terminal.
    """
    head = f"zenodo:{one_line(record.id)}"
    if record.requested != record.id:
        head += f" (the latest version of {one_line(record.requested)})"
    details = [repr(one_line(record.title)) if record.title else "untitled"]
    details += [f"version {one_line(record.version)}"] if record.version else []
    details += [f"license {one_line(record.license)}"] if record.license else []
    details += [f"doi {one_line(record.doi)}"] if record.doi else []
    lines = [f"{head}: {', '.join(details)}"]
    keys = [one_line(f.key) for f in record.files]
    width = max(map(len, keys), default=0)
    for key, entry in zip(keys, record.files, strict=True):
        kind = convertible(entry.key)
        checksum = str(entry.checksum) if entry.checksum else "no checksum"
        lines.append(
            f"  {key:<{width}}  {_human_bytes(entry.size):>9}  {checksum}  "
            f"{'converts (' + kind + ')' if kind else '-'}"
        )
    if not record.files:
        lines.append("  (no files: the record's files are restricted or it has none)")
    elif any(convertible(f.key) for f in record.files):
        lines.append(
            f"convert one with: weightzoo fetch zenodo:{one_line(record.id)}/FILE --out DIR "
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
    if (out / MANIFEST_NAME).is_file() and not out.is_symlink():
        raise InvalidOptionError(
            f"the output folder {out} already holds a zoo; open it as it is, or fetch into a "
            "new folder (a fetched zoo is never written over another; remove it to fetch "
            "other epochs or models into it)"
        )
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
        with open_zip(remote, source) as archive:
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
    folder = _own_dir(work / "download")
    for name in (file.key, file.key + PART_SUFFIX, file.key + STATE_SUFFIX):
        _own_file(folder / name)
    got = download(
        file.url,
        folder / file.key,
        size=file.size,
        checksum=file.checksum,
        client=client,
        progress=progress,
        mirror=False,
    )
    with open_zip_file(got.path, source) as archive:
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


def _convert(root: Path, out: Path, provenance: dict[str, Any], name: str | None) -> None:
    from weightzoo.families.modelzoo.importer import import_modelzoo

    with staging(out) as tmp:
        import_modelzoo(root, tmp, name=name)
        text = json.dumps(provenance, indent=1, ensure_ascii=False) + "\n"
        (tmp / PROVENANCE_NAME).write_text(text, encoding="utf-8")


def _not_ours(path: Path, what: str) -> UnsafePathError:
    return UnsafePathError(
        f"{path} (in the work folder of a fetch) is a link or not a {what}; weightzoo never "
        "writes through one out of the output's folder: remove it and rerun"
    )


def _own_dir(path: Path) -> Path:
    """``path`` as a real folder: created if absent; a link or anything else is refused."""
    try:
        path.mkdir(mode=0o755)  # mkdir creates nothing at an existing link (EEXIST)
    except FileExistsError:
        pass
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        raise _not_ours(path, "folder")
    return path


def _own_file(path: Path) -> None:
    """Refuse a link or other non-regular file where the fetch keeps a file of its own."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise _not_ours(path, "regular file")


def _work_dir(out: Path) -> Path:
    """The download folder of ``out``: hidden beside it, kept after a cut connection."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return _own_dir(out.parent / f".{out.name}.fetch")


@contextmanager
def _locked(work: Path, out: Path) -> Iterator[None]:
    """Hold the lock of ``out``'s work folder; a second fetch into ``out`` is refused."""
    from weightzoo.storage.writer import ZooLock

    _own_file(work / WORK_LOCK)
    try:
        lock = ZooLock(work, name=WORK_LOCK)
    except ZooLockedError as exc:
        raise ZooLockedError(
            f"another fetch is writing {out} (its lock {work / WORK_LOCK} is held); wait for it "
            "to finish, or fetch into another --out"
        ) from exc
    try:
        yield
    finally:
        lock.release()


def _remove_stale(out: Path) -> None:
    """Remove the ``.OUT.<random>.partial`` folders a killed fetch left beside ``out``."""
    pattern = re.compile(re.escape(f".{out.name}.") + r"[a-z0-9_]{8}\.partial")
    with os.scandir(out.parent) as entries:
        stale = [e.path for e in entries if pattern.fullmatch(e.name)]
    for path in stale:
        if stat.S_ISDIR(os.lstat(path).st_mode):  # never a link's target
            logger.info("removing %s, left by a fetch that was stopped", path)
            shutil.rmtree(path)


def _stem(file: RecordFile, record: Record) -> str:
    """The folder name the zip is extracted under; refused for ``.``, ``..`` or nothing."""
    stem = PurePosixPath(file.key).stem
    if stem in ("", ".", ".."):
        raise UnsafePathError(
            f"zenodo:{record.id} lists the file {file.key!r}, whose name without its suffix is "
            f"{stem!r}; weightzoo cannot name a folder after it: download it by hand from "
            f"{record.url}"
        )
    return stem


def convert_file(
    client: httpx2.Client,
    record: Record,
    file: RecordFile,
    out: str | os.PathLike[str],
    *,
    epochs: EpochSelection = None,
    models: int | None = None,
    progress: bool | None = None,
    name: str | None = None,
    provenance: dict[str, Any] | None = None,
) -> Fetched:
    """Turn the Model Zoos zip ``file`` of ``record`` into a zoo at ``out``.

    The one conversion path of ``zenodo:RECORD/FILE`` and of catalog names: only the members
    the zoo needs where the server answers range requests, else the whole file (resumable,
    checksum-verified); then :func:`~weightzoo.families.modelzoo.importer.import_modelzoo` into
    a hidden folder renamed into place when complete.

    Args:
        client: the HTTP client.
        record: the record, as listed.
        file: the file of ``record`` to convert.
        out: the zoo directory to create (must not exist, or be empty).
        epochs: ``None``/``"all"``, ``"last"``, an epoch or a list of epochs.
        models: only the first ``models`` trials (natural order of their names).
        progress: show byte progress bars (``None``: only on a terminal).
        name: the zoo's name (default: the zip's folder name).
        provenance: more facts for ``source.json`` (e.g. the catalog entry).

    Returns:
        What was fetched and how.

    Raises:
        SourceError: and its subclasses, for the transfer.
        UnsafeArchiveError: for a hostile zip (nothing is kept).
        EpochError: for an epoch the zip has no checkpoint of.
        InvalidOptionError: for a file that is not a zip, or an occupied ``out``.
    """
    out = Path(out)
    _check_out(out)
    if convertible(file.key) is None:
        raise InvalidOptionError(
            f"{file.key} of zenodo:{record.id} is not a zip; weightzoo converts Model Zoos "
            f"zips (of Ray Tune trial directories) only: download it from {record.url}"
        )
    stem = _stem(file, record)
    work = _work_dir(out)
    with _locked(work, out):
        _check_out(out)  # again, now that no other fetch can write it
        _remove_stale(out)
        src = _fresh(work / "src")
        keep_download = False
        try:
            choose = {"epochs": epochs, "models": models}
            read = _read_members(client, record, file, work, choose, progress)
            facts = _provenance(record, file, read) | (provenance or {})
            _convert(src / stem / read.selection.root, out, facts, name)
        except BaseException as exc:
            # a cut connection or an interrupt keeps the downloaded bytes for the rerun
            keep_download = isinstance(exc, SourceConnectionError) or not isinstance(exc, Exception)
            raise
        finally:
            shutil.rmtree(src, ignore_errors=True)
            if not (keep_download and _holds_bytes(work / "download")):
                shutil.rmtree(work, ignore_errors=True)
    members = tuple(read.members)
    return Fetched(out, record, file, read.selection, members, read.partial, read.bytes_read)


def _holds_bytes(folder: Path) -> bool:
    """Whether a real folder ``folder`` holds a file (the bytes a rerun resumes from)."""
    try:
        return stat.S_ISDIR(os.lstat(folder).st_mode) and any(folder.iterdir())
    except FileNotFoundError:
        return False


def _fresh(folder: Path) -> Path:
    """An empty real folder at ``folder`` (what a killed run left there is never resumed)."""
    if os.path.lexists(folder):
        shutil.rmtree(_own_dir(folder))
    return _own_dir(folder)


def fetch_zenodo(
    target: str | Target,
    out: str | os.PathLike[str],
    *,
    epochs: EpochSelection = None,
    models: int | None = None,
    endpoint: str | None = None,
    progress: bool | None = None,
) -> Fetched:
    """Turn a Model Zoos zip of a Zenodo record into a zoo at ``out`` (see :func:`convert_file`).

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
    _check_out(Path(out))
    with new_client() as client:
        record = get_record(parsed.record, endpoint=endpoint, client=client)
        file = record.file(parsed.file)
        return convert_file(
            client, record, file, out, epochs=epochs, models=models, progress=progress
        )


def describe(result: Fetched) -> str:
    """How a conversion read its file, for the line ``weightzoo fetch`` prints."""
    how = (
        f"read {_human_bytes(result.bytes_read)} of {_human_bytes(result.file.size)} through "
        "range requests, each member's CRC-32 checked"
        if result.partial
        else f"downloaded {_human_bytes(result.bytes_read)}, checksum verified"
    )
    return (
        f"{len(result.selection.trials)} models x {len(result.selection.epochs)} checkpoints "
        f"(epochs {_compact(result.selection.epochs)}) from zenodo:{result.record.id}/"
        f"{result.file.key}: {how}"
    )


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
    print(describe(result), file=sys.stderr)
    print(result.path)
    return 0


# -- catalog names ----------------------------------------------------------------------------

HOME_ENV = "WEIGHTZOO_HOME"
_HUB_ONLY = ("revision", "cache_dir", "group")
# The options of `weightzoo fetch NAME` that fetch_zoo takes under the same names.
_CLI_OPTIONS = ("split", "epochs", "models", "revision", "cache_dir", "local_dir", "group")


def zoo_home() -> Path:
    """Where fetched original releases go by default: ``$WEIGHTZOO_HOME/zoos``.

    ``WEIGHTZOO_HOME`` defaults to ``~/.cache/weightzoo`` (whose ``data`` folder holds image
    data, see :func:`weightzoo.imagesets.readers.default_data_dir`).
    """
    home = os.environ.get(HOME_ENV, "").strip()
    return (Path(home).expanduser() if home else Path.home() / ".cache" / "weightzoo") / "zoos"


@dataclass(frozen=True)
class FetchedZoo:
    """A catalog zoo fetched from one of its sources.

    Attributes:
        path: the zoo directory.
        kind: the source used: ``hub``, ``zenodo`` or ``bucket``.
        where: the repo id, ``zenodo:RECORD/FILE`` or the archive's address.
        message: one line saying which source was used and what was read.
    """

    path: Path
    kind: str
    where: str
    message: str


def _command(target: str, out: Path) -> str:
    return f"`weightzoo fetch {shlex.quote(target)} --out {shlex.quote(str(out))}`"


def choose_file(record: Record, release: catalog.ZenodoRelease, zoo: str, out: Path) -> RecordFile:
    """The one file of ``record`` that the catalog's :class:`~weightzoo.catalog.FileMatch` fits.

    Raises:
        SourceNotFoundError: when no zip or several fit (the one line lists the candidates and
            the ``weightzoo fetch zenodo:RECORD/FILE`` command for each).
    """
    zips = [f for f in record.files if convertible(f.key)]
    fitting = [f for f in zips if release.files.fits(f.key)]
    if len(fitting) == 1:
        return fitting[0]
    where = f"zenodo:{record.id}"
    if record.requested != record.id:
        where += f" (the latest version of {record.requested})"
    if not zips:
        names = ", ".join(f.key for f in record.files) or "none"
        raise SourceNotFoundError(
            f"{where} holds no zip that weightzoo converts for {zoo} (its files: {names}); "
            f"see the record at {record.url}"
        )
    candidates = fitting or zips
    commands = " or ".join(_command(f"zenodo:{record.id}/{f.key}", out) for f in candidates)
    which = (
        f"several zips that may hold {zoo}: {', '.join(f.key for f in fitting)}"
        if fitting
        else f"no zip whose name marks it as {zoo} (its zips: {', '.join(f.key for f in zips)})"
    )
    raise SourceNotFoundError(f"{where} has {which}; convert the right one with {commands}")


def _hub_only_options(options: dict[str, Any]) -> list[str]:
    return [f"--{k.replace('_', '-')}" for k in _HUB_ONLY if options.get(k) is not None]


def _check_options(entry: catalog.CatalogEntry, options: dict[str, Any]) -> None:
    """Refuse options that none of the entry's sources can honour."""
    kinds = [s.kind for s in entry.sources]
    hub_only = _hub_only_options(options)
    if hub_only and "hub" not in kinds:
        raise InvalidOptionError(
            f"{', '.join(hub_only)} apply to hub copies; {entry.name} has none (its sources: "
            f"{', '.join(kinds)}): drop them, and pass --out DIR for its original release"
        )
    epochs = options.get("epochs")
    release = entry.release
    if isinstance(release, catalog.BucketRelease) and epochs not in (None, "all"):
        raise InvalidOptionError(
            f"--epochs {epochs} cannot cut {entry.name}: its original release ({release.url}) "
            "is converted with every checkpoint; drop --epochs and choose epochs when reading"
        )


def _from_hub(entry: catalog.CatalogEntry, options: dict[str, Any]) -> FetchedZoo:
    from weightzoo import hub

    local_dir = options.get("local_dir") or options.get("out")
    path = hub.fetch(
        entry.name,
        split=options.get("split"),
        epochs=options.get("epochs"),
        revision=options.get("revision"),
        cache_dir=options.get("cache_dir"),
        local_dir=local_dir,
        progress=options.get("progress") is not False,
        group=options.get("group"),
    )
    repo = entry.hub_repo or ""
    return FetchedZoo(Path(path), "hub", repo, f"{entry.name}: from the hub copy {repo}")


def _from_zenodo(
    entry: catalog.CatalogEntry, release: catalog.ZenodoRelease, out: Path, options: dict[str, Any]
) -> FetchedZoo:
    _check_out(out)
    with new_client() as client:
        record = get_record(release.record, client=client)
        file = choose_file(record, release, entry.name, out)
        logger.info("%s: zenodo:%s/%s, %d bytes", entry.name, record.id, file.key, file.size)
        result = convert_file(
            client,
            record,
            file,
            out,
            epochs=options.get("epochs"),
            models=options.get("models"),
            progress=options.get("progress"),
            name=entry.name,
            provenance={"catalog": entry.name, "cite": [str(c) for c in release.cite]},
        )
    where = f"zenodo:{record.id}/{file.key}"
    return FetchedZoo(result.path, "zenodo", where, f"{entry.name}: {describe(result)}")


def _from_bucket(
    entry: catalog.CatalogEntry, release: catalog.BucketRelease, out: Path, options: dict[str, Any]
) -> FetchedZoo:
    from weightzoo.sources.smallcnn import fetch_small_cnn_zoo

    progress = options.get("progress")
    path = fetch_small_cnn_zoo(
        release.url,
        out,
        split_csv_url=release.split_csv_url,
        models=options.get("models"),
        progress=sys.stderr.isatty() if progress is None else progress,
    )
    splits = f", splits from {release.split_csv_url}" if release.split_csv_url else ""
    message = f"{entry.name}: from the original release {release.url}{splits}"
    return FetchedZoo(Path(path), "bucket", release.url, message)


def _generate_instead(entry: catalog.CatalogEntry, out: Path | None, failed: list[str]) -> str:
    generation = entry.generation
    assert generation is not None
    command = f"weightzoo generate {entry.name}"
    command += f" --out {shlex.quote(str(out))}" if out is not None else ""
    tried = f" ({'; '.join(failed)})" if failed else ""
    return (
        f"zoo {entry.name!r} has no copy to download{tried}; generate it with `{command}` "
        f"({generation.describe()})"
    )


def fetch_zoo(
    name: str,
    out: str | os.PathLike[str] | None = None,
    *,
    split: SplitSelection = None,
    epochs: EpochSelection = None,
    models: int | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_dir: str | os.PathLike[str] | None = None,
    group: str | Sequence[str] | None = None,
    progress: bool | None = None,
) -> FetchedZoo:
    """Fetch the catalog zoo ``name`` from the first of its sources that has it.

    The sources are tried in the catalog's order (:attr:`~weightzoo.catalog.CatalogEntry.sources`):
    the hub copy (with ``split``, ``epochs`` and the hub options; skipped for ``models``, which a
    hub copy cannot cut; a hub that cannot be reached or lacks the repo gives way to the next
    source), then the original release into ``out`` (a Zenodo record's Model Zoos zip, read in
    part where the server allows, with ``epochs`` and ``models``; a release holds every split,
    so ``split`` is chosen when reading; or a Small CNN Zoo archive). A zoo whose only source
    is generation is a :class:`~weightzoo.errors.SourceNotFoundError` naming the
    ``weightzoo generate`` command. A repo id (``owner/name``) or a name the catalog does not
    know goes to :func:`weightzoo.hub.fetch` as before.

    Args:
        name: a catalog name (``modelzoo-mnist-cnn-s-seed``) or a hub repo id.
        out: the zoo directory for an original release (default: ``local_dir``, else
            ``zoo_home() / name``); the hub's ``local_dir`` when that is not given.
        split: hub copies: ``train``, ``val``, ``test``, several, or ``None``/``"all"``.
        epochs: ``None``/``"all"``, ``"last"``, an epoch or several.
        models: original releases: only the first ``models`` models.
        revision: hub copies: branch, tag or commit.
        cache_dir: hub copies: the hub cache.
        local_dir: hub copies: download into this directory instead of the cache (and the
            directory of an original release when ``out`` is not given).
        group: hub copies of grouped zoos: the groups to fetch.
        progress: show progress bars (``None``: only on a terminal).

    Returns:
        The zoo's directory, the source used and a line that says so.

    Raises:
        UnknownZooError: for a name neither in the catalog nor a repo id.
        SourceNotFoundError: for a zoo with nothing to download, or a record whose files do
            not map to the zoo with certainty.
        InvalidOptionError: for options none of the zoo's sources honours.
        SourceError, HubError, EpochError, UnsafeArchiveError: from the source used.
    """
    options = {
        "split": split,
        "epochs": epochs,
        "models": models,
        "revision": revision,
        "cache_dir": cache_dir,
        "local_dir": local_dir,
        "group": group,
        "progress": progress,
        "out": out,
    }
    entry = catalog.find(name)
    if entry is None or "/" in name:  # a repo id, or unknown (the hub names close matches)
        from weightzoo import hub

        path = hub.fetch(
            name,
            **{k: options[k] for k in ("split", "epochs", "revision", "cache_dir", "group")},
            local_dir=local_dir or out,
            progress=progress is not False,
        )
        return FetchedZoo(Path(path), "hub", name, f"{name}: from the hub")
    _check_options(entry, options)
    chosen = out if out is not None else local_dir  # --local-dir works for either source
    target = Path(chosen) if chosen is not None else zoo_home() / entry.name
    failed: list[str] = []
    for source in entry.sources:
        if isinstance(source, catalog.HubCopy):
            if models is not None:
                failed.append(f"the hub copy {source.repo} cannot be cut to --models {models}")
                continue
            try:
                return _announce(_from_hub(entry, options))
            except HubError as exc:
                logger.warning("%s: the hub copy failed (%s); trying the next source", name, exc)
                failed.append(f"the hub copy {source.repo} failed: {exc}")
        elif isinstance(source, catalog.ZenodoRelease):
            return _announce(_from_zenodo(entry, source, target, options))
        elif isinstance(source, catalog.BucketRelease):
            return _announce(_from_bucket(entry, source, target, options))
        else:
            where = Path(chosen) if chosen is not None else None
            raise SourceNotFoundError(_generate_instead(entry, where, failed))
    raise SourceNotFoundError(f"zoo {name!r} could not be fetched: {'; '.join(failed)}")


def _announce(fetched: FetchedZoo) -> FetchedZoo:
    logger.info("%s", fetched.message)
    return fetched


def catalog_command(args: argparse.Namespace) -> int:
    """``weightzoo fetch NAME`` for a catalog name: the first source that has it.

    Prints the zoo's directory on stdout and, on stderr, one line naming the source used.

    Returns:
        The exit code (0).
    """
    default = args.out is None and args.local_dir is None
    options = {name: getattr(args, name) for name in _CLI_OPTIONS}
    result = fetch_zoo(args.name, args.out, **options)
    notes = []
    if result.kind != "hub" and args.split not in (None, "all"):
        notes.append(f"every split kept: pass split={args.split!r} when reading")
    if result.kind != "hub" and default:
        notes.append(f"into {result.path}, the default folder ($WEIGHTZOO_HOME/zoos; --out DIR)")
    print(result.message + (f" ({'; '.join(notes)})" if notes else ""), file=sys.stderr)
    print(result.path)
    return 0
