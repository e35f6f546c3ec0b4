"""Reading chosen members of a remote zip through HTTP range requests.

A zip keeps its table of contents (the central directory) at its end, so a server that answers
range requests lets :class:`RemoteFile` hand :class:`zipfile.ZipFile` a seekable view of the
remote file: opening it reads the last bytes (the end record and the central directory), and
each member is then one request for exactly its extent (local header, name, extra field and
data), announced with :meth:`RemoteFile.plan` (see :func:`member_extent`). Every request
carries ``If-Range`` with the validator that :func:`probe` saw, so a file replaced while it is
read is noticed (the server answers the whole file instead of the range: :class:`RemoteChanged`)
and never mixed; zipfile checks each member's CRC-32 on read.

Bounds: :func:`open_zip` reads the file's last bytes once, checks the end record
(:func:`weightzoo.sources.archive.zip_end`) before zipfile reads the central directory, and
serves zipfile's reads of those bytes from memory; no single read may ask for more than
:attr:`RemoteFile.max_read` bytes (zipfile allocates a read's size before any byte arrives).
Each stream keeps the rate floor of :class:`weightzoo.sources.http.Pace`, and a broken or short
range is retried at most :data:`MEMBER_RETRIES` times per member (and as often for the
directory), however few bytes each attempt brings.

fsspec's HTTP filesystem does the same, but needs aiohttp, which weightzoo does not install;
this reader is a small layer over the httpx2 client that :mod:`weightzoo.sources.http` uses.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx2

from weightzoo.errors import SourceConnectionError, UnreadableFileError
from weightzoo.sources import archive
from weightzoo.sources.http import (
    Checksum,
    Pace,
    check_encoding,
    check_served,
    check_status,
    goog_hash,
    header_int,
    request_failed,
    validator,
)

__all__ = ["Probe", "RemoteChanged", "RemoteFile", "member_extent", "open_zip", "probe"]

logger = logging.getLogger(__name__)

# What an unplanned read fetches at least (the end record, the central directory).
READ_AHEAD = 16 << 10
# A member's local extra field may be longer than its copy in the central directory (the
# Info-ZIP timestamp and Unix fields are); read this much beyond the directory's sizes.
EXTRA_SLACK = 256
_LOCAL_HEADER = 30
#: Broken or short range answers tolerated per member (and for the directory), in all.
MEMBER_RETRIES = 8
#: The largest single read before the directory's size is known and checked.
MAX_READ = 64 << 20
_RERUN = "check the network and rerun the same command"


class RemoteChanged(Exception):
    """The remote file changed while it was read (the server ignored the range's If-Range)."""


@dataclass(frozen=True)
class Probe:
    """What a ``HEAD`` request tells about a remote file.

    Attributes:
        url: the URL after redirects (the one to read ranges from).
        size: the file's size (``None``: not announced).
        ranges: whether the server announces byte ranges (``Accept-Ranges: bytes``).
        validator: the strong ETag or Last-Modified, for ``If-Range``.
        content_type: the announced media type.
        checksum: a checksum in the headers (``x-goog-hash``), if any.
    """

    url: str
    size: int | None
    ranges: bool
    validator: str | None
    content_type: str
    checksum: Checksum | None


def probe(client: httpx2.Client, url: str, *, name: str) -> Probe:
    """``HEAD`` ``url``: its size, whether it serves ranges, its validator.

    Args:
        client: the HTTP client.
        url: the file's URL.
        name: the file's name (to judge its Content-Type, and for messages).

    Raises:
        SourceNotFoundError: 404 or 410.
        SourceContentError: an HTML page or JSON announced instead of the file.
        SourceConnectionError: if the server cannot be reached.
    """
    try:
        response = client.head(url)
    except (httpx2.RequestError, httpx2.InvalidURL) as exc:
        raise request_failed(exc, url, name, _RERUN) from exc
    if response.status_code in (405, 501):  # no HEAD: download the whole file instead
        return Probe(url, None, False, None, "", None)
    check_status(response, url, name)
    check_encoding(response, url, name)
    content_type = response.headers.get("content-type", "")
    check_served(url, name, content_type)
    return Probe(
        url=str(response.url),
        size=header_int(response.headers, "content-length", url),
        ranges=response.headers.get("accept-ranges", "").strip().lower() == "bytes",
        validator=validator(response.headers),
        content_type=content_type,
        checksum=goog_hash(response.headers),
    )


def member_extent(info: zipfile.ZipInfo) -> tuple[int, int]:
    """The byte range ``[start, end)`` that reading a member needs (with a little slack)."""
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    try:
        name_bytes = len(info.orig_filename.encode(encoding))
    except UnicodeEncodeError:
        name_bytes = len(info.orig_filename.encode("utf-8"))
    start = info.header_offset
    length = _LOCAL_HEADER + name_bytes + len(info.extra) + info.compress_size + EXTRA_SLACK
    return start, start + length


class RemoteFile(io.RawIOBase):
    """A read-only, seekable file over HTTP range requests (for :class:`zipfile.ZipFile`).

    A read continues the open response while it is sequential; otherwise it opens a new range:
    the window announced with :meth:`plan` if the position lies in it, else
    :data:`READ_AHEAD` bytes or the read's size. Bytes handed to :meth:`keep` are served from
    memory. A broken connection is retried from the current position, at most
    :data:`MEMBER_RETRIES` times between two :meth:`plan` calls.

    Attributes:
        requests: range requests made.
        received: body bytes received.
        max_read: the most bytes one :meth:`read` may ask for (larger: refused before any
            allocation).
    """

    def __init__(
        self,
        client: httpx2.Client,
        target: Probe,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        if target.size is None:
            raise ValueError("a remote file needs a known size")
        super().__init__()
        self._client = client
        self._target = target
        self._size = target.size
        self._on_bytes = on_bytes
        self._pos = 0
        self._window: tuple[int, int] | None = None
        self._response: httpx2.Response | None = None
        self._chunks: Iterator[bytes] = iter(())
        self._pending = b""
        self._stream_pos = 0
        self._stream_end = 0
        self._pace: Pace | None = None
        self._retries = MEMBER_RETRIES
        self._kept: tuple[int, bytes] = (0, b"")
        self.requests = 0
        self.received = 0
        self.max_read = MAX_READ

    @property
    def name(self) -> str:
        """The remote URL (zipfile shows it in its messages)."""
        return self._target.url

    def readable(self) -> bool:  # noqa: D102 - io protocol
        return True

    def seekable(self) -> bool:  # noqa: D102 - io protocol
        return True

    def tell(self) -> int:  # noqa: D102 - io protocol
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:  # noqa: D102 - io protocol
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def plan(self, start: int, end: int) -> None:
        """Announce that the next reads cover ``[start, end)``: fetched as one range.

        Each member's reads get a fresh allowance of :data:`MEMBER_RETRIES` retries.
        """
        self._window = (start, min(end, self._size))
        self._retries = MEMBER_RETRIES

    def keep(self, start: int, data: bytes) -> None:
        """Serve reads of ``[start, start + len(data))`` from ``data`` (the file's tail)."""
        self._kept = (start, bytes(data))

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (the rest of the file for a negative size), bounded.

        Raises:
            UnreadableFileError: for a read larger than :attr:`max_read`.
        """
        want = self._size - self._pos if size is None or size < 0 else size
        if want > self.max_read:
            raise UnreadableFileError(
                f"reading {self.name} asked for {want} bytes at once (at byte {self._pos}), "
                f"more than the {self.max_read} weightzoo reads in one piece; the zip is "
                "damaged or hostile: report it to its publisher"
            )
        return super().read(want)

    def readinto(self, buffer: Any) -> int:  # noqa: D102 - io protocol
        view = memoryview(buffer).cast("B")
        want = max(0, min(len(view), self._size - self._pos))
        filled = 0
        while filled < want:
            chunk = self._from_kept(want - filled) or self._take(want - filled)
            view[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
            self._pos += len(chunk)
        return filled

    def _from_kept(self, wanted: int) -> bytes:
        start, data = self._kept
        if start <= self._pos < start + len(data):
            return data[self._pos - start : self._pos - start + wanted]
        return b""

    def close(self) -> None:  # noqa: D102 - io protocol
        self._drop_stream()
        super().close()

    # -- the open range -------------------------------------------------------------------

    def _take(self, wanted: int) -> bytes:
        while True:
            try:
                if self._response is None or self._stream_pos != self._pos:
                    self._open(wanted)
                if not self._pending:
                    self._pending = next(self._chunks, b"")
                    if not self._pending:
                        raise httpx2.RemoteProtocolError("the range ended early")
                chunk, self._pending = self._pending[:wanted], self._pending[wanted:]
                self._stream_pos += len(chunk)
                if self._stream_pos >= self._stream_end and not self._pending:
                    self._drop_stream()
                return chunk
            except httpx2.TransportError as exc:
                self._drop_stream()
                self._retry(exc)
            except (httpx2.RequestError, httpx2.InvalidURL) as exc:
                self._drop_stream()
                raise request_failed(exc, self._target.url, "a range of the zip", _RERUN) from exc

    def _retry(self, exc: Exception) -> None:
        """Count a broken or short range against the member's allowance."""
        if self._retries <= 0:
            raise SourceConnectionError(
                f"the ranges of {self._target.url} broke or came short {MEMBER_RETRIES + 1} "
                f"times for one member (last at byte {self._pos}: {exc}); the server or the "
                "network is unreliable: rerun the same command later"
            ) from exc
        self._retries -= 1
        logger.warning("%s: %s; retrying the range", self._target.url, exc)

    def _open(self, wanted: int) -> None:
        self._drop_stream()
        start = self._pos
        window = self._window
        if window is not None and window[0] <= start < window[1]:
            end = window[1]
        else:
            end = start + max(wanted, READ_AHEAD)
        end = min(end, self._size)
        headers = {"Range": f"bytes={start}-{end - 1}"}
        if self._target.validator:
            headers["If-Range"] = self._target.validator
        request = self._client.build_request("GET", self._target.url, headers=headers)
        response = self._client.send(request, stream=True)
        self.requests += 1
        if response.status_code != 206:
            response.close()
            check_status(response, self._target.url, "a range of the zip")
            check_encoding(response, self._target.url, "a range of the zip")
            raise RemoteChanged(
                f"{self._target.url} answered {response.status_code} instead of the range "
                f"{start}-{end - 1}: the file changed (or the server stopped serving ranges)"
            )
        expected = f"bytes {start}-{end - 1}/{self._size}"
        if response.headers.get("content-range", "").strip() != expected:
            response.close()
            raise RemoteChanged(
                f"{self._target.url} answered the range {response.headers.get('content-range')!r}"
                f" instead of {expected!r}"
            )
        try:
            check_encoding(response, self._target.url, "a range of the zip")
        except BaseException:
            response.close()
            raise
        self._response = response
        self._pace = Pace(self._target.url, "a range of the zip", _RERUN)
        self._chunks = self._counted(response.iter_raw())
        self._stream_pos, self._stream_end = start, end

    def _counted(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            if self._pace is not None:
                self._pace.add(len(chunk))
            self.received += len(chunk)
            if self._on_bytes is not None:
                self._on_bytes(len(chunk))
            yield chunk

    def _drop_stream(self) -> None:
        if self._response is not None:
            self._response.close()
        self._response = None
        self._chunks = iter(())
        self._pending = b""


def open_zip(remote: RemoteFile, source: str | None = None) -> zipfile.ZipFile:
    """Open a remote zip: its tail is read and checked, then zipfile reads the directory.

    Args:
        remote: the remote file.
        source: how to name it in messages (default: its URL).

    Raises:
        UnreadableFileError: if the remote file is not a zip.
        UnsafeArchiveError: for a central directory larger than its bound
            (:func:`weightzoo.sources.archive.directory_limit`).
    """
    size = remote.seek(0, io.SEEK_END)
    start = remote.seek(max(0, size - archive.TAIL_BYTES))
    tail = remote.read(size - start)
    end = archive.zip_end(tail, size, source or remote.name)
    remote.keep(start, tail)
    remote.max_read = max(MAX_READ, end.size)  # zipfile reads the directory in one piece
    remote.seek(0)
    try:
        return zipfile.ZipFile(remote)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise UnreadableFileError(
            f"{remote.name} is not a readable zip ({exc}); the file is damaged or is not a zip: "
            "check the record's file name"
        ) from exc
