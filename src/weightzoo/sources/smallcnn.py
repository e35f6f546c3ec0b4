"""The Small CNN Zoo from its bucket: a ``tar.xz`` decompressed and converted as it streams.

The Small CNN Zoo (Unterthiner, Keysers, Gelly, Bousquet, Tolstikhin, "Predicting Neural Network
Accuracy from Weights", arXiv:2002.11448) is published as one ``tar.xz`` per image dataset
(``mnist``, ``fashion_mnist``, ``cifar10``, ``svhn_cropped``) in a Google Cloud Storage bucket,
which sends the object's md5 in ``x-goog-hash``. Each archive holds one folder with the three
files :mod:`weightzoo.importers.cnn_zoo` reads: ``weights.npy``, ``layout.csv`` and
``metrics.csv.gz``.

:func:`fetch_small_cnn_zoo` makes one GET and reads the body once, as it arrives: every byte is
hashed (md5), counted and shown, decompressed by :mod:`lzma` at most a read's worth at a time,
and read by :mod:`tarfile` as a plain tar stream (mode ``r|``); the compressed bytes are never
written. Members get the confinement of :mod:`weightzoo.sources.archive` (no links, devices,
FIFOs, ``..``, absolute paths or duplicate names; the bytes they declare are bounded by
:data:`~weightzoo.sources.archive.MAX_RATIO` times the download).

**Bounds.** Memory and time stay bounded whatever the server sends. Every byte decompressed is
counted against :data:`~weightzoo.sources.archive.MAX_RATIO` times the bytes received; past the
end of a member's data, tarfile may read at most :data:`HEADER_BYTES` before the next member
(it reads a GNU long name or pax header body whole: one declaring a gigabyte is refused as it
arrives, not held); a ``.npy`` header is at most :data:`NPY_HEADER_BYTES`; ``metrics.csv.gz``
is indexed row by row against the rows of ``weights.npy`` (see
:func:`~weightzoo.importers.cnn_zoo.metrics_index`); a split CSV is downloaded to at most
:data:`SPLIT_CSV_MAX_BYTES` and read line by line.

**Checksum.** The archive must come with an md5 in ``x-goog-hash`` (or a crc32c where a crc32c
package is installed), as the bucket sends it: a server that sends none is refused once the
first bytes show it is not an error page, unless the caller passes ``verify=False``
(``source.json`` then says that nothing was verified).

``layout.csv`` and ``metrics.csv.gz`` are written into a hidden work folder beside ``out``, and
the rows of ``weights.npy`` once, decompressed: the importer memory-maps them, because the rows
of one network may lie anywhere in the file, ``metrics.csv.gz`` (which says which row is which
network) may come after ``weights.npy`` in the archive, and the zoo writer writes split by split,
so the conversion needs the rows in another order than the stream's. Only once the stream has
ended and its md5 verifies does the importer convert the folder into a hidden sibling of
``out``, renamed into place when the zoo is complete; the work folder is removed whatever
happens, so a damaged download never becomes a zoo.

**Partial.** ``models=N`` takes the first N networks (in the order of their first row). Where
``layout.csv`` and ``metrics.csv.gz`` come before ``weights.npy``, the rows those networks need
are known, only they are written, and the stream is closed after the last of them: the md5 of
the whole file cannot be checked then (xz checks a block only at its end), and ``source.json``
says so (``"checksum_checked": false``). Otherwise the whole stream is read and checked, and the
importer takes the first N networks.

**Cuts restart.** A cut stream starts again from byte 0 (:data:`RESTARTS` times, then a
one-line error; the rerun starts again). An xz stream cannot be continued from a byte offset
without the decoder's state at that offset, which only decoding every byte before it restores,
so resuming would need the compressed bytes kept on disk beside the decompressed ones: the
archive stored twice. A restart costs the transfer again and no disk.

**Splits.** ``split_csv_url`` names the fixed split that the papers on neural functionals use
for this zoo, so that results compare with theirs: Zhou et al., "Permutation Equivariant Neural
Functionals" (arXiv:2302.14040), followed by Navon et al., "Equivariant Architectures for
Learning in Deep Weight Spaces" (arXiv:2301.12780) and Kofinas et al., "Graph Neural Networks
for Learning Equivariant Representations of Neural Networks" (arXiv:2403.12143). The CSV holds
one row number of ``weights.npy`` per line: a permutation of all rows below a line ``0`` (the
column name pandas wrote as a header; their loader reads the file without a header, so it
takes it for row 0, which it thus lists twice: :func:`read_split_csv` reads it the same way).
The loader orders the rows by it, keeps the rows at step 86 (the last checkpoint), puts the
second half (from ``int(0.5 * n)``) in test, shuffles the positions of the first half with
Python's ``random.Random(0)`` and puts the first ``int(0.8 * len)`` of them in train, the rest
in val (:func:`nfn_splits`). A network takes the split of its last checkpoint; a network
without a row at step 86, which those papers leave out, goes to train, and ``source.json``
counts them. The CSV comes with no published checksum: ``source.json`` records its sha256.
Without a CSV the importer's rule applies.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import itertools
import json
import logging
import lzma
import os
import random
import re
import shutil
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import httpx2
import numpy as np

from weightzoo.errors import (
    DataFilesMissingError,
    InvalidOptionError,
    LayoutError,
    SourceChecksumError,
    SourceConnectionError,
    SourceContentError,
    SourceNotFoundError,
    UnreadableFileError,
    UnsafeArchiveError,
    UnsafePathError,
)
from weightzoo.sources.archive import (
    MAX_RATIO,
    RATIO_FLOOR,
    _Names,
    _refuse,
    _tar_type_problem,
    staging,
)
from weightzoo.sources.fetch import PROVENANCE_NAME, _check_out
from weightzoo.sources.http import (
    CHUNK_BYTES,
    HTTP_MIRROR_ENV,
    SNIFF_BYTES,
    Pace,
    check_http_url,
    check_served,
    check_status,
    download,
    goog_hash,
    header_int,
    mirrored,
    new_client,
    request_failed,
)

__all__ = ["NFN_FINAL_STEP", "fetch_small_cnn_zoo", "nfn_splits", "read_split_csv"]

logger = logging.getLogger(__name__)

CITATION = (
    "Unterthiner, Keysers, Gelly, Bousquet, Tolstikhin: Predicting Neural Network Accuracy "
    "from Weights, arXiv:2002.11448"
)
WEIGHTS, LAYOUT, METRICS = "weights.npy", "layout.csv", "metrics.csv.gz"
FILES = (WEIGHTS, LAYOUT, METRICS)
# layout.csv lists a handful of variables; anything larger is not one.
LAYOUT_MAX_BYTES = 1 << 20
RESTARTS = 3
# The reads of the compressed body: small enough that closing the stream early wastes little.
READ_BYTES = 1 << 16
# What tarfile asks of the decompressed stream at a time, and the most one decompression step
# yields: xz turns a few bytes into megabytes of zeros, which are never held at once.
TAR_READ_BYTES = 1 << 14
# The most of the decompressed stream tarfile may read past a member's data before it yields
# the next member: that member's headers. A name is at most a few KiB (pax records a few
# hundred bytes); tarfile reads each header body whole and follows a chain of them by
# recursion, so this bounds both the memory it holds and the depth it recurses to.
HEADER_BYTES = 1 << 16
# The longest .npy header accepted (numpy's own bound on what it parses: 10,000 bytes).
NPY_HEADER_BYTES = 10_000
# A split CSV lists the rows of one dataset once (270,001 lines of at most 6 digits for the
# largest, about 2 MB); one larger than this is not a split CSV.
SPLIT_CSV_MAX_BYTES = 16 << 20
# A split CSV's line: a row number of at most 12 digits, spaces and its line ending.
SPLIT_LINE_MAX = 64
# The data loader of the neural-functional papers: the last checkpoint, half for test, then
# 80 % of the rest for train, shuffled by random.Random(0).
NFN_FINAL_STEP = 86
NFN_TEST_FROM = 0.5
NFN_TRAIN_SHARE = 0.8
NFN_SEED = 0
_SUFFIXES = (".tar.xz", ".txz")
_RERUN = f"check the URL (and {HTTP_MIRROR_ENV}), then rerun the same command"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class _Cut(Exception):
    """The connection broke after ``received`` bytes of the body."""

    def __init__(self, received: int, reason: str) -> None:
        super().__init__(reason)
        self.received = received
        self.reason = reason


# -- the body, as tarfile reads it ------------------------------------------------------------


class _Body:
    """The response body as a file: each byte hashed, counted and shown as it is read.

    The first bytes are judged before tarfile sees any (an HTML page or an error JSON served
    in place of the archive is refused by :func:`~weightzoo.sources.http.check_served`); a body
    trickled below :class:`~weightzoo.sources.http.Pace`'s floor is given up.
    """

    def __init__(
        self, response: httpx2.Response, source: str, name: str, hasher: Any, bar: Any
    ) -> None:
        self._chunks = response.iter_raw()  # as received: a closed stream wastes little
        self._source, self._name = source, name
        self._hasher, self._bar = hasher, bar
        self._pace = Pace(source, name, "rerun the same command later")
        self._pending = bytearray()
        self._judged = False
        self.received = 0
        self.total = header_int(response.headers, "content-length", source)

    def _pull(self) -> bytes | None:
        try:
            chunk = next(self._chunks)
        except StopIteration:
            return None
        except httpx2.TransportError as exc:
            raise _Cut(self.received, _reason(exc)) from exc
        self.received += len(chunk)
        if self.total is not None and self.received > self.total:
            raise SourceContentError(
                f"{self._source} sent more than the {self.total} bytes it announced for "
                f"{self._name}; refusing the rest: rerun later, or set WEIGHTZOO_HTTP_MIRROR"
            )
        if self._hasher is not None:
            self._hasher.update(chunk)
        self._bar.update(len(chunk))
        self._pace.add(len(chunk))
        return chunk

    def judge(self) -> None:
        """Refuse a page or error JSON served in place of the archive (from its first bytes)."""
        while len(self._pending) < SNIFF_BYTES and (chunk := self._pull()) is not None:
            self._pending += chunk
        check_served(self._source, self._name, "", bytes(self._pending[:SNIFF_BYTES]))
        self._judged = True

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left for a negative ``size``); ``b""`` at the end."""
        if not self._judged:
            self.judge()
        while size < 0 or len(self._pending) < size:
            chunk = self._pull()
            if chunk is None:
                break
            self._pending += chunk
        cut = len(self._pending) if size < 0 else min(size, len(self._pending))
        data = bytes(self._pending[:cut])
        del self._pending[:cut]
        return data

    def drain(self) -> None:
        """Read (and hash) whatever tarfile left after the archive's end (xz's index, padding)."""
        end = self.received
        while self._pull() is not None:
            if self.total is None and self.received - end > CHUNK_BYTES:
                raise SourceContentError(
                    f"{self._source} sends more than {CHUNK_BYTES} bytes after the end of the "
                    f"archive {self._name}; refusing the rest: check the URL"
                )


