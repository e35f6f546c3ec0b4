"""Fetch zoos from and push zoos to the Hugging Face Hub (the one module using huggingface_hub).

A zoo on the hub is a *dataset* repo holding the zoo directory as it is on disk (``zoo.json`` and
``shards/*.h5``) plus a generated dataset card ``README.md``. :func:`fetch` downloads the
manifest first, then only the shards that the requested split and epochs need, and checks every
one of them against the manifest's sha256 before returning. :func:`push` verifies a local zoo,
uploads its shards, and then commits the manifest and the card, so that a manifest on the hub
never names a shard that is not there yet.

A fetch treats the hub as untrusted: repo ids and revisions are checked before they reach a URL
or a path, the commit and the headers the hub answers are checked before huggingface_hub turns
them into file names, manifests are bounded in size and parsed as every weightzoo manifest is
(one that fails is not kept). In a local directory a fetch writes only into an empty one or one
holding the same zoo, never overwrites or deletes a file that it did not download itself (a link
inside it found in place of a shard is removed, never its target), and refuses, before any
request, a directory holding a link out of it or to nothing, a link among huggingface_hub's
records, or a FIFO or device. What it reads there it opens without following a link or waiting
on a FIFO.

The endpoint is read at call time from ``HF_ENDPOINT`` (falling back to huggingface_hub's
default), and offline mode from ``HF_HUB_OFFLINE`` (or huggingface_hub's own setting).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import errno
import glob
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple

import httpx2
from huggingface_hub import CommitOperationAdd, HfApi, constants, get_session, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import silent_tqdm, validate_repo_id
from tqdm.auto import tqdm

from weightzoo import catalog
from weightzoo._types import EpochSelection, SplitSelection
from weightzoo.errors import (
    GroupManifestError,
    HubError,
    InvalidOptionError,
    ManifestError,
    ShardCorruptError,
    ShardMissingError,
    SpecMismatchError,
    UnknownGroupError,
    UnsafeFileError,
    UnsafePathError,
)
from weightzoo.storage.groups import GroupedManifest, group_dir, is_grouped
from weightzoo.storage.hashing import sha256_stream
from weightzoo.storage.manifest import (
    GROUPED_FORMAT_VERSION,
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    Manifest,
    ShardEntry,
    parse_manifest_bytes,
    safe_relative_path,
)
from weightzoo.storage.verify import shard_path, verify_zoo

__all__ = ["UnsafePathError", "fetch", "push", "resolve_repo"]

logger = logging.getLogger(__name__)

REPO_TYPE = "dataset"
CARD_NAME = "README.md"
# Errors that mean "the hub cannot be reached": fall back to what is already on disk.
_NETWORK_ERRORS = (OfflineModeIsEnabled, httpx2.TransportError)
_COMMIT = re.compile(r"[0-9a-f]{40}")
# Characters git refuses in a ref name (check-ref-format), control characters and space included.
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_SIZE = re.compile(r"[0-9]{1,19}")
# Where huggingface_hub keeps its record of each file it downloaded into a local directory.
_HF_RECORDS = (".cache", "huggingface")
_DOWNLOAD_RECORDS = (*_HF_RECORDS, "download")
# A download record holds a commit, an etag and a time: far less than this.
_MAX_RECORD_BYTES = 4096
_SPECIAL_KINDS = {
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
}
_SHARD_WORKERS = 8
# Set while this thread (or a download worker of it) runs a fetch: the hub's answers are checked.
_CHECKING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "weightzoo_hub_checking", default=False
)
# Set while a file is downloaded: the largest body the hub may answer with, and whether the
# file is a manifest (bounded by MAX_MANIFEST_BYTES) or a shard (by the size its manifest records).
_BODY_LIMIT: contextvars.ContextVar[tuple[int, bool] | None] = contextvars.ContextVar(
    "weightzoo_hub_body_limit", default=None
)


# -- configuration ----------------------------------------------------------------------------


def _endpoint(endpoint: str | None) -> str:
    """The hub endpoint: the argument, else ``HF_ENDPOINT`` now, else huggingface_hub's default."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set now (or was when huggingface_hub was imported)."""
    value = os.environ.get("HF_HUB_OFFLINE", "")
    return constants.is_offline_mode() or value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def resolve_repo(name_or_repo: str, revision: str | None = None) -> tuple[str, str | None]:
    """Turn a catalog name or an ``owner/name`` repo id into a checked ``(repo_id, revision)``.

    Both are checked here, before they reach any URL or path: the repo id must be ``owner/name``
    as the hub allows it, and the revision a 40-hex commit id or a branch or tag name by the
    rules of ``git check-ref-format`` that keep it a plain relative path.

    Args:
        name_or_repo: a catalog name (``mlds-ds1``) or a hub dataset repo id (``owner/name``).
        revision: an explicit revision; overrides the catalog's pinned one.

    Returns:
        The dataset repo id and the revision to use (``None``: the default branch).

    Raises:
        UnknownZooError: for a name that is neither in the catalog nor a repo id.
        HubError: for an invalid repo id, or a catalog zoo that has no hub copy yet (the
            message names the zoo's other sources: its original release, its generation).
        InvalidOptionError: for a revision that is no commit id, branch or tag name.
    """
    if "/" in name_or_repo:
        repo_id = name_or_repo
    else:
        entry = catalog.get_entry(name_or_repo)
        if entry.hub_repo is None:
            raise HubError(f"zoo {entry.name!r} has no hub copy yet. {_other_sources(entry)}")
        repo_id, revision = entry.hub_repo, revision or entry.revision
    return _check_repo_id(repo_id), None if revision is None else _check_revision(revision)


def _other_sources(entry: catalog.CatalogEntry) -> str:
    """Where else a zoo without a hub copy comes from, as advice."""
    ways = []
    if entry.release is not None:
        ways.append(
            f"`weightzoo fetch {entry.name}` converts its original release "
            f"({entry.release.where}; in Python: "
            f"weightzoo.sources.fetch.fetch_zoo({entry.name!r}))"
        )
    if entry.generation is not None:
        ways.append(f"`weightzoo generate {entry.name}` trains it ({entry.generation.describe()})")
    ways.append("a copy someone pushed is fetched by its repo id: `weightzoo fetch OWNER/NAME`")
    return "; ".join(ways) + "."


def _check_repo_id(repo_id: str) -> str:
    """Return ``repo_id`` if it is ``owner/name`` as huggingface_hub validates repo ids."""
    try:
        validate_repo_id(repo_id)
        valid = repo_id.count("/") == 1
    except HFValidationError:
        valid = False
    if not valid:
        raise HubError(
            f"{repo_id!r} is not a hub dataset repo id; pass owner/name (letters, digits, '-', "
            "'_' and '.', e.g. your-user/mlds-ds1) or a catalog name from `weightzoo list`."
        )
    return repo_id


