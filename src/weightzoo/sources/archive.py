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

Before :mod:`zipfile` reads a zip's central directory (in one read of the size the end record
declares), :func:`zip_end` parses the end record and the zip64 locator from the file's last
bytes and refuses a directory larger than :func:`directory_limit` or than the bytes before the
end record; :func:`open_zip` does so for a local file, and
:func:`weightzoo.sources.remotezip.open_zip` for a remote one. A member that is encrypted,
holds patch data or uses a compression method zipfile cannot read (AES, deflate64, ...) is
refused from its directory entry before any of its bytes are read.

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
import struct
import tarfile
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from weightzoo.errors import UnreadableFileError, UnsafeArchiveError

__all__ = [
    "MAX_RATIO",
    "TAIL_BYTES",
    "Member",
    "ZipEnd",
    "check_zip",
    "directory_limit",
    "extract_tar",
    "extract_zip",
    "member_path",
    "open_zip",
    "staging",
    "total_limit",
    "zip_end",
]

# Deflate reaches ~1000:1 on zeros; real weights compress ~1.1:1 and JSON lines ~10:1.
MAX_RATIO = 100
# Small members may compress well (repeated text); only larger ones are judged by ratio.
RATIO_FLOOR = 1 << 20
COPY_BYTES = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
# A central directory entry takes 46 bytes and a name (~100 in the Model Zoos); allow far more.
DIRECTORY_BASE = 64 << 20
DIRECTORY_PER_MEMBER = 1 << 10
DIRECTORY_MAX = 256 << 20
_END = struct.Struct("<4s4H2LH")
_LOCATOR = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")
_END_SIGNATURE, _LOCATOR_SIGNATURE, _END64_SIGNATURE = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06"
# zipfile looks for the end record in the last 64 KiB + 22 bytes (a comment may precede it);
# the zip64 locator and end record lie just before it.
_END_SEARCH = _END.size + 0xFFFF
#: The bytes at the end of a zip that :func:`zip_end` needs.
TAIL_BYTES = _END_SEARCH + _LOCATOR.size + _END64.size
# General-purpose flags zipfile cannot read: encryption (traditional, strong), patch data.
_ENCRYPTED, _PATCHED = 0x01 | 0x40, 0x20


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
        crc32 = None if self.crc32 is None else f"{self.crc32:08x}"
        return {**asdict(self), "crc32": crc32}


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

    def admit(self, name: str, is_dir: bool, problem: str | None) -> PurePosixPath | None:
        """Check member ``name`` against every rule; its path, ``None`` for the root itself.

        Raises:
            UnsafeArchiveError: for an unsafe name, a ``problem`` found in the member's type
                (a link, a device...), or a name that clashes with one seen before.
        """
        path = member_path(name, self.source)
        if problem:
            raise _refuse(self.source, name, problem)
        if path is not None:
            self.add(name, path, is_dir)
        return path


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


@dataclass(frozen=True)
class ZipEnd:
    """What a zip's end record declares about its central directory.

    Attributes:
        members: the number of entries it declares.
        offset: where zipfile reads the directory (from the end record's position).
        size: the directory's size in bytes (zipfile reads it in one piece).
        zip64: whether a zip64 end record gave these values.
    """

    members: int
    offset: int
    size: int
    zip64: bool


def directory_limit(members: int) -> int:
    """The largest central directory accepted for a zip that declares ``members`` entries."""
    return min(DIRECTORY_BASE + DIRECTORY_PER_MEMBER * members, DIRECTORY_MAX)


def zip_end(tail: bytes, size: int, source: str) -> ZipEnd:
    """Read and bound a zip's end record (and zip64 locator) from its last bytes.

    Reads them as :mod:`zipfile` does, so that the directory zipfile then reads is the one
    checked here.

    Args:
        tail: the last ``min(size, TAIL_BYTES)`` bytes of the file.
        size: the file's size.
        source: how to name the zip in messages.

    Returns:
        The directory's place and size.

    Raises:
        UnreadableFileError: without an end record, or for a directory that would start
            before the file.
        UnsafeArchiveError: for a directory larger than :func:`directory_limit`.
    """
    first = size - len(tail)  # the file offset of tail[0]
    index = _end_index(tail)
    if index < 0:
        raise UnreadableFileError(
            f"{source} is not a zip (no end record in its last {_END_SEARCH} bytes); the file "
            "is damaged or is not a zip: check the record's file name"
        )
    members, length = _END.unpack_from(tail, index)[4:6]
    zip64 = index >= _LOCATOR.size and tail.startswith(_LOCATOR_SIGNATURE, index - _LOCATOR.size)
    if zip64 and index < _LOCATOR.size + _END64.size:
        raise UnreadableFileError(
            f"{source} has a zip64 locator but no room for its end record; the zip is damaged "
            "or truncated: download it again"
        )
    if zip64:
        record = _END64.unpack_from(tail, index - _LOCATOR.size - _END64.size)
        zip64 = record[0] == _END64_SIGNATURE  # else zipfile keeps the 32-bit values
        members, length = (record[7], record[8]) if zip64 else (members, length)
    end = first + index - (_LOCATOR.size + _END64.size if zip64 else 0)
    if length > directory_limit(members):
        raise UnsafeArchiveError(
            f"{source} declares a central directory of {length} bytes for {members} members, "
            f"more than the {directory_limit(members)} weightzoo reads; the zip is damaged or "
            "hostile: report it to its publisher"
        )
    if length > end:
        raise UnreadableFileError(
            f"{source} declares a central directory of {length} bytes, more than the {end} "
            "bytes before its end record; the zip is damaged or truncated: download it again"
        )
    return ZipEnd(members, end - length, length, zip64)


