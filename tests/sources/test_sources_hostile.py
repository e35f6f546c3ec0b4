"""Hostile servers and planted files against the download transport (weightzoo.sources).

Each test makes tests/helpers/source_server.py on 127.0.0.1 misbehave (redirect loops, redirects to
other schemes, gzip bombs, lying zip end records, trickled bodies, resets, hosts a listing
should not send the client to) or plants links in the work folder of a fetch, and checks the
outcome: one named error line (CLI exit 1), bounded memory and time, nothing written outside
the destination.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import socket
import struct
import time
import zipfile
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sources import valid_trial, zip_entries

from helpers.importer_fixtures import one_line_error, read_back
from helpers.source_server import SourceServer
from weightzoo.cli import run
from weightzoo.errors import (
    InvalidOptionError,
    SourceConnectionError,
    SourceContentError,
    UnreadableFileError,
    UnsafeArchiveError,
    UnsafePathError,
    WeightzooError,
)
from weightzoo.sources import http, remotezip
from weightzoo.sources.archive import (
    DIRECTORY_MAX,
    TAIL_BYTES,
    directory_limit,
    extract_zip,
    zip_end,
)
from weightzoo.sources.http import Pace, download
from weightzoo.sources.zenodo import get_record
from weightzoo.storage.writer import ZooLock

Handler = Callable[..., None]


@pytest.fixture(scope="module")
def _server():
    with SourceServer() as state:
        yield state


@pytest.fixture
def zenodo(_server, monkeypatch):
    """The loopback server, emptied, as the Zenodo endpoint (dropped connections are quiet)."""
    _server.reset()
    _server.quiet_resets = True  # the client drops what a hostile server sends
    monkeypatch.setenv("WEIGHTZOO_ZENODO_ENDPOINT", _server.url)
    monkeypatch.delenv("WEIGHTZOO_HTTP_MIRROR", raising=False)
    return _server


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Handler:
    """A handler that sends one complete answer."""

    def handle(handler) -> None:
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    return handle


def listing(state, record: str, files: list[dict]) -> None:
    """Serve ``files`` (Zenodo's form) as record ``record``."""
    body = json.dumps({"id": int(record), "metadata": {"title": "t"}, "files": files}).encode()
    state.custom[f"/api/records/{record}"] = answer(200, body, {"Content-Type": "application/json"})


def entry(state, record: str, key: str, content: bytes | int, **extra) -> dict:
    size = content if isinstance(content, int) else len(content)
    link = f"{state.url}/api/records/{record}/files/{key}/content"
    return {"key": key, "size": size, "links": {"self": link}, **extra}


def reset(handler) -> None:
    """Close the connection with a TCP reset before answering."""
    handler.close_connection = True
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()


# -- 1. the central directory is bounded before zipfile allocates it --------------------------


def _sparse_zip(state, size: int, tail: bytes) -> Handler:
    """A remote file of ``size`` bytes: zeros, then ``tail``; ranges only, never whole."""
    first = size - len(tail)

    def handle(handler) -> None:
        headers = {"Accept-Ranges": "bytes", "ETag": '"e"', "Content-Type": "application/zip"}
        wanted = handler.headers.get("Range")
        if handler.command == "HEAD" or not wanted:
            handler.send_response(200)
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(size))
            handler.end_headers()
            return
        start, end = (int(x) for x in wanted.split("=")[1].split("-"))
        end = min(end, size - 1, start + (1 << 20))  # never stream much
        body = bytearray(end - start + 1)
        low = max(start, first)
        if low <= end:
            body[low - start :] = tail[low - first : end - first + 1]
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        answer(206, bytes(body), headers)(handler)

    return handle


def _zip64_tail(size: int, directory: int) -> bytes:
    locator_at = size - 22 - 20 - 56
    record = struct.pack(
        "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 1, 1, directory, locator_at - directory
    )
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, locator_at, 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return record + locator + end


def _zip32_tail(size: int, directory: int) -> bytes:
    return struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, directory, size - 22 - directory, 0)