def _check_revision(revision: str) -> str:
    """Return ``revision`` if it is a 40-hex commit id or a safe branch or tag name."""
    if not isinstance(revision, str) or not (_COMMIT.fullmatch(revision) or _is_ref_name(revision)):
        raise InvalidOptionError(
            f"revision {revision!r} is neither a 40-hex commit id nor a branch or tag name (git "
            "ref names have no '..', '@{', space, control character or any of ~^:?*[\\, and do "
            "not start with '/' or '-'); pass e.g. main, v1.0 or a commit id."
        )
    return revision


def _is_ref_name(name: str) -> bool:
    """Whether ``name`` passes the rules of ``git check-ref-format`` that keep it a plain path.

    Characters that do not print (any script's) are refused too, so that a revision shown in a
    message or used as a file name is what it looks like.
    """
    parts = name.split("/")  # a leading, trailing or doubled '/' gives an empty part
    return not (
        name in ("", "@")
        or not name.isprintable()
        or name.startswith("-")
        or name.endswith(".")
        or ".." in name
        or "@{" in name
        or _REF_FORBIDDEN.search(name) is not None
        or any(not part or part.startswith(".") or part.endswith(".lock") for part in parts)
    )


# -- what the hub answers ---------------------------------------------------------------------


def _install_checks() -> None:
    """Add :func:`_check_response` to huggingface_hub's shared HTTP client, once per client.

    The hook does nothing outside a fetch (see ``_CHECKING``), so it may stay installed.
    """
    hooks = get_session().event_hooks["response"]
    if _check_response not in hooks:
        hooks.append(_check_response)


def _check_response(response: httpx2.Response) -> None:
    """During a fetch, refuse an answer whose headers huggingface_hub would turn into file names.

    huggingface_hub names cache files after a file's ETag (``blobs/<etag>``, ``<etag>.lock``,
    ``<etag>.incomplete``) and folders after ``X-Repo-Commit`` (``snapshots/``, ``.no_exist/``):
    a hub answering ``ETag: "../../x"`` would have it write outside the cache. While a manifest is
    downloaded, a body larger than the limit (or of no stated size) is refused as well.

    Raises:
        UnsafePathError: for an ETag, xet hash or commit that is not a plain file name.
        ManifestError: for a manifest larger than :data:`MAX_MANIFEST_BYTES`.
    """
    if not _CHECKING.get():
        return
    headers = response.headers
    names = ["X-Linked-Etag", "X-Xet-Hash"]
    if response.request.method == "HEAD":  # the metadata request; a GET's ETag names nothing
        names.append("ETag")
    for key in names:
        value = headers.get(key)
        if value is not None and not _plain_name(value.lstrip("W/").strip('"')):
            raise UnsafePathError(
                f"the hub answered {response.request.url} with {key} {value!r}, which "
                "huggingface_hub would use as a file name outside its folder; nothing of it was "
                "written. The endpoint is not a Hugging Face Hub or is malicious: check "
                "HF_ENDPOINT."
            )
    commit = headers.get("X-Repo-Commit")
    if commit is not None and not _COMMIT.fullmatch(commit):
        raise UnsafePathError(
            f"the hub answered {response.request.url} with X-Repo-Commit {commit!r}, which is "
            "not a 40-hex commit id; nothing of it was written. The endpoint is not a Hugging "
            "Face Hub or is malicious: check HF_ENDPOINT."
        )
    limit = _BODY_LIMIT.get()
    if limit is not None:
        _check_body_size(response, *limit)


def _plain_name(value: str) -> bool:
    """Whether ``value`` names a single file: no separator, not ``.``/``..``, printable."""
    return value not in ("", ".", "..") and value.isprintable() and not set(value) & {"/", "\\"}


def _check_body_size(response: httpx2.Response, limit: int, manifest: bool) -> None:
    """Refuse an answer over ``limit`` bytes, or a body whose size is not stated.

    Raises:
        ManifestError: for a manifest.
        ShardCorruptError: for a shard (larger than its manifest records).
    """
    status = response.status_code
    if status >= 400:
        return
    sizes = [response.headers.get("X-Linked-Size")]
    if status < 300:  # a redirect's own body is not the file
        sizes.append(response.headers.get("Content-Length", "no stated number of"))
    for size in sizes:
        if size is None or (_SIZE.fullmatch(size) and int(size) <= limit):
            continue
        if manifest:
            raise ManifestError(
                f"the hub answers {response.request.url} with {size} bytes; a weightzoo manifest "
                f"has at most {limit}, so it was not downloaded. The repo is malformed or "
                "malicious: do not use it."
            )
        raise ShardCorruptError(
            f"the hub answers {response.request.url} with {size} bytes, but its manifest "
            f"records {limit}; it was not downloaded. The hub copy is corrupt or changed after "
            "its manifest: report it to the zoo's maintainer or fetch another revision."
        )


# -- fetch ------------------------------------------------------------------------------------


class _ZooId(NamedTuple):
    """What makes two manifests the same zoo: the version kind, the name, the spec fingerprint."""

    grouped: bool
    name: str
    fingerprint: str

    @classmethod
    def of(cls, data: dict) -> _ZooId:
        return cls(
            data.get("format_version") == GROUPED_FORMAT_VERSION,
            str(data.get("name")),
            str(data.get("spec_fingerprint")),
        )

    def __str__(self) -> str:
        kind = "grouped zoo" if self.grouped else "zoo"
        return f"{kind} {self.name!r} (spec {self.fingerprint[:12]})"


@dataclass
class _Source:
    """Where a fetch downloads from and to, and what it wrote (one commit of one repo)."""

    repo_id: str
    ref: str
    cache: str | None
    local: Path | None
    endpoint: str
    token: str | bool | None
    offline: bool
    reason: str
    name_or_repo: str
    progress: bool
    staging: Path
    # Files (relative to the zoo) this fetch downloaded: the only ones it may delete.
    written: set[str] = field(default_factory=set)
    # Manifests downloaded into ``staging``, to replace a local directory's once all check out.
    staged: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        if self.local is not None:
            return str(self.local)
        return f"the hub cache ({self.cache or constants.HF_HUB_CACHE})"


def _describe_bytes(data: bytes) -> str:
    """A short, printable description of received content, for error messages."""
    head = data[:200].decode("utf-8", errors="replace")
    kind = "an HTML page" if "<html" in head.lower() or "<!doctype" in head.lower() else "text"
    shown = " ".join(head.split())[:80]
    return f"{kind} of {len(data)} bytes starting {shown!r}"


# -- reading what a fetch finds on disk -------------------------------------------------------


