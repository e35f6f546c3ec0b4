"""Confined extraction of archives from outside (zip, tar).

Every member name is checked before anything is written: a name with a ``..`` component, an
absolute path, a drive letter, a backslash, a NUL or an empty component is refused, and so are
links (zip members whose Unix mode says symbolic link; tar symbolic and hard links), devices,
FIFOs, a name that appears twice (compared after Unicode normalisation and case folding, as a
case-insensitive disk would), and a file used as a folder by another member. A zip member that
declares more than :data:`MAX_RATIO` times its compressed size (and over
:data:`RATIO_FLOOR` bytes) is a zip bomb, and so is an archive whose members together declare
more than :data:`MAX_RATIO` times the archive's size (many members each just under the floor);
extraction never trusts the declared sizes anyway, it counts the bytes it writes, per member
and in total, as it does for a tar. zipfile checks each member's CRC-32 as it reads it.

Extraction writes into a temporary folder beside the destination (hidden, in the destination's
parent) and renames it into place only when every member is written; on any error the folder
is removed, so the destination either holds the whole extraction or does not exist.
"""

from __future__ import annotations

import contextlib
import io
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from weightzoo.errors import UnreadableFileError, UnsafeArchiveError

__all__ = [
    "MAX_RATIO",
    "Member",
    "check_zip",
    "extract_tar",
    "extract_zip",
    "member_path",
    "staging",
    "total_limit",
]

