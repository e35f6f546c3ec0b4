"""Fetch zoos from and push zoos to the Hugging Face Hub (the one module using huggingface_hub).

A zoo on the hub is a *dataset* repo holding the zoo directory as it is on disk (``zoo.json`` and
``shards/*.h5``) plus a generated dataset card ``README.md``. :func:`fetch` downloads the
manifest first, then only the shards that the requested split and epochs need, and checks every
one of them against the manifest's sha256 before returning. :func:`push` verifies a local zoo,
uploads its shards, and then commits the manifest and the card, so that a manifest on the hub
never names a shard that is not there yet.

The endpoint is read at call time from ``HF_ENDPOINT`` (falling back to huggingface_hub's
default), and offline mode from ``HF_HUB_OFFLINE`` (or huggingface_hub's own setting).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub import CommitOperationAdd, HfApi, constants, hf_hub_download
from huggingface_hub import snapshot_download as _snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import repo_folder_name
from tqdm.auto import tqdm

from weightzoo import catalog
from weightzoo.errors import (
    GroupManifestError,
    HubError,
    ManifestError,
    ShardCorruptError,
    ShardMissingError,
    UnknownGroupError,
    UnsafePathError,
)
from weightzoo.storage.groups import GroupedManifest, group_dir, is_grouped
from weightzoo.storage.hashing import sha256_file
from weightzoo.storage.manifest import (
    GROUPED_FORMAT_VERSION,
    MANIFEST_NAME,
    Manifest,
    ShardEntry,
    safe_relative_path,
)
from weightzoo.storage.verify import shard_path, verify_zoo

__all__ = ["UnsafePathError", "fetch", "push", "resolve_repo"]

logger = logging.getLogger(__name__)

REPO_TYPE = "dataset"
CARD_NAME = "README.md"
# Errors that mean "the hub cannot be reached": fall back to what is already on disk.
_NETWORK_ERRORS = (OfflineModeIsEnabled, httpx2.TransportError)


# -- configuration ----------------------------------------------------------------------------


def _endpoint(endpoint: str | None) -> str:
    """The hub endpoint: the argument, else ``HF_ENDPOINT`` now, else huggingface_hub's default."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set now (or was when huggingface_hub was imported)."""
    value = os.environ.get("HF_HUB_OFFLINE", "")
    return constants.is_offline_mode() or value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def resolve_repo(name_or_repo: str, revision: str | None = None) -> tuple[str, str | None]:
    """Turn a catalog name or an ``owner/name`` repo id into ``(repo_id, revision)``.

    Args:
        name_or_repo: a catalog name (``mlds-ds1``) or a hub dataset repo id (``owner/name``).
        revision: an explicit revision; overrides the catalog's pinned one.

    Returns:
        The dataset repo id and the revision to use (``None``: the default branch).

    Raises:
        UnknownZooError: for a name that is neither in the catalog nor a repo id.
        HubError: for a catalog zoo that has no hub copy yet.
    """
    if "/" in name_or_repo:
        owner, _, name = name_or_repo.partition("/")
        if not owner or not name or "/" in name:
            raise HubError(
                f"{name_or_repo!r} is not a hub dataset repo id; pass owner/name (e.g. "
                "your-user/mlds-ds1) or a catalog name from `weightzoo list`."
            )
        return name_or_repo, revision
    entry = catalog.get_entry(name_or_repo)
    if entry.hub_repo is None:
        raise HubError(
            f"zoo {entry.name!r} is not published on the hub yet. Generate it locally with "
            f"`weightzoo generate {entry.name}`, or fetch a copy someone pushed by passing its "
            "repo id: `weightzoo fetch OWNER/NAME`."
        )
    return entry.hub_repo, revision or entry.revision


# -- fetch ------------------------------------------------------------------------------------


def _describe_bytes(data: bytes) -> str:
    """A short, printable description of received content, for error messages."""
    head = data[:200].decode("utf-8", errors="replace")
    kind = "an HTML page" if "<html" in head.lower() or "<!doctype" in head.lower() else "text"
    shown = " ".join(head.split())[:80]
    return f"{kind} of {len(data)} bytes starting {shown!r}"


