"""Grouped zoos (format version 2): a top ``zoo.json`` over groups that are version-1 zoos.

A grouped zoo holds models of different layouts (widths, heads) as *groups*; each group
``groups/<name>/`` is a complete version-1 zoo with its own manifest, shards and side files,
so every tool that reads one zoo reads one group unchanged. The top manifest lists the groups
in order with their model-id ranges (ids are unique across the zoo) and, once a group is
finished, the sha256 of its ``zoo.json``: a hash chain from the top manifest to every shard
(each group manifest records its shards' hashes). See ``docs/format.md``.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weightzoo._types import PathLike
from weightzoo.errors import (
    GroupManifestError,
    GroupRequiredError,
    ManifestError,
    UnknownGroupError,
    UnsafePathError,
    ZooNotFoundError,
)
from weightzoo.storage.hashing import sha256_file
from weightzoo.storage.manifest import (
    GROUPED_FORMAT_VERSION,
    MANIFEST_NAME,
    Manifest,
    ShardEntry,
    _as_bool,
    check_name,
    identity_fields,
    manifest_header,
    read_format_version,
    read_manifest_file,
    safe_relative_path,
    write_json_atomically,
)
from weightzoo.storage.verify import _allowed_roots, verify_zoo

GROUPS_DIR = "groups"
GROUP_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_GROUP_NAME_RULE = (
    "is not allowed: use lower-case letters, digits, '_' and '-', starting with a letter or digit"
)


def check_group_name(name: Any) -> str:
    """Return ``name`` if it is a valid group name (``[a-z0-9][a-z0-9_-]*``).

    Raises:
        ManifestError: for anything else (the name becomes a directory name).
    """
    return check_name(name, GROUP_NAME, "group name", _GROUP_NAME_RULE, ManifestError)


def group_path(name: str) -> str:
    """Where group ``name`` lives inside its zoo: ``groups/<name>``."""
    return f"{GROUPS_DIR}/{check_group_name(name)}"


@dataclass(frozen=True)
class GroupEntry:
    """One group of a grouped zoo, as the top manifest lists it.

    Attributes:
        name: the group's name, ``[a-z0-9][a-z0-9_-]*``.
        path: its directory relative to the zoo, ``groups/<name>``.
        num_models: models of the complete group.
        first_model_id: the group's model ids are ``first_model_id .. + num_models - 1``.
        manifest_sha256: sha256 of the group's ``zoo.json`` once the group is finished, else
            ``None``.
    """

    name: str
    path: str
    num_models: int
    first_model_id: int
    manifest_sha256: str | None = None

    @property
    def model_ids(self) -> range:
        """The group's model ids."""
        return range(self.first_model_id, self.first_model_id + self.num_models)

    def to_json(self) -> dict[str, Any]:
        """Manifest form: the fields, in their order."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, row: Any) -> GroupEntry:
        """Parse and validate a top-manifest row.

        Raises:
            ManifestError: for missing fields, a bad name or a path outside the zoo.
        """
        if not isinstance(row, dict):
            raise ManifestError(f"malformed group entry {row!r}")
        try:
            sha = row.get("manifest_sha256")
            name = check_group_name(row["name"])
            path = safe_relative_path(row["path"], what="group path")
            if path != group_path(name):
                raise ManifestError(
                    f"group {name!r} has path {path!r}; a group lives at {group_path(name)!r}"
                )
            entry = cls(
                name=name,
                path=path,
                num_models=int(row["num_models"]),
                first_model_id=int(row.get("first_model_id", 0)),
                manifest_sha256=None if sha is None else str(sha),
            )
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(f"malformed group entry {row!r:.200}: {exc}") from exc
        if entry.num_models < 0 or entry.first_model_id < 0:
            raise ManifestError(f"group {entry.name!r} has a negative model count or id")
        return entry


@dataclass
class GroupedManifest:
    """The parsed top ``zoo.json`` of a grouped zoo.

    Attributes:
        name: zoo name.
        family: the grouped spec's family.
        spec: the full grouped spec (JSON data, with every group's spec), compared on resume.
        spec_fingerprint: sha256 of the canonical spec.
        groups: the groups, in order.
        extra: anything else (generator version), kept verbatim.
        finished: every group is finished and its manifest hash recorded.
    """

    name: str
    family: str
    spec: dict[str, Any]
    spec_fingerprint: str
    groups: list[GroupEntry] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    finished: bool = False

    @property
    def group_names(self) -> list[str]:
        """The groups' names, in order."""
        return [g.name for g in self.groups]

    @property
    def num_models(self) -> int:
        """Models of the complete zoo, over every group."""
        return sum(g.num_models for g in self.groups)

    def entry(self, name: str) -> GroupEntry:
        """The entry of group ``name``.

        Raises:
            UnknownGroupError: listing the groups.
        """
        for entry in self.groups:
            if entry.name == name:
                return entry
        raise UnknownGroupError(
            f"grouped zoo {self.name!r} has no group {name!r}; its groups are "
            f"{', '.join(self.group_names)}"
        )

    # -- reading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, zoo_dir: PathLike) -> GroupedManifest:
        """Read and validate the top ``zoo.json`` of a grouped zoo.

        Raises:
            ZooNotFoundError: if there is no manifest.
            ManifestError: if it is malformed or not version 2.
        """
        data = read_manifest_json(zoo_dir)
        return cls.from_dict(data, source=str(Path(zoo_dir) / MANIFEST_NAME))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "manifest") -> GroupedManifest:
        """Build from the parsed JSON.

        Raises:
            FormatVersionError: for a version above 2.
            ManifestError: for anything malformed.
        """
        version = read_format_version(data, source)
        if version != GROUPED_FORMAT_VERSION:
            raise ManifestError(f"{source} is not a grouped zoo (format_version {version!r})")
        try:
            manifest = cls(
                **identity_fields(data),
                groups=[GroupEntry.from_json(row) for row in data["groups"]],
                extra=dict(data.get("extra", {})),
                finished=_as_bool(data.get("finished", False)),
            )
        except ManifestError as exc:
            raise type(exc)(f"{source}: {exc}") from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ManifestError(f"{source} is malformed: missing or bad field {exc}") from exc
        manifest._check_consistency(source)
        return manifest

    def _check_consistency(self, source: str) -> None:
        """Unique names and paths, disjoint model-id ranges, hashes for a finished zoo."""
        names = self.group_names
        if len(set(names)) != len(names):
            raise ManifestError(f"{source}: a group name is listed twice: {names}")
        paths = [g.path for g in self.groups]
        if len(set(paths)) != len(paths):
            raise ManifestError(f"{source}: a group path is listed twice: {paths}")
        ranges = sorted((g.first_model_id, g.model_ids.stop, g.name) for g in self.groups)
        for (_, end, first), (start, _, second) in itertools.pairwise(ranges):
            if start < end:
                raise ManifestError(
                    f"{source}: groups {first!r} and {second!r} share model ids; ids must be "
                    "unique across the zoo"
                )
        if self.finished:
            unfinished = [g.name for g in self.groups if g.manifest_sha256 is None]
            if unfinished or not self.groups:
                raise ManifestError(
                    f"{source}: the zoo is marked finished but groups {unfinished or '(none)'} "
                    "have no manifest hash"
                )

    # -- writing ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``zoo.json``."""
        header = manifest_header(GROUPED_FORMAT_VERSION, self.name, self.family, self.num_models)
        return header | {
            "spec_fingerprint": self.spec_fingerprint,
            "spec": self.spec,
            "groups": [g.to_json() for g in self.groups],
            "extra": self.extra,
            "finished": self.finished,
        }

    def save(self, zoo_dir: PathLike) -> None:
        """Write the top ``zoo.json`` atomically (the same way a version-1 manifest is)."""
        write_json_atomically(Path(zoo_dir), MANIFEST_NAME, self.to_dict())