class _Tar:
    """The tar inside the xz body, as tarfile reads it (mode ``r|``): decompressed, bounded.

    Each read decompresses at most what tarfile asks for. Every byte yielded is counted: in
    all, against :data:`~weightzoo.sources.archive.MAX_RATIO` times the bytes received; past
    the data of the last member tarfile yielded (:meth:`admit`), to at most
    :data:`HEADER_BYTES`, so the headers of the next member (whose bodies tarfile reads whole,
    before any member reaches a check) are refused as they arrive.
    """

    def __init__(self, body: _Body, source: str) -> None:
        self._body, self._source = body, source
        self._xz = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        self.out = 0
        self._limit = HEADER_BYTES
        self._last: str | None = None

    def admit(self, member: tarfile.TarInfo) -> None:
        """Let tarfile read ``member``'s data, then at most :data:`HEADER_BYTES` of headers."""
        blocks = -(-member.size // tarfile.BLOCKSIZE)
        self._limit = member.offset_data + blocks * tarfile.BLOCKSIZE + HEADER_BYTES
        self._last = member.name

    def read(self, size: int = -1) -> bytes:
        """At most ``size`` bytes (:data:`TAR_READ_BYTES` for a negative one); ``b""`` at the end.

        Raises:
            EOFError: the body ends before the xz stream does.
            UnsafeArchiveError: past either bound.
        """
        size = TAR_READ_BYTES if size < 0 else size
        while size and not self._xz.eof:
            data = b""
            if self._xz.needs_input:
                data = self._body.read(READ_BYTES)
                if not data:
                    raise EOFError(f"the body ends after {self._body.received} bytes, mid-stream")
            out = self._xz.decompress(data, max_length=size)
            if out:
                self._count(len(out))
                return out
        return b""

    def _count(self, count: int) -> None:
        self.out += count
        where = f"after the member {self._last!r}" if self._last else "at its start"
        if self.out > self._limit:
            raise UnsafeArchiveError(
                f"{self._source} has tar headers of more than {HEADER_BYTES} bytes {where} (a "
                "GNU long name or pax header that large is a header bomb); weightzoo reads "
                "nothing more of it: report it to its publisher"
            )
        if self.out > RATIO_FLOOR + MAX_RATIO * self._body.received:
            raise UnsafeArchiveError(
                f"{self._source} expands to {self.out} bytes from {self._body.received} "
                f"received (ratio over {MAX_RATIO}) {where}: a tar bomb; weightzoo extracts "
                "nothing from it: report it to its publisher"
            )


class _Budget:
    """The bytes an archive's members may declare, bounded by the announced size."""

    def __init__(self, source: str, body: _Body) -> None:
        self.source = source
        self.declared = 0
        total = body.total
        self.limit = max(RATIO_FLOOR, int(total * MAX_RATIO)) if total is not None else None

    def declare(self, member: tarfile.TarInfo) -> None:
        """Count a member's declared size; refuse an archive that declares too much."""
        self.declared += member.size
        if self.limit is not None and self.declared > self.limit:
            raise _refuse(
                self.source,
                member.name,
                f"which takes the archive past {self.limit} bytes: a tar bomb",
            )


def _pour(src: IO[bytes], out: IO[bytes] | None, count: int, name: str, source: str) -> None:
    """Copy ``count`` bytes of a member to ``out`` (``None``: discard)."""
    left = count
    while left > 0:
        chunk = src.read(min(CHUNK_BYTES, left))
        if not chunk:
            raise UnreadableFileError(
                f"member {name!r} of {source} ends {left} bytes early; the archive is "
                "damaged or truncated: rerun to download it again"
            )
        left -= len(chunk)
        if out is not None:
            out.write(chunk)


def _reason(exc: BaseException) -> str:
    """What the HTTP client said, on one short line (a server may put anything in it)."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:200]


def _new_file(path: Path) -> IO[bytes]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    return os.fdopen(os.open(path, flags, 0o644), "wb")


# -- the three files --------------------------------------------------------------------------


def _npy_header(src: IO[bytes], name: str, source: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, header bytes)`` of a streamed ``.npy``, checked numeric and C-ordered.

    The header's length is checked before its text is read (numpy would read all it declares,
    up to 4 GiB, before its own check).
    """
    fmt = np.lib.format
    try:
        version = fmt.read_magic(src)
        width = 2 if version == (1, 0) else 4
        field = src.read(width)
        length = int.from_bytes(field, "little")
        if length > NPY_HEADER_BYTES:
            raise ValueError(f"the header declares {length} bytes, over {NPY_HEADER_BYTES}")
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read(io.BytesIO(field + src.read(length)))
    except (ValueError, TypeError, EOFError, OSError, SyntaxError) as exc:
        raise UnreadableFileError(
            f"member {name!r} of {source} has no valid .npy header ({type(exc).__name__}: "
            f"{exc}); the archive is not the Small CNN Zoo: check the URL"
        ) from exc
    header = src.tell()  # magic, length and the header text: where the rows begin
    dtype = np.dtype(dtype)
    if dtype.hasobject or dtype.kind not in "fiu" or dtype.fields is not None:
        raise UnreadableFileError(
            f"member {name!r} of {source} holds dtype {dtype}, not numbers; weightzoo reads "
            "numeric weights only (never pickled objects): check the URL"
        )
    if len(shape) != 2 or fortran:
        raise UnreadableFileError(
            f"member {name!r} of {source} holds a {'Fortran-ordered ' if fortran else ''}array "
            f"of shape {shape}, not rows of weights; the archive is not the Small CNN Zoo"
        )
    return tuple(int(d) for d in shape), dtype, header


def _rows_needed(index: Sequence[tuple[str, Any]], models: int) -> int:
    """How many leading rows hold every row of the first ``models`` networks."""
    first: set[str] = set()
    last = 0
    for row, (key, _) in enumerate(index):
        if key not in first:
            if len(first) == models:
                continue
            first.add(key)
        last = row
    return last + 1


@dataclass
class _Stage:
    """What the stream has delivered so far into the work folder."""

    folder: Path
    source: str
    models: int | None
    verify: bool = True  # refuse an archive sent without a checksum
    parent: PurePosixPath | None = None
    members: dict[str, tarfile.TarInfo] = field(default_factory=dict)
    index: list[tuple[str, Any]] | None = None
    rows_total: int | None = None
    rows_kept: int | None = None
    stopped: bool = False  # the rows after those kept were never read

    def role(self, path: PurePosixPath, member: tarfile.TarInfo) -> str | None:
        """Which of the three files a member is (``None``: another file, skipped)."""
        if path.name not in FILES:
            return None
        if self.parent is not None and path.parent != self.parent:
            raise _refuse(
                self.source,
                member.name,
                f"a second copy of {path.name} (another lies in {str(self.parent) or '.'!r}); "
                "which one is the zoo is unclear",
            )
        self.parent = path.parent
        return path.name

    def take(self, role: str, member: tarfile.TarInfo, src: IO[bytes]) -> None:
        """Write one of the three files into the folder (weights: the rows needed)."""
        self.members[role] = member
        if role == WEIGHTS:
            return self._take_weights(member, src)
        if role == LAYOUT and member.size > LAYOUT_MAX_BYTES:
            raise _refuse(
                self.source, member.name, f"a layout.csv of {member.size} bytes (a bomb?)"
            )
        with _new_file(self.folder / role) as out:
            _pour(src, out, member.size, member.name, self.source)
        if role == METRICS:
            from weightzoo.importers.cnn_zoo import metrics_index

            # Counted against the rows of weights.npy where it came first, else the zoo's bound.
            path = self.folder / role
            try:
                self.index = metrics_index(path, max_rows=self.rows_total)
            except (UnreadableFileError, LayoutError) as exc:  # name the member, not the copy
                where = f"member {member.name!r} of {self.source}"
                raise type(exc)(str(exc).replace(str(path), where)) from exc

    def _take_weights(self, member: tarfile.TarInfo, src: IO[bytes]) -> None:
        (rows, width), dtype, header = _npy_header(src, member.name, self.source)
        row_bytes = width * dtype.itemsize
        if member.size != header + rows * row_bytes:
            raise UnreadableFileError(
                f"member {member.name!r} of {self.source} declares {member.size} bytes but its "
                f".npy header promises {header + rows * row_bytes}; the archive is damaged: "
                "report it to its publisher"
            )
        if self.index is not None:  # metrics.csv.gz came first: refuse before the rows come
            _check_rows(len(self.index), rows, self.source)
        keep = rows
        if self.models is not None and self.index is not None:
            keep = min(rows, _rows_needed(self.index, self.models))
        fmt = np.lib.format
        with _new_file(self.folder / WEIGHTS) as out:
            descr = {"descr": fmt.dtype_to_descr(dtype), "fortran_order": False}
            fmt.write_array_header_2_0(out, {**descr, "shape": (keep, width)})
            _pour(src, out, keep * row_bytes, member.name, self.source)
        self.rows_total, self.rows_kept = rows, keep
        if keep < rows and self.done():
            self.stopped = True  # every file is in: the stream can be closed here
        else:  # more members to come: read through the rest, counted
            _pour(src, None, (rows - keep) * row_bytes, member.name, self.source)

    def done(self) -> bool:
        """Whether all three files are in."""
        return all(role in self.members for role in FILES)


# -- one pass over the stream -----------------------------------------------------------------


@dataclass(frozen=True)
class _Streamed:
    """What one pass over the archive delivered.

    Attributes:
        folder: the work folder holding the three files (weights: the rows kept).
        members: the three members as ``{"name", "size"}``.
        index: each row's network key and step (all rows of ``metrics.csv.gz``).
        rows_total: the rows of the published ``weights.npy``.
        rows_kept: the rows written (fewer when the stream was closed early).
        complete: whether the whole body was read.
        checksum: ``x-goog-hash``'s md5 (crc32c for an object without one, where a crc32c
            package is installed), as ``md5:<hex>``; ``None``: the server sent none.
        checksum_checked: whether it was compared with the whole body (and matched).
        size: the body's announced size (``None``: not announced).
        bytes_read: body bytes received by the pass that succeeded.
    """

    folder: Path
    members: tuple[dict[str, Any], ...]
    index: list[tuple[str, Any]]
    rows_total: int
    rows_kept: int
    complete: bool
    checksum: str | None
    checksum_checked: bool
    size: int | None
    bytes_read: int


def _walk(tar: tarfile.TarFile, stage: _Stage, budget: _Budget, stream: _Tar) -> bool:
    """Take the members as they come; ``True`` when the archive was read to its end."""
    names = _Names(stage.source)
    for member in tar:
        stream.admit(member)
        problem = _tar_type_problem(member)
        if member.issparse():  # its holes are zeros that no received byte accounts for
            problem = "a sparse file (the zoo has none)"
        path = names.admit(member.name, member.isdir(), problem)
        if path is None:
            continue
        if member.isdir():
            continue
        budget.declare(member)
        role = stage.role(path, member)
        src = tar.extractfile(member)
        assert src is not None  # a regular file (links and devices were refused)
        if role is None:
            _pour(src, None, member.size, member.name, stage.source)
            continue
        stage.take(role, member, src)
        if stage.stopped:
            return False  # every row needed is in: close the stream
    return True


def _verify(body: _Body, expected: Any, hasher: Any, source: str, name: str) -> bool:
    """Compare the whole body's checksum with ``x-goog-hash``; ``False`` when none was sent."""
    if body.total is not None and body.received < body.total:
        raise _Cut(body.received, "the server closed the connection early")
    if expected is None or hasher is None:
        logger.warning("%s sent no md5 (x-goog-hash); %s is not verified", source, name)
        return False
    actual = hasher.hexdigest()
    if actual != expected.hexdigest:
        raise SourceChecksumError(
            f"{name} from {source} has {expected.algorithm} {actual}, but the server publishes "
            f"{expected.hexdigest} (x-goog-hash); the download was damaged or the file changed: "
            "nothing was kept, rerun to download it again"
        )
    return True


def _unverifiable(response: httpx2.Response, source: str, name: str) -> SourceChecksumError:
    """The refusal of an archive sent without a checksum weightzoo can check."""
    sent = ", ".join(response.headers.get_list("x-goog-hash"))
    what = f"x-goog-hash {sent[:120]!r}" if sent else "no x-goog-hash header"
    crc = "crc32c=" in sent.lower()
    needs = " (its crc32c needs the google-crc32c package, not installed)" if crc else ""
    return SourceChecksumError(
        f"{source} sent {what} for {name}: no md5 weightzoo can check{needs}; refusing an "
        f"unverified archive: fetch it from the bucket (or a mirror, {HTTP_MIRROR_ENV}, that "
        "passes on its x-goog-hash md5), or pass verify=False to accept it unchecked"
    )


def _check_found(response: httpx2.Response, source: str, name: str) -> None:
    """404 and 410 in the words of a bucket (``check_status`` speaks of Zenodo records)."""
    if response.status_code in (404, 410):
        raise SourceNotFoundError(
            f"{name} at {source} was not found ({response.status_code}); check the URL "
            f"(and {HTTP_MIRROR_ENV}, which replaces its scheme and host, if set)"
        )


def _check_rows(indexed: int, rows: int, source: str) -> None:
    if indexed != rows:
        raise LayoutError(
            f"{source}: metrics.csv.gz has {indexed} rows but weights.npy has {rows}; the "
            "archive is inconsistent: report it to its publisher"
        )


def _stream_once(
    client: httpx2.Client, source: str, name: str, stage: _Stage, progress: bool
) -> _Streamed:
    """One GET of the archive; any failure of the HTTP client is a named error.

    A transport failure (refused, reset, timed out) is a cut, to start again; a redirect loop,
    a redirect to another scheme or a body that does not decode is final.
    """
    try:
        with client.stream("GET", source) as response:
            return _receive(response, source, name, stage, progress)
    except httpx2.TransportError as exc:
        if isinstance(exc, httpx2.UnsupportedProtocol):
            raise request_failed(exc, source, name, _RERUN) from exc
        raise _Cut(0, _reason(exc)) from exc
    except (httpx2.RequestError, httpx2.InvalidURL) as exc:
        raise request_failed(exc, source, name, _RERUN) from exc


def _receive(
    response: httpx2.Response, source: str, name: str, stage: _Stage, progress: bool
) -> _Streamed:
    from tqdm import tqdm

    _check_found(response, source, name)
    check_status(response, source, name)
    check_served(source, name, response.headers.get("content-type", ""))
    expected = goog_hash(response.headers)
    hasher = expected.hasher() if expected is not None else None
    bar = tqdm(
        total=None, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=not progress
    )
    with bar:
        body = _Body(response, source, name, hasher, bar)
        bar.total = body.total
        body.judge()  # a page served instead says so, rather than that it has no checksum
        if hasher is None and stage.verify:
            raise _unverifiable(response, source, name)
        complete = _untar(body, stage, source, name)
        if complete:
            body.drain()
        checked = _verify(body, expected, hasher, source, name) if complete else False
    return _streamed(stage, source, name, body, expected, complete, checked)


def _untar(body: _Body, stage: _Stage, source: str, name: str) -> bool:
    """Read the archive's members into the stage; ``True`` when it was read to its end."""
    stream = _Tar(body, source)
    try:
        with tarfile.open(fileobj=stream, mode="r|", bufsize=TAR_READ_BYTES) as tar:  # type: ignore[call-overload]
            return _walk(tar, stage, _Budget(source, body), stream)
    except (tarfile.TarError, lzma.LZMAError, zlib.error, EOFError) as exc:
        if body.total is not None and body.received < body.total:
            raise _Cut(body.received, _reason(exc)) from exc
        raise UnreadableFileError(
            f"{name} from {source} is not a readable tar.xz archive ({_reason(exc)}); it is "
            "damaged or truncated: rerun to download it again"
        ) from exc


def _streamed(
    stage: _Stage,
    source: str,
    name: str,
    body: _Body,
    expected: Any,
    complete: bool,
    checked: bool,
) -> _Streamed:
    missing = [role for role in FILES if role not in stage.members]
    if missing:
        raise DataFilesMissingError(
            f"{name} from {source} holds no {', '.join(missing)}; it is not a Small CNN Zoo "
            "archive: check the URL"
        )
    assert stage.index is not None and stage.rows_total is not None
    _check_rows(len(stage.index), stage.rows_total, f"{name} from {source}")
    return _Streamed(
        folder=stage.folder,
        members=tuple({"name": m.name, "size": m.size} for m in stage.members.values()),
        index=stage.index,
        rows_total=stage.rows_total,
        rows_kept=stage.rows_kept or 0,
        complete=complete,
        checksum=str(expected) if expected is not None else None,
        checksum_checked=checked,
        size=body.total,
        bytes_read=body.received,
    )


def _stream(
    client: httpx2.Client,
    source: str,
    name: str,
    folder: Path,
    models: int | None,
    progress: bool,
    verify: bool,
) -> tuple[_Streamed, int]:
    """Stream the archive into ``folder``, restarting a cut stream; ``(result, restarts)``."""
    for attempt in range(RESTARTS + 1):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        try:
            stage = _Stage(folder, source, models, verify)
            return _stream_once(client, source, name, stage, progress), attempt
        except _Cut as exc:
            if attempt == RESTARTS:
                at = f"the last after {exc.received} bytes" if exc.received else "before any byte"
                raise SourceConnectionError(
                    f"the connection to {source} broke {RESTARTS + 1} times, {at} "
                    f"({exc.reason}); a tar.xz stream cannot resume and nothing was kept: check "
                    f"the network (and {HTTP_MIRROR_ENV}), then rerun the same command to start "
                    "again"
                ) from exc
            logger.warning(
                "%s: %s after %d bytes; starting again (%d/%d)",
                name,
                exc.reason,
                exc.received,
                attempt + 1,
                RESTARTS,
            )
    raise AssertionError("unreachable")


def _cut_metrics(path: Path, rows: int) -> None:
    """Keep the header and the first ``rows`` records of ``metrics.csv.gz`` (reproducibly)."""
    kept = path.with_name(path.name + ".cut")
    with gzip.open(path, "rt", newline="", encoding="utf-8") as src, open(kept, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed:
            with io.TextIOWrapper(packed, encoding="utf-8", newline="") as out:
                writer = csv.writer(out)
                for record in itertools.islice(csv.reader(src), rows + 1):
                    writer.writerow(record)
    os.replace(kept, path)


# -- splits -----------------------------------------------------------------------------------


def _is_permutation(values: Sequence[int], rows: int) -> bool:
    order = np.asarray(values, dtype=np.int64)
    return len(values) == rows and np.array_equal(np.sort(order), np.arange(rows))


def _split_lines(handle: IO[bytes], source: str) -> Iterator[str]:
    """The lines of a split CSV, stripped, each at most :data:`SPLIT_LINE_MAX` bytes."""
    while line := handle.readline(SPLIT_LINE_MAX + 1):
        if len(line) > SPLIT_LINE_MAX:
            raise SourceContentError(
                f"{source} has a line of more than {SPLIT_LINE_MAX} bytes ({line[:24]!r}...), "
                "not one row number; check the split CSV's URL"
            )
        try:
            yield line.decode("ascii").strip()
        except UnicodeDecodeError as exc:
            raise SourceContentError(
                f"{source} is not a text file of row numbers ({exc}); check the split CSV's URL"
            ) from exc


def read_split_csv(path: Path, rows: int, source: str) -> list[int]:
    """The row numbers of a split CSV, as the papers' data loader reads them.

    The published CSVs were written by pandas with a header line ``0`` (the column's name)
    above a permutation of the rows; the loader reads them without a header, so ``0`` is also
    its first row number (row 0 is listed twice). Both that form and a plain permutation are
    accepted, and every line is returned, in order. The file is read a line at a time: a line
    longer than :data:`SPLIT_LINE_MAX` bytes, or a number beyond the ``rows + 1`` a split CSV can
    hold, is refused as it is read.

    Args:
        path: the downloaded CSV.
        rows: the rows of ``weights.npy``.
        source: how to name the CSV in messages (its URL).

    Raises:
        SourceContentError: for a line that is not one row number, or numbers that are not
            each row of ``weights.npy`` once (after that header).
    """
    values: list[int] = []
    with open(path, "rb") as handle:
        for number, item in enumerate(_split_lines(handle, source), 1):
            if not item:
                continue
            if not re.fullmatch(r"[0-9]{1,12}", item):
                raise SourceContentError(
                    f"{source} line {number} is {item[:40]!r}, not one row number; a split CSV "
                    "lists one row of weights.npy per line: check its URL"
                )
            if len(values) > rows:  # the header 0 and each row once: no more
                raise SourceContentError(
                    f"{source} lists more than {rows + 1} row numbers, not each of the {rows} "
                    "rows of weights.npy once; it belongs to another zoo: pass the split CSV "
                    "of this dataset, or none"
                )
            values.append(int(item))
    plain = _is_permutation(values, rows)
    if not plain and not (values[:1] == [0] and _is_permutation(values[1:], rows)):
        raise SourceContentError(
            f"{source} lists {len(values)} row numbers, not each of the {rows} rows of "
            "weights.npy once; it belongs to another dataset of the zoo: pass that dataset's "
            "split CSV, or none"
        )
    return values


def nfn_splits(
    order: Sequence[int], steps: Sequence[Any], *, final_step: int = NFN_FINAL_STEP
) -> dict[int, str]:
    """Each final-checkpoint row's split, by the data loader of the neural-functional papers.

    The rows are taken in ``order`` (the split CSV's lines, see :func:`read_split_csv`);
    those at ``final_step`` are kept; the second half of them (from ``int(0.5 * n)``) is test;
    the positions of the first half are shuffled with ``random.Random(0)``, and the first
    ``int(0.8 * half)`` are train, the rest val. A row listed twice (the published CSVs list
    row 0 twice) gets each split it falls in, in that loader; here it keeps the later of
    train, val, test, so that val and test hold what the papers' val and test hold.

    Args:
        order: the split CSV's row numbers.
        steps: each row's step (by row number).
        final_step: the step of the checkpoint the papers use.

    Returns:
        ``{row: split}`` for the rows at ``final_step``.
    """
    final = [row for row in order if steps[row] == final_step]
    half = int(NFN_TEST_FROM * len(final))
    positions = list(range(half))
    random.Random(NFN_SEED).shuffle(positions)
    cut = int(NFN_TRAIN_SHARE * half)
    splits = {final[p]: "train" for p in positions[:cut]}
    splits.update({final[p]: "val" for p in positions[cut:]})
    splits.update(dict.fromkeys(final[half:], "test"))
    return splits


def _network_splits(
    index: Sequence[tuple[str, Any]], rows: dict[int, str]
) -> tuple[dict[str, str], int]:
    """Each network's split (that of its final row), and how many had none (put in train)."""
    splits: dict[str, str] = {}
    for row, (key, _) in enumerate(index):
        if row in rows:
            splits[key] = rows[row]
    outside = {key for key, _ in index} - set(splits)
    splits.update(dict.fromkeys(outside, "train"))
    return splits, len(outside)


def _fetch_split_csv(
    client: httpx2.Client, url: str, work: Path, progress: bool
) -> tuple[Path, str]:
    dest = work / "split.csv"
    got = download(url, dest, client=client, progress=progress, max_bytes=SPLIT_CSV_MAX_BYTES)
    return got.path, mirrored(url)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _nfn_record(
    csv_path: Path, url: str, fetched_from: str, streamed: _Streamed
) -> tuple[dict[str, str], dict[str, Any]]:
    order = read_split_csv(csv_path, streamed.rows_total, fetched_from)
    steps = [step for _, step in streamed.index]
    rows = nfn_splits(order, steps)
    if not rows:
        raise SourceContentError(
            f"{fetched_from} splits the rows at step {NFN_FINAL_STEP}, but metrics.csv.gz has "
            "none; it belongs to another zoo: pass no split CSV for this one"
        )
    splits, outside = _network_splits(streamed.index, rows)
    if outside:
        logger.warning(
            "%d networks have no checkpoint at step %d, which the split CSV's rule uses; "
            "they go to train",
            outside,
            NFN_FINAL_STEP,
        )
    final = [row for row in order if streamed.index[row][1] == NFN_FINAL_STEP]
    record = {
        "rule": "split CSV of the neural-functional papers (arXiv:2302.14040)",
        "csv_header_read_as_row_0": len(order) == streamed.rows_total + 1,
        "final_rows_listed_twice": len(final) - len(set(final)),
        "csv_url": url,
        "csv_fetched_from": fetched_from,
        "csv_sha256": _sha256(csv_path),  # no checksum is published: the bytes used
        "csv_rows": len(order),
        "final_step": NFN_FINAL_STEP,
        "test_from": NFN_TEST_FROM,
        "train_share_of_rest": NFN_TRAIN_SHARE,
        "shuffle": f"random.Random({NFN_SEED})",
        "networks_without_final_step": outside,
    }
    return splits, record


# -- fetch ------------------------------------------------------------------------------------


def _archive_name(url: str) -> tuple[str, str]:
    """``(file name, dataset name)`` of a ``.tar.xz`` URL."""
    name = unquote(PurePosixPath(urlsplit(url).path).name)
    stem = next((name[: -len(s)] for s in _SUFFIXES if name.endswith(s)), "")
    if not _SAFE_NAME.fullmatch(stem):
        raise InvalidOptionError(
            f"{url} does not name a .tar.xz archive (such as cifar10.tar.xz); pass the URL of "
            "one of the Small CNN Zoo's archives"
        )
    return name, stem


def _work_folder(out: Path) -> Path:
    work = out.parent / f".{out.name}.stream"
    if work.is_symlink():
        raise UnsafePathError(
            f"{work} (the work folder of {out}) is a link; weightzoo never follows one out of "
            "the output's folder: remove the link and rerun"
        )
    shutil.rmtree(work, ignore_errors=True)  # left by a killed run: a stream never resumes
    work.mkdir(parents=True)
    return work


def _verified(streamed: _Streamed) -> str:
    if streamed.checksum_checked:
        return f"the checksum of the whole file ({streamed.checksum}, from x-goog-hash)"
    if not streamed.complete:
        return (
            "nothing: the stream was closed after the rows needed, so the md5 of the whole "
            "file could not be checked"
        )
    return "nothing: the server sent no md5 (x-goog-hash), and verify=False accepted that"


def _provenance(
    url: str, source: str, name: str, streamed: _Streamed, extra: dict[str, Any]
) -> dict[str, Any]:
    return {
        "source": "small-cnn-zoo",
        "citation": CITATION,
        "url": url,
        "fetched_from": source,
        "file": name,
        "size": streamed.size,
        "checksum": streamed.checksum,
        "checksum_from": "x-goog-hash" if streamed.checksum else None,
        "verified": _verified(streamed),
        "checksum_checked": streamed.checksum_checked,
        "complete": streamed.complete,
        "bytes_read": streamed.bytes_read,
        "members": list(streamed.members),
        "rows_total": streamed.rows_total,
        "rows_read": streamed.rows_kept,
        **extra,
    }


def fetch_small_cnn_zoo(
    url: str,
    out: Path,
    *,
    split_csv_url: str | None = None,
    models: int | None = None,
    progress: bool = True,
    verify: bool = True,
) -> Path:
    """Stream one Small CNN Zoo ``tar.xz`` and convert it into a zoo at ``out``.

    Args:
        url: the archive's URL (``WEIGHTZOO_HTTP_MIRROR`` applies).
        out: the zoo directory to create (must not exist, or be empty); its ``source.json``
            records the URL, the md5 and what was verified.
        split_csv_url: a split CSV of the neural-functional papers for this dataset (see the
            module's documentation); ``None``: weightzoo's split rule.
        models: only the first ``models`` networks (``None``: all).
        progress: show a progress bar in bytes, then one in networks.
        verify: refuse an archive sent without an md5 (``x-goog-hash``) after its first
            bytes; ``False`` accepts it unchecked, and ``source.json`` says so.

    Returns:
        ``out``.

    Raises:
        SourceError: and its subclasses, for the transfer (a cut stream, 404, an HTML page
            instead of the archive, no md5 to check, an md5 mismatch, a split CSV that does
            not fit).
        UnsafeArchiveError: for a hostile member (a link, a device, ``..``, a duplicate, a bomb,
            headers past :data:`HEADER_BYTES`).
        UnreadableFileError: for a damaged archive or files that are not the zoo's.
        InvalidOptionError: for an occupied ``out``, a URL that is no ``.tar.xz``, or a bad
            ``models``.
    """
    from weightzoo.importers._common import SPLIT_FRACTIONS, SPLIT_SEED
    from weightzoo.importers.cnn_zoo import check_models, import_cnn_zoo

    check_models(models)
    out = Path(out)
    _check_out(out)
    source = mirrored(check_http_url(url, "the URL"))
    name, dataset = _archive_name(url)
    work = _work_folder(out)
    try:
        with new_client() as client:
            split_csv = None
            if split_csv_url:
                split_csv = _fetch_split_csv(client, split_csv_url, work, progress)
            folder = work / "src" / dataset
            streamed, restarts = _stream(client, source, name, folder, models, progress, verify)
        if streamed.rows_kept < streamed.rows_total:
            _cut_metrics(folder / METRICS, streamed.rows_kept)
        splits: dict[str, str] | None = None
        rule: dict[str, Any] = {
            "rule": "weightzoo",
            "seed": SPLIT_SEED,
            "fractions": list(SPLIT_FRACTIONS),
        }
        if split_csv is not None and split_csv_url:
            splits, rule = _nfn_record(split_csv[0], split_csv_url, split_csv[1], streamed)
        with staging(out) as tmp:
            manifest = import_cnn_zoo(folder, tmp, models=models, splits=splits, progress=progress)
            rule["counts"] = dict(manifest.split_counts)
            extra = {"restarts": restarts, "models": models, "networks": manifest.num_models}
            record = _provenance(url, source, name, streamed, {**extra, "split": rule})
            text = json.dumps(record, indent=1, ensure_ascii=False) + "\n"
            (tmp / PROVENANCE_NAME).write_text(text, encoding="utf-8")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out