def _read_manifest_data(path: Path, repo_id: str) -> dict:
    """The JSON of a downloaded manifest (any version), or a ManifestError naming what came."""
    try:
        raw = path.read_bytes()
        data = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        received = _describe_bytes(raw) if "raw" in locals() else "nothing readable"
        raise ManifestError(
            f"{MANIFEST_NAME} of {repo_id} is not a weightzoo manifest: received {received} "
            f"({exc}). A proxy or login page may be answering instead of the hub; check "
            "HF_ENDPOINT and your network."
        ) from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{MANIFEST_NAME} of {repo_id} is not a weightzoo manifest")
    return data


def _parse_manifest(path: Path, repo_id: str) -> Manifest:
    """Read a downloaded manifest, refusing any path that leaves the zoo directory."""
    data = _read_manifest_data(path, repo_id)
    rows = data.get("shards") if isinstance(data, dict) else None
    for row in rows if isinstance(rows, list) else []:
        file = row.get("file") if isinstance(row, dict) else None
        try:
            safe_relative_path(file, what="shard file")
        except ManifestError as exc:
            raise UnsafePathError(
                f"{MANIFEST_NAME} of hub repo {repo_id} names shard file {file!r}, which is "
                "outside the zoo directory; nothing was downloaded. The repo is malformed or "
                "malicious: do not use it."
            ) from exc
    return Manifest.from_dict(data, source=f"{path.name} of {repo_id}")


def _grouped_shards(
    source: _Source,
    root: Path,
    blobs: Path | None,
    data: dict,
    split: str | Sequence[str] | None,
    epochs: int | str | Iterable[int] | None,
    group: str | Sequence[str] | None,
) -> list[ShardEntry]:
    """The shards a selection needs in a grouped zoo, named relative to the zoo directory.

    Each selected group's manifest is downloaded and checked against the top manifest's sha256
    first (a mismatching download is deleted), so every shard hash used comes through the chain.
    """
    top = GroupedManifest.from_dict(data, source=f"{MANIFEST_NAME} of {source.repo_id}")
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
        path = _download_file(source, f"{entry.path}/{MANIFEST_NAME}")
        actual = sha256_file(path)
        if actual != entry.manifest_sha256:
            _remove_download(path, blobs)
            raise GroupManifestError(
                f"{entry.path}/{MANIFEST_NAME} of hub repo {source.repo_id} (revision "
                f"{source.ref}) has sha256 {actual}, but the top manifest records "
                f"{entry.manifest_sha256}; it was deleted. The hub copy is corrupt or changed "
                "after its top manifest: report it to the zoo's maintainer."
            )
        manifest = _parse_manifest(path, source.repo_id)
        wanted += [
            dataclasses.replace(shard, file=f"{entry.path}/{shard.file}")
            for shard in manifest.shards_for(split, epochs)
        ]
    return wanted


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
    """The shard's path if it may be read: a regular file, or in the cache a link to a blob."""
    path = root / entry.file
    if path.is_symlink():
        if blobs is None or path.resolve().parent != blobs:
            return None  # a link placed in a local directory is never a download of ours
        try:
            shard_path(root, entry)
        except UnsafePathError:
            return None
    return path if path.is_file() else None


def _refuse_linked_folders(root: Path, wanted: Sequence[ShardEntry]) -> None:
    """Refuse shards whose folder (``shards/``, a group's) is a link out of the zoo directory.

    A link in place of a shard file is removed and the shard downloaded (see
    :func:`_fetch_shards`), but a download into a linked folder would land outside the zoo.

    Raises:
        UnsafePathError: naming the folder and where it leads.
    """
    inside = root.resolve()
    for folder in sorted({(root / s.file).parent for s in wanted}):
        if not folder.resolve().is_relative_to(inside):
            raise UnsafePathError(
                f"{folder} is a link to {folder.resolve()}, outside the zoo directory {root}; "
                "weightzoo does not download through such links. Replace it with a directory."
            )


def _present(root: Path, entry: ShardEntry, blobs: Path | None) -> bool:
    path = _usable(root, entry, blobs)
    return path is not None and path.stat().st_size == entry.bytes


