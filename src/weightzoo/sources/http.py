"""One download path for plain HTTP(S): resumable, verified and bounded.

:func:`download` writes ``DEST.part`` beside ``DEST`` and renames it into place only once its
size and checksum verify. A download that was killed resumes from the bytes on disk with a
``Range`` request guarded by ``If-Range`` (the strong ETag, else the Last-Modified date that the
first response carried, kept in ``DEST.part.json``); a server that ignores the range, or a
remote file that changed since, answers with the whole file and the download restarts from
byte 0. A connection cut mid-way is resumed a few times at once, then reported with the bytes
kept on disk. The part file and its state are opened without following links.

Bounds: a body is never larger than the size its listing promises, else than ``max_bytes``,
else than :data:`DEFAULT_MAX_BYTES` (64 GiB); a JSON answer (a records listing) is read to at
most :data:`JSON_MAX_BYTES` *decoded* bytes and parsed strictly (:func:`read_json`); a redirect
answer's body to at most :data:`REDIRECT_BODY_BYTES`. Every body must keep an average rate of
:data:`MIN_RATE` bytes/s over each :data:`RATE_WINDOW` seconds (:class:`Pace`), so a server that
trickles bytes ends in an error rather than holding the client for hours. A file download
refuses any ``Content-Encoding`` other than ``identity`` (weightzoo asks for the bytes as
stored), and numbers in headers have at most 20 digits. Every failure of the HTTP client
(redirect loops, redirects to other schemes, undecodable bodies, resets) becomes one named
:class:`~weightzoo.errors.SourceError` (:func:`request_failed`).

Checksums: Zenodo publishes ``md5:<hex>`` per file (:mod:`weightzoo.sources.zenodo`); Google
Cloud Storage sends ``x-goog-hash: crc32c=<base64>, md5=<base64>`` with every object. md5 is
always checked; crc32c only for an object without an md5 (composite objects), and only where
the ``google-crc32c`` or ``crc32c`` package is installed (neither is a dependency of weightzoo).

Endpoints are read at call time: ``WEIGHTZOO_ZENODO_ENDPOINT`` (default ``https://zenodo.org``)
and ``WEIGHTZOO_HTTP_MIRROR``, a base URL that replaces the scheme and host of every plain HTTP
source (a bucket URL), e.g. a local mirror of the published files.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx2

from weightzoo.errors import (
    InvalidOptionError,
    SourceChecksumError,
    SourceConnectionError,
    SourceContentError,
    SourceError,
    SourceNotFoundError,
    UnsafePathError,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "Checksum",
    "Downloaded",
    "Pace",
    "check_encoding",
    "check_served",
    "check_status",
    "discard_body",
    "download",
    "goog_hash",
    "header_int",
    "mirrored",
    "new_client",
    "read_json",
    "request_failed",
    "same_origin",
    "zenodo_endpoint",
]

logger = logging.getLogger(__name__)

ZENODO_ENDPOINT_ENV = "WEIGHTZOO_ZENODO_ENDPOINT"
HTTP_MIRROR_ENV = "WEIGHTZOO_HTTP_MIRROR"
DEFAULT_ZENODO_ENDPOINT = "https://zenodo.org"
PART_SUFFIX = ".part"
STATE_SUFFIX = ".part.json"
CHUNK_BYTES = 1 << 20
RETRIES = 3
TIMEOUT = httpx2.Timeout(60.0, connect=15.0)
# Enough of a body to tell a file from an HTML page or an error JSON.
SNIFF_BYTES = 512
#: The most bytes a download of unknown size (no ``size``, no ``max_bytes``) may write.
DEFAULT_MAX_BYTES = 64 << 30
#: The most decoded bytes of a JSON answer; Zenodo's largest listings are a few MB.
JSON_MAX_BYTES = 16 << 20
#: The most body bytes of a redirect answer (its body is read and dropped).
REDIRECT_BODY_BYTES = 64 << 10
#: The slowest average rate (bytes/s) a body may keep over each window of RATE_WINDOW seconds.
MIN_RATE = 1 << 10
RATE_WINDOW = 60.0
# Numbers in headers: 20 digits hold any 64-bit size; int() of thousands of digits is costly.
_NUMBER = r"\d{1,20}"
_CONTENT_RANGE = re.compile(rf"\s*bytes\s+({_NUMBER})-({_NUMBER})/({_NUMBER}|\*)\s*")
_IDENTITY = ("", "identity")

# The first bytes of the file formats that published zoos come in, by file-name suffix.
_MAGIC: dict[str, tuple[bytes, ...]] = {
    ".zip": (b"PK\x03\x04", b"PK\x05\x06"),
    ".npz": (b"PK\x03\x04", b"PK\x05\x06"),
    ".xz": (b"\xfd7zXZ\x00",),
    ".gz": (b"\x1f\x8b",),
    ".tgz": (b"\x1f\x8b",),
    ".bz2": (b"BZh",),
    ".h5": (b"\x89HDF\r\n\x1a\n",),
    ".hdf5": (b"\x89HDF\r\n\x1a\n",),
    ".npy": (b"\x93NUMPY",),
}
_JSON_SUFFIXES = (".json", ".jsonl")
_HTML_SUFFIXES = (".html", ".htm")


# -- configuration ----------------------------------------------------------------------------


def check_http_url(url: str, what: str) -> str:
    """``url`` if it is an absolute ``http(s)`` URL, else :class:`InvalidOptionError`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidOptionError(
            f"{what} {url!r} is not an http(s) URL; set it to a base URL such as "
            f"{DEFAULT_ZENODO_ENDPOINT}"
        )
    return url