def _end_index(tail: bytes) -> int:
    """Where zipfile finds the end record in ``tail`` (-1: nowhere): the same two looks."""
    last = len(tail) - _END.size
    if last >= 0 and tail.startswith(_END_SIGNATURE, last) and tail.endswith(b"\0\0"):
        return last  # no comment
    index = tail.rfind(_END_SIGNATURE, max(0, len(tail) - _END_SEARCH))
    return index if index >= 0 and len(tail) - index >= _END.size else -1


def _tail(handle: IO[bytes]) -> tuple[bytes, int]:
    size = handle.seek(0, io.SEEK_END)
    handle.seek(max(0, size - TAIL_BYTES))
    return handle.read(TAIL_BYTES), size


def open_zip(path: str | os.PathLike[str], source: str) -> zipfile.ZipFile:
    """Open a local zip after checking its end record (:func:`zip_end`).

    Raises:
        UnreadableFileError: if the file is not a readable zip.
        UnsafeArchiveError: for a central directory beyond its bound.
    """
    with open(path, "rb") as handle:
        tail, size = _tail(handle)
    zip_end(tail, size, source)
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise UnreadableFileError(
            f"{source} is not a readable zip ({exc}); the file is damaged or is not a zip: "
            "report it to its publisher"
        ) from exc


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


def _methods() -> frozenset[int]:
    """The compression methods this Python's zipfile reads."""
    methods = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
    for method, module in ((zipfile.ZIP_BZIP2, "bz2"), (zipfile.ZIP_LZMA, "lzma")):
        with contextlib.suppress(ImportError):
            __import__(module)
            methods.add(method)
    return frozenset(methods)


def _read_problem(info: zipfile.ZipInfo) -> str | None:
    if info.flag_bits & _ENCRYPTED:
        return "which is encrypted"
    if info.flag_bits & _PATCHED:
        return "which holds patch data (flag 0x20)"
    if info.compress_type not in _methods():
        return f"compressed with method {info.compress_type}, which Python's zipfile cannot read"
    return None


def check_readable(infos: Iterable[zipfile.ZipInfo], source: str) -> None:
    """Refuse members that zipfile cannot read, from their directory entries alone.

    Raises:
        UnreadableFileError: for an encrypted member, one with patch data, or one compressed
            with a method zipfile does not support (AES 99, deflate64 9, ...).
    """
    for info in infos:
        problem = None if info.is_dir() else _read_problem(info)
        if problem:
            raise UnreadableFileError(
                f"{source} holds the member {info.filename!r}, {problem}; weightzoo extracts "
                "nothing from it: extract it by hand with a tool that reads it"
            )


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
        if names.admit(info.filename, info.is_dir(), _zip_mode_problem(info)) is None:
            continue
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
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 is for the work; the zoo is as any folder
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
        UnreadableFileError: for a damaged member (bad CRC-32, bad compressed data), or one
            zipfile cannot read (encrypted, unsupported method: see :func:`check_readable`).
    """
    infos = check_zip(archive, source, max_ratio=max_ratio)
    chosen = [
        (info, path)
        for info in infos
        if (path := member_path(info.filename, source)) is not None
        and (select is None or select(info.filename))
    ]
    check_readable([info for info, _ in chosen], source)  # before any member's bytes are read
    limit, total = total_limit(_zip_bytes(archive), max_ratio), 0
    members = []
    with staging(dest) as root:
        for info, path in chosen:
            if info.is_dir():
                _target(root, path).mkdir(parents=True, exist_ok=True)
                continue
            if plan is not None:
                plan(info)
            total += _extract_member(archive, info, _target(root, path), source)
            _check_total(source, info.filename, total, limit)  # the bytes written, not declared
            members.append(Member(info.filename, info.file_size, info.compress_size, info.CRC))
    return members


def _extract_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, source: str
) -> int:
    try:
        with archive.open(info) as src:
            return _copy(src, target, info.file_size, info.filename, source)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise UnreadableFileError(
            f"member {info.filename!r} of {source} is damaged ({exc}); the archive is "
            "corrupt or was altered: download it again"
        ) from exc
    except (RuntimeError, NotImplementedError) as exc:  # its local header asks for more
        raise UnreadableFileError(
            f"member {info.filename!r} of {source} cannot be read by Python's zipfile "
            f"({exc}); extract it by hand with a tool that reads it"
        ) from exc


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
        path = names.admit(member.name, member.isdir(), _tar_type_problem(member))
        if path is None:
            continue
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