@pytest.mark.parametrize(
    ("size", "tail"),
    [(1 << 50, _zip64_tail(1 << 50, 1 << 49)), (5 << 30, _zip32_tail(5 << 30, 0xFFFFFFF0))],
    ids=["zip64", "zip32"],
)
def test_a_huge_central_directory_is_refused_before_it_is_allocated(
    zenodo, tmp_path, capsys, size, tail
):
    listing(zenodo, "5", [entry(zenodo, "5", "a.zip", size, checksum="md5:" + "0" * 32)])
    zenodo.custom["/api/records/5/files/a.zip/content"] = _sparse_zip(zenodo, size, tail)
    out = tmp_path / "z"
    err = one_line_error(
        capsys, ["fetch", "zenodo:5/a.zip", "--out", str(out)], "UnsafeArchiveError", "directory"
    )
    assert f"more than the {directory_limit(1)}" in err
    assert sum(1 for r in zenodo.requests if r[2]) == 1  # only the tail was asked for
    assert not out.exists()


def test_a_remote_file_refuses_any_single_read_beyond_its_bound(zenodo):
    size = 1 << 40
    zenodo.custom["/big.zip"] = _sparse_zip(zenodo, size, b"")
    with http.new_client() as client:
        target = remotezip.probe(client, f"{zenodo.url}/big.zip", name="big.zip")
        with remotezip.RemoteFile(client, target) as remote:
            remote.seek(0)
            with pytest.raises(UnreadableFileError, match="asked for 67108865 bytes at once"):
                remote.read(remotezip.MAX_READ + 1)
            with pytest.raises(UnreadableFileError, match="at once"):
                remote.read()  # the rest of a 1 TiB file
    assert not [r for r in zenodo.requests if r[2]]  # refused before any request


def _zip(members: int, comment: bytes, junk: bytes) -> bytes:
    buffer = io.BytesIO()
    buffer.write(junk)  # data before the zip (a self-extractor's stub)
    with zipfile.ZipFile(buffer, "a") as archive:
        for i in range(members):
            archive.writestr(f"m/{i}", b"x" * (i % 3))
        archive.comment = comment
    return buffer.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    members=st.integers(0, 40),
    comment=st.binary(max_size=300).filter(lambda b: b"PK\x05\x06" not in b),
    junk=st.binary(max_size=300),
)
def test_the_end_record_is_read_where_zipfile_reads_it(members, comment, junk):
    data = _zip(members, comment, junk)
    end = zip_end(data[-TAIL_BYTES:], len(data), "z")
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert (end.offset, end.members) == (archive.start_dir, len(archive.infolist()))


def test_a_zip64_end_record_is_read_where_zipfile_reads_it():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(0x10000 + 5):  # more members than a 32-bit end record counts
            archive.writestr(str(i), b"")
    data = buffer.getvalue()
    end = zip_end(data[-TAIL_BYTES:], len(data), "z")
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert end.zip64 and (end.offset, end.members) == (archive.start_dir, 0x10005)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), members=st.integers(0, 3))
def test_a_damaged_end_record_is_refused_or_bounded(data, members):
    valid = bytearray(zip_entries([(f"f{i}", b"abc") for i in range(members)]))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(max(0, len(valid) - 120), len(valid) - 1))
        valid[at] = data.draw(st.integers(0, 255))
    size = len(valid) + data.draw(st.sampled_from([0, 1 << 33, 1 << 62]))  # a lying length
    try:
        end = zip_end(bytes(valid[-TAIL_BYTES:]), size, "z")
    except (UnreadableFileError, UnsafeArchiveError):
        return  # refused, named
    assert 0 <= end.offset and end.size <= min(directory_limit(end.members), DIRECTORY_MAX)
    assert end.offset + end.size <= size


# -- 2. a listing's body is bounded after decoding, and parsed strictly -----------------------


