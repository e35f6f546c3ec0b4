"""The zoo manifest ``zoo.json``: what a zoo holds and where each piece lives.

The manifest is the single index of a zoo (no HDF5 virtual datasets: a missing source would
silently read as fill values). It is rewritten atomically, and always after the shards it lists.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from weightzoo.errors import FormatVersionError, ManifestError, UnsafePathError, ZooNotFoundError
from weightzoo.storage.layout import Layout

FORMAT_NAME = "weightzoo"
FORMAT_VERSION = 1
MANIFEST_NAME = "zoo.json"
SPLITS = ("train", "val", "test")


def safe_relative_path(path: str, *, what: str = "path") -> str:
    """Check that a manifest path stays inside the zoo directory and return it normalised.

    Args:
        path: a relative POSIX path from a manifest (or a hub).
        what: what the path is, for the error message.

    Raises:
        ManifestError: for an empty or non-string path.
        UnsafePathError: (a ManifestError) for absolute paths, drive letters, backslashes or
            ``..`` components.
    """
    if not isinstance(path, str) or not path:
        raise ManifestError(f"{what} must be a non-empty relative path, got {path!r}")
    pure = PurePosixPath(path)
    if (
        pure.is_absolute()
        or "\\" in path
        or ":" in pure.parts[0]
        or any(part in ("..", "") for part in pure.parts)
    ):
        raise UnsafePathError(
            f"{what} {path!r} escapes the zoo directory; a manifest may only name files inside "
            "it. The zoo is malformed or malicious: do not use it."
        )
    return pure.as_posix()


@dataclass(frozen=True)
class ShardEntry:
    """One shard of a zoo, as the manifest lists it.

    Attributes:
        file: path relative to the zoo directory, e.g. ``shards/train-000000-c000.h5``.
        sha256: hex digest of the whole file.
        bytes: file size.
        models: storage positions ``[first, last)`` of the models it holds.
        split: ``train``, ``val`` or ``test``.
        epochs: the checkpoint labels it holds (a consecutive run of the zoo's epochs).
    """

    file: str
    sha256: str
    bytes: int
    models: tuple[int, int]
    split: str
    epochs: tuple[int, ...]

    @property
    def num_models(self) -> int:
        """Number of models in the shard."""
        return self.models[1] - self.models[0]

    def to_json(self) -> dict[str, Any]:
        """Manifest form."""
        return {
            "file": self.file,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "models": list(self.models),
            "split": self.split,
            "epochs": list(self.epochs),
        }

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> ShardEntry:
        """Parse and validate a manifest row.

        Raises:
            ManifestError: for missing fields or a path outside the zoo.
        """
        try:
            entry = cls(
                file=safe_relative_path(row["file"], what="shard file"),
                sha256=str(row["sha256"]),
                bytes=int(row["bytes"]),
                models=(int(row["models"][0]), int(row["models"][1])),
                split=str(row["split"]),
                epochs=tuple(int(e) for e in row["epochs"]),
            )
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(f"malformed shard entry {row!r}: {exc}") from exc
        if entry.models[0] > entry.models[1]:
            raise ManifestError(f"shard {entry.file!r} has models {list(entry.models)}: empty")
        return entry


@dataclass
class Manifest:
    """The parsed ``zoo.json``.

    Attributes:
        name: zoo name (e.g. ``mlds-ds1``).
        family: ``mlds``, ``modelzoo``, ``trajectory`` or ``imported``.
        spec: the full generating spec (JSON data), compared on resume.
        spec_fingerprint: sha256 of the canonical spec.
        layout: the layer layout of one weight row.
        epochs: checkpoint labels, in checkpoint-axis order.
        metrics: per-checkpoint metric names (``metrics/<name>`` datasets).
        columns: per-model column names and dtypes (``models/<name>`` datasets).
        stats_preset: the statistics definition stored in ``stats``.
        stats_names: one name per statistic.
        num_models: number of models the zoo holds when complete.
        split_counts: models per split when complete.
        shards: the shards written so far.
        categories: the distinct values of each string column over all shards written, sorted
            (so that every split encodes a class label with the same index).
        extra: anything else (creator, library version), kept verbatim.
    """

    name: str
    family: str
    spec: dict[str, Any]
    spec_fingerprint: str
    layout: Layout
    epochs: list[int]
    metrics: list[str]
    columns: dict[str, str]
    stats_preset: str
    stats_names: list[str]
    num_models: int
    split_counts: dict[str, int]
    shards: list[ShardEntry] = field(default_factory=list)
    categories: dict[str, list[str]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    # -- reading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, zoo_dir: str | os.PathLike[str]) -> Manifest:
        """Read and validate ``<zoo_dir>/zoo.json``.

        Raises:
            ZooNotFoundError: if the directory or manifest is missing.
            FormatVersionError: if the manifest was written by a newer format version.
            ManifestError: if it is malformed.
        """
        zoo_dir = Path(zoo_dir)
        path = zoo_dir / MANIFEST_NAME
        if not path.is_file():
            what = "directory" if not zoo_dir.exists() else f"manifest {MANIFEST_NAME}"
            raise ZooNotFoundError(
                f"no zoo at {zoo_dir}: the {what} does not exist. Generate one with "
                "`weightzoo generate NAME --out DIR` or download one with `weightzoo fetch NAME`."
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"cannot parse {path}: {exc}") from exc
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "manifest") -> Manifest:
        """Build from the parsed JSON.

        Raises:
            FormatVersionError: for a newer format version.
            ManifestError: for anything malformed.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise ManifestError(f"{source} is not a weightzoo manifest (no 'format': 'weightzoo')")
        version = data.get("format_version")
        if not isinstance(version, int):
            raise ManifestError(f"{source} has no integer 'format_version'")
        if version > FORMAT_VERSION:
            raise FormatVersionError(
                f"{source} uses format version {version}, but this weightzoo reads versions up to "
                f"{FORMAT_VERSION}. Upgrade weightzoo: pip install -U weightzoo"
            )
        try:
            manifest = cls(
                name=str(data["name"]),
                family=str(data["family"]),
                spec=dict(data["spec"]),
                spec_fingerprint=str(data["spec_fingerprint"]),
                layout=Layout.from_json(data["layout"]),
                epochs=[int(e) for e in data["epochs"]],
                metrics=[str(m) for m in data["metrics"]],
                columns={str(k): str(v) for k, v in data["columns"].items()},
                stats_preset=str(data["stats_preset"]),
                stats_names=[str(s) for s in data["stats_names"]],
                num_models=int(data["num_models"]),
                split_counts={str(k): int(v) for k, v in data["split_counts"].items()},
                shards=[ShardEntry.from_json(row) for row in data["shards"]],
                categories={
                    str(k): [str(v) for v in values]
                    for k, values in data.get("categories", {}).items()
                },
                extra=dict(data.get("extra", {})),
            )
        except ManifestError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ManifestError(f"{source} is malformed: missing or bad field {exc}") from exc
        manifest._check_consistency(source)
        return manifest

    def _check_consistency(self, source: str) -> None:
        if len(set(self.epochs)) != len(self.epochs):
            raise ManifestError(f"{source}: checkpoint epochs repeat: {self.epochs}")
        files = [s.file for s in self.shards]
        if len(set(files)) != len(files):
            raise ManifestError(f"{source}: a shard file is listed twice")
        known = set(self.epochs)
        for shard in self.shards:
            if shard.split not in SPLITS:
                raise ManifestError(f"{source}: shard {shard.file!r} has split {shard.split!r}")
            if not set(shard.epochs) <= known:
                raise ManifestError(
                    f"{source}: shard {shard.file!r} holds epochs {list(shard.epochs)} that the "
                    f"zoo does not list ({self.epochs})"
                )
            if shard.models[1] > self.num_models:
                raise ManifestError(
                    f"{source}: shard {shard.file!r} holds models up to {shard.models[1]}, "
                    f"but the zoo has {self.num_models}"
                )

    # -- writing ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``zoo.json``."""
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "family": self.family,
            "num_models": self.num_models,
            "split_counts": self.split_counts,
            "epochs": self.epochs,
            "metrics": self.metrics,
            "columns": self.columns,
            "stats_preset": self.stats_preset,
            "stats_names": self.stats_names,
            "spec_fingerprint": self.spec_fingerprint,
            "spec": self.spec,
            "layout": self.layout.to_json(),
            "shards": [s.to_json() for s in self.shards],
            "categories": self.categories,
            "extra": self.extra,
        }

    def save(self, zoo_dir: str | os.PathLike[str]) -> None:
        """Write ``zoo.json`` atomically (temporary file, fsync, rename)."""
        zoo_dir = Path(zoo_dir)
        zoo_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=1)
        fd, tmp = tempfile.mkstemp(prefix=".zoo.json.", suffix=".tmp", dir=zoo_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, zoo_dir / MANIFEST_NAME)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # -- queries ---------------------------------------------------------------------------

    @property
    def num_params(self) -> int:
        """Length of one flattened weight row."""
        return self.layout.num_params

    @property
    def complete(self) -> bool:
        """Whether every model has every checkpoint in some shard."""
        covered = sum(s.num_models * len(s.epochs) for s in self.shards)
        return covered == self.num_models * len(self.epochs)

    def splits(self) -> dict[str, int]:
        """Models per split in the shards written so far (each model counted once)."""
        seen: dict[str, set[tuple[int, int]]] = {}
        for shard in self.shards:
            seen.setdefault(shard.split, set()).add(shard.models)
        return {
            split: sum(b - a for a, b in blocks) for split in SPLITS if (blocks := seen.get(split))
        }

    def shards_for(
        self,
        split: str | Sequence[str] | None = None,
        epochs: Iterable[int] | None = None,
    ) -> list[ShardEntry]:
        """The shards needed for some splits and epochs (all if ``None``).

        Raises:
            UnknownSplitError: for a split name the zoo does not use.
            EpochError: for an epoch the zoo has no checkpoint for.
        """
        from weightzoo.storage.selection import check_epochs, check_splits

        splits = check_splits(split, self)
        wanted = set(check_epochs(epochs, self))
        return [s for s in self.shards if s.split in splits and wanted & set(s.epochs)]
