"""A loopback stand-in for Zenodo and for a plain object bucket, speaking real HTTP/1.1.

It serves, from memory:

* ``GET /api/records/{id}``: a record in Zenodo's JSON form (``id``, ``conceptrecid``, ``doi``,
  ``metadata``, ``files`` as ``[{key, size, checksum: "md5:...", links: {self}}]``); a concept
  id is not a record (404), as on InvenioRDM; a withdrawn record answers 410;
* ``GET /api/records/{id}/versions/latest``: 302 to the latest version of the record's concept
  (``id`` a version or a concept id);
* ``HEAD``/``GET /api/records/{id}/files/{key}/content``: the file;
* ``HEAD``/``GET`` any other path in ``objects``: a plain object, with ``x-goog-hash`` (crc32c
  and md5, base64) as Google Cloud Storage sends it.

Files and objects carry ``ETag`` (the md5 of the content) and ``Last-Modified``, and answer
``Range: bytes=A-B`` / ``bytes=A-`` / ``bytes=-N`` with 206 unless ``ranges`` is off, honouring
``If-Range`` (a stale validator gets the whole file, 200).

Faults for tests: ``cut_after`` (path -> N: the next GET of it sends N body bytes and closes
the connection), ``cut_always`` (the same for every GET), ``change_after`` (path -> new
content: installed once the next GET of the path has been answered), ``html`` (paths answered
with a login page), ``json_error`` (paths answered with Zenodo's error JSON, served as
``application/octet-stream``), ``ignore_if_range`` (serve ranges even for a stale validator,
as a broken cache would), ``goog_hash_of`` (path -> other content: ``x-goog-hash`` announces
that content's hashes, as for a file damaged at rest), ``quiet_resets`` (a client that closes
its connection mid-body, as a fetch that stops early does, is not reported). ``bytes_sent``
counts the body bytes sent per path; ``requests`` logs ``(method, path, Range, If-Range)``.
``custom`` (path -> function of the request handler) lets a test answer a path itself, with any
status, headers and body bytes (a hostile server); :func:`chunked_answer`, :func:`plain_answer`,
:func:`reset_answer` and :func:`redirect_to_itself` are such answers.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import socket
import struct
import sys
import threading
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

_RECORD = re.compile(r"^/api/records/(?P<id>[^/]+)(?P<rest>/.*)?$")
_FILE = re.compile(r"^/files/(?P<key>[^/]+)/content$")
HTML_PAGE = b"<!DOCTYPE html><html><body><h1>Log in to Zenodo</h1></body></html>"


@dataclass
class FakeRecord:
    """One version of a record."""

    concept: str
    files: dict[str, bytes]
    title: str = "Model Zoos sample"
    version: str = "1.0"
    checksums: dict[str, str] = field(default_factory=dict)  # key -> published override


class SourceState:
    """What the fake servers hold, shared by the handler threads."""

    def __init__(self) -> None:
        self.records: dict[str, FakeRecord] = {}
        self.withdrawn: set[str] = set()
        self.objects: dict[str, bytes] = {}
        self.versions: Counter[str] = Counter()  # path -> content changes (Last-Modified)
        self.ranges = True
        self.goog_hash = True
        self.cut_after: dict[str, int] = {}
        self.cut_always: dict[str, int] = {}
        self.change_after: dict[str, bytes] = {}
        self.html: set[str] = set()
        self.json_error: set[str] = set()
        self.ignore_if_range = False
        self.goog_hash_of: dict[str, bytes] = {}
        self.quiet_resets = False
        self.bytes_sent: Counter[str] = Counter()
        self.requests: list[tuple[str, str, str | None, str | None]] = []
        self.custom: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {}
        self.lock = threading.Lock()
        self.url = ""

    def reset(self) -> None:
        """Forget everything (between tests sharing one server)."""
        url = self.url
        self.__init__()  # type: ignore[misc]
        self.url = url

    # -- set up by tests ----------------------------------------------------------------------

    def add_record(self, record_id: str, files: dict[str, bytes], *, concept: str) -> None:
        """Publish a version ``record_id`` of ``concept`` holding ``files``."""
        with self.lock:
            self.records[record_id] = FakeRecord(concept, dict(files))

    def file_path(self, record_id: str, key: str) -> str:
        """The path a record's file is served at."""
        return f"/api/records/{record_id}/files/{quote(key)}/content"

    def latest(self, record_or_concept: str) -> str | None:
        """The latest version of a concept (or of the concept of a version)."""
        record = self.records.get(record_or_concept)
        concept = record.concept if record else record_or_concept
        versions = [rid for rid, r in self.records.items() if r.concept == concept]
        return max(versions, key=int) if versions else None

    def sent(self, path: str) -> int:
        """Body bytes sent for ``path`` so far."""
        with self.lock:
            return self.bytes_sent[path]

    # -- read by the handler ------------------------------------------------------------------

    def content(self, path: str) -> bytes | None:
        match = _RECORD.match(path)
        if match and match["rest"]:
            file = _FILE.match(match["rest"])
            record = self.records.get(match["id"])
            if file and record and match["id"] not in self.withdrawn:
                return record.files.get(unquote(file["key"]))
            return None
        return self.objects.get(path)

    def replace(self, path: str, content: bytes) -> None:
        match = _RECORD.match(path)
        if match and match["rest"] and (file := _FILE.match(match["rest"])):
            self.records[match["id"]].files[unquote(file["key"])] = content
        else:
            self.objects[path] = content
        self.versions[path] += 1

    def record_json(self, record_id: str) -> dict[str, Any]:
        record = self.records[record_id]
        files = []
        for key, content in record.files.items():
            checksum = record.checksums.get(key, "md5:" + hashlib.md5(content).hexdigest())
            link = f"{self.url}{self.file_path(record_id, key)}"
            files.append(
                {
                    "id": hashlib.sha1(key.encode()).hexdigest(),
                    "key": key,
                    "size": len(content),
                    "checksum": checksum,
                    "links": {"self": link},
                }
            )
        return {
            "id": int(record_id),
            "recid": record_id,
            "conceptrecid": record.concept,
            "doi": f"10.5281/zenodo.{record_id}",
            "conceptdoi": f"10.5281/zenodo.{record.concept}",
            "metadata": {
                "title": record.title,
                "version": record.version,
                "license": {"id": "cc-by-4.0"},
                "access_right": "open",
            },
            "files": files,
            "links": {"self": f"{self.url}/api/records/{record_id}"},
        }


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``(start, end)`` inclusive for ``bytes=A-B``, ``bytes=A-`` or ``bytes=-N``."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if not match or match.group(1) == match.group(2) == "":
        return None
    if match.group(1) == "":
        return max(0, size - int(match.group(2))), size - 1
    start = int(match.group(1))
    end = int(match.group(2)) if match.group(2) else size - 1
    return start, min(end, size - 1)


