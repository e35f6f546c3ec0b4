"""Generate a grouped zoo (format version 2): each group a version-1 zoo, then the top manifest.

Groups are generated in the order the spec gives, each by the ordinary runner into
``<out>/groups/<name>`` (so each resumes block by block), and the top ``zoo.json`` is rewritten
after each group finishes with the sha256 of that group's manifest. A rerun skips every group
whose manifest still has the recorded hash, so an interrupted run resumes in the group it
stopped in. One writer at a time: the top directory's lock is held throughout.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from weightzoo import __version__
from weightzoo.errors import (
    GroupManifestError,
    InvalidOptionError,
    ManifestError,
    SpecMismatchError,
)
from weightzoo.generate.base import GroupedSpec, ZooSpec
from weightzoo.generate.specs import family_for
from weightzoo.storage.groups import (
    GroupedManifest,
    GroupEntry,
    check_group_name,
    group_dir,
    group_path,
    read_manifest_json,
)
from weightzoo.storage.hashing import sha256_file
from weightzoo.storage.manifest import GROUPED_FORMAT_VERSION, MANIFEST_NAME
from weightzoo.storage.writer import ZooLock

if TYPE_CHECKING:
    from weightzoo.generate.runner import RunOptions

log = logging.getLogger(__name__)
__all__ = ["generate_grouped", "plan_groups"]


def plan_groups(spec: GroupedSpec) -> list[tuple[GroupEntry, ZooSpec]]:
    """The top manifest's group entries (no hashes yet) with each group's spec.

    Model ids run on across groups in order: a group's first id is the number of models of the
    groups before it.

    Raises:
        InvalidOptionError: for a bad or repeated group name, or a group that is itself grouped.
    """
    planned: list[tuple[GroupEntry, ZooSpec]] = []
    first = 0
    for name, group_spec in spec.groups():
        try:
            check_group_name(name)
        except ManifestError as exc:
            raise InvalidOptionError(f"grouped spec {spec.name!r}: {exc}") from None
        if isinstance(group_spec, GroupedSpec):
            raise InvalidOptionError(
                f"grouped spec {spec.name!r}: group {name!r} is itself grouped; a group is a "
                "version-1 zoo spec"
            )
        if any(entry.name == name for entry, _ in planned):
            raise InvalidOptionError(f"grouped spec {spec.name!r} names group {name!r} twice")
        count = len(family_for(group_spec).plan(group_spec))
        planned.append((GroupEntry(name, group_path(name), count, first), group_spec))
        first += count
    if not planned:
        raise InvalidOptionError(f"grouped spec {spec.name!r} has no groups")
    return planned


def _start_top(spec: GroupedSpec, out: Path, entries: list[GroupEntry]) -> GroupedManifest:
    """The top manifest to resume from: the existing one of the same spec, or a new one.

    Raises:
        SpecMismatchError: if ``out`` holds a grouped zoo of another spec with any group begun.
        ManifestError: if ``out`` holds a version-1 zoo.
    """
    top = GroupedManifest(
        name=spec.name,
        family=spec.family,
        spec=spec.to_dict(),
        spec_fingerprint=spec.fingerprint(),
        groups=entries,
        extra={"generator": f"weightzoo {__version__}"},
    )
    if not (out / MANIFEST_NAME).is_file():
        return top
    data = read_manifest_json(out)
    if data.get("format_version") != GROUPED_FORMAT_VERSION:
        raise ManifestError(
            f"{out} holds a version-1 zoo ({data.get('name')!r}), not grouped zoo "
            f"{spec.name!r}; use another --out directory"
        )
    existing = GroupedManifest.from_dict(data, source=str(out / MANIFEST_NAME))
    if existing.spec_fingerprint != spec.fingerprint():
        begun = [g.name for g in existing.groups if (out / g.path / MANIFEST_NAME).exists()]
        if begun:
            raise SpecMismatchError(
                f"{out} already holds grouped zoo {existing.name!r} generated from a different "
                f"spec (groups begun: {', '.join(begun)}). Use another --out directory, or "
                "delete this one to start over."
            )
        return top
    recorded = {g.name: g.manifest_sha256 for g in existing.groups}
    top.groups = [
        GroupEntry(e.name, e.path, e.num_models, e.first_model_id, recorded.get(e.name))
        for e in entries
    ]
    return top


def _is_done(out: Path, entry: GroupEntry) -> bool:
    """Whether a group is finished and its manifest is the one the top manifest recorded."""
    manifest = out / entry.path / MANIFEST_NAME
    return (
        entry.manifest_sha256 is not None
        and manifest.is_file()
        and not manifest.is_symlink()
        and sha256_file(manifest) == entry.manifest_sha256
    )


def _refuse_changed(out: Path, entry: GroupEntry) -> None:
    """Refuse to resume a finished group whose manifest no longer has the recorded hash.

    Resuming it would record the changed manifest's hash and so bless whatever changed it.

    Raises:
        GroupManifestError: naming the group and how to regenerate it.
    """
    manifest = out / entry.path / MANIFEST_NAME
    if entry.manifest_sha256 is not None and manifest.exists():
        raise GroupManifestError(
            f"{manifest} has sha256 {sha256_file(manifest)}, but the top manifest "
            f"{out / MANIFEST_NAME} records {entry.manifest_sha256} for the finished group "
            f"{entry.name!r}: it was changed after generation. Delete {out / entry.path} to "
            "generate the group again."
        )


def generate_grouped(
    spec: GroupedSpec, out: str | os.PathLike[str], options: RunOptions
) -> GroupedManifest:
    """Generate (or finish generating) the grouped zoo of ``spec`` into ``out``.

    Args:
        spec: the grouped spec.
        out: the zoo directory; groups go to ``out/groups/<name>``.
        options: how every group is trained (as :func:`weightzoo.generate.runner.generate`
            builds them); a ``slice`` is refused: slices of a grouped zoo are not supported
            (generate it whole; every group resumes block by block).

    Returns:
        The finished top manifest.

    Raises:
        InvalidOptionError: for ``slice``, or a bad group list.
        SpecMismatchError: if ``out`` holds a zoo of another spec.
        ZooLockedError: if another process is generating into ``out``.
    """
    from weightzoo.generate.runner import generate_zoo

    if options.slice is not None:
        index, count = options.slice
        raise InvalidOptionError(
            f"--slice {index}/{count}: {spec.name!r} is a grouped zoo, which is generated "
            "whole (each group resumes block by block after an interruption); drop --slice"
        )
    out = Path(out)
    planned = plan_groups(spec)
    for entry, _ in planned:
        group_dir(out, entry)  # never write a group through a link out of the zoo
    out.mkdir(parents=True, exist_ok=True)
    lock = ZooLock(out)
    try:
        top = _start_top(spec, out, [entry for entry, _ in planned])
        top.save(out)
        for index, (_, group_spec) in enumerate(planned):
            entry = top.groups[index]
            if _is_done(out, entry):
                log.info("group %s of %s is finished; skipping it", entry.name, spec.name)
                continue
            _refuse_changed(out, entry)
            manifest = generate_zoo(
                group_spec, out / entry.path, options, first_model_id=entry.first_model_id
            )
            if not manifest.finished:
                raise ManifestError(
                    f"group {entry.name!r} of {spec.name!r} did not finish (its shards do not "
                    "cover every model and checkpoint); rerun to resume it"
                )
            top.groups[index] = GroupEntry(
                entry.name,
                entry.path,
                entry.num_models,
                entry.first_model_id,
                sha256_file(out / entry.path / MANIFEST_NAME),
            )
            top.save(out)  # the chain grows one group at a time: a crash loses no group
        top.finished = True
        top.save(out)
        return top
    finally:
        lock.release()
