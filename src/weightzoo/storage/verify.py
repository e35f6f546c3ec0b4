"""Checks that shards on disk are the ones the manifest lists."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from weightzoo.errors import ShardCorruptError, ShardMissingError
from weightzoo.storage.hashing import sha256_file
from weightzoo.storage.manifest import Manifest, ShardEntry


def check_shard_present(zoo_dir: str | os.PathLike[str], entry: ShardEntry) -> Path:
    """Cheap check (no hashing): the shard exists and has the manifest's size.

    Raises:
        ShardMissingError: if the file is absent.
        ShardCorruptError: if its size differs (truncated or overwritten).
    """
    path = Path(zoo_dir) / entry.file
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ShardMissingError(
            f"shard {entry.file} of zoo {Path(zoo_dir)} is missing ({entry.split} split, models "
            f"{entry.models[0]}..{entry.models[1] - 1}). Fetch it again (`weightzoo fetch`) or "
            "rerun `weightzoo generate` with the same --out to rebuild it."
        ) from None
    if size != entry.bytes:
        raise ShardCorruptError(
            f"shard {path} has {size} bytes, the manifest says {entry.bytes}: it is truncated or "
            "was replaced. Delete it and fetch or generate it again."
        )
    return path


def verify_shard(zoo_dir: str | os.PathLike[str], entry: ShardEntry) -> None:
    """Full check: size and sha256 against the manifest.

    Raises:
        ShardMissingError: if the file is absent.
        ShardCorruptError: if its size or hash differs, giving expected and actual values.
    """
    path = check_shard_present(zoo_dir, entry)
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise ShardCorruptError(
            f"shard {path} is corrupt: sha256 {actual}, expected {entry.sha256}. Delete it and "
            "fetch or generate it again."
        )


def verify_zoo(
    zoo_dir: str | os.PathLike[str],
    *,
    on_shard: Callable[[ShardEntry], None] | None = None,
) -> list[tuple[ShardEntry, Exception]]:
    """Recompute every shard's hash.

    Args:
        zoo_dir: the zoo directory.
        on_shard: called after each shard is checked (for progress bars).

    Returns:
        The failing shards with their errors (empty when the zoo is intact).
    """
    manifest = Manifest.load(zoo_dir)
    failures: list[tuple[ShardEntry, Exception]] = []
    for entry in manifest.shards:
        try:
            verify_shard(zoo_dir, entry)
        except (ShardMissingError, ShardCorruptError) as exc:
            failures.append((entry, exc))
        if on_shard is not None:
            on_shard(entry)
    return failures
