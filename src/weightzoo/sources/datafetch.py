"""``weightzoo data fetch NAME``: download an image dataset to where the readers find it.

The table of datasets is :mod:`weightzoo.sources.datasets`; every byte goes through
:func:`weightzoo.sources.http.download` (resumable, md5-verified, ``WEIGHTZOO_HTTP_MIRROR``)
and every archive through :mod:`weightzoo.sources.archive` (confined extraction).

Nothing half-done is visible: downloads and extractions happen in
``<data_dir>/.weightzoo-fetch/<name>/`` and move into ``<data_dir>/<name>/`` only once every
file of the dataset is verified (and extracted). A cut connection keeps its bytes there for
the next run to resume; a checksum mismatch, a page served instead of a file or a bad archive
removes that folder whole.

Links: every folder the fetch makes, reuses or removes under the data directory (the staging
folders, ``<name>.unpacked`` in them, ``<data_dir>/<name>``) is checked with ``lstat`` first: a
link there is refused (:class:`~weightzoo.errors.UnsafePathError`), never written through, and
nothing under it is removed. Only folders of the fetch's own names, so checked, are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import stat
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weightzoo.errors import (
    SourceChecksumError,
    SourceConnectionError,
    SourceContentError,
    SourceError,
    StorageWriteError,
    UnsafePathError,
)
from weightzoo.sources import archive, http
from weightzoo.sources.datasets import (
    IMAGE_DATASETS,
    Download,
    ImageDataset,
    canonical,
    default_data_dir,
    fetch_command,
    locate,
)

__all__ = ["STAGING", "DataStatus", "Fetched", "fetch_dataset", "spec_datasets", "status"]

logger = logging.getLogger(__name__)

STAGING = ".weightzoo-fetch"
"""Hidden folder of the data directory where downloads wait until a dataset is complete."""


@dataclass(frozen=True)
class Fetched:
    """What :func:`fetch_dataset` did.

    Attributes:
        name: the dataset.
        folder: ``<data_dir>/<name>``, where the downloads were laid out (when nothing was
            downloaded: the folder the files were found in).
        files: the files downloaded (or reused from an earlier, interrupted run); empty when
            every file was already present.
        received: bytes received in this run.
        resumed: bytes kept from an earlier, interrupted run.
    """

    name: str
    folder: Path
    files: tuple[str, ...]
    received: int
    resumed: int


@dataclass(frozen=True)
class DataStatus:
    """Whether a dataset's files are present (``weightzoo data list``).

    Attributes:
        dataset: the table's entry.
        present: every file the reader looks for first was found (Tiny ImageNet: its index
            files; the reader then names any image missing).
        missing: how many of those files were not found.
        folder: where the files were found (the first one's folder), else where a fetch puts
            them.
    """

    dataset: ImageDataset
    present: bool
    missing: int
    folder: Path


def _root(data_dir: str | os.PathLike[str] | None) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def status(name: str, data_dir: str | os.PathLike[str] | None = None) -> DataStatus:
    """Whether ``name``'s files are where the readers look.

    Raises:
        InvalidOptionError: an unknown dataset name.
    """
    name = canonical(name)
    root = _root(data_dir)
    found, _ = locate(name, root)
    hits = [p for p in found if p is not None]
    missing = len(found) - len(hits)
    folder = hits[0].parent if hits else root / name / IMAGE_DATASETS[name].home
    return DataStatus(IMAGE_DATASETS[name], not missing, missing, folder)


def _real_dir(path: Path, retry: str, *, create: bool = True) -> Path:
    """``path`` as a folder of its own (made when absent and ``create``), checked with lstat.

    Raises:
        UnsafePathError: ``path`` is a link (weightzoo never writes through one, nor removes
            anything under one).
        StorageWriteError: ``path`` is a file, or another non-folder.
    """
    if create:
        with contextlib.suppress(FileExistsError):
            path.mkdir()
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return path  # not made (create=False): nothing there to write through
    if stat.S_ISLNK(mode):
        raise UnsafePathError(
            f"{path} is a link; weightzoo data fetch never writes through a link in the data "
            f"directory, nor removes anything under one: remove the link and rerun `{retry}`"
        )
    if not stat.S_ISDIR(mode):
        raise StorageWriteError(
            f"{path} is in the way: it is not a folder; remove it and rerun `{retry}`"
        )
    return path


def _clear(path: Path, retry: str) -> None:
    """Remove the folder ``path`` (one of the fetch's own), unless it is a link (refused)."""
    if path.is_symlink() or path.exists():
        shutil.rmtree(_real_dir(path, retry, create=False))


def _md5_matches(path: Path, download: Download) -> bool:
    """A complete file left by an earlier run (its size and md5 as published)."""
    if path.is_symlink() or not path.is_file():
        return False
    if download.size is not None and path.stat().st_size != download.size:
        return False
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while block := fh.read(http.CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest() == download.md5


def _check_space(stage: Path, todo: Sequence[Download], name: str, root: Path) -> None:
    """Refuse before downloading when the disk cannot hold the files (sizes where known)."""
    need = 0
    for download in todo:
        part = stage / (download.file + http.PART_SUFFIX)
        kept = part.stat().st_size if part.is_file() else 0
        need += max(0, (download.size or 0) - kept)
    free = shutil.disk_usage(stage).free
    if need > free:
        raise StorageWriteError(
            f"{root} has {free} bytes free but {name} needs {need} more to download; free "
            "some space or pass --data-dir on a larger disk, then rerun "
            f"`{fetch_command(name, root)}`"
        )


def _download_one(
    download: Download, stage: Path, client: Any, progress: bool | None, retry: str
) -> http.Downloaded:
    """Download one file into ``stage``, trying its addresses in order.

    A later address is tried only when the earlier one kept no bytes to resume (refused, not
    found, a page instead of the file, unreachable); a checksum mismatch is final. ``retry``
    is the command that reruns the fetch, for the message when every address fails.
    """
    dest = stage / download.file
    checksum = http.Checksum("md5", download.md5)
    failures: list[SourceError] = []
    for url in download.urls:
        try:
            return http.download(
                url,
                dest,
                size=download.size,
                max_bytes=download.max_bytes,
                checksum=checksum,
                client=client,
                progress=progress,
            )
        except SourceError as exc:
            part = dest.with_name(dest.name + http.PART_SUFFIX)
            resumable = isinstance(exc, SourceConnectionError) and part.is_file()
            if isinstance(exc, SourceChecksumError) or resumable:
                raise
            failures.append(exc)
            logger.info("%s: %s", url, exc)
    # Each message is "what happened; what to do": keep what happened at each address.
    tried = "; ".join(str(f).split(";", 1)[0] for f in failures)
    raise type(failures[0])(
        f"no address served {download.file}: {tried}; the file may have moved: set "
        f"{http.HTTP_MIRROR_ENV} to a mirror holding it at the same path, or check your "
        f"connection, then rerun `{retry}`"
    ) from failures[0]


def _unpack(download: Download, dataset: ImageDataset, stage: Path, retry: str) -> Path:
    """Extract an archive in ``stage``; the path of its ``home`` folder, checked complete."""
    source = download.urls[0]
    unpacked = stage / (download.file + ".unpacked")
    _clear(unpacked, retry)  # a run cut between extraction and the move
    path = stage / download.file
    if download.kind == "zip":
        try:
            with archive.open_zip(path, source) as zf:  # its central directory bounded first
                archive.extract_zip(zf, unpacked, source=source)
        except zipfile.BadZipFile as exc:
            raise SourceContentError(
                f"{source} gave {download.file}, which is not a readable zip ({exc}) although "
                f"its md5 matched; report it, and rerun `weightzoo data fetch {dataset.name}`"
            ) from exc
    else:
        archive.extract_tar(path, unpacked, source=source)
    home = unpacked / dataset.home
    absent = [alt[0] for alt in download.provides if not (home / alt[0]).is_file()]
    if absent:
        raise SourceContentError(
            f"{download.file} from {source} holds no {dataset.home}/{absent[0]} (nor "
            f"{len(absent) - 1} other expected files); it is not the published archive: "
            "report it to the dataset's maintainers"
        )
    return home


def _targets(todo: Sequence[Download], dataset: ImageDataset, folder: Path) -> list[Path]:
    """Where each download lands: a file under its name, an archive's ``home`` folder."""
    return [folder / (d.provides[0][0] if d.kind == "file" else dataset.home) for d in todo]


def _check_targets(targets: Sequence[Path], name: str, root: Path) -> None:
    """Refuse a folder already at a target (an empty one is removed): never merge into it.

    Every target lies in ``<root>/<name>``, which must not be a link.
    """
    _real_dir(root / name, fetch_command(name, root), create=False)
    for target in targets:
        if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
            target.rmdir()
        if target.exists() or target.is_symlink():
            raise StorageWriteError(
                f"{target} is in the way: it exists but lacks files of {name}; remove it (or "
                f"move it aside) and rerun `{fetch_command(name, root)}`"
            )


def _todo(dataset: ImageDataset, root: Path) -> list[Download]:
    """The downloads some of whose files the readers cannot find."""
    todo = []
    for download in dataset.downloads:
        found, _ = locate(dataset.name, root, download.provides)
        if None in found:
            todo.append(download)
    return todo


def _discard(stage: Path, *, keep_files: bool = False) -> None:
    """Remove the staging folder (``keep_files``: only if it holds nothing to resume).

    ``stage`` and its parent were checked to be folders, not links, by :func:`_staging`.
    """
    if keep_files and any(p.is_file() for p in stage.iterdir()):
        return
    shutil.rmtree(stage, ignore_errors=True)
    with contextlib.suppress(OSError):
        stage.parent.rmdir()  # only when empty


def _staging(root: Path, name: str, retry: str) -> Path:
    """``<root>/.weightzoo-fetch/<name>``, made where absent; each level checked not a link."""
    root.mkdir(parents=True, exist_ok=True)
    return _real_dir(_real_dir(root / STAGING, retry) / name, retry)


def fetch_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    progress: bool | None = None,
    client: Any = None,
) -> Fetched:
    """Download ``name``'s files, verify their md5 and lay them out where the readers look.

    Files already found by the readers are not downloaded again. See the module's
    documentation for the staging folder and what an error leaves behind.

    Args:
        name: a dataset of :data:`~weightzoo.sources.datasets.IMAGE_DATASETS` (aliases work).
        data_dir: the data directory (default: ``$WEIGHTZOO_DATA_DIR``, else
            ``~/.cache/weightzoo/data``).
        progress: show byte progress bars (``None``: only on a terminal).
        client: an HTTP client to reuse (default: one per call).

    Returns:
        What was downloaded.

    Raises:
        InvalidOptionError: an unknown dataset name.
        SourceChecksumError: a file whose md5 differs from the published one (nothing kept).
        SourceConnectionError: the connection broke (the bytes are kept: rerun to resume).
        SourceError: any other download failure (nothing kept).
        UnsafeArchiveError: an archive member that could leave its folder (nothing kept).
        StorageWriteError: not enough disk space for the download, or a folder in the way
            (checked before downloading; it is named, never merged into).
        UnsafePathError: a link where the fetch makes, reuses or removes a folder (see the
            module's documentation); refused before anything is written through it.
    """
    name = canonical(name)
    dataset = IMAGE_DATASETS[name]
    root = _root(data_dir)
    folder = root / name
    todo = _todo(dataset, root)
    if not todo:
        return Fetched(name, status(name, root).folder, (), 0, 0)
    retry = fetch_command(name, root)
    targets = _targets(todo, dataset, folder)
    _check_targets(targets, name, root)  # before any byte is downloaded
    stage = _staging(root, name, retry)
    own = client is None
    client = client or http.new_client()
    received = resumed = 0
    try:
        _check_space(stage, todo, name, root)
        for download in todo:
            if _md5_matches(stage / download.file, download):
                continue  # verified by an earlier, interrupted run
            done = _download_one(download, stage, client, progress, retry)
            received += done.size - done.resumed_from
            resumed += done.resumed_from
        sources = [
            stage / d.file if d.kind == "file" else _unpack(d, dataset, stage, retry) for d in todo
        ]
        _check_targets(targets, name, root)  # again: the folder may have changed meanwhile
        for source, target in zip(sources, targets, strict=True):
            os.replace(source, _real_dir(target.parent, retry) / target.name)
    except SourceConnectionError:
        _discard(stage, keep_files=True)  # received bytes stay for the next run to resume
        raise
    except BaseException as exc:
        if isinstance(exc, Exception):
            _discard(stage)
        raise
    finally:
        if own:
            client.close()
    _discard(stage)
    return Fetched(name, folder, tuple(d.file for d in todo), received, resumed)


def spec_datasets(spec: Mapping[str, Any]) -> list[str]:
    """The downloadable datasets a zoo spec (its ``to_dict()``) trains or evaluates on.

    Every string under a key ending in ``dataset`` (``dataset``, ``pretrain_dataset``, ...),
    at any depth, that names a dataset of the table; ``digits`` and synthetic data need none.
    """
    names: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if str(key).endswith("dataset") and isinstance(value, str):
                    try:
                        found = canonical(value)
                    except ValueError:
                        continue
                    if found not in names:
                        names.append(found)
                else:
                    walk(value)
        elif isinstance(node, list | tuple):
            for value in node:
                walk(value)

    walk(spec)
    return names