def _verify(
    root: Path, shards: Sequence[ShardEntry], blobs: Path | None, progress: bool
) -> list[tuple[str, str]]:
    """Hash every shard; delete and return ``(file, actual sha256)`` for the bad ones."""
    bad = []
    total = sum(s.bytes for s in shards)
    with tqdm(total=total, unit="B", unit_scale=True, desc="verify", disable=not progress) as bar:
        for entry in shards:
            path = _usable(root, entry, blobs)
            actual = sha256_file(path) if path is not None else "missing"
            if actual != entry.sha256:
                _remove_download(root / entry.file, blobs)
                bad.append((entry.file, actual))
            bar.update(entry.bytes)
    return bad


def _download_shards(
    repo_id: str,
    commit: str,
    files: Iterable[str],
    *,
    cache_dir: str | None,
    local_dir: Path | None,
    endpoint: str,
    token: str | bool | None,
    progress: bool,
) -> None:
    """Download exactly ``files`` of one commit (``allow_patterns`` with globs escaped)."""
    patterns = [glob.escape(f) for f in files]
    if not patterns:
        return
    _snapshot_download(
        repo_id,
        repo_type=REPO_TYPE,
        revision=commit,
        allow_patterns=patterns,
        cache_dir=cache_dir,
        local_dir=local_dir,
        endpoint=endpoint,
        token=token,
        tqdm_class=tqdm if progress else None,
    )


def fetch(
    name_or_repo: str,
    *,
    split: str | Sequence[str] | None = None,
    epochs: int | str | Iterable[int] | None = None,
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

    The manifest is downloaded first; the shards the selection needs are then downloaded with
    ``snapshot_download(allow_patterns=...)`` into the hub cache (or ``local_dir``), and every
    selected shard is checked against the manifest's sha256 before the path is returned. A shard
    that fails is deleted (never left for later use) and downloaded once more; if it fails
    again, :class:`~weightzoo.errors.ShardCorruptError` is raised. Shards already present cost
    no download. Offline (``HF_HUB_OFFLINE=1`` or the hub unreachable) the cache is used, and
    what is missing from it is named.

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
        HubError: if the repo, revision or manifest cannot be found, or offline data is missing.
        UnsafePathError: if the manifest names a path outside the zoo directory.
        GroupManifestError: if a group's manifest differs from the hash the top one records.
        UnknownGroupError: for a group the zoo does not have (or any group of a version-1 zoo).
        ShardCorruptError: if a shard's sha256 differs from the manifest after a retry.
        UnknownSplitError, EpochError: for a selection the zoo does not have.
    """
    repo_id, revision = resolve_repo(name_or_repo, revision)
    endpoint = _endpoint(endpoint)
    cache = os.fspath(cache_dir) if cache_dir is not None else None
    local = Path(local_dir) if local_dir is not None else None
    where = (
        f"{local}" if local is not None else f"the hub cache ({cache or constants.HF_HUB_CACHE})"
    )
    offline = _offline()
    reason = "HF_HUB_OFFLINE is set"
    ref = revision or constants.DEFAULT_REVISION
    if not offline:
        try:
            info = HfApi(endpoint=endpoint, token=token).dataset_info(repo_id, revision=ref)
            if info.sha:
                if local is None:
                    _record_ref(cache, repo_id, ref, info.sha)
                ref = info.sha
        except (RepositoryNotFoundError, GatedRepoError) as exc:
            raise HubError(
                f"dataset repo {repo_id} not found on {endpoint} (or it is private and no valid "
                "token was given). Check the repo id, or log in with `hf auth login`."
            ) from exc
        except RevisionNotFoundError as exc:
            raise HubError(f"repo {repo_id} has no revision {ref!r} on {endpoint}") from exc
        except (*_NETWORK_ERRORS, HfHubHTTPError) as exc:
            offline, reason = True, f"the hub at {endpoint} cannot be reached ({exc})"
            logger.warning("%s; using the data already in %s", reason, where)

    source = _Source(
        repo_id, ref, cache, local, endpoint, token, offline, reason, where, name_or_repo, progress
    )
    manifest_path = _download_file(source, MANIFEST_NAME)
    root = manifest_path.parent
    blobs = _cache_blobs(root, local)
    data = _read_manifest_data(manifest_path, repo_id)
    if data.get("format_version") == GROUPED_FORMAT_VERSION:
        wanted = _grouped_shards(source, root, blobs, data, split, epochs, group)
    else:
        if group is not None:
            raise UnknownGroupError(
                f"hub repo {repo_id} holds a version-1 zoo without groups; drop group={group!r}"
            )
        wanted = _parse_manifest(manifest_path, repo_id).shards_for(split, epochs)
    return _fetch_shards(source, root, blobs, wanted)


@dataclass(frozen=True)
class _Source:
    """Where a fetch downloads from and to, and how (one commit of one repo)."""

    repo_id: str
    ref: str
    cache: str | None
    local: Path | None
    endpoint: str
    token: str | bool | None
    offline: bool
    reason: str
    where: str
    name_or_repo: str
    progress: bool


def _download_file(source: _Source, filename: str) -> Path:
    """Download one manifest file of the source's commit (or find it in the cache offline)."""
    repo_id, ref, cache, local = source.repo_id, source.ref, source.cache, source.local
    endpoint, token, offline = source.endpoint, source.token, source.offline
    reason, where, name_or_repo = source.reason, source.where, source.name_or_repo
    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                repo_type=REPO_TYPE,
                revision=ref,
                cache_dir=cache,
                local_dir=local,
                endpoint=endpoint,
                token=token,
                local_files_only=offline,
            )
        )
    except LocalEntryNotFoundError as exc:
        raise HubError(
            f"{reason}, and {where} holds no {filename} of {repo_id} (revision {ref}). "
            f"Connect to the hub and run `weightzoo fetch {name_or_repo}` once."
        ) from exc
    except EntryNotFoundError as exc:
        raise HubError(
            f"hub repo {repo_id} (revision {ref}) has no {filename}: it is not a weightzoo "
            "zoo. Push zoos with `weightzoo push`."
        ) from exc
    except (*_NETWORK_ERRORS, HfHubHTTPError) as exc:
        raise HubError(f"downloading {filename} of {repo_id} failed: {exc}") from exc
    except OSError as exc:
        # huggingface_hub's own checks (e.g. the size it was promised) fail with a bare OSError
        raise ManifestError(
            f"{filename} of {repo_id} from {endpoint} did not arrive as a manifest: "
            f"{' '.join(str(exc).split())} A proxy or login page may be answering instead of "
            "the hub; check HF_ENDPOINT and your network."
        ) from exc


