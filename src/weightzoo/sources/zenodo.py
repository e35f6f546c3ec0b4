"""Zenodo's records API: which files a record holds, their sizes, checksums and links.

``GET {endpoint}/api/records/<id>`` answers a record's metadata and its files, each with its
key (file name), size, checksum (``md5:<hex>``) and download link. A *concept* record id (the
id of every version together, e.g. the Model Zoos' MNIST CNN-s concept 6632086) is not a record
itself on InvenioRDM, the software Zenodo runs; ``GET /api/records/<id>/versions/latest``
redirects from any version or concept id to the latest version. :func:`get_record` asks for the
record first and for its latest version when the id is not a record, so a version id stays
pinned to that version and a concept id follows the latest one.

Both forms of the file listing are read: Zenodo's (``files`` a list of ``{key, size, checksum,
links.self}``) and InvenioRDM's (``files.entries``, with ``links.content``). File names always
come from the listing; nothing is guessed.

A listing is untrusted: it is read to a bounded number of decoded bytes and parsed strictly
(:func:`weightzoo.sources.http.read_json`), its typed fields are checked, and a file's link is
followed only when it points to the endpoint's own scheme, host and port (or to
``WEIGHTZOO_HTTP_MIRROR``'s); any other link is replaced by the endpoint's own URL for the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx2

from weightzoo.errors import (
    InvalidOptionError,
    SourceContentError,
    SourceNotFoundError,
    UnsafePathError,
)
from weightzoo.sources.http import (
    HTTP_MIRROR_ENV,
    ZENODO_ENDPOINT_ENV,
    Checksum,
    check_status,
    discard_body,
    new_client,
    read_json,
    request_failed,
    same_origin,
    zenodo_endpoint,
)

__all__ = ["Record", "RecordFile", "get_record"]

# Zenodo ids are numbers; other InvenioRDM instances use ids such as "82kn8-3nk04".
RECORD_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]{0,63}")
# No file is larger than a signed 64-bit offset.
MAX_SIZE = (1 << 63) - 1


@dataclass(frozen=True)
class RecordFile:
    """One file of a record, as its listing gives it.

    Attributes:
        key: the file name (``cifar10_cnn_sample_ep21-25.zip``).
        size: its size in bytes.
        checksum: the published checksum (``None`` if the listing gives none).
        url: the download link.
    """

    key: str
    size: int
    checksum: Checksum | None
    url: str


@dataclass(frozen=True)
class Record:
    """A published record (one version) and its files.

    Attributes:
        id: the record id of this version.
        requested: the id that was asked for (a concept id leads to the latest version).
        concept_id: the id of all versions together (``None`` if the listing has none).
        doi: the version's DOI.
        title: the record's title.
        version: its version text (``None`` if none).
        license: its license id, e.g. ``cc-by-4.0``.
        files: the files, in listing order.
        url: the API URL the record was read from.
    """

    id: str
    requested: str
    concept_id: str | None
    doi: str | None
    title: str
    version: str | None
    license: str | None
    files: tuple[RecordFile, ...]
    url: str

    def file(self, key: str) -> RecordFile:
        """The file named ``key``.

        Raises:
            SourceNotFoundError: if the record has no such file (the message lists its files).
        """
        for entry in self.files:
            if entry.key == key:
                return entry
        names = ", ".join(f.key for f in self.files) or "none"
        raise SourceNotFoundError(
            f"Zenodo record {self.id} ({self.url}) has no file {key!r}; its files are: {names}"
        )

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], *, requested: str, url: str, endpoint: str | None = None
    ) -> Record:
        """Read a record from the API's JSON (Zenodo's or InvenioRDM's form).

        Args:
            data: the parsed answer.
            requested: the id asked for.
            url: the URL the answer came from.
            endpoint: the server asked (default: ``url``'s): file links to another origin
                (other than ``WEIGHTZOO_HTTP_MIRROR``'s) are replaced by this server's URL.

        Raises:
            SourceContentError: if the JSON is not a record listing, or a field has the wrong
                type.
            UnsafePathError: for a file name that is a path.
        """
        record_id = data.get("id") if isinstance(data, Mapping) else None
        if isinstance(record_id, bool) or not isinstance(record_id, (int, str)):
            raise SourceContentError(
                f"{url} answered JSON that is not a record (no string or number 'id'); is "
                f"{ZENODO_ENDPOINT_ENV} a Zenodo or InvenioRDM server?"
            )
        if not RECORD_ID.fullmatch(str(record_id)):
            raise SourceContentError(
                f"{url} answered the record id {str(record_id)[:80]!r}, which is not one; is "
                f"{ZENODO_ENDPOINT_ENV} a Zenodo or InvenioRDM server?"
            )
        base = endpoint or url.split("/api/records/", 1)[0]
        metadata = data.get("metadata") if isinstance(data.get("metadata"), Mapping) else {}
        parent = data.get("parent") if isinstance(data.get("parent"), Mapping) else {}
        concept = data.get("conceptrecid") or parent.get("id")
        doi = data.get("doi") or _nested(data, "pids", "doi", "identifier")
        return cls(
            id=str(data["id"]),
            requested=requested,
            concept_id=str(concept) if concept else None,
            doi=str(doi) if doi else None,
            title=str(metadata.get("title") or ""),
            version=str(metadata["version"]) if metadata.get("version") else None,
            license=_license(metadata),
            files=tuple(_files(data, url, base)),
            url=url,
        )


def _nested(data: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)  # type: ignore[assignment]
    return data


def _license(metadata: Mapping[str, Any]) -> str | None:
    license_ = metadata.get("license")
    if isinstance(license_, Mapping) and license_.get("id"):
        return str(license_["id"])
    if isinstance(license_, str):
        return license_
    rights = metadata.get("rights")
    if isinstance(rights, list) and rights and isinstance(rights[0], Mapping):
        return str(rights[0].get("id") or rights[0].get("title") or "") or None
    return None


def _files(data: Mapping[str, Any], url: str, base: str) -> list[RecordFile]:
    files = data.get("files")
    if isinstance(files, Mapping):  # InvenioRDM: {"enabled": ..., "entries": {key: {...}}}
        entries = files.get("entries") or {}
        files = list(entries.values()) if isinstance(entries, Mapping) else entries
    if files is None:
        return []
    if not isinstance(files, list):
        raise SourceContentError(f"{url} lists 'files' as {type(files).__name__}, not a list")
    return [_file(entry, url, data, base) for entry in files]


def _file(entry: Any, url: str, record: Mapping[str, Any], base: str) -> RecordFile:
    if not isinstance(entry, Mapping):
        raise SourceContentError(f"{url} lists a file as {entry!r:.120}, not an object")
    key = entry.get("key") or entry.get("filename")
    size = entry.get("size", entry.get("filesize"))
    if not isinstance(key, str) or not isinstance(size, int) or isinstance(size, bool):
        raise SourceContentError(
            f"{url} lists a file without a name or size ({dict(entry)!r:.200}); is "
            f"{ZENODO_ENDPOINT_ENV} a Zenodo or InvenioRDM server?"
        )
    if not 0 <= size <= MAX_SIZE:
        raise SourceContentError(
            f"{url} lists the file {key[:80]!r} with the size {size}, which no file has; "
            "report the record to its maintainers"
        )
    if key in ("", ".", "..") or "/" in key or "\\" in key or "\x00" in key:
        raise UnsafePathError(
            f"{url} lists the file name {key!r}, which is a path, not a file name; weightzoo "
            "refuses it: report the record to its maintainers"
        )
    checksum = entry.get("checksum")
    if checksum is not None and not isinstance(checksum, str):
        raise SourceContentError(
            f"{url} lists the checksum of {key!r} as {type(checksum).__name__}, not a string "
            "md5:<hex>; weightzoo cannot verify the file: report the record to its maintainers"
        )
    return RecordFile(
        key=key,
        size=size,
        checksum=Checksum.parse(checksum, f"{url} (file {key})") if checksum else None,
        url=_link(entry, key, record, base),
    )


def _link(entry: Mapping[str, Any], key: str, record: Mapping[str, Any], base: str) -> str:
    """The file's link, if it stays on the endpoint (or the mirror); else the endpoint's URL."""
    own = f"{base}/api/records/{quote(str(record['id']))}/files/{quote(key)}/content"
    links = entry.get("links") if isinstance(entry.get("links"), Mapping) else {}
    link = links.get("content") or links.get("self") or links.get("download")
    if not isinstance(link, str) or urlsplit(link).scheme not in ("http", "https"):
        return own
    mirror = os.environ.get(HTTP_MIRROR_ENV, "").strip()
    if same_origin(link, base) or (mirror and same_origin(link, mirror)):
        return link
    return own  # a listing never sends the client to a host of its choosing


def check_record_id(record_id: str) -> str:
    """``record_id`` if it looks like a record id, else :class:`InvalidOptionError`."""
    if not RECORD_ID.fullmatch(record_id):
        raise InvalidOptionError(
            f"{record_id!r} is not a Zenodo record id; pass the number at the end of the "
            "record's URL or DOI (zenodo.org/records/13144018 or 10.5281/zenodo.13144018)"
        )
    return record_id


def _fix(base: str) -> str:
    return (
        f"check the network, or whether {ZENODO_ENDPOINT_ENV}={base} is a Zenodo or InvenioRDM "
        "server, and rerun"
    )


def _get(client: httpx2.Client, url: str, base: str) -> httpx2.Response:
    """The answer's status and headers; its body is left unread (see :func:`_read`)."""
    request = client.build_request("GET", url, headers={"Accept": "application/json"})
    try:
        return client.send(request, stream=True)
    except (httpx2.RequestError, httpx2.InvalidURL) as exc:
        raise request_failed(exc, url, "the record", _fix(base)) from exc


def _read(response: httpx2.Response, base: str, record_id: str) -> Any:
    try:
        return read_json(response, str(response.url), f"record {record_id}", _fix(base))
    finally:
        response.close()


def get_record(
    record_id: str, *, endpoint: str | None = None, client: httpx2.Client | None = None
) -> Record:
    """Read a record's listing; a concept id leads to its latest version.

    Args:
        record_id: a record id (one version) or a concept id (all versions).
        endpoint: the server (default: ``WEIGHTZOO_ZENODO_ENDPOINT``, else zenodo.org).
        client: an HTTP client to reuse.

    Returns:
        The record, with the files of the version that was read.

    Raises:
        InvalidOptionError: for an id that is not one.
        SourceNotFoundError: for an unknown (404) or withdrawn (410) record.
        SourceContentError: for an answer that is not a record listing.
        SourceConnectionError: if the server cannot be reached.
    """
    check_record_id(record_id)
    base = zenodo_endpoint(endpoint)
    own = client is None
    http = client or new_client()
    try:
        url = f"{base}/api/records/{record_id}"
        response = _get(http, url, base)
        if response.status_code == 404:  # not a version: maybe a concept id
            discard_body(response)
            response = _get(http, f"{url}/versions/latest", base)
        if response.status_code != 200:
            discard_body(response)  # an error page: never parsed
        if response.status_code == 404:
            raise SourceNotFoundError(
                f"Zenodo record {record_id} does not exist at {base} (404 for {url} and its "
                f"/versions/latest); check the id (the DOI 10.5281/zenodo.{record_id} must "
                "resolve)"
            )
        if response.status_code == 410:
            raise SourceNotFoundError(
                f"Zenodo record {record_id} has been withdrawn (410 Gone at {url}); its files "
                "are no longer published: look for another version on its concept record"
            )
        check_status(response, url, f"Zenodo record {record_id}")
        if response.status_code != 200:
            raise SourceContentError(
                f"{response.url} answered {response.status_code} instead of the record "
                f"{record_id}; {_fix(base)}"
            )
        data = _read(response, base, record_id)
        if not isinstance(data, Mapping):
            raise SourceContentError(
                f"{response.url} answered JSON that is not an object; is "
                f"{ZENODO_ENDPOINT_ENV}={base} a Zenodo or InvenioRDM server?"
            )
        return Record.from_json(data, requested=record_id, url=str(response.url), endpoint=base)
    finally:
        if own:
            http.close()
