"""Merging the slices of a zoo (``weightzoo generate --slice i/n``) into one ``zoo.json``.

Each slice leaves its shards in the shared ``shards/`` folder and lists them in its own
manifest ``zoo.slice-<i>-of-<n>.json``. The merge takes the zoo's lock exclusively (so it is
refused while any slice still runs), checks that the slices are all of one spec and one count,
that each slice wrote every block it was given and that together they cover every model and
checkpoint exactly once, recomputes every shard's sha256, and only then writes ``zoo.json``,
the same file a single run of the whole zoo writes. The slice manifests and slice lock files
are removed afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from weightzoo.errors import ManifestError, SliceMissingError, SpecMismatchError
from weightzoo.storage.manifest import (
    MANIFEST_NAME,
    SPLITS,
    Manifest,
    ShardEntry,
    parse_slice_manifest_name,
)
from weightzoo.storage.verify import verify_shard
from weightzoo.storage.writer import ZooLock, slice_lock_name

# Manifest fields every slice of one zoo must agree on.
_SHARED_FIELDS = (
    "name",
    "family",
    "spec",
    "layout",
    "epochs",
    "metrics",
    "stats_preset",
    "stats_names",
    "num_models",
    "split_counts",
)


def find_slices(zoo_dir: str | os.PathLike[str]) -> dict[tuple[int, int], str]:
    """The slice manifests in ``zoo_dir``: ``{(index, count): file name}``."""
    found = {}
    for path in Path(zoo_dir).glob("zoo.slice-*.json"):
        parsed = parse_slice_manifest_name(path.name)
        if parsed is not None:
            found[parsed] = path.name
    return dict(sorted(found.items()))


def _rerun_hint(manifest: Manifest, zoo_dir: Path, index: int, count: int) -> str:
    return f"`weightzoo generate {manifest.name} --out {zoo_dir} --slice {index}/{count}`"


def _check_same_spec(first: tuple[str, Manifest], other: tuple[str, Manifest]) -> None:
    (file_a, a), (file_b, b) = first, other
    if a.spec_fingerprint != b.spec_fingerprint:
        changed = sorted(k for k in set(a.spec) | set(b.spec) if a.spec.get(k) != b.spec.get(k))
        raise SpecMismatchError(
            f"{file_b} was generated from another spec than {file_a} (differing fields: "
            f"{', '.join(changed) or 'none'}); rerun that slice with the same command-line "
            "options as the others, in an empty directory of its own if need be"
        )
    for name in _SHARED_FIELDS:
        if getattr(a, name) != getattr(b, name):
            raise SpecMismatchError(
                f"{file_b} and {file_a} differ in {name!r} although their specs match; they "
                "were written by different weightzoo versions. Regenerate the slices with one."
            )


def _check_slice_finished(
    zoo_dir: Path, file: str, manifest: Manifest, index: int, count: int
) -> None:
    """Every block the slice was given must be written for every checkpoint."""
    info = manifest.extra.get("slice")
    blocks = info.get("models") if isinstance(info, dict) else None
    if (
        not isinstance(blocks, list)
        or not all(isinstance(b, list) and len(b) == 2 for b in blocks)
        or info.get("index") != index
        or info.get("count") != count
    ):
        info = info if isinstance(info, dict) else {}
        raise ManifestError(
            f"{zoo_dir / file} says it is slice {info.get('index')}/{info.get('count')}, "
            f"not {index}/{count} as its name says; it was renamed or edited. Delete it and "
            "rerun that slice."
        )
    covered: dict[tuple[int, int], set[int]] = {}
    for entry in manifest.shards:
        covered.setdefault(entry.models, set()).update(entry.epochs)
    epochs = set(manifest.epochs)
    lacking = [
        (first, last)
        for first, last in (tuple(m) for m in blocks)
        if covered.get((first, last), set()) != epochs
    ]
    if lacking:
        shown = ", ".join(f"[{a}, {b})" for a, b in lacking[:5])
        more = f" and {len(lacking) - 5} more" if len(lacking) > 5 else ""
        raise SliceMissingError(
            f"slice {index}/{count} of {zoo_dir} has not finished: models {shown}{more} are not "
            f"written yet. Rerun it ({_rerun_hint(manifest, zoo_dir, index, count)} resumes), "
            "then merge again."
        )


def merge_slices(
    zoo_dir: str | os.PathLike[str],
    *,
    on_shard: Callable[[ShardEntry], None] | None = None,
) -> Manifest:
    """Check the slices of ``zoo_dir`` and write its one verified ``zoo.json``.

    Args:
        zoo_dir: the directory the slices wrote.
        on_shard: called after each shard's hash is checked (for progress bars).

    Returns:
        The finished manifest, as saved.

    Raises:
        ZooLockedError: while a slice (or any writer) is still writing the directory.
        SliceMissingError: if there are no slice manifests, a slice of ``0..n-1`` has none, or
            a slice has not written all its blocks; the message says which slice to rerun.
        SpecMismatchError: if the slices were generated from different specs.
        ManifestError: for slices of different counts, a ``zoo.json`` already there, or
            slices whose shards overlap or leave a gap.
        ShardMissingError, ShardCorruptError: if a listed shard is absent or its sha256 differs.
    """
    zoo_dir = Path(zoo_dir)
    if not zoo_dir.is_dir():
        raise SliceMissingError(f"no directory {zoo_dir}: nothing to merge")
    lock = ZooLock(zoo_dir)
    try:
        return _merge_locked(zoo_dir, on_shard)
    finally:
        lock.release()


def _merge_locked(zoo_dir: Path, on_shard: Callable[[ShardEntry], None] | None) -> Manifest:
    found = find_slices(zoo_dir)
    if (zoo_dir / MANIFEST_NAME).exists() and found:
        merged = _merged_already(zoo_dir, found)
        if merged is not None:
            return merged
    if (zoo_dir / MANIFEST_NAME).exists():
        raise ManifestError(
            f"{zoo_dir} already holds a {MANIFEST_NAME}"
            + (" beside slice manifests" if found else " and no slice manifests")
            + ": it was merged already or generated whole. Nothing to merge."
        )
    if not found:
        raise SliceMissingError(
            f"{zoo_dir} holds no slice manifests (zoo.slice-I-of-N.json): run "
            "`weightzoo generate NAME --out DIR --slice I/N` for every I first"
        )
    counts = sorted({count for _, count in found})
    if len(counts) > 1:
        raise ManifestError(
            f"{zoo_dir} holds slices of different counts {counts}: {', '.join(found.values())}. "
            "Keep the slices of one count only (delete the others' manifests and shards)."
        )
    count = counts[0]
    slices = {i: (file, Manifest.load(zoo_dir, file=file)) for (i, _), file in found.items()}
    base = next(iter(slices.values()))
    missing = [i for i in range(count) if i not in slices]
    if missing:
        hints = "; ".join(_rerun_hint(base[1], zoo_dir, i, count) for i in missing[:3])
        raise SliceMissingError(
            f"{zoo_dir}: slice(s) {', '.join(f'{i}/{count}' for i in missing)} missing (no "
            f"manifest); run {hints}, then merge again"
        )
    for index, (file, manifest) in slices.items():
        _check_same_spec(base, (file, manifest))
        _check_slice_finished(zoo_dir, file, manifest, index, count)

    merged = _combine(zoo_dir, [m for _, m in slices.values()])
    for entry in merged.shards:
        verify_shard(zoo_dir, entry, merged)
        if on_shard is not None:
            on_shard(entry)
    merged.save(zoo_dir)
    _remove_slices(zoo_dir, found)
    return merged


def _remove_slices(zoo_dir: Path, found: dict[tuple[int, int], str]) -> None:
    """Delete the slice manifests and locks once the merged manifest is in place."""
    for file in found.values():
        (zoo_dir / file).unlink(missing_ok=True)
    for count in {count for _, count in found}:  # a stopped clean-up may have left any lock
        for index in range(count):
            (zoo_dir / slice_lock_name(index, count)).unlink(missing_ok=True)


def _merged_already(zoo_dir: Path, found: dict[tuple[int, int], str]) -> Manifest | None:
    """The merged manifest of a merge that was stopped before it removed the slices, if so.

    The merge is complete when ``zoo.json`` is finished, of the slices' spec, and lists every
    shard the remaining slice manifests list, with the same hashes; then only the slices'
    files are left to remove. Anything else is left to the caller's error.
    """
    merged = Manifest.load(zoo_dir)
    listed = {entry.file: entry for entry in merged.shards}
    for file in found.values():
        part = Manifest.load(zoo_dir, file=file)
        if (
            not merged.finished
            or part.spec_fingerprint != merged.spec_fingerprint
            or any(listed.get(entry.file) != entry for entry in part.shards)
        ):
            return None
    _remove_slices(zoo_dir, found)
    return merged


def _combine(zoo_dir: Path, manifests: list[Manifest]) -> Manifest:
    """One finished manifest from the slices' (validated as a whole-zoo manifest)."""
    shards = sorted(
        (entry for m in manifests for entry in m.shards),
        key=lambda s: (SPLITS.index(s.split), s.models, s.epochs),
    )
    columns: dict[str, str] = {}
    categories: dict[str, set[str]] = {}
    for manifest in manifests:
        if manifest.columns and columns and manifest.columns != columns:
            raise ManifestError(
                f"the slices of {zoo_dir} store different columns ({sorted(columns)} and "
                f"{sorted(manifest.columns)}); regenerate them with one weightzoo version"
            )
        columns = columns or manifest.columns
        for name, values in manifest.categories.items():
            categories.setdefault(name, set()).update(values)
    data: dict[str, Any] = manifests[0].to_dict()
    data.update(
        shards=[s.to_json() for s in shards],
        columns=columns,
        categories={name: sorted(values) for name, values in categories.items()},
        extra={k: v for k, v in manifests[0].extra.items() if k != "slice"},
        finished=True,
    )
    # Overlaps and gaps are the whole-zoo manifest's own checks.
    return Manifest.from_dict(data, source=f"the merged slices of {zoo_dir}")