def _fetch_shards(
    source: _Source, root: Path, blobs: Path | None, wanted: Sequence[ShardEntry]
) -> Path:
    """Download the ``wanted`` shards that are not present, verify all, retry once."""
    repo_id, ref, cache, local = source.repo_id, source.ref, source.cache, source.local
    endpoint, token, offline = source.endpoint, source.token, source.offline
    reason, where, name_or_repo = source.reason, source.where, source.name_or_repo
    progress = source.progress
    _refuse_linked_folders(root, wanted)
    for attempt in range(2):
        missing = [s for s in wanted if not _present(root, s, blobs)]
        for entry in missing:
            if (root / entry.file).is_symlink():
                _remove_download(root / entry.file, blobs)  # the link only, never its target
        if missing and offline:
            names = ", ".join(s.file for s in missing)
            raise ShardMissingError(
                f"{reason}, and {len(missing)} of the {len(wanted)} shards that this selection "
                f"needs are not in {where}: {names}. Connect to the hub and rerun "
                f"`weightzoo fetch {name_or_repo}` with the same --split/--epochs."
            )
        try:
            _download_shards(
                repo_id,
                ref,
                [s.file for s in missing],
                cache_dir=cache,
                local_dir=local,
                endpoint=endpoint,
                token=token,
                progress=progress,
            )
        except (*_NETWORK_ERRORS, HfHubHTTPError, OSError) as exc:
            raise HubError(
                f"downloading shards of {repo_id} failed: {exc}. Rerun the same fetch: complete "
                "shards are kept and only the rest is downloaded."
            ) from exc
        bad = _verify(root, wanted, blobs, progress)
        if not bad:
            return root
        if attempt == 0 and not offline:
            logger.warning("%d shard(s) failed their sha256 check; downloading again", len(bad))
            continue
        expected = {s.file: s.sha256 for s in wanted}
        details = "; ".join(f"{f}: sha256 {a}, expected {expected[f]}" for f, a in bad)
        raise ShardCorruptError(
            f"{len(bad)} shard(s) of {repo_id} (revision {ref}) do not match the manifest and "
            f"were deleted: {details}. The hub copy is corrupt or changed after its manifest; "
            "report it to the zoo's maintainer or fetch another revision."
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