def _gzip_bomb(decoded: int) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9) as out:
        out.write(b'{"id": 1, "pad": "')
        block = b" " * (1 << 20)
        for _ in range(decoded >> 20):
            out.write(block)
        out.write(b'"}')
    return buffer.getvalue()


BAD_LISTINGS = {
    "gzip bomb": (
        _gzip_bomb(48 << 20),
        {"Content-Encoding": "gzip"},
        f"more than {16 << 20} bytes (decoded)",
    ),
    "not gzip": (b'{"id": 1, "files": []}', {"Content-Encoding": "gzip"}, "does not decode"),
    "deep nesting": (b'{"id": 1, "m": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", {}, "deeply"),
    "infinity": (b'{"id": 1e999999, "files": []}', {}, "out of range"),
    "huge integer": (
        b'{"id": 1, "files": [{"key": "a", "size": 1' + b"0" * 40 + b"}]}",
        {},
        "digits",
    ),
    "checksum list": (
        b'{"id": 1, "files": [{"key": "a.zip", "size": 1, "checksum": ["md5"]}]}',
        {},
        "as list, not a string",
    ),
    "id object": (b'{"id": {"x": 1}, "files": []}', {}, "not a record"),
    "not an object": (b"[1, 2]", {}, "not an object"),
}


@pytest.mark.parametrize("case", list(BAD_LISTINGS))
def test_hostile_listings_are_one_line_errors(zenodo, capsys, case):
    body, headers, words = BAD_LISTINGS[case]
    zenodo.custom["/api/records/21"] = answer(
        200, body, {"Content-Type": "application/json", **headers}
    )
    one_line_error(capsys, ["fetch", "zenodo:21"], "SourceContentError", words)


# -- 3. what the HTTP client raises becomes one named line ------------------------------------


def _loop(handler) -> None:
    answer(302, b"", {"Location": handler.path})(handler)


@pytest.mark.parametrize(
    ("route", "error", "words"),
    [
        (_loop, "SourceContentError", "in a loop"),
        (answer(302, b"", {"Location": "file:///etc/passwd"}), "SourceContentError", "not http"),
        (answer(302, b"", {"Location": "ftp://127.0.0.1/x"}), "SourceContentError", "not http"),
        (reset, "SourceConnectionError", "cannot complete the request"),
        (answer(302, b"x" * (200 << 10), {"Location": "/x"}), "SourceContentError", "redirect"),
    ],
    ids=["loop", "file", "ftp", "reset", "large redirect body"],
)
def test_a_listing_request_that_fails_in_the_client_is_one_line(
    zenodo, capsys, route, error, words
):
    zenodo.custom["/api/records/7"] = route
    one_line_error(capsys, ["fetch", "zenodo:7"], error, words)


@pytest.mark.parametrize(
    ("route", "error", "words"),
    [
        (_loop, "SourceContentError", "in a loop"),
        (answer(302, b"", {"Location": "file:///etc/passwd"}), "SourceContentError", "not http"),
        (
            answer(206, b"\x1f\x8b" + bytes(100), {"Content-Range": f"bytes 0-101/{'9' * 5000}"}),
            "SourceContentError",
            "at most 20 digits",
        ),
        (
            answer(200, b"\x1f\x8b" + bytes(100), {"Content-Encoding": "gzip"}),
            "SourceContentError",
            "Content-Encoding 'gzip'",
        ),
        (
            answer(200, b"\x1f\x8b" + bytes(100), {"Content-Encoding": "br"}),
            "SourceContentError",
            "'br'",
        ),
    ],
    ids=["loop", "file redirect", "5000 digits", "gzip", "br"],
)
def test_a_download_that_fails_in_the_client_is_one_error_and_keeps_nothing(
    zenodo, tmp_path, route, error, words
):
    zenodo.custom["/f.gz"] = route
    with pytest.raises(WeightzooError) as caught:
        download(f"{zenodo.url}/f.gz", tmp_path / "f.gz", progress=False)
    assert type(caught.value).__name__ == error and words in str(caught.value)
    assert "kept" not in str(caught.value)  # nothing was received, nothing is claimed
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_unreachable_host_says_nothing_was_received(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(SourceConnectionError, match="nothing was received") as caught:
        download(f"http://127.0.0.1:{port}/f.gz", tmp_path / "f.gz", progress=False, retries=1)
    assert "kept in" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_reset_head_of_a_zip_is_one_line(zenodo, tmp_path, capsys):
    data = zip_entries(valid_trial())
    zenodo.add_record("5", {"a.zip": data}, concept="4")
    zenodo.custom[zenodo.file_path("5", "a.zip")] = reset
    out = tmp_path / "z"
    one_line_error(
        capsys, ["fetch", "zenodo:5/a.zip", "--out", str(out)], "SourceConnectionError", "a.zip"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# -- 4. members zipfile cannot read are refused from the directory ----------------------------


def _unreadable(kind: str) -> bytes:
    """A valid trial whose checkpoint is flagged encrypted, or uses method 99 (AES) / 9."""
    data = bytearray(zip_entries(valid_trial()))
    name = b"root/t1/checkpoint_000001/checkpoints"
    for signature, name_at, flags_at, method_at in (
        (b"PK\x03\x04", 30, 6, 8),
        (b"PK\x01\x02", 46, 8, 10),
    ):
        at = data.find(signature)
        while at != -1:
            if data[at + name_at : at + name_at + len(name)] == name:
                if kind == "encrypted":
                    struct.pack_into("<H", data, at + flags_at, 1)
                else:
                    struct.pack_into("<H", data, at + method_at, 99 if kind == "aes" else 9)
            at = data.find(signature, at + 1)
    return bytes(data)


@pytest.mark.parametrize("ranges", [True, False], ids=["ranges", "whole"])
@pytest.mark.parametrize(
    ("kind", "words"),
    [("encrypted", "which is encrypted"), ("aes", "method 99"), ("deflate64", "method 9,")],
)
def test_members_zipfile_cannot_read_are_one_line_errors(
    zenodo, tmp_path, capsys, kind, words, ranges
):
    zenodo.add_record("5", {"a.zip": _unreadable(kind)}, concept="4")
    zenodo.ranges = ranges
    out = tmp_path / "zoos" / "z"
    one_line_error(
        capsys, ["fetch", "zenodo:5/a.zip", "--out", str(out)], "UnreadableFileError", words
    )
    assert sorted(p.name for p in (tmp_path / "zoos").iterdir()) == []
    path = zenodo.file_path("5", "a.zip")
    if ranges:  # the checkpoint's bytes were never asked for: only the tail was read
        assert [r[2] for r in zenodo.requests if r[1] == path and r[2]] == [
            f"bytes=0-{len(_unreadable(kind)) - 1}"
        ]


def test_extract_zip_refuses_an_unreadable_member_before_writing(tmp_path):
    with zipfile.ZipFile(io.BytesIO(_unreadable("aes"))) as archive:
        with pytest.raises(UnreadableFileError, match="method 99"):
            extract_zip(archive, tmp_path / "x", source="a.zip")
    assert list(tmp_path.iterdir()) == []


# -- 5. trickled bodies and dripping ranges end -----------------------------------------------


def _trickle(body: bytes, delay: float, media: str = "application/json") -> Handler:
    def handle(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", media)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        try:
            for i in range(len(body)):
                handler.wfile.write(body[i : i + 1])
                handler.wfile.flush()
                time.sleep(delay)  # the server's pace, not the test's
        except OSError:
            pass

    return handle


def test_a_trickled_listing_fails_at_the_rate_floor(zenodo, capsys, monkeypatch):
    monkeypatch.setattr(http, "RATE_WINDOW", 0.5)
    body = json.dumps({"id": 1, "metadata": {"title": "t" * 400}, "files": []}).encode()
    zenodo.custom["/api/records/31"] = _trickle(body, 0.02)  # 50 bytes/s: ~9 s in all
    began = time.monotonic()
    one_line_error(capsys, ["fetch", "zenodo:31"], "SourceConnectionError", "below the floor")
    assert time.monotonic() - began < 3


def test_a_trickled_download_keeps_its_bytes_and_names_them(zenodo, tmp_path, monkeypatch):
    monkeypatch.setattr(http, "RATE_WINDOW", 0.5)
    zenodo.custom["/slow.bin"] = _trickle(bytes(2000), 0.005, "application/octet-stream")
    with pytest.raises(SourceConnectionError, match="below the floor") as caught:
        download(f"{zenodo.url}/slow.bin", tmp_path / "slow.bin", progress=False)
    part = tmp_path / "slow.bin.part"
    assert str(part) in str(caught.value) and 0 < part.stat().st_size < 2000


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 3), st.integers(0, 5000)), max_size=30))
def test_pace_fails_exactly_when_a_window_falls_below_the_floor(steps):
    clock = [0.0]
    since, before, total = 0.0, 0, 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(http.time, "monotonic", lambda: clock[0])
        patch.setattr(http, "RATE_WINDOW", 2.0)
        pace = Pace("u", "w", "f")
        for delay, count in steps:
            clock[0] += delay
            total += count
            span = clock[0] - since
            slow = span >= 2.0 and total - before < http.MIN_RATE * span
            if slow:
                with pytest.raises(SourceConnectionError, match="below the floor"):
                    pace.add(count)
                return
            pace.add(count)
            if span >= 2.0:
                since, before = clock[0], total