def read_manifest_json(zoo_dir: PathLike) -> dict[str, Any]:
    """The parsed ``zoo.json`` of a zoo of any version (no validation beyond JSON).

    Raises:
        ZooNotFoundError: if there is no manifest (the message of :meth:`Manifest.load`).
        ManifestError: if it is not JSON.
    """
    path = Path(zoo_dir) / MANIFEST_NAME
    if not path.is_file():
        # Manifest.load's ZooNotFoundError says what to do (generate, fetch, or merge slices)
        return Manifest.load(zoo_dir).to_dict()
    data = read_manifest_file(path)
    if not isinstance(data, dict):
        raise ManifestError(f"{path} is not a weightzoo manifest")
    return data


def load_any(zoo_dir: PathLike) -> Manifest | GroupedManifest:
    """The manifest of a zoo of either version: :class:`Manifest` or :class:`GroupedManifest`.

    Raises:
        ZooNotFoundError, ManifestError, FormatVersionError: as the loaders.
    """
    data = read_manifest_json(zoo_dir)
    source = str(Path(zoo_dir) / MANIFEST_NAME)
    if data.get("format_version") == GROUPED_FORMAT_VERSION:
        return GroupedManifest.from_dict(data, source=source)
    return Manifest.from_dict(data, source=source)