def zenodo_endpoint(endpoint: str | None = None) -> str:
    """The Zenodo endpoint: the argument, else ``WEIGHTZOO_ZENODO_ENDPOINT``, else zenodo.org."""
    value = endpoint or os.environ.get(ZENODO_ENDPOINT_ENV) or DEFAULT_ZENODO_ENDPOINT
    return check_http_url(value.strip(), ZENODO_ENDPOINT_ENV).rstrip("/")


def mirrored(url: str) -> str:
    """``url`` with its scheme and host replaced by ``WEIGHTZOO_HTTP_MIRROR`` (when set).

    The mirror may carry a path prefix: with ``WEIGHTZOO_HTTP_MIRROR=http://m.local/pub``,
    ``https://storage.googleapis.com/b/o.tar.xz`` becomes ``http://m.local/pub/b/o.tar.xz``.
    """
    mirror = os.environ.get(HTTP_MIRROR_ENV, "").strip()
    if not mirror:
        return url
    base = urlsplit(check_http_url(mirror, HTTP_MIRROR_ENV))
    parts = urlsplit(url)
    path = base.path.rstrip("/") + parts.path
    return urlunsplit((base.scheme, base.netloc, path, parts.query, ""))


def same_origin(url: str, base: str) -> bool:
    """Whether ``url`` has the scheme, host and port of ``base``."""
    one, two = urlsplit(url), urlsplit(base)
    try:
        return (one.scheme.lower(), one.hostname, one.port) == (
            two.scheme.lower(),
            two.hostname,
            two.port,
        )
    except ValueError:  # a port that is not a number
        return False


def new_client() -> httpx2.Client:
    """An HTTP client that follows redirects and asks for the bytes as stored (no encoding).

    The body of each redirect answer (which the client reads and drops) is bounded by
    :data:`REDIRECT_BODY_BYTES` and by the rate floor of :class:`Pace`.
    """
    from weightzoo import __version__

    return httpx2.Client(
        follow_redirects=True,
        timeout=TIMEOUT,
        headers={"User-Agent": f"weightzoo/{__version__}", "Accept-Encoding": "identity"},
        event_hooks={"response": [_bound_redirect_body]},
    )


def _bound_redirect_body(response: httpx2.Response) -> None:
    if response.has_redirect_location:
        response.stream = _BoundedStream(response.stream, str(response.url))


class _BoundedStream(httpx2.SyncByteStream):
    """A redirect answer's body: at most REDIRECT_BODY_BYTES, at the rate floor."""

    def __init__(self, stream: Any, url: str) -> None:
        self._stream, self._url = stream, url

    def __iter__(self) -> Iterator[bytes]:
        pace, size = Pace(self._url, "a redirect answer", "rerun later"), 0
        for chunk in self._stream:
            size += len(chunk)
            if size > REDIRECT_BODY_BYTES:
                raise SourceContentError(
                    f"{self._url} answered a redirect with a body of more than "
                    f"{REDIRECT_BODY_BYTES} bytes; the server is broken or hostile: check the "
                    f"URL, {ZENODO_ENDPOINT_ENV} and {HTTP_MIRROR_ENV}"
                )
            pace.add(len(chunk))
            yield chunk

    def close(self) -> None:
        self._stream.close()


# -- bounds on what a server sends ------------------------------------------------------------