def _drip(state, data: bytes) -> Handler:
    """Every range answer announces the whole range, sends one byte and closes."""

    def handle(handler) -> None:
        if handler.command == "HEAD":
            headers = {"Accept-Ranges": "bytes", "ETag": '"e"', "Content-Type": "application/zip"}
            return answer(200, data, headers)(handler)
        start, end = (int(x) for x in handler.headers["Range"].split("=")[1].split("-"))
        end = min(end, len(data) - 1)
        handler.send_response(206)
        handler.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        handler.send_header("Content-Length", str(end - start + 1))
        handler.end_headers()
        handler.wfile.write(data[start : start + 1])
        handler.wfile.flush()
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)

    return handle


def test_ranges_that_drip_one_byte_each_give_up_after_a_bounded_number(zenodo, tmp_path, capsys):
    data = zip_entries([*valid_trial(), ("root/pad.bin", os.urandom(40_000))])
    zenodo.add_record("5", {"a.zip": data}, concept="4")
    path = zenodo.file_path("5", "a.zip")
    zenodo.custom[path] = _drip(zenodo, data)
    out = tmp_path / "z"
    one_line_error(
        capsys, ["fetch", "zenodo:5/a.zip", "--out", str(out)], "SourceConnectionError", "short"
    )
    ranges = [r for r in zenodo.requests if r[1] == path and r[2]]
    assert len(ranges) == remotezip.MEMBER_RETRIES + 1  # not one per byte of the zip