def _check_regular(path: Path, status: os.stat_result) -> None:
    """Refuse to read anything but a regular file: a link, a FIFO, a socket or a device.

    Raises:
        UnsafePathError: for a link.
        UnsafeFileError: for a FIFO, socket or device (opening a FIFO would block the read).
        IsADirectoryError: for a directory.
    """
    mode = status.st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if stat.S_ISLNK(mode):
        raise UnsafePathError(
            f"{path} is a link; a fetch reads no file through a link. Replace it with the file "
            "itself, or fetch into another directory."
        )
    if not stat.S_ISREG(mode):
        kind = _SPECIAL_KINDS.get(stat.S_IFMT(mode), "special file")
        raise UnsafeFileError(
            f"{path} is a {kind}, not a regular file; a fetch never opens one "
            "(reading it could block or read a device). Delete it, or fetch into another "
            "directory."
        )


@contextlib.contextmanager
def _open_regular(path: Path) -> Iterator[BinaryIO]:
    """Open a regular file for reading, never through a link and never a FIFO or a device.

    The file is checked before it is opened and again once it is, and opened without following a
    link or waiting for a FIFO's writer, so that nothing swapped in between is read either.

    Raises:
        UnsafePathError, UnsafeFileError: as :func:`_check_regular`.
        OSError: for a directory, or a file that cannot be opened or read.
    """
    _check_regular(path, path.lstat())
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    with os.fdopen(os.open(path, flags | getattr(os, "O_BINARY", 0)), "rb") as handle:
        _check_regular(path, os.fstat(handle.fileno()))
        yield handle