def is_grouped(zoo_dir: PathLike) -> bool:
    """Whether ``zoo_dir`` holds a grouped (version-2) zoo; ``False`` if it holds none."""
    path = Path(zoo_dir) / MANIFEST_NAME
    if not path.is_file():
        return False
    return read_manifest_json(zoo_dir).get("format_version") == GROUPED_FORMAT_VERSION


def zoo_name(zoo_dir: PathLike) -> str:
    """The name of the zoo at ``zoo_dir`` (either version)."""
    return load_any(zoo_dir).name


def group_dir(zoo_dir: PathLike, entry: GroupEntry) -> Path:
    """The directory of a group, refusing one that is (or passes through) a link out of the zoo.

    Raises:
        UnsafePathError: if the directory resolves outside the zoo directory.
    """
    root = Path(zoo_dir)
    path = root / entry.path
    if not path.resolve().is_relative_to(root.resolve()):
        raise UnsafePathError(
            f"group {entry.name!r} of zoo {root} is a link to {path.resolve()}, outside the zoo "
            "directory; weightzoo does not read through such links. Replace it with the "
            "directory itself (fetch or generate it again)."
        )
    return path


def check_group_manifest(zoo_dir: PathLike, entry: GroupEntry) -> Path:
    """Check a group's ``zoo.json`` against the hash the top manifest records (if any).

    Returns:
        The group's directory.

    Raises:
        UnsafePathError: for a group that links out of the zoo.
        ZooNotFoundError: for a finished group whose manifest is missing.
        GroupManifestError: for a group manifest whose sha256 differs from the record.
    """
    path = group_dir(zoo_dir, entry)
    manifest = path / MANIFEST_NAME
    if entry.manifest_sha256 is None:
        if manifest.is_file():  # a group being written: no hash yet, but its identity holds
            check_group_identity(zoo_dir, entry, Manifest.load(path))
        return path
    # a hub-cache snapshot links its files to the repo's blobs/, as it does shards
    if not any(manifest.resolve().is_relative_to(r) for r in _allowed_roots(Path(zoo_dir))):
        raise UnsafePathError(
            f"{manifest} is a link to {manifest.resolve()}, outside the zoo directory; "
            "weightzoo does not read through such links. Fetch or generate the group again."
        )
    if not manifest.is_file():
        raise ZooNotFoundError(
            f"group {entry.name!r} of zoo {zoo_dir} has no {MANIFEST_NAME} at {manifest}; fetch "
            "the zoo again (`weightzoo fetch`) or regenerate the group"
        )
    actual = sha256_file(manifest)
    if actual != entry.manifest_sha256:
        raise GroupManifestError(
            f"{manifest} has sha256 {actual}, but the top manifest {Path(zoo_dir) / MANIFEST_NAME} "
            f"records {entry.manifest_sha256} for group {entry.name!r}: the group manifest was "
            "changed or replaced. Fetch the zoo again or regenerate the group."
        )
    check_group_identity(zoo_dir, entry, Manifest.load(path))
    return path


