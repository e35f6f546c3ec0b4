"""Which zoo directories a per-zoo command runs on: the zoo, one of its groups, or each group."""

from __future__ import annotations

from pathlib import Path

from weightzoo.storage.groups import GroupedManifest, load_any, resolve_group

__all__ = ["each_group", "group_prefix"]


def each_group(path: str, group: str | None) -> list[tuple[str | None, Path]]:
    """The zoo directories a per-zoo command runs on: ``path``, its ``group``, or every group.

    A version-1 zoo gives ``[(None, path)]``; a grouped zoo without ``group`` gives every group
    in order (each checked against the zoo's hash chain).

    Raises:
        UnknownGroupError: for a group the zoo does not have, or --group on a version-1 zoo.
    """
    manifest = load_any(path)
    if group is not None or not isinstance(manifest, GroupedManifest):
        return [(group, resolve_group(path, group)[0])]
    return [(name, resolve_group(path, name)[0]) for name in manifest.group_names]


def group_prefix(group: str | None) -> str:
    """``"group NAME: "`` before a line about one group of a grouped zoo, else nothing."""
    return f"group {group}: " if group is not None else ""