# -- 6. links in the work folder are refused --------------------------------------------------


@pytest.mark.parametrize(
    ("ranges", "planted"),
    [(True, "src"), (False, "download"), (False, "download/a.zip.part"), (False, ".lock")],
)
def test_links_in_the_work_folder_are_refused_and_their_targets_untouched(
    zenodo, tmp_path, capsys, ranges, planted
):
    zenodo.add_record("5", {"a.zip": zip_entries(valid_trial())}, concept="4")
    zenodo.ranges = ranges
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("victim")
    link = tmp_path / ".z.fetch" / planted
    link.parent.mkdir(parents=True)
    target = outside if "." not in planted else outside / "keep.txt"
    link.symlink_to(target)
    out = tmp_path / "z"
    one_line_error(
        capsys, ["fetch", "zenodo:5/a.zip", "--out", str(out)], "UnsafePathError", "is a link"
    )
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert (outside / "keep.txt").read_text() == "victim" and not out.exists()


def test_download_never_writes_through_a_linked_part_file(zenodo, tmp_path):
    zenodo.objects["/b/f.bin"] = bytes(100)
    victim = tmp_path / "victim"
    victim.write_text("victim")
    (tmp_path / "f.bin.part").symlink_to(victim)
    with pytest.raises(UnsafePathError, match="is a link"):
        download(f"{zenodo.url}/b/f.bin", tmp_path / "f.bin", progress=False)
    assert victim.read_text() == "victim"