class Pace:
    """A floor on a body's rate: below :data:`MIN_RATE` bytes/s over a window, it fails.

    The rate is averaged over consecutive windows of :data:`RATE_WINDOW` seconds from the
    first call, so a server that trickles a byte now and then (each within the client's read
    timeout) cannot hold a transfer open for hours. The clock is read at each :meth:`add`; the
    client's read timeout bounds the wait between two.

    Args:
        url: the URL the body comes from (for the message).
        what: what the body is (``"the listing"``, ``"a.zip"``).
        fix: what to do, for the message (``"rerun later"``).
    """

    def __init__(self, url: str, what: str, fix: str) -> None:
        self.url, self.what, self.fix = url, what, fix
        self.bytes = 0
        self._since = time.monotonic()
        self._before = 0

    def add(self, count: int) -> None:
        """Count ``count`` more bytes received.

        Raises:
            SourceConnectionError: when the last window's average rate is below the floor.
        """
        self.bytes += count
        now = time.monotonic()
        span = now - self._since
        if span < RATE_WINDOW:
            return
        got = self.bytes - self._before
        if got < MIN_RATE * span:
            raise SourceConnectionError(
                f"{self.url} sent {got} bytes of {self.what} in {span:.0f} s, below the floor of "
                f"{MIN_RATE} bytes/s; the server or the network is stalling: {self.fix}"
            )
        self._since, self._before = now, self.bytes


def header_int(headers: httpx2.Headers, name: str, url: str) -> int | None:
    """The header ``name`` as a number (``None``: absent or not a number).

    Raises:
        SourceContentError: for a number of more than 20 digits (no file is that large).
    """
    text = headers.get(name, "").strip()
    if re.fullmatch(_NUMBER, text):
        return int(text)
    if text.isdigit():
        raise SourceContentError(
            f"{url} announces the {name} {text[:24]}... ({len(text)} digits), larger than any "
            "file; the server or a proxy on the way is broken: retry later"
        )
    return None


def check_encoding(response: httpx2.Response, url: str, name: str) -> None:
    """Refuse a file served with a ``Content-Encoding`` (weightzoo asks for the bytes as stored).

    Raises:
        SourceContentError: naming the encoding.
    """
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding not in _IDENTITY:
        raise SourceContentError(
            f"{url} served {name} with Content-Encoding {encoding[:40]!r} although weightzoo "
            "asked for the bytes as stored (identity); its size and checksum cannot be checked: "
            f"download it by hand, or set {HTTP_MIRROR_ENV} to a plain mirror"
        )


def request_failed(
    exc: httpx2.RequestError | httpx2.InvalidURL, url: str, what: str, fix: str
) -> SourceError:
    """The one-line error for a request that the HTTP client could not complete.

    Args:
        exc: what the client raised (a redirect loop, a redirect to another scheme, a body
            that does not decode, a reset or refused connection, a timeout).
        url: the URL asked for.
        what: what was asked for (``"Zenodo record 5"``, ``"a.zip"``).
        fix: what to do (``"check the network and rerun"``).

    Returns:
        :class:`SourceContentError` for answers that cannot be followed or decoded,
        :class:`SourceConnectionError` for the connection itself.
    """
    detail = f"{type(exc).__name__}: {str(exc)[:200]}"
    if isinstance(exc, httpx2.TooManyRedirects):
        return SourceContentError(
            f"{url} redirected the request for {what} in a loop (more than 20 redirects); the "
            f"server is misconfigured: {fix}"
        )
    if isinstance(exc, (httpx2.UnsupportedProtocol, httpx2.InvalidURL)):
        return SourceContentError(
            f"{url} sent the request for {what} to a URL that is not http(s) ({detail}); "
            f"weightzoo follows http(s) only: {fix}"
        )
    if isinstance(exc, httpx2.DecodingError):
        return SourceContentError(
            f"{url} sent {what} in a Content-Encoding that does not decode ({detail}); the "
            f"server or a proxy on the way is broken: {fix}"
        )
    return SourceConnectionError(
        f"cannot complete the request to {url} for {what} ({detail}); {fix}"
    )


def read_json(
    response: httpx2.Response, url: str, what: str, fix: str, *, limit: int | None = None
) -> Any:
    """Read and parse a streamed JSON answer, bounded in decoded bytes, rate and depth.

    Args:
        response: a response opened with ``stream=True`` (any Content-Encoding is decoded, and
            counted after decoding).
        url: its URL (for messages).
        what: what it is (``"the listing of record 5"``).
        fix: what to do when it is refused.
        limit: the most decoded bytes (default :data:`JSON_MAX_BYTES`).

    Returns:
        The parsed value (NaN, infinities and non-finite numbers are refused).

    Raises:
        SourceContentError: for a body past the bound, one that does not decode, or one that
            is not strict JSON (too deep, not UTF-8, numbers out of range).
        SourceConnectionError: for a body cut or trickled below :class:`Pace`'s floor.
    """
    bound = JSON_MAX_BYTES if limit is None else limit
    pace, parts, size = Pace(url, what, fix), [], 0
    try:
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > bound:
                raise SourceContentError(
                    f"{url} sent more than {bound} bytes (decoded) for {what}; no listing is "
                    f"that large: {fix}"
                )
            pace.add(len(chunk))
            parts.append(chunk)
    except (httpx2.RequestError, httpx2.InvalidURL) as exc:
        raise request_failed(exc, url, what, fix) from exc
    try:
        return json.loads(
            b"".join(parts), parse_constant=_no_constant, parse_float=_finite, parse_int=_integer
        )
    except (RecursionError, ValueError) as exc:
        kind = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:120]
        media = response.headers.get("content-type", "none")[:60]
        raise SourceContentError(
            f"{url} did not answer strict JSON for {what} (Content-Type {media}: {kind}); {fix}"
        ) from None