def check_group_identity(zoo_dir: PathLike, entry: GroupEntry, manifest: Manifest) -> None:
    """Check that a group's manifest is the group its top entry describes.

    The top entry's model count and first model id must be the group manifest's own (its
    ``num_models`` and ``extra.first_model_id``, 0 when absent), so that a top manifest edited
    after the fact, or group directories swapped or linked to one another, cannot serve one
    group's models under another's name or ids.

    Raises:
        GroupManifestError: naming the field that differs.
    """
    first = manifest.extra.get("first_model_id", 0)
    for field_name, recorded, actual in (
        ("num_models", entry.num_models, manifest.num_models),
        ("first_model_id", entry.first_model_id, first),
    ):
        if recorded != actual:
            raise GroupManifestError(
                f"{Path(zoo_dir) / entry.path / MANIFEST_NAME} has {field_name} {actual!r}, "
                f"but the top manifest {Path(zoo_dir) / MANIFEST_NAME} records "
                f"{recorded!r} for group {entry.name!r}: the top manifest was edited or the "
                "group directories were swapped. Fetch the zoo again or regenerate it."
            )


def resolve_group(zoo_dir: PathLike, group: str | None = None) -> tuple[Path, str | None]:
    """The version-1 zoo directory to read: ``zoo_dir`` itself, or one of its groups.

    Args:
        zoo_dir: a version-1 zoo, or a grouped zoo.
        group: the group to read. ``None`` on a grouped zoo with one group picks it.

    Returns:
        ``(directory, group name)``; the name is ``None`` for a version-1 zoo.

    Raises:
        GroupRequiredError: for a grouped zoo with several groups and no ``group``.
        UnknownGroupError: for a group the zoo does not have, or ``group`` on a version-1 zoo.
        GroupManifestError: for a group manifest that breaks the hash chain.
    """
    root = Path(zoo_dir)
    manifest = load_any(root)
    if isinstance(manifest, Manifest):
        if group is not None:
            raise UnknownGroupError(
                f"{root} is a version-1 zoo without groups; drop group={group!r}"
            )
        return root, None
    if group is None:
        if len(manifest.groups) != 1:
            raise GroupRequiredError(
                f"{root} is a grouped zoo with groups {', '.join(manifest.group_names) or '(none)'}"
                "; pass group=NAME (--group NAME on the command line) to choose one, or use "
                "weightzoo.datasets.GroupedBatches to iterate over all of them"
            )
        group = manifest.groups[0].name
    entry = manifest.entry(group)
    return check_group_manifest(root, entry), group


def verify_grouped_zoo(
    zoo_dir: PathLike,
    *,
    on_shard: Callable[[ShardEntry], None] | None = None,
) -> list[tuple[ShardEntry, Exception]]:
    """Check a grouped zoo's hash chain, then recompute every shard's hash in every group.

    Args:
        zoo_dir: the grouped zoo's directory.
        on_shard: called after each shard is checked (with its entry, ``file`` relative to the
            grouped zoo: ``groups/<name>/shards/...``).

    Returns:
        The failing shards with their errors; their ``file`` is relative to ``zoo_dir``.

    Raises:
        GroupManifestError: if a group's manifest differs from the hash the top records.
        ManifestError: if a manifest is malformed, or a group contradicts its top entry.
        ZooNotFoundError: if a finished group's manifest is missing.
    """
    root = Path(zoo_dir)
    top = GroupedManifest.load(root)
    failures: list[tuple[ShardEntry, Exception]] = []
    for entry in top.groups:
        path = check_group_manifest(root, entry)
        if not (path / MANIFEST_NAME).is_file():
            continue  # a group not begun yet (the top is not finished)

        def prefixed(shard: ShardEntry, group: GroupEntry = entry) -> ShardEntry:
            return dataclasses.replace(shard, file=f"{group.path}/{shard.file}")

        def report(shard: ShardEntry, group: GroupEntry = entry) -> None:
            if on_shard is not None:
                on_shard(prefixed(shard, group))

        failures += [(prefixed(s), exc) for s, exc in verify_zoo(path, on_shard=report)]
    return failures