def _read_regular(path: Path, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of a regular file (one more than ``limit``: it is too long)."""
    with _open_regular(path) as handle:
        return handle.read(limit + 1)


def _sha256_regular(path: Path) -> str:
    """Hex sha256 of a regular file, opened as :func:`_open_regular` does."""
    with _open_regular(path) as handle:
        return sha256_stream(handle)


def _shard_problem(path: Path, entry: ShardEntry) -> str | None:
    """What is wrong with a shard file (size or sha256, from one opening), ``None`` if nothing."""
    try:
        with _open_regular(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size != entry.bytes:
                return f"{size} bytes, expected {entry.bytes}"
            actual = sha256_stream(handle)
    except (OSError, UnsafeFileError) as exc:
        return f"not a readable regular file ({_one_line(exc)})"
    return None if actual == entry.sha256 else f"sha256 {actual}, expected {entry.sha256}"


def _real_file(path: Path, blobs: Path | None) -> Path:
    """The file to read for ``path``: itself, or in the hub cache the blob its link leads to.

    A link anywhere else (or to anything but a blob) is refused when it is opened.
    """
    if blobs is not None and path.is_symlink():
        resolved = path.resolve()
        if resolved.parent == blobs:
            return resolved
    return path


def _read_manifest_data(
    path: Path, repo_id: str, what: str = MANIFEST_NAME, blobs: Path | None = None
) -> dict:
    """The JSON of a manifest (any version), or a ManifestError naming what came.

    It is parsed as every weightzoo manifest is (:func:`parse_manifest_bytes`), from a regular
    file read without following a link (in the hub cache: the blob its snapshot links to).

    Raises:
        ManifestError: for a file that cannot be read, is too large or is no manifest.
        UnsafePathError, UnsafeFileError: for a link, a FIFO or a device in its place.
    """
    try:
        raw = _read_regular(_real_file(path, blobs), MAX_MANIFEST_BYTES)
    except OSError as exc:
        raise ManifestError(
            f"{what} of {repo_id} ({path}) cannot be read: {_one_line(exc)}. Rerun the fetch, "
            "or fetch into another directory."
        ) from exc
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"{what} of {repo_id} ({path}) has more than {MAX_MANIFEST_BYTES} bytes, the most a "
            "weightzoo manifest has. The repo is malformed or malicious: do not use it."
        )
    try:
        data = parse_manifest_bytes(raw, f"{what} of {repo_id}")
    except ManifestError as exc:
        cause = exc.__cause__ or exc
        raise ManifestError(
            f"{what} of {repo_id} is not a weightzoo manifest: received {_describe_bytes(raw)} "
            f"({type(cause).__name__}: {_one_line(cause)[:200]}). A proxy or login page may be "
            "answering instead of the hub (check HF_ENDPOINT and your network), or the repo is "
            "malformed: do not use it."
        ) from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{what} of {repo_id} is not a weightzoo manifest (not an object)")
    return data


def _manifest_of(data: dict, repo_id: str, what: str = MANIFEST_NAME) -> Manifest:
    """A downloaded version-1 manifest, refusing any path that leaves the zoo directory."""
    rows = data.get("shards")
    for row in rows if isinstance(rows, list) else []:
        file = row.get("file") if isinstance(row, dict) else None
        try:
            safe_relative_path(file, what="shard file")
        except ManifestError as exc:
            raise UnsafePathError(
                f"{what} of hub repo {repo_id} names shard file {file!r}, which is outside the "
                "zoo directory; nothing was downloaded. The repo is malformed or malicious: do "
                "not use it."
            ) from exc
    return Manifest.from_dict(data, source=f"{what} of {repo_id}")


@contextlib.contextmanager
def _not_kept_if_malformed(
    source: _Source, filename: str, path: Path, blobs: Path | None
) -> Iterator[None]:
    """Discard a manifest this fetch downloaded if it fails to parse (kept otherwise)."""
    try:
        yield
    except ManifestError:
        _discard(source, filename, path, blobs)
        raise


# -- the local directory ----------------------------------------------------------------------


def _held_zoo(local: Path) -> _ZooId | None:
    """The zoo a ``--local-dir`` holds; ``None`` when it is absent or holds no file or link.

    A fetch writes only into an empty directory or one holding the same zoo (see
    :func:`_check_same_zoo`); directories alone do not count as content. The whole directory is
    checked first (:func:`_scan_local_dir`), before any request.

    Raises:
        InvalidOptionError: for a file, or a directory holding files but no ``zoo.json``.
        UnsafePathError: for a ``zoo.json`` that is a link, or a link leading out of ``local``.
        UnsafeFileError: for a FIFO, socket or device in ``local``.
        ManifestError: for a ``zoo.json`` that is not a readable manifest.
    """
    if not os.path.lexists(local):
        return None
    if not local.is_dir():
        raise InvalidOptionError(
            f"--local-dir {local} is not a directory; pass a new or empty directory, or one "
            "holding an earlier fetch of the same zoo."
        )
    content = _scan_local_dir(local)
    manifest = local / MANIFEST_NAME
    _refuse_linked_manifest(manifest)
    if not os.path.lexists(manifest):
        if content is not None:
            raise InvalidOptionError(
                f"--local-dir {local} holds {content} but no {MANIFEST_NAME}: fetch writes only "
                "into an empty directory or one holding the same zoo. Pass a new or empty one."
            )
        return None
    try:
        data = _read_manifest_data(manifest, str(local))
    except ManifestError as exc:
        raise ManifestError(
            f"{manifest} is not a readable weightzoo manifest, so it is unknown which zoo "
            f"{local} holds; fetch into a new or empty --local-dir, or delete {local} first."
        ) from exc
    return _ZooId.of(data)


def _scan_local_dir(local: Path) -> Path | None:
    """Refuse what a fetch must not meet in ``local``; return its first content, if any.

    Content is every file and link but huggingface_hub's own records (``.cache/huggingface``).
    huggingface_hub writes its records, locks and ``.gitignore`` through whatever is at their
    paths, and a fetch reads what is there: so no link may lead out of ``local`` or to nothing,
    none may stand among the records, and no FIFO or device may be anywhere.

    Raises:
        UnsafePathError: for such a link, or a record that has other hard links.
        UnsafeFileError: for a FIFO, socket or device.
    """
    inside = os.path.realpath(local)
    records = local.joinpath(*_HF_RECORDS)
    content = None
    for folder, dirs, files in os.walk(local):  # a link to a folder is listed, never entered
        for name in sorted(dirs + files):
            path = Path(folder, name)
            if _check_local_entry(local, path, inside, records) and content is None:
                content = path
    return content


def _check_local_entry(local: Path, path: Path, inside: str, records: Path) -> bool:
    """Check one entry of :func:`_scan_local_dir`; return whether it counts as content."""
    status = path.lstat()
    in_records = path.is_relative_to(records)
    if stat.S_ISLNK(status.st_mode):
        # a link at .cache or .cache/huggingface moves the records wherever it leads
        _check_local_link(local, path, inside, in_records or records.is_relative_to(path))
        return True
    if stat.S_ISDIR(status.st_mode):
        return False
    _check_regular(path, status)
    if in_records and status.st_nlink > 1:
        raise UnsafePathError(
            f"{path} has {status.st_nlink - 1} other hard link(s), and huggingface_hub rewrites "
            f"its records in place, which would change those files too. Delete "
            f"{records} (it holds only download records), or fetch into another directory."
        )
    return not in_records


def _check_local_link(local: Path, path: Path, inside: str, in_records: bool) -> None:
    """Refuse a link out of ``local``, a dangling one, and any among huggingface_hub's records."""
    if not os.path.exists(path):
        why = "which leads to nothing (a download could create its target)"
    elif os.path.commonpath([inside, os.path.realpath(path)]) != inside:
        why = f"which leads outside the zoo directory {local}"
    elif in_records:
        why = "where huggingface_hub keeps its download records, which it writes through links"
    else:
        return
    raise UnsafePathError(
        f"{path} is a link to {os.readlink(path)!r}, {why}; a fetch neither reads nor writes "
        "through such a link. Delete the link (its target is kept), or fetch into another "
        "directory."
    )


def _refuse_linked_manifest(path: Path) -> None:
    if path.is_symlink():
        raise UnsafePathError(
            f"{path} is a link to {path.resolve()}; a fetch neither reads nor replaces a "
            "manifest through a link. Replace it with the file, or fetch into another directory."
        )


def _check_same_zoo(source: _Source, held: _ZooId | None, data: dict) -> None:
    """Refuse to fetch into a local directory that holds another zoo (nothing is written yet)."""
    found = _ZooId.of(data)
    if held is not None and found != held:
        raise SpecMismatchError(
            f"--local-dir {source.local} holds {held}, not the {found} of hub repo "
            f"{source.repo_id}; nothing was written. Fetch into a new or empty directory, or "
            f"delete {source.local} first."
        )


def _grouped_shards(
    source: _Source,
    root: Path,
    blobs: Path | None,
    top: GroupedManifest,
    split: SplitSelection,
    epochs: EpochSelection,
    group: str | Sequence[str] | None,
) -> list[ShardEntry]:
    """The shards a selection needs in a grouped zoo, named relative to the zoo directory.

    Each selected group's manifest is downloaded and checked against the top manifest's sha256
    first (a mismatching download is deleted, as is one that does not parse), so every shard
    hash used comes through the chain.
    """
    names = top.group_names if group is None else [group] if isinstance(group, str) else group
    wanted: list[ShardEntry] = []
    for name in names:
        entry = top.entry(name)
        if entry.manifest_sha256 is None:
            raise ManifestError(
                f"group {name!r} of hub repo {source.repo_id} is not finished (the top manifest "
                "records no hash for it); push the zoo again once it is generated"
            )
        group_dir(root, entry)  # before the download: never write through a link out of the zoo
        filename = f"{entry.path}/{MANIFEST_NAME}"
        path = _download_manifest(source, filename)
        actual = _sha256_regular(_real_file(path, blobs))
        if actual != entry.manifest_sha256:
            fate = _discard(source, filename, path, blobs)
            raise GroupManifestError(
                f"{filename} of hub repo {source.repo_id} (revision {source.ref}) has sha256 "
                f"{actual}, but the top manifest records {entry.manifest_sha256}; {fate}. The hub "
                "copy is corrupt or changed after its top manifest: report it to the zoo's "
                "maintainer."
            )
        with _not_kept_if_malformed(source, filename, path, blobs):
            data = _read_manifest_data(path, source.repo_id, filename, blobs)
            manifest = _manifest_of(data, source.repo_id, filename)
        wanted += [
            dataclasses.replace(shard, file=f"{entry.path}/{shard.file}")
            for shard in manifest.shards_for(split, epochs)
        ]
    return wanted


def _discard(source: _Source, filename: str, path: Path, blobs: Path | None) -> str:
    """Delete a bad download if this fetch wrote it; say what became of it, for the message."""
    if filename in source.staged:
        source.staged.remove(filename)
        return "it was not kept"
    if filename in source.written:
        _remove_download(path, blobs)
        source.written.discard(filename)
        return "it was deleted"
    return (
        f"{path} was there before this fetch, and a fetch deletes only what it downloaded: "
        f"delete it and run the same `weightzoo fetch {source.name_or_repo}` again"
    )


def _cache_blobs(root: Path, local: Path | None) -> Path | None:
    """The ``blobs/`` directory of the cached repo whose snapshot is ``root`` (cache mode)."""
    return None if local is not None else (root.parent.parent / "blobs").resolve()


def _remove_download(path: Path, blobs: Path | None) -> None:
    """Delete a downloaded file, never following a link out of where downloads live.

    In the hub cache a snapshot file is a link to ``blobs/<hash>``; that blob goes too (else the
    next download would link to it again), but only when the link really points there. Anywhere
    else the link itself is removed, never its target.
    """
    if path.is_symlink() and blobs is not None:
        target = path.resolve()
        if target.parent == blobs:
            target.unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def _record_ref(cache_dir: str | None, repo_id: str, ref: str, commit: str) -> None:
    """Write ``refs/<ref>`` of the hub cache (its documented layout) so offline use finds it.

    Only the downloads themselves go through huggingface_hub, which are made with the resolved
    commit (so that manifest and shards always come from the same commit); the branch or tag the
    user named must still resolve to that commit when the cache is used offline later.
    """
    if ref == commit:
        return
    folder = Path(cache_dir or constants.HF_HUB_CACHE) / repo_folder_name(
        repo_id=repo_id, repo_type=REPO_TYPE
    )
    path = folder / "refs" / ref
    if path.is_file() and path.read_text() == commit:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(commit)
    os.replace(temp, path)


def _usable(root: Path, entry: ShardEntry, blobs: Path | None) -> Path | None:
    """The file to read for a shard: its path, or in the cache the blob its link leads to.

    ``None`` for a link anywhere else: a link placed in a local directory is never a download
    of ours. Whether the file is a regular one is checked when it is opened.
    """
    path = root / entry.file
    if not path.is_symlink():
        return path
    if blobs is None or path.resolve().parent != blobs:
        return None
    try:
        shard_path(root, entry)
    except UnsafePathError:
        return None
    return path.resolve()


def _refuse_links_out(root: Path, files: Iterable[str], local: bool) -> None:
    """Refuse files whose folder (``shards/``, a group's) is a link out of the zoo directory.

    A link in place of a shard file is removed and the shard downloaded (see
    :func:`_existing_shards`), but a download into a linked folder would land outside the zoo.
    In a local directory the folders of huggingface_hub's download records count too.

    Raises:
        UnsafePathError: naming the folder and where it leads.
    """
    inside = root.resolve()
    folders = {(root / file).parent for file in files}
    if local:
        folders |= {root.joinpath(*_DOWNLOAD_RECORDS, file).parent for file in files}
    for folder in sorted(folders):
        if not folder.resolve().is_relative_to(inside):
            raise UnsafePathError(
                f"{folder} is a link to {folder.resolve()}, outside the zoo directory {root}; "
                "weightzoo does not download through such links. Replace it with a directory."
            )


def _check_shards(
    root: Path, entries: Sequence[ShardEntry], blobs: Path | None, progress: bool
) -> list[tuple[ShardEntry, str]]:
    """Hash every shard; return ``(entry, what is wrong)`` for those that do not match."""
    bad: list[tuple[ShardEntry, str]] = []
    if not entries:
        return bad
    total = sum(s.bytes for s in entries)
    with tqdm(total=total, unit="B", unit_scale=True, desc="verify", disable=not progress) as bar:
        for entry in entries:
            path = _usable(root, entry, blobs)
            problem = "a link" if path is None else _shard_problem(path, entry)
            if problem is not None:
                bad.append((entry, problem))
            bar.update(entry.bytes)
    return bad


def fetch(
    name_or_repo: str,
    *,
    split: SplitSelection = None,
    epochs: EpochSelection = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    progress: bool = True,
    group: str | Sequence[str] | None = None,
) -> Path:
    """Download a zoo, or the part of it that a split and epochs need, and verify it.

    A grouped zoo (format version 2) is fetched group by group: the top manifest, then each
    group's ``zoo.json`` (checked against the sha256 the top manifest records), then the shards
    the selection needs in every group (or only in ``group``).

    The manifest is downloaded first, then the shards the selection needs, into the hub cache
    (or ``local_dir``), and every selected shard is checked against the manifest's sha256 before
    the path is returned. A shard downloaded now that fails is deleted (never left for later
    use) and downloaded once more; if it fails again,
    :class:`~weightzoo.errors.ShardCorruptError` is raised. Shards already present cost no
    download. Offline (``HF_HUB_OFFLINE=1`` or the hub unreachable) the cache is used, and what
    is missing from it is named.

    The hub is not trusted. ``local_dir`` must be absent, empty, or hold the same zoo (name and
    spec fingerprint); a file there that the fetch did not download is never overwritten or
    deleted: one that fails its check is named in the error instead. It may hold no link that
    leads out of it or to nothing, no link among huggingface_hub's records
    (``.cache/huggingface``) and no FIFO or device. Repo id and revision are
    checked before any request; what the hub answers is checked before huggingface_hub makes a
    file name of it; a manifest has at most :data:`MAX_MANIFEST_BYTES` bytes.

    Args:
        name_or_repo: a catalog name (``mlds-ds1``) or any hub dataset repo id (``owner/name``).
        split: ``train``, ``val``, ``test``, several of them, or ``None``/``"all"``.
        epochs: ``None``/``"all"``, ``"last"``, one epoch label or several.
        revision: branch, tag or commit (default: the catalog's pin, else ``main``).
        cache_dir: hub cache directory (default: huggingface_hub's, ``HF_HUB_CACHE``).
        local_dir: download into this directory instead of the cache.
        endpoint: hub URL (default: ``HF_ENDPOINT`` or ``https://huggingface.co``).
        token: hub token (default: the logged-in token or ``HF_TOKEN``).
        progress: show tqdm progress bars.
        group: a grouped zoo's group, or several, to fetch (default: every group).

    Returns:
        The local zoo directory (holding ``zoo.json`` and the selected shards).

    Raises:
        HubError: if the repo id is invalid, the repo, revision or manifest cannot be found,
            the hub answers a commit that is not 40 hex, or offline data is missing.
        InvalidOptionError: for an invalid revision, or a ``local_dir`` holding files but no zoo.
        SpecMismatchError: if ``local_dir`` holds another zoo.
        UnsafePathError: if the manifest, a link or the hub's answer names a path outside the
            zoo directory (or the cache), or ``local_dir`` holds a link it refuses.
        UnsafeFileError: if ``local_dir`` holds a FIFO, socket or device.
        ManifestError: for a manifest that does not parse (it is not kept if this fetch
            downloaded it) or is larger than :data:`MAX_MANIFEST_BYTES`.
        GroupManifestError: if a group's manifest differs from the hash the top one records.
        UnknownGroupError: for a group the zoo does not have (or any group of a version-1 zoo).
        ShardCorruptError: if a shard's sha256 differs from the manifest after a retry, or a
            file that was there before the fetch differs from it.
        UnknownSplitError, EpochError: for a selection the zoo does not have.
    """
    repo_id, revision = resolve_repo(name_or_repo, revision)
    local = Path(local_dir) if local_dir is not None else None
    held = _held_zoo(local) if local is not None else None
    _install_checks()
    checking = _CHECKING.set(True)
    try:
        with tempfile.TemporaryDirectory(prefix="weightzoo-fetch-") as staging:
            source = _Source(
                repo_id=repo_id,
                ref=revision or constants.DEFAULT_REVISION,
                cache=os.fspath(cache_dir) if cache_dir is not None else None,
                local=local,
                endpoint=_endpoint(endpoint),
                token=token,
                offline=_offline(),
                reason="HF_HUB_OFFLINE is set",
                name_or_repo=name_or_repo,
                progress=progress,
                staging=Path(staging),
            )
            return _fetch(_pin_commit(source), held, split, epochs, group)
    finally:
        _CHECKING.reset(checking)


def _pin_commit(source: _Source) -> _Source:
    """The source with its branch or tag resolved to the hub's commit (or offline, if unreachable).

    Raises:
        HubError: for a missing repo or revision, or a commit that is not 40 hex digits.
    """
    if source.offline:
        return source
    repo_id, ref, endpoint = source.repo_id, source.ref, source.endpoint
    try:
        info = HfApi(endpoint=endpoint, token=source.token).dataset_info(repo_id, revision=ref)
    except (RepositoryNotFoundError, GatedRepoError) as exc:
        raise HubError(
            f"dataset repo {repo_id} not found on {endpoint} (or it is private and no valid "
            "token was given). Check the repo id, or log in with `hf auth login`."
        ) from exc
    except RevisionNotFoundError as exc:
        raise HubError(f"repo {repo_id} has no revision {ref!r} on {endpoint}") from exc
    except (*_NETWORK_ERRORS, HfHubHTTPError) as exc:
        reason = f"the hub at {endpoint} cannot be reached ({exc})"
        logger.warning("%s; using the data already in %s", reason, source.where)
        return dataclasses.replace(source, offline=True, reason=reason)
    if info.sha is None:
        return source
    if not isinstance(info.sha, str) or not _COMMIT.fullmatch(info.sha):
        raise HubError(
            f"the hub at {endpoint} answers commit {info.sha!r} for revision {ref!r} of "
            f"{repo_id}, which is not a 40-hex commit id; nothing was downloaded. The endpoint "
            "is not a Hugging Face Hub or is malicious: check HF_ENDPOINT."
        )
    if source.local is None:
        _record_ref(source.cache, repo_id, ref, info.sha)
    return dataclasses.replace(source, ref=info.sha)


def _fetch(
    source: _Source,
    held: _ZooId | None,
    split: SplitSelection,
    epochs: EpochSelection,
    group: str | Sequence[str] | None,
) -> Path:
    """Manifests first, then the shards; staged manifests are installed once all check out."""
    manifest_path = _download_manifest(source, MANIFEST_NAME)
    root = source.local if source.local is not None else manifest_path.parent
    blobs = _cache_blobs(root, source.local)
    with _not_kept_if_malformed(source, MANIFEST_NAME, manifest_path, blobs):
        data = _read_manifest_data(manifest_path, source.repo_id, blobs=blobs)
        if source.local is not None:
            _check_same_zoo(source, held, data)
        if data.get("format_version") == GROUPED_FORMAT_VERSION:
            what = f"{MANIFEST_NAME} of {source.repo_id}"
            parsed: Manifest | GroupedManifest = GroupedManifest.from_dict(data, source=what)
        else:
            parsed = _manifest_of(data, source.repo_id)
    if isinstance(parsed, GroupedManifest):
        wanted = _grouped_shards(source, root, blobs, parsed, split, epochs, group)
    else:
        if group is not None:
            raise UnknownGroupError(
                f"hub repo {source.repo_id} holds a version-1 zoo without groups; drop "
                f"group={group!r}"
            )
        wanted = parsed.shards_for(split, epochs)
    _fetch_shards(source, root, blobs, wanted)
    _install_staged(source)  # last: a fetch that fails leaves a local zoo's manifests as they were
    return root


def _hf_download(source: _Source, filename: str, local: Path | None) -> Path:
    """One file of the source's commit through huggingface_hub (into ``local``, else the cache)."""
    return Path(
        hf_hub_download(
            source.repo_id,
            filename,
            repo_type=REPO_TYPE,
            revision=source.ref,
            cache_dir=source.cache,
            local_dir=local,
            endpoint=source.endpoint,
            token=source.token,
            local_files_only=source.offline,
            tqdm_class=None if source.progress else silent_tqdm,
        )
    )


def _destination(source: _Source, filename: str) -> Path | None:
    """Where a download of ``filename`` lands (``None``: unknown, a branch in offline use)."""
    if source.local is not None:
        return source.local / filename
    if not _COMMIT.fullmatch(source.ref):
        return None
    folder = Path(source.cache or constants.HF_HUB_CACHE) / repo_folder_name(
        repo_id=source.repo_id, repo_type=REPO_TYPE
    )
    return folder / "snapshots" / source.ref / filename


def _recorded_commit(local: Path, filename: str) -> str | None:
    """The commit huggingface_hub recorded downloading ``local/filename`` from, while current.

    huggingface_hub keeps ``.cache/huggingface/download/<file>.metadata`` (commit, etag, time)
    beside each file it downloads into a local directory and trusts it while the file is not
    newer. It is read here without locks or writes: a directory that may hold another zoo is not
    touched before its manifest is compared.
    """
    record = local.joinpath(*_DOWNLOAD_RECORDS, f"{filename}.metadata")
    try:
        # no link followed, no FIFO opened (see _open_regular); a longer file is no record
        raw = _read_regular(record, _MAX_RECORD_BYTES)
        commit, _, stamp = raw.decode("utf-8").splitlines()[:3]
        status = (local / filename).lstat()
        current = (
            len(raw) <= _MAX_RECORD_BYTES
            and stat.S_ISREG(status.st_mode)
            and status.st_mtime - 1 <= float(stamp)
        )
    except (OSError, ValueError):  # UnsafePathError and UnsafeFileError are ValueErrors too
        return None
    return commit if current else None


def _download_manifest(source: _Source, filename: str) -> Path:
    """Download a manifest (the top one or a group's) of at most :data:`MAX_MANIFEST_BYTES` bytes.

    Into a local directory it goes straight to its place where nothing is in the way, or where
    huggingface_hub recorded it from this very commit (and offline, what is there is read);
    otherwise into the staging folder, to be compared first and installed by
    :func:`_install_staged` once everything checks out. So a fetch never replaces the manifest
    of another zoo, nor writes a byte into its directory.

    Raises:
        UnsafePathError: for a manifest that is (or in the cache, links) where it must not.
        ManifestError: for one that is too large or does not arrive whole.
        HubError: for one that cannot be downloaded.
    """
    local = source.local
    target = _destination(source, filename)
    existed = target is not None and os.path.lexists(target)
    into = local
    if local is not None:
        _refuse_linked_manifest(local / filename)
        if existed and not source.offline and _recorded_commit(local, filename) != source.ref:
            into = source.staging
        else:
            _refuse_links_out(local, [filename], local=True)
    limit = _BODY_LIMIT.set((MAX_MANIFEST_BYTES, True))
    try:
        path = _download_file(source, filename, into)
    finally:
        _BODY_LIMIT.reset(limit)
    if into is not local:
        source.staged.append(filename)
    elif not existed and not source.offline:
        source.written.add(filename)
    if local is None and path.is_symlink():
        blobs = (path.parents[filename.count("/")].parent.parent / "blobs").resolve()
        if path.resolve().parent != blobs:
            raise UnsafePathError(
                f"{path} in the hub cache is a link to {path.resolve()}, outside the cache's "
                "blobs; weightzoo reads no file through such a link. Delete the link and rerun "
                f"`weightzoo fetch {source.name_or_repo}`."
            )
    return path


def _install_staged(source: _Source) -> None:
    """Put each staged manifest in place of the local one it updates (same zoo, checked)."""
    for filename in source.staged:
        new, old = source.staging / filename, source.local / filename  # type: ignore[operator]
        _refuse_linked_manifest(old)
        if _read_regular(old, MAX_MANIFEST_BYTES) == new.read_bytes():
            continue
        handle, temp = tempfile.mkstemp(dir=old.parent, prefix=f".{old.name}.")
        with os.fdopen(handle, "wb") as out, new.open("rb") as data:
            shutil.copyfileobj(data, out)
        os.chmod(temp, 0o644)
        os.replace(temp, old)
    source.staged.clear()


def _download_file(source: _Source, filename: str, local: Path | None) -> Path:
    """Download one manifest file of the source's commit (or find it in the cache offline)."""
    repo_id, ref, endpoint = source.repo_id, source.ref, source.endpoint
    try:
        return _hf_download(source, filename, local)
    except LocalEntryNotFoundError as exc:
        raise HubError(
            f"{source.reason}, and {source.where} holds no {filename} of {repo_id} (revision "
            f"{ref}). Connect to the hub and run `weightzoo fetch {source.name_or_repo}` once."
        ) from exc
    except EntryNotFoundError as exc:
        raise HubError(
            f"hub repo {repo_id} (revision {ref}) has no {filename}: it is not a weightzoo "
            "zoo. Push zoos with `weightzoo push`."
        ) from exc
    except (*_NETWORK_ERRORS, HfHubHTTPError) as exc:
        raise HubError(f"downloading {filename} of {repo_id} failed: {_one_line(exc)}") from exc
    except OSError as exc:
        # huggingface_hub's own checks (e.g. the size it was promised) fail with a bare OSError
        raise ManifestError(
            f"{filename} of {repo_id} from {endpoint} did not arrive as a manifest: "
            f"{_one_line(exc)} A proxy or login page may be answering instead of the hub; check "
            "HF_ENDPOINT and your network."
        ) from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _existing_shards(
    source: _Source, root: Path, blobs: Path | None, wanted: Sequence[ShardEntry]
) -> list[ShardEntry]:
    """Check the wanted shards already there; return the ones to download.

    A file there before this fetch is used if it matches the manifest, and otherwise named in
    the error, never overwritten or deleted. A link in place of a shard in a local directory is
    removed (never its target) and the shard downloaded; in the cache a link must lead to a blob.

    Raises:
        ShardCorruptError: for files there before this fetch that do not match the manifest.
        UnsafePathError: for a link in the cache that leads outside its blobs.
    """
    missing, present = [], []
    for entry in wanted:
        path = root / entry.file
        if path.is_symlink() and (blobs is None or path.resolve().parent != blobs):
            if blobs is not None:
                raise UnsafePathError(
                    f"{path} in the hub cache is a link to {path.resolve()}, outside the "
                    "cache's blobs; weightzoo reads no file through such a link. Delete the "
                    f"link and rerun `weightzoo fetch {source.name_or_repo}`."
                )
            path.unlink()  # the link only: a link in a zoo directory is never ours to read
        if not os.path.exists(path):  # absent, or a cache link whose blob is gone
            missing.append(entry)
        else:
            present.append(entry)
    bad = _check_shards(root, present, blobs, source.progress)
    if bad:
        details = "; ".join(f"{root / entry.file}: {what}" for entry, what in bad)
        raise ShardCorruptError(
            f"{len(bad)} file(s) in {source.where} that were there before this fetch do not "
            f"match the manifest of {source.repo_id} (revision {source.ref}): {details}. A "
            "fetch overwrites or deletes only what it downloads itself: delete them and run "
            f"the same `weightzoo fetch {source.name_or_repo}` again."
        )
    return missing


def _download_shards(source: _Source, entries: Sequence[ShardEntry]) -> None:
    """Download shards of the source's commit, a few at a time, recording each one written."""
    if not entries:
        return
    errors: list[BaseException] = []
    with ThreadPoolExecutor(max_workers=min(_SHARD_WORKERS, len(entries))) as pool:
        # each worker runs in a copy of this context, so the hub's answers are checked there too
        jobs = {
            pool.submit(contextvars.copy_context().run, _download_shard, source, entry): entry
            for entry in entries
        }
        for job in as_completed(jobs):
            try:
                job.result()
                source.written.add(jobs[job].file)
            except Exception as exc:  # the first failure is raised below, once all stopped
                errors.append(exc)
                for other in jobs:
                    other.cancel()
    if errors:
        raise errors[0]


def _download_shard(source: _Source, entry: ShardEntry) -> None:
    """Download one shard (no larger than its manifest records), with weightzoo's errors."""
    filename = entry.file
    _BODY_LIMIT.set((entry.bytes, False))  # this worker's own context: nothing to reset
    try:
        _hf_download(source, filename, source.local)
    except EntryNotFoundError as exc:
        raise ShardMissingError(
            f"hub repo {source.repo_id} (revision {source.ref}) has no {filename}, which its "
            "manifest lists; the hub copy is incomplete: report it to the zoo's maintainer or "
            "fetch another revision."
        ) from exc
    except (*_NETWORK_ERRORS, HfHubHTTPError, OSError) as exc:
        raise HubError(
            f"downloading {filename} of {source.repo_id} failed: {_one_line(exc)}. Rerun the "
            "same fetch: complete shards are kept and only the rest is downloaded."
        ) from exc


def _fetch_shards(
    source: _Source, root: Path, blobs: Path | None, wanted: Sequence[ShardEntry]
) -> None:
    """Download the ``wanted`` shards that are not there, verify them, retry once."""
    _refuse_links_out(root, [s.file for s in wanted], local=source.local is not None)
    pending = _existing_shards(source, root, blobs, wanted)
    for attempt in range(2):
        if pending and source.offline:
            names = ", ".join(s.file for s in pending)
            raise ShardMissingError(
                f"{source.reason}, and {len(pending)} of the {len(wanted)} shards that this "
                f"selection needs are not in {source.where}: {names}. Connect to the hub and "
                f"rerun `weightzoo fetch {source.name_or_repo}` with the same --split/--epochs."
            )
        _download_shards(source, pending)
        bad = _check_shards(root, pending, blobs, source.progress)
        for entry, _ in bad:  # every one was downloaded now: never leave it for later use
            _discard(source, entry.file, root / entry.file, blobs)
        if not bad:
            return
        if attempt == 0:
            logger.warning("%d shard(s) failed their sha256 check; downloading again", len(bad))
            pending = [entry for entry, _ in bad]
            continue
        details = "; ".join(f"{entry.file}: {what}" for entry, what in bad)
        raise ShardCorruptError(
            f"{len(bad)} shard(s) of {source.repo_id} (revision {source.ref}) do not match the "
            f"manifest and were deleted: {details}. The hub copy is corrupt or changed after "
            "its manifest; report it to the zoo's maintainer or fetch another revision."
        )
    raise AssertionError("unreachable")  # pragma: no cover


# -- push -------------------------------------------------------------------------------------


def push(
    path: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = False,
    license: str = "cc-by-4.0",
    endpoint: str | None = None,
    token: str | bool | None = None,
    commit_message: str | None = None,
    plots: bool = True,
) -> str:
    """Verify a local zoo and upload it, with a generated dataset card, to a dataset repo.

    The repo is created if needed. The shards go up first (``upload_folder``, which with
    ``hf_xet`` installed is the resumable, multi-commit large-folder upload); the manifest and
    the card ``README.md`` follow in a last commit, so the manifest on the hub only ever names
    shards that are there.

    Args:
        path: the zoo directory.
        repo_id: target dataset repo, ``owner/name`` (or ``name`` in your own namespace).
        private: create the repo as private (an existing repo keeps its visibility).
        license: license identifier written to the card's front matter.
        endpoint: hub URL (default: ``HF_ENDPOINT`` or ``https://huggingface.co``).
        token: hub token with write access (default: the logged-in token or ``HF_TOKEN``).
        commit_message: message of the final commit.
        plots: upload the card's figures too (as ``weightzoo card`` draws them), when
            matplotlib (the ``plots`` extra) is installed.

    Returns:
        The URL of the commit that added the manifest.

    Raises:
        ZooNotFoundError: if ``path`` holds no zoo.
        ShardCorruptError: if a shard fails verification or the zoo is incomplete.
        HubError: if the hub refuses the upload.
    """
    zoo_dir = Path(path)
    contents = _push_contents(zoo_dir)
    failures = verify_zoo(zoo_dir)
    if failures:
        raise ShardCorruptError(
            f"zoo {zoo_dir} does not verify, nothing was uploaded: "
            + "; ".join(str(exc) for _, exc in failures)
        )
    endpoint = _endpoint(endpoint)
    api = HfApi(endpoint=endpoint, token=token)
    with tempfile.TemporaryDirectory(prefix="weightzoo-card-") as card_dir:
        card_files = _card_files(zoo_dir, Path(card_dir), repo_id, license, plots)
        return _upload(api, zoo_dir, contents, repo_id, private, card_files, commit_message)


@dataclass(frozen=True)
class _Contents:
    """What a push uploads: the zoo's name, its shard files, then its manifest files."""

    name: str
    shards: list[str]
    manifests: list[str]


def _push_contents(zoo_dir: Path) -> _Contents:
    """The files of a complete zoo (of either version), refusing an unfinished one.

    A grouped zoo's manifests go up top last, so the top manifest never names a group whose
    files are not there.
    """
    if not is_grouped(zoo_dir):
        manifest = Manifest.load(zoo_dir)
        if not manifest.complete:
            raise ShardCorruptError(
                f"zoo {zoo_dir} is incomplete (its shards do not cover every model and "
                f"checkpoint); finish it with `weightzoo generate {manifest.name} --out "
                f"{zoo_dir}` before pushing."
            )
        return _Contents(manifest.name, [s.file for s in manifest.shards], [MANIFEST_NAME])
    top = GroupedManifest.load(zoo_dir)
    if not top.finished:
        raise ShardCorruptError(
            f"grouped zoo {zoo_dir} is not finished (groups without a recorded manifest hash: "
            f"{', '.join(g.name for g in top.groups if g.manifest_sha256 is None)}); finish it "
            f"with `weightzoo generate {top.name} --out {zoo_dir}` before pushing."
        )
    shards, manifests = [], []
    for entry in top.groups:
        manifest = Manifest.load(group_dir(zoo_dir, entry))
        shards += [f"{entry.path}/{s.file}" for s in manifest.shards]
        manifests.append(f"{entry.path}/{MANIFEST_NAME}")
    return _Contents(top.name, shards, [*manifests, MANIFEST_NAME])


def _card_files(
    zoo_dir: Path, out: Path, repo_id: str, license: str, plots: bool
) -> dict[str, bytes]:
    """The card's files by repo path: ``README.md`` and, with matplotlib, its figures."""
    from weightzoo.card import write_card
    from weightzoo.errors import MissingExtraError

    try:
        card = write_card(zoo_dir, out, repo_id=repo_id, license=license, plots=plots)
    except MissingExtraError as exc:
        logger.info("card without figures: %s", exc)
        card = write_card(zoo_dir, out, repo_id=repo_id, license=license, plots=False)
    files = {CARD_NAME: card.read_bytes()}
    for figure in sorted(out.glob("figures/**/*.png")):
        files[figure.relative_to(out).as_posix()] = figure.read_bytes()
    return files


def _upload(
    api: HfApi,
    zoo_dir: Path,
    contents: _Contents,
    repo_id: str,
    private: bool,
    card_files: dict[str, bytes],
    commit_message: str | None,
) -> str:
    endpoint = api.endpoint
    try:
        url = api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
        repo_id = url.repo_id
        api.upload_folder(
            repo_id=repo_id,
            repo_type=REPO_TYPE,
            folder_path=zoo_dir,
            allow_patterns=[glob.escape(file) for file in contents.shards],
            commit_message=f"Upload {len(contents.shards)} shards of {contents.name}",
        )
        info = api.create_commit(
            repo_id=repo_id,
            repo_type=REPO_TYPE,
            operations=[
                *(CommitOperationAdd(file, zoo_dir / file) for file in contents.manifests),
                *(CommitOperationAdd(name, data) for name, data in card_files.items()),
            ],
            commit_message=commit_message or f"Add manifest and card of {contents.name}",
        )
    except (*_NETWORK_ERRORS, HfHubHTTPError) as exc:
        raise HubError(
            f"pushing {zoo_dir} to {repo_id} on {endpoint} failed: {exc}. Check that you are "
            "logged in with a write token (`hf auth login`); rerunning skips files already there."
        ) from exc
    logger.info("pushed %s; fetch it with `weightzoo fetch %s`", zoo_dir, repo_id)
    return str(info.commit_url)