def discard_body(response: httpx2.Response, limit: int = REDIRECT_BODY_BYTES) -> None:
    """Read and drop a small body (an error page), so its connection can serve the next request.

    A body past ``limit`` bytes, trickled below :class:`Pace`'s floor or cut is simply dropped
    with its connection; nothing is raised.
    """
    pace, size = Pace(str(response.url), "an error answer", "rerun later"), 0
    try:
        for chunk in response.iter_raw():
            size += len(chunk)
            pace.add(len(chunk))
            if size > limit:
                break
    except (httpx2.RequestError, SourceConnectionError):
        pass
    finally:
        response.close()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:24]} is out of range")
    return value


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > 20:
        raise ValueError(f"the integer {text[:24]}... has {len(text)} digits")
    return int(text)


# -- checksums --------------------------------------------------------------------------------


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


class _Crc32c:
    """crc32c from whichever of ``google_crc32c`` and ``crc32c`` is installed."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self._value = 0

    def update(self, data: bytes, /) -> None:
        if self._module.__name__ == "google_crc32c":
            self._value = self._module.extend(self._value, data)
        else:
            self._value = self._module.crc32c(data, self._value)

    def hexdigest(self) -> str:
        return f"{self._value:08x}"


def _crc32c_module() -> Any | None:
    for name in ("google_crc32c", "crc32c"):
        with contextlib.suppress(ImportError):
            return __import__(name)
    return None


@dataclass(frozen=True)
class Checksum:
    """A published checksum of a whole file.

    Attributes:
        algorithm: ``"md5"`` or ``"crc32c"``.
        hexdigest: the expected digest, lower-case hex.
    """

    algorithm: str
    hexdigest: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"

    @classmethod
    def parse(cls, text: str, where: str) -> Checksum:
        """Parse ``md5:<32 hex digits>`` (Zenodo's form); ``where`` names the listing."""
        algorithm, _, digest = text.strip().partition(":")
        if algorithm.lower() == "md5" and re.fullmatch(r"[0-9a-fA-F]{32}", digest):
            return cls("md5", digest.lower())
        raise SourceContentError(
            f"{where} gives the checksum {text!r}, not md5:<32 hex digits>; weightzoo cannot "
            "verify the file: report the record to its maintainers"
        )

    def hasher(self) -> _Hasher | None:
        """A fresh hash object for the algorithm (``None``: crc32c with no package for it)."""
        if self.algorithm == "md5":
            return hashlib.md5(usedforsecurity=False)
        module = _crc32c_module()
        return _Crc32c(module) if module is not None else None


def goog_hash(headers: httpx2.Headers) -> Checksum | None:
    """The checksum in Google Cloud Storage's ``x-goog-hash`` headers: md5, else crc32c.

    crc32c is returned only where a crc32c package is installed (see the module's
    documentation); ``None`` when the headers carry neither usable hash.
    """
    found: dict[str, str] = {}
    for value in headers.get_list("x-goog-hash"):
        for item in value.split(","):
            name, _, encoded = item.strip().partition("=")
            with contextlib.suppress(binascii.Error, ValueError):
                found[name.lower()] = base64.b64decode(encoded, validate=True).hex()
    if len(found.get("md5", "")) == 32:
        return Checksum("md5", found["md5"])
    if len(found.get("crc32c", "")) == 8 and _crc32c_module() is not None:
        return Checksum("crc32c", found["crc32c"])
    return None


# -- what a server answered -------------------------------------------------------------------


def check_status(response: httpx2.Response, url: str, what: str) -> None:
    """Raise the named error for an HTTP error status; ``what`` names the thing asked for.

    Raises:
        SourceNotFoundError: 404 (not found) or 410 (withdrawn).
        SourceConnectionError: 429 or 5xx (the source is busy or down: retry later).
        SourceError: 401/403 (restricted) and any other error status.
    """
    status = response.status_code
    if status < 400:
        return
    if status in (404, 410):
        why = "has been withdrawn (410 Gone)" if status == 410 else "was not found (404)"
        raise SourceNotFoundError(
            f"{what} at {url} {why}; check the record and file name "
            "(`weightzoo fetch zenodo:RECORD` lists a record's files)"
        )
    if status in (401, 403):
        raise SourceError(
            f"{what} at {url} is restricted ({status}); weightzoo fetches open files only: "
            "request access on the record's page and download the file by hand"
        )
    if status == 429 or status >= 500:
        raise SourceConnectionError(
            f"{url} answered {status} {response.reason_phrase} for {what}; the source is busy "
            "or down: rerun the same command later (bytes already received are kept)"
        )
    raise SourceError(f"{url} answered {status} {response.reason_phrase} for {what}; check the URL")


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _describe(head: bytes) -> str:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML page"
    if text.startswith((b"{", b"[")):
        try:
            data = json.loads(head)
        except ValueError:
            return "a JSON document"
        message = data.get("message") if isinstance(data, dict) else None
        return f"a JSON document ({str(message)[:80]!r})" if message else "a JSON document"
    return f"bytes starting {head[:16]!r}"


def check_served(url: str, name: str, content_type: str, head: bytes | None = None) -> None:
    """Refuse an HTML page or an error JSON served in place of the file ``name``.

    Judged from the Content-Type and, where given, the first bytes of the body: a suffix with a
    known signature (``.zip``, ``.xz``, ``.h5`` ...) must start with it; a page or a JSON
    document is accepted only for a file named ``.html`` or ``.json``.

    Raises:
        SourceContentError: naming what was served instead.
    """
    suffix = Path(name).suffix.lower()
    media = _media_type(content_type)
    document = media == "application/json" or media.endswith("+json")
    if head:
        kind = _describe(head)
    else:
        kind = "an HTML page" if media == "text/html" else "a JSON document" if document else ""
    page = media == "text/html" or kind == "an HTML page"
    magic = _MAGIC.get(suffix)
    wrong = (
        (page and suffix not in _HTML_SUFFIXES)
        or (document and suffix not in _JSON_SUFFIXES)
        or (magic is not None and head is not None and not head.startswith(magic))
    )
    if wrong:
        raise SourceContentError(
            f"{url} served {kind} (Content-Type {media or 'none'}) instead of the file {name}; "
            "the file may be restricted, moved or behind a login page: open the URL in a "
            f"browser, or check {ZENODO_ENDPOINT_ENV} / {HTTP_MIRROR_ENV}"
        )


def _content_range(response: httpx2.Response) -> tuple[int, int | None]:
    """``(first byte, total size)`` of a 206 answer's ``Content-Range``."""
    match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", ""))
    if match is None:
        raise SourceContentError(
            f"{response.url} answered 206 with the Content-Range "
            f"{response.headers.get('content-range', '')[:60]!r}, which is not bytes A-B/TOTAL "
            "(at most 20 digits each); the "
            "server or a proxy on the way is broken: retry later or set WEIGHTZOO_HTTP_MIRROR"
        )
    total = match.group(3)
    return int(match.group(1)), None if total == "*" else int(total)


def validator(headers: httpx2.Headers) -> str | None:
    """What ``If-Range`` may carry for this response: a strong ETag, else Last-Modified."""
    etag = headers.get("etag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("last-modified")


# -- download ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Downloaded:
    """A finished, verified download.

    Attributes:
        path: the file (``DEST``).
        size: its size in bytes.
        checksum: the checksum it was verified against (``None``: the source published none,
            only the size was checked).
        resumed_from: bytes kept from an earlier, interrupted attempt (0: from scratch).
        restarts: how often the server made the download start again from byte 0.
    """

    path: Path
    size: int
    checksum: Checksum | None
    resumed_from: int
    restarts: int


def _stored_checksum(state: dict[str, Any] | None) -> Checksum | None:
    text = state.get("checksum") if state else None
    if not isinstance(text, str) or ":" not in text:
        return None
    algorithm, _, digest = text.partition(":")
    return Checksum(algorithm, digest)


class _Cut(Exception):
    """The connection broke after ``received`` bytes of the file were on disk."""

    def __init__(self, received: int, reason: str) -> None:
        super().__init__(reason)
        self.received = received
        self.reason = reason


class _Restart(Exception):
    """The bytes on disk cannot be continued: start again from byte 0."""


_RESUME = "rerun the same command to resume"


def _regular(path: Path) -> bool:
    """Whether ``path`` is a regular file (``False``: absent); a link or other kind is refused."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(mode):
        raise UnsafePathError(
            f"{path} is a link or not a regular file; weightzoo never writes or reads a download "
            "through one: remove it and rerun"
        )
    return True


def _open(path: Path, flags: int) -> int:
    """``os.open`` that never follows a link, and checks it opened a regular file."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePathError(f"{path} is not a regular file; remove it and rerun")
    return fd


def _create(path: Path) -> int:
    """A new, empty file at ``path`` (a regular file there is replaced; nothing else is)."""
    if _regular(path):
        path.unlink()
    return _open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)


class _Transfer:
    """One download, tried (and resumed) until it verifies or fails for good."""

    def __init__(
        self,
        url: str,
        dest: Path,
        size: int | None,
        checksum: Checksum | None,
        client: httpx2.Client,
        progress: bool | None,
        cap: int,
    ) -> None:
        self.url, self.dest, self.size, self.checksum = url, dest, size, checksum
        self.client, self.progress, self.cap = client, progress, cap
        self.part = dest.with_name(dest.name + PART_SUFFIX)
        self.state_path = dest.with_name(dest.name + STATE_SUFFIX)
        self.received = 0
        self.total = size
        self.announced: int | None = None
        self.resumed_from = 0
        self.restarts = 0
        self.first_try = True

    def limit(self) -> int:
        """The most bytes the file may have: the listing's size, else the server's, capped."""
        if self.size is not None:
            return self.size
        return min(self.total, self.cap) if self.total is not None else self.cap

    # state kept beside the part file, so that a later process can resume

    def _load_state(self) -> dict[str, Any] | None:
        if not _regular(self.part) or not _regular(self.state_path):
            return None
        try:
            fd = _open(self.state_path, os.O_RDONLY)
            with os.fdopen(fd, "rb") as fh:
                state = json.loads(fh.read(1 << 16))
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) and state.get("url") == self.url else None

    def _save_state(self, response: httpx2.Response, expected: Checksum | None) -> None:
        state = {
            "url": self.url,
            "validator": validator(response.headers),
            "size": self.total,
            "checksum": str(expected) if expected else None,
        }
        with os.fdopen(_create(self.state_path), "w", encoding="utf-8") as fh:
            fh.write(json.dumps(state))

    def discard(self) -> None:
        """Remove the part file and its state (a fresh start next time)."""
        for path in (self.part, self.state_path):
            if _regular(path):
                path.unlink()

    # one attempt

    def run(self) -> Downloaded:
        state = self._load_state()
        offset = self.part.stat().st_size if state else 0
        if not state or offset > self.limit():
            self.discard()
            offset = 0
        if self.first_try:
            self.resumed_from, self.first_try = offset, False
        if offset and offset == self.size:  # complete, but killed before the rename
            expected = self.checksum or _stored_checksum(state)
            hasher = expected.hasher() if expected else None
            self._hash_part(hasher)
            self.received = offset
            return self._finish(hasher, expected)
        headers = {}
        if offset and state and isinstance(state.get("validator"), str):
            headers = {"Range": f"bytes={offset}-", "If-Range": state["validator"]}
        elif offset:
            offset = 0  # without a validator a resumed file could mix two versions
        self.received = offset
        try:
            with self.client.stream("GET", self.url, headers=headers) as response:
                offset = self.received = self._accept(response, offset)
                expected = self._expected(response, state if offset else None)
                self._save_state(response, expected)
                hasher = expected.hasher() if expected else None
                self._receive(response, offset, hasher)
        except (httpx2.RequestError, httpx2.InvalidURL) as exc:
            if isinstance(exc, httpx2.TransportError) and not isinstance(
                exc, httpx2.UnsupportedProtocol
            ):
                raise _Cut(self.received, f"{type(exc).__name__}: {exc}") from exc
            raise request_failed(exc, self.url, self.dest.name, _fix()) from exc
        return self._finish(hasher, expected)

    def _accept(self, response: httpx2.Response, offset: int) -> int:
        """Check the answer; the offset the body starts at (0 when the server restarts)."""
        name = self.dest.name
        if response.status_code == 416 and offset:
            self.discard()
            raise _Restart("the bytes on disk are longer than the remote file")
        check_status(response, self.url, name)
        check_encoding(response, self.url, name)
        length = header_int(response.headers, "content-length", self.url)
        if response.status_code == 206:
            start, total = _content_range(response)
            if start != offset or (self.size is not None and total not in (None, self.size)):
                self.discard()
                raise _Restart(f"asked for bytes {offset}- and got {start}- of {total}")
            self.total = total if total is not None else self.total
        else:
            if offset:
                logger.info("%s: the server sent the whole file; starting again", name)
                self.restarts += 1
            offset = 0
            if self.size is None:  # the whole file again: its length is the bound now
                self.total = length
        check_served(self.url, name, response.headers.get("content-type", ""))
        self.announced = offset + length if length is not None else None
        bound = self.size if self.size is not None else self.cap
        if max(self.announced or 0, self.total or 0) > bound:
            self._wrong_size()  # larger than promised: refused before any byte is read
        return offset

    def _wrong_size(self) -> None:
        self.discard()
        announced = self.announced if self.announced is not None else self.total
        if self.size is None:
            raise SourceContentError(
                f"{self.url} announces {announced} bytes for {self.dest.name}, more than the "
                f"{self.cap} bytes weightzoo accepts for it; the server is broken or sends "
                "another file: check the URL"
            )
        raise SourceContentError(
            f"{self.url} announces {announced} bytes for {self.dest.name}, but its listing "
            f"promised {self.size}; the listing or the file changed: rerun to list it again"
        )

    def _expected(self, response: httpx2.Response, state: dict[str, Any] | None) -> Checksum | None:
        if self.checksum is not None:
            return self.checksum
        return goog_hash(response.headers) or _stored_checksum(state)

    def _hash_part(self, hasher: _Hasher | None) -> None:
        if hasher is None:
            return
        with os.fdopen(_open(self.part, os.O_RDONLY), "rb") as kept:
            while block := kept.read(CHUNK_BYTES):
                hasher.update(block)

    def _receive(self, response: httpx2.Response, offset: int, hasher: _Hasher | None) -> None:
        from tqdm import tqdm

        if offset:
            self._hash_part(hasher)
        fd = _open(self.part, os.O_RDWR) if offset else _create(self.part)
        bar = tqdm(
            total=self.total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=self.dest.name,
            disable=None if self.progress is None else not self.progress,
        )
        pace = Pace(self.url, self.dest.name, f"the bytes are kept in {self.part}: {_RESUME}")
        with bar, os.fdopen(fd, "r+b") as out:
            out.seek(offset)
            out.truncate()
            head = b"" if offset == 0 else None
            for chunk in response.iter_raw():  # as received: a cut loses nothing
                if head is not None:  # hold the first bytes back until they are judged
                    head += chunk
                    if len(head) >= SNIFF_BYTES:
                        self._judge(head)
                        self._write(out, head, hasher, bar)
                        head = None
                else:
                    self._write(out, chunk, hasher, bar)
                try:
                    pace.add(len(chunk))
                except SourceConnectionError:
                    if head:  # keep what came, as the message says
                        self._judge(head)
                        self._write(out, head, hasher, bar)
                    raise
            if head is not None:
                self._judge(head)
                self._write(out, head, hasher, bar)
            out.flush()
            os.fsync(out.fileno())

    def _judge(self, head: bytes) -> None:
        """The first bytes: a page or error JSON instead of the file, or a shorter file."""
        check_served(self.url, self.dest.name, "", head)
        if self.size is not None and self.announced not in (None, self.size):
            self._wrong_size()

    def _write(self, out: Any, chunk: bytes, hasher: _Hasher | None, bar: Any) -> None:
        limit = self.limit()
        if self.received + len(chunk) > limit:
            self.discard()
            listed = limit in (self.size, self.total)
            why = (
                "the file changed since it was listed, rerun to list it again"
                if listed
                else "it is larger than weightzoo accepts for this file; check the address"
            )
            raise SourceContentError(
                f"{self.url} sent more than the {limit} bytes "
                f"{'promised' if listed else 'weightzoo accepts'} for {self.dest.name}; refusing "
                f"the rest: {why}"
            )
        out.write(chunk)
        self.received += len(chunk)
        if hasher is not None:
            hasher.update(chunk)
        bar.update(len(chunk))

    def _finish(self, hasher: _Hasher | None, expected: Checksum | None) -> Downloaded:
        if self.total is not None and self.received < self.total:
            raise _Cut(self.received, "the server closed the connection early")
        if expected is not None and hasher is not None:
            actual = hasher.hexdigest()
            if actual != expected.hexdigest:
                self.discard()
                raise SourceChecksumError(
                    f"{self.dest.name} from {self.url} has {expected.algorithm} {actual}, but "
                    f"its source publishes {expected.hexdigest}; the download was damaged or "
                    "the file changed since it was listed. The partial file was removed: "
                    "rerun to download it again"
                )
        else:
            logger.warning(
                "%s: the source publishes no checksum weightzoo can compute; only its size "
                "(%d bytes) was checked",
                self.url,
                self.received,
            )
        _regular(self.dest)  # a link or folder in the way is refused, not replaced
        os.replace(self.part, self.dest)
        self.state_path.unlink(missing_ok=True)
        return Downloaded(
            self.dest,
            self.received,
            expected if hasher is not None else None,
            self.resumed_from,
            self.restarts,
        )