def _goog_hash(content: bytes) -> str:
    md5 = base64.b64encode(hashlib.md5(content).digest()).decode()
    # x-goog-hash's crc32c is Castagnoli's CRC; zlib's CRC-32 stands in: the client ignores
    # crc32c without a crc32c package, and md5 is what it checks.
    crc = base64.b64encode(zlib.crc32(content).to_bytes(4, "big")).decode()
    return f"crc32c={crc}, md5={md5}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return

    @property
    def state(self) -> SourceState:
        return self.server.state

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, body: Any) -> None:
        self._send(status, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
        self._route()

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._route()

    def _route(self) -> None:
        path = urlsplit(self.path).path
        with self.state.lock:
            self.state.requests.append(
                (self.command, path, self.headers.get("Range"), self.headers.get("If-Range"))
            )
        custom = self.state.custom.get(path)
        if custom is not None:
            return custom(self)
        match = _RECORD.match(path)
        if match and not match["rest"]:
            return self._record(match["id"])
        if match and match["rest"] == "/versions/latest":
            latest = self.state.latest(match["id"])
            if latest is None:
                return self._json(404, {"status": 404, "message": "PID does not exist."})
            location = f"{self.state.url}/api/records/{latest}"
            return self._send(302, b"", {"Location": location})
        return self._file(path)

    def _record(self, record_id: str) -> None:
        if record_id in self.state.withdrawn:
            return self._json(410, {"status": 410, "message": "PID has been deleted."})
        if record_id not in self.state.records:
            return self._json(404, {"status": 404, "message": "PID does not exist."})
        return self._json(200, self.state.record_json(record_id))

    def _file(self, path: str) -> None:
        with self.state.lock:
            content = self.state.content(path)
            version = self.state.versions[path]
        if content is None:
            return self._json(404, {"status": 404, "message": "File not found."})
        if path in self.state.html:
            return self._send(200, HTML_PAGE, {"Content-Type": "text/html; charset=utf-8"})
        if path in self.state.json_error:
            body = json.dumps({"status": 403, "message": "Files are restricted."}).encode()
            return self._send(200, body, {"Content-Type": "application/octet-stream"})
        etag = f'"{hashlib.md5(content).hexdigest()}"'
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": etag,
            "Last-Modified": formatdate(1_700_000_000 + version, usegmt=True),
        }
        if self.state.goog_hash and not path.startswith("/api/"):
            headers["x-goog-hash"] = _goog_hash(self.state.goog_hash_of.get(path, content))
        status, body = 200, content
        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        fresh = if_range is None or if_range in (etag, headers["Last-Modified"])
        if self.state.ranges:
            headers["Accept-Ranges"] = "bytes"
            span = _parse_range(wanted, len(content)) if wanted else None
            if span and (fresh or self.state.ignore_if_range):
                if span[0] >= len(content):
                    headers["Content-Range"] = f"bytes */{len(content)}"
                    return self._send(416, b"", headers)
                status, body = 206, content[span[0] : span[1] + 1]
                headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{len(content)}"
        self._body(path, status, body, headers)

    def _body(self, path: str, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        with self.state.lock:
            cut = self.state.cut_after.pop(path, self.state.cut_always.get(path))
        sent = body if cut is None else body[:cut]
        try:
            self.wfile.write(sent)
            self.wfile.flush()
        except OSError:
            sent = b""  # the client went away first
        with self.state.lock:
            self.state.bytes_sent[path] += len(sent)
            new = self.state.change_after.pop(path, None)
            if new is not None:
                self.state.replace(path, new)
        if cut is not None:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    state: SourceState

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.state.quiet_resets and isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class SourceServer:
    """Context manager running :class:`SourceState` on ``127.0.0.1`` on an ephemeral port."""

    def __init__(self) -> None:
        self.state = SourceState()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        host, port = self._server.server_address[:2]
        self.state.url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> SourceState:
        self._thread.start()
        return self.state

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


# -- answers for ``custom``: what a broken or hostile server sends ------------------------------


def chunked_answer(
    body: bytes, headers: dict[str, str] | None = None
) -> Callable[[BaseHTTPRequestHandler], None]:
    """An answer sending ``body`` in chunks (``Transfer-Encoding: chunked``), with no size.

    ``headers`` are sent as given (no ``x-goog-hash`` unless among them).
    """

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        for key, value in (headers or {"Content-Type": "application/octet-stream"}).items():
            handler.send_header(key, value)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        handler.close_connection = True
        try:
            for start in range(0, len(body), 1 << 16):
                piece = body[start : start + (1 << 16)]
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client refused the rest

    return answer


def plain_answer(body: bytes, headers: dict[str, str]) -> Callable[[BaseHTTPRequestHandler], None]:
    """An answer sending ``body`` with its Content-Length and exactly ``headers``."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        with contextlib.suppress(OSError):
            handler.wfile.write(body)

    return answer


def reset_answer(handler: BaseHTTPRequestHandler) -> None:
    """Reset the connection (a TCP RST) before any byte of an answer."""
    handler.close_connection = True
    linger = struct.pack("ii", 1, 0)  # close at once, with a reset
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    handler.connection.close()


def redirect_to_itself(handler: BaseHTTPRequestHandler) -> None:
    """Answer 302 with the request's own path: a redirect loop."""
    handler.send_response(302)
    handler.send_header("Location", handler.path)
    handler.send_header("Content-Length", "0")
    handler.end_headers()