# Deflate reaches ~1000:1 on zeros; real weights compress ~1.1:1 and JSON lines ~10:1.
MAX_RATIO = 100
# Small members may compress well (repeated text); only larger ones are judged by ratio.
RATIO_FLOOR = 1 << 20
COPY_BYTES = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class Member:
    """A member that was extracted, with the facts its archive's directory records.

    Attributes:
        name: the member's name in the archive.
        size: its size in bytes (as written, equal to the declared size).
        compressed: its compressed size (zip; ``None`` for tar).
        crc32: the CRC-32 the zip directory records (checked on read; ``None`` for tar).
    """

    name: str
    size: int
    compressed: int | None = None
    crc32: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The member as JSON (CRC-32 as 8 hex digits)."""
        return {
            "name": self.name,
            "size": self.size,
            "compressed": self.compressed,
            "crc32": None if self.crc32 is None else f"{self.crc32:08x}",
        }


def _refuse(source: str, name: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"{source} holds the member {name!r}, {why}; weightzoo extracts nothing from such an "
        "archive: report it to its publisher, or extract it by hand in a throw-away folder"
    )


def member_path(name: str, source: str) -> PurePosixPath | None:
    """The relative path a member may be written at (``None``: the archive's root itself).

    A leading ``./`` (as ``tar -C dir .`` writes) is dropped; a trailing ``/`` marks a folder.

    Raises:
        UnsafeArchiveError: for a name that could leave the destination.
    """
    if "\x00" in name:
        raise _refuse(source, name, "whose name holds a NUL byte")
    if "\\" in name:
        raise _refuse(source, name, "whose name holds a backslash (a Windows path)")
    if name.startswith("/"):
        raise _refuse(source, name, "an absolute path")
    if _DRIVE.match(name):
        raise _refuse(source, name, "a path with a drive letter")
    text = name
    while text.startswith("./"):
        text = text[2:]
    text = text.rstrip("/") if text.endswith("/") else text
    if text in ("", "."):
        return None
    parts = text.split("/")
    if ".." in parts:
        raise _refuse(source, name, "a path with a '..' component (zip slip)")
    if any(part in ("", ".") for part in parts):
        raise _refuse(source, name, "a path with an empty or '.' component")
    return PurePosixPath(*parts)


def _name_key(path: PurePosixPath) -> str:
    return unicodedata.normalize("NFC", str(path)).casefold()


class _Names:
    """The names seen so far: refuses a name twice, and a file where others see a folder."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.files: dict[str, str] = {}
        self.dirs: dict[str, str] = {}

    def add(self, name: str, path: PurePosixPath, is_dir: bool) -> None:
        key = _name_key(path)
        if key in self.files:
            why = f"a name that appears twice (also as {self.files[key]!r})"
            raise _refuse(self.source, name, f"{why}; which copy lands on disk depends on the tool")
        if not is_dir and key in self.dirs:
            raise _refuse(self.source, name, "a file where other members have a folder")
        parts = key.split("/")
        for end in range(1, len(parts)):
            parent = "/".join(parts[:end])
            if parent in self.files:
                raise _refuse(self.source, name, f"inside {self.files[parent]!r}, which is a file")
            self.dirs.setdefault(parent, parent)
        (self.dirs if is_dir else self.files)[key] = name


def _check_ratio(source: str, name: str, size: int, compressed: int, max_ratio: float) -> None:
    if size > RATIO_FLOOR and size > max_ratio * max(compressed, 1):
        raise _refuse(
            source,
            name,
            f"which declares {size} bytes from {compressed} compressed (ratio "
            f"{size / max(compressed, 1):.0f} > {max_ratio:g}): a zip bomb",
        )


def total_limit(archive_bytes: int, max_ratio: float = MAX_RATIO) -> int:
    """The most bytes an archive of ``archive_bytes`` may extract to, zip or tar."""
    return max(RATIO_FLOOR, int(archive_bytes * max_ratio))


def _zip_bytes(archive: zipfile.ZipFile) -> int:
    """The size of the zip's file (local or remote), from its end; the position is kept."""
    handle = archive.fp
    if handle is None:
        raise ValueError("the zip is closed")
    here = handle.tell()
    try:
        return handle.seek(0, io.SEEK_END)
    finally:
        handle.seek(here)


def _zip_mode_problem(info: zipfile.ZipInfo) -> str | None:
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind in (0, stat.S_IFREG, stat.S_IFDIR):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "a special file (device, FIFO or socket)"


def check_zip(
    archive: zipfile.ZipFile, source: str, *, max_ratio: float = MAX_RATIO
) -> list[zipfile.ZipInfo]:
    """Check every member of a zip (names, types, duplicates, ratios) before extracting any.

    Each member's declared size is bounded by its compressed size, and the declared sizes of
    all members together by the archive's size (:func:`total_limit`), both ``max_ratio``.

    Args:
        archive: the open zip.
        source: how to name the archive in messages (its URL or path).
        max_ratio: the largest declared uncompressed/compressed ratio accepted.

    Returns:
        The members, in directory order.

    Raises:
        UnsafeArchiveError: naming the first member that breaks a rule.
    """
    names = _Names(source)
    infos = archive.infolist()
    limit, total = total_limit(_zip_bytes(archive), max_ratio), 0
    for info in infos:
        path = member_path(info.filename, source)
        problem = _zip_mode_problem(info)
        if problem:
            raise _refuse(source, info.filename, problem)
        if path is None:
            continue
        names.add(info.filename, path, info.is_dir())
        _check_ratio(source, info.filename, info.file_size, info.compress_size, max_ratio)
        total += info.file_size
        _check_total(source, info.filename, total, limit)
    return infos


def _check_total(source: str, name: str, total: int, limit: int) -> None:
    if total > limit:
        raise _refuse(
            source, name, f"which takes the archive past {limit} extracted bytes: a zip bomb"
        )


@contextlib.contextmanager
def staging(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary folder beside ``dest``, renamed to ``dest`` when the block succeeds.

    The folder is hidden (``.NAME.*.partial``) in ``dest``'s parent, so that the rename is
    atomic; on any error (or interrupt) it is removed. ``dest`` must not exist or be an empty
    folder.

    Yields:
        The temporary folder to fill.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        yield tmp
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _target(root: Path, path: PurePosixPath) -> Path:
    target = root.joinpath(*path.parts)
    # belt and braces: nothing in the fresh folder is a link, so this always holds
    if not target.parent.resolve().is_relative_to(root.resolve()):
        raise UnsafeArchiveError(f"{path} would be written outside {root}; nothing was kept")
    return target


def _copy(src: IO[bytes], target: Path, declared: int, name: str, source: str) -> int:
    """Write ``src`` to a new file, counting bytes: never more than ``declared``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    written = 0
    with os.fdopen(os.open(target, flags, 0o644), "wb") as out:
        while chunk := src.read(COPY_BYTES):
            written += len(chunk)
            if written > declared:
                raise _refuse(source, name, f"which yields more than its declared {declared} bytes")
            out.write(chunk)
    return written


def extract_zip(
    archive: zipfile.ZipFile,
    dest: str | os.PathLike[str],
    *,
    source: str,
    select: Callable[[str], bool] | None = None,
    plan: Callable[[zipfile.ZipInfo], None] | None = None,
    max_ratio: float = MAX_RATIO,
) -> list[Member]:
    """Check a zip (:func:`check_zip`), then extract its selected members into ``dest``.

    Args:
        archive: the open zip (a local file, or a remote one read through ranges).
        dest: the folder to create (through :func:`staging`).
        source: how to name the archive in messages.
        select: which member names to extract (default: all).
        plan: called with each member before it is read (a remote reader fetches its extent
            in one request).
        max_ratio: see :func:`check_zip`.

    Returns:
        The extracted files, with the CRC-32 and sizes of the zip directory.

    Raises:
        UnsafeArchiveError: for a member that breaks a rule (nothing is kept).
        UnreadableFileError: for a damaged member (bad CRC-32, bad compressed data).
    """
    infos = check_zip(archive, source, max_ratio=max_ratio)
    limit, total = total_limit(_zip_bytes(archive), max_ratio), 0
    members = []
    with staging(dest) as root:
        for info in infos:
            path = member_path(info.filename, source)
            if path is None or (select is not None and not select(info.filename)):
                continue
            if info.is_dir():
                _target(root, path).mkdir(parents=True, exist_ok=True)
                continue
            if plan is not None:
                plan(info)
            try:
                with archive.open(info) as src:
                    total += _copy(src, _target(root, path), info.file_size, info.filename, source)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise UnreadableFileError(
                    f"member {info.filename!r} of {source} is damaged ({exc}); the archive is "
                    "corrupt or was altered: download it again"
                ) from exc
            _check_total(source, info.filename, total, limit)  # the bytes written, not declared
            members.append(Member(info.filename, info.file_size, info.compress_size, info.CRC))
    return members


def _tar_type_problem(member: tarfile.TarInfo) -> str | None:
    if member.isfile() or member.isdir():
        return None
    if member.issym():
        return f"a symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"a hard link (to {member.linkname!r})"
    if member.ischr() or member.isblk():
        return "a device file"
    if member.isfifo():
        return "a FIFO"
    return f"a member of tar type {member.type!r}"


def extract_tar(
    path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    source: str | None = None,
    select: Callable[[str], bool] | None = None,
    max_ratio: float = MAX_RATIO,
) -> list[Member]:
    """Extract a tar archive (plain, gz, bz2 or xz) into ``dest``, checking every member.

    The archive is read once, as a stream; members are checked as they come and written into
    the staging folder, which an error removes whole. The total written is bounded by
    ``max_ratio`` times the archive's size (at least :data:`RATIO_FLOOR`).

    Args:
        path: the archive file.
        dest: the folder to create (through :func:`staging`).
        source: how to name the archive in messages (default: ``path``).
        select: which member names to extract (default: all).
        max_ratio: bound on the extracted bytes per archive byte.

    Returns:
        The extracted files.

    Raises:
        UnsafeArchiveError: for a link, device or FIFO member, an unsafe or duplicate name, or
            more bytes than the bound (nothing is kept).
        UnreadableFileError: for a damaged or truncated archive.
    """
    source = source or str(path)
    limit = total_limit(Path(path).stat().st_size, max_ratio)
    try:
        with tarfile.open(path, mode="r|*") as tar, staging(dest) as root:
            return _extract_tar_members(tar, root, source, select, limit)
    except (tarfile.TarError, lzma.LZMAError, zlib.error, EOFError) as exc:
        raise UnreadableFileError(
            f"{source} is not a readable tar archive ({type(exc).__name__}: {exc}); it is "
            "damaged or truncated: download it again"
        ) from exc


def _extract_tar_members(
    tar: Iterable[tarfile.TarInfo],
    root: Path,
    source: str,
    select: Callable[[str], bool] | None,
    limit: int,
) -> list[Member]:
    names = _Names(source)
    members, total = [], 0
    for member in tar:
        path = member_path(member.name, source)
        problem = _tar_type_problem(member)
        if problem:
            raise _refuse(source, member.name, problem)
        if path is None:
            continue
        names.add(member.name, path, member.isdir())
        if member.isdir():
            _target(root, path).mkdir(parents=True, exist_ok=True)
            continue
        if select is not None and not select(member.name):
            continue
        total += member.size
        if total > limit:
            raise _refuse(
                source, member.name, f"which takes the archive past {limit} bytes: a tar bomb"
            )
        src = tar.extractfile(member)  # type: ignore[attr-defined]
        _copy(src, _target(root, path), member.size, member.name, source)
        members.append(Member(member.name, member.size))
    return members