def _fix() -> str:
    return f"check the URL (or {HTTP_MIRROR_ENV}) and rerun"


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    size: int | None = None,
    max_bytes: int | None = None,
    checksum: Checksum | None = None,
    client: httpx2.Client | None = None,
    progress: bool | None = None,
    retries: int = RETRIES,
    mirror: bool = True,
) -> Downloaded:
    """Download ``url`` to ``dest`` through ``dest.part``: resumable, verified, bounded.

    The body is never larger than ``size``; without a ``size``, than the server's
    Content-Length and ``max_bytes``; without either, than :data:`DEFAULT_MAX_BYTES` (64 GiB).
    The part file and its state are never opened through a link.

    Args:
        url: an ``http(s)`` URL.
        dest: the file to write; its folder is created. An existing ``dest.part`` (with its
            ``dest.part.json``) from an interrupted call is resumed.
        size: the size the listing promises; a larger response is refused, a shorter one is a
            cut connection. ``None``: bounded by the server's Content-Length and ``max_bytes``.
        max_bytes: the most bytes accepted when the size is not known (a file of a source
            that lists no size); a ``size`` above it is refused. ``None``:
            :data:`DEFAULT_MAX_BYTES`.
        checksum: the published checksum; ``None``: the ``x-goog-hash`` md5 (or crc32c) of the
            response, if any.
        client: an HTTP client to reuse (default: a new one, closed on return).
        progress: show a byte progress bar (``None``: only on a terminal).
        retries: how many times a cut connection is resumed before giving up.
        mirror: apply ``WEIGHTZOO_HTTP_MIRROR`` to ``url`` (plain sources; not Zenodo links).

    Returns:
        What was downloaded and how it was verified.

    Raises:
        InvalidOptionError: for a ``max_bytes`` that is not a positive number.
        SourceNotFoundError: 404 or 410.
        SourceContentError: an HTML page or error JSON instead of the file, more bytes than
            promised or accepted, a Content-Encoding, a redirect loop or a redirect to another
            scheme.
        SourceChecksumError: the checksum differs (the part file is removed).
        SourceConnectionError: the connection failed, stalled below :class:`Pace`'s floor, or
            was cut ``retries + 1`` times (the bytes received are kept for the next call).
        UnsafePathError: ``dest``, its part or state file is a link or not a regular file.
    """
    cap = _cap(max_bytes)
    url = mirrored(check_http_url(url, "the URL")) if mirror else check_http_url(url, "the URL")
    dest = Path(dest)
    if size is not None and size > cap:
        raise SourceContentError(
            f"the listing promises {size} bytes for {dest.name} at {url}, more than the "
            f"{cap} bytes weightzoo accepts for it; check the listing, or download it by hand"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    own = client is None
    transfer = _Transfer(url, dest, size, checksum, client or new_client(), progress, cap)
    try:
        for attempt in range(retries + 1):
            try:
                return transfer.run()
            except (_Cut, _Restart) as exc:
                if attempt == retries:
                    raise _give_up(transfer, exc) from exc
                logger.warning("%s: %s; resuming (%d/%d)", dest.name, exc, attempt + 1, retries)
            except SourceError as exc:
                if not isinstance(exc, SourceConnectionError):
                    transfer.discard()  # a page, a 404, a wrong size: nothing worth resuming
                raise
        raise AssertionError("unreachable")
    finally:
        if own:
            transfer.client.close()


def _cap(max_bytes: int | None) -> int:
    if max_bytes is None:
        return DEFAULT_MAX_BYTES
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise InvalidOptionError(
            f"max_bytes={max_bytes!r} is not a positive number of bytes; pass the most bytes "
            "the file may have, or None for the default bound"
        )
    return max_bytes


def _give_up(transfer: _Transfer, exc: Exception) -> SourceError:
    host = urlsplit(transfer.url).netloc
    if isinstance(exc, _Restart):
        return SourceContentError(
            f"{transfer.url} kept answering ranges that do not continue {transfer.dest.name} "
            f"({exc}); the server is inconsistent: rerun later"
        )
    if transfer.received == 0:
        transfer.discard()  # an empty part file is nothing to resume
        return SourceConnectionError(
            f"cannot download {transfer.dest.name} from {host} ({exc}); nothing was received: "
            f"check the network (or {HTTP_MIRROR_ENV}) and rerun"
        )
    of = f" of {transfer.total}" if transfer.total is not None else ""
    return SourceConnectionError(
        f"the connection to {host} broke after {transfer.received}{of} bytes of "
        f"{transfer.dest.name} ({exc}); the bytes are kept in {transfer.part}: {_RESUME}"
    )