# -- 7. and 8. one fetch at a time; what a killed one left is removed -------------------------


def test_a_second_fetch_into_the_same_out_is_refused_while_the_first_holds_it(
    zenodo, tmp_path, capsys
):
    zenodo.add_record("5", {"a.zip": zip_entries(valid_trial())}, concept="4")
    work = tmp_path / ".z.fetch"
    work.mkdir()
    lock = ZooLock(work, name=".lock")  # what a running fetch holds
    try:
        one_line_error(
            capsys,
            ["fetch", "zenodo:5/a.zip", "--out", str(tmp_path / "z")],
            "ZooLockedError",
            f"another fetch is writing {tmp_path / 'z'}",
        )
    finally:
        lock.release()
    assert not zenodo.requests or all(r[2] is None for r in zenodo.requests)  # no bytes read
    assert run(["fetch", "zenodo:5/a.zip", "--out", str(tmp_path / "z")]) == 0


def test_partial_folders_a_killed_fetch_left_are_removed_and_nothing_else(zenodo, tmp_path):
    zenodo.add_record("5", {"a.zip": zip_entries(valid_trial())}, concept="4")
    stale = tmp_path / ".z.ab_12xyz.partial"
    (stale / "shards").mkdir(parents=True)
    (stale / "zoo.json").write_text("{}")
    other = tmp_path / ".zz.ab_12xyz.partial"  # another output's
    other.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / ".z.linkedxx.partial").symlink_to(outside)  # a link is never followed
    assert run(["fetch", "zenodo:5/a.zip", "--out", str(tmp_path / "z")]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".z.linkedxx.partial", ".zz.ab_12xyz.partial", "outside", "z"]
    assert read_back(tmp_path / "z")[0].num_models == 1


# -- 9. names that make no folder, and messages that claim nothing ----------------------------


@pytest.mark.parametrize("ranges", [True, False], ids=["ranges", "whole"])
def test_a_file_whose_stem_is_dot_dot_is_refused(zenodo, tmp_path, capsys, ranges):
    zenodo.add_record("5", {"...zip": zip_entries(valid_trial())}, concept="4")
    zenodo.ranges = ranges
    one_line_error(
        capsys,
        ["fetch", "zenodo:5/...zip", "--out", str(tmp_path / "z")],
        "UnsafePathError",
        "'...zip'",
    )
    assert list(tmp_path.iterdir()) == []


def test_a_redirect_to_another_scheme_claims_no_kept_bytes(zenodo, tmp_path, capsys):
    zenodo.add_record("5", {"a.zip": zip_entries(valid_trial())}, concept="4")
    zenodo.ranges = False
    redirect = answer(302, b"", {"Location": "file:///x"})
    no_head = answer(405)
    zenodo.custom[zenodo.file_path("5", "a.zip")] = lambda h: (
        no_head if h.command == "HEAD" else redirect
    )(h)
    err = one_line_error(
        capsys,
        ["fetch", "zenodo:5/a.zip", "--out", str(tmp_path / "z")],
        "SourceContentError",
        "not http(s)",
    )
    assert "kept" not in err


# -- 10. a listing's strings reach the terminal as one plain line each ------------------------


def test_listing_strings_are_printed_without_control_characters(zenodo, capsys):
    body = {
        "id": 1,
        "doi": "d\x1b[31mRED",
        "metadata": {"title": "t", "version": "1\x1b]0;pwned\x07\nFAKE LINE", "license": "x\rY"},
        "files": [{"key": "a\x1b[2Jb\nc.zip", "size": 1, "checksum": "md5:" + "0" * 32}],
    }
    zenodo.custom["/api/records/25"] = answer(200, json.dumps(body).encode())
    assert run(["fetch", "zenodo:25"]) == 0
    out = capsys.readouterr().out
    assert not any(c in out for c in "\x1b\x07\r")
    lines = out.splitlines()
    assert len(lines) == 3 and "FAKE LINE" in lines[0] and "a [2Jb c.zip" in lines[1]


# -- 11. a listing sends the client to its endpoint (or the mirror) only ----------------------


def test_a_link_to_another_host_is_replaced_by_the_endpoints_own(zenodo, monkeypatch):
    with SourceServer() as other:
        listing(
            zenodo,
            "46",
            [
                {"key": "a.zip", "size": 3, "links": {"self": f"{other.url}/x/a.zip"}},
                {"key": "b.zip", "size": 3, "links": {"self": f"{zenodo.url}/own/b.zip"}},
                {"key": "c.zip", "size": 3, "links": {"self": f"{other.url}/m/c.zip"}},
            ],
        )
        record = get_record("46")
        assert record.file("a.zip").url == f"{zenodo.url}/api/records/46/files/a.zip/content"
        assert record.file("b.zip").url == f"{zenodo.url}/own/b.zip"
        monkeypatch.setenv("WEIGHTZOO_HTTP_MIRROR", other.url)
        assert get_record("46").file("c.zip").url == f"{other.url}/m/c.zip"
        assert other.requests == []


# -- 12. a download without a known size is bounded -------------------------------------------


def _chunked(body: bytes) -> Handler:
    def handle(handler) -> None:
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for i in range(0, len(body), 1000):
            part = body[i : i + 1000]
            handler.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        handler.wfile.write(b"0\r\n\r\n")

    return handle


def test_a_download_of_unknown_size_stops_at_max_bytes(zenodo, tmp_path):
    zenodo.custom["/c.csv"] = _chunked(b"x" * 50_000)
    with pytest.raises(SourceContentError, match="more than the 10000 bytes weightzoo accepts"):
        download(f"{zenodo.url}/c.csv", tmp_path / "c.csv", max_bytes=10_000, progress=False)
    assert list(tmp_path.iterdir()) == []
    got = download(f"{zenodo.url}/c.csv", tmp_path / "c.csv", max_bytes=50_000, progress=False)
    assert got.size == 50_000


def test_without_size_or_max_bytes_the_default_cap_holds(zenodo, tmp_path, monkeypatch):
    monkeypatch.setattr(http, "DEFAULT_MAX_BYTES", 20_000)
    zenodo.custom["/c.csv"] = _chunked(b"x" * 50_000)
    with pytest.raises(SourceContentError, match="20000 bytes"):
        download(f"{zenodo.url}/c.csv", tmp_path / "c.csv", progress=False)
    zenodo.objects["/big.bin"] = bytes(30_000)  # announced: refused before any byte is read
    with pytest.raises(SourceContentError, match="announces 30000 bytes"):
        download(f"{zenodo.url}/big.bin", tmp_path / "big.bin", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_size_above_max_bytes_is_refused_before_any_request(zenodo, tmp_path):
    with pytest.raises(SourceContentError, match="more than the 10 bytes"):
        download(f"{zenodo.url}/x", tmp_path / "x", size=11, max_bytes=10, progress=False)
    with pytest.raises(InvalidOptionError, match="max_bytes"):
        download(f"{zenodo.url}/x", tmp_path / "x", max_bytes=0, progress=False)
    assert zenodo.requests == []


def test_a_download_with_max_bytes_still_verifies_and_resumes(zenodo, tmp_path):
    content = os.urandom(300_000)
    zenodo.objects["/b/o.bin"] = content
    zenodo.cut_after["/b/o.bin"] = 100_000
    got = download(f"{zenodo.url}/b/o.bin", tmp_path / "o.bin", max_bytes=1 << 20, progress=False)
    assert got.path.read_bytes() == content and got.checksum is not None
    assert hashlib.md5(content).hexdigest() == got.checksum.hexdigest
