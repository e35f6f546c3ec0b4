"""The zoo manifest ``zoo.json``: what a zoo holds and where each piece lives.

The manifest is the single index of a zoo (no HDF5 virtual datasets: a missing source would
silently read as fill values). It is rewritten atomically, and always after the shards it lists.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from weightzoo._types import SplitSelection
from weightzoo.errors import (
    FormatVersionError,
    GroupedZooError,
    LayoutError,
    ManifestError,
    StorageWriteError,
    UnsafePathError,
    ZooNotFoundError,
)
from weightzoo.storage.layout import Layout

FORMAT_NAME = "weightzoo"
FORMAT_VERSION = 1
GROUPED_FORMAT_VERSION = 2  # a zoo of groups, each a version-1 zoo (storage/groups.py)
MANIFEST_NAME = "zoo.json"
TEMP_MANIFEST_PREFIX = ".zoo.json."
SPLITS = ("train", "val", "test")
_SLICE_MANIFEST = re.compile(r"zoo\.slice-(\d+)-of-(\d+)\.json")
SHARD_DIR = "shards"
# The writer's own shard names (shard_file_name); a manifest may name no other file.
_SHARD_FILE = re.compile(r"shards/(train|val|test)-(\d{6,10})-c(\d{3,6})\.h5")
_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_MANIFEST_BYTES = 64 << 20  # a 16,000-shard manifest is about 6 MB
# Bounds on counts, checked before anything is sized by them (a storage key holds a shard index
# and a row in 32 bits each).
MAX_MODELS = (1 << 31) - 1
MAX_CHECKPOINTS = 1 << 16
MAX_SLICES = 1 << 16


def shard_file_name(split: str, first_model: int, epoch_group: int = 0) -> str:
    """Conventional shard path: ``shards/<split>-<first model:06d>-c<group:03d>.h5``."""
    return f"{SHARD_DIR}/{split}-{first_model:06d}-c{epoch_group:03d}.h5"


def _layout(rows: Any) -> Layout:
    """The manifest's layer layout, checked (names, shapes, offsets, module shapes)."""
    try:
        return Layout.from_json(rows)
    except LayoutError as exc:
        raise ManifestError(
            f"bad layout: {exc}; the manifest is damaged: fetch or generate the zoo again"
        ) from None


def _count(value: Any, what: str, *, low: int = 0, high: int = MAX_MODELS) -> int:
    """An integer from a manifest, within ``[low, high]`` (no bools, floats or strings)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ManifestError(f"{what} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _short(values: Sequence[Any], shown: int = 8) -> str:
    """A list for an error message: at most ``shown`` items, then how many more."""
    values = list(values)
    if len(values) <= shown:
        return str(values)
    return f"[{', '.join(map(str, values[:shown]))}, ... ({len(values) - shown} more)]"


# The dtypes a shard's model columns are written in (storage/writer.py dtype_name).
COLUMN_KINDS = frozenset(
    ["str", "bool", "float32", "float64"]
    + [f"{sign}int{bits}" for sign in ("", "u") for bits in (8, 16, 32, 64)]
)


def _column_kind(name: Any, kind: Any) -> str:
    if kind not in COLUMN_KINDS:
        raise ManifestError(
            f"column {str(name)[:80]!r} has dtype {str(kind)[:80]!r}; a column is one of "
            f"{', '.join(sorted(COLUMN_KINDS))}"
        )
    return kind


def _epoch_list(values: Any) -> list[int]:
    if not isinstance(values, list) or not 0 < len(values) <= MAX_CHECKPOINTS:
        raise ManifestError(
            f"'epochs' must be a list of 1 to {MAX_CHECKPOINTS} checkpoint labels, got "
            f"{values!r:.80}"
        )
    return [_count(e, "an epoch", high=1 << 62) for e in values]


def check_shard_file(file: Any, split: str, first_model: int) -> str:
    """A shard entry's file name, checked to be the name the writer gives that shard.

    Raises:
        UnsafePathError: for a path outside the zoo or any name the writer would not write
            (so that no fetch, import or reader touches another file of the directory).
    """
    path = safe_relative_path(file, what="shard file")
    match = _SHARD_FILE.fullmatch(path)
    if match is None or match.group(1) != split or int(match.group(2)) != first_model:
        raise UnsafePathError(
            f"shard file {path!r} is not the name weightzoo gives a {split!r} shard starting at "
            f"model {first_model} ({shard_file_name(split, first_model)} for its first epoch "
            "group); a manifest may name no other file. The zoo is malformed or malicious: do "
            "not use it."
        )
    return path


def slice_manifest_name(index: int, count: int) -> str:
    """The manifest file of slice ``index`` of ``count``: ``zoo.slice-<i>-of-<n>.json``."""
    return f"zoo.slice-{index}-of-{count}.json"


def parse_slice_manifest_name(name: str) -> tuple[int, int] | None:
    """``(index, count)`` of a slice manifest's file name, ``None`` for any other name."""
    match = _SLICE_MANIFEST.fullmatch(name)
    if match is None:
        return None
    index, count = int(match.group(1)), int(match.group(2))
    # A count is a number of machines: a name claiming more is not a slice this writer made.
    return (index, count) if index < count <= MAX_SLICES else None


def read_format_version(data: Any, source: str) -> Any:
    """The ``format_version`` of parsed manifest JSON (of either kind), unchecked below.

    Raises:
        ManifestError: for JSON that is not a weightzoo manifest.
        FormatVersionError: for a version newer than this weightzoo reads.
    """
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise ManifestError(f"{source} is not a weightzoo manifest (no 'format': 'weightzoo')")
    version = data.get("format_version")
    if isinstance(version, int) and version > GROUPED_FORMAT_VERSION:
        raise FormatVersionError(
            f"{source} uses format version {version}, but this weightzoo reads versions up to "
            f"{GROUPED_FORMAT_VERSION}. Upgrade weightzoo: pip install -U weightzoo"
        )
    return version


def identity_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The fields that name a zoo and its spec, in a zoo's manifest and a grouped zoo's alike.

    Raises:
        KeyError: for a missing field (the caller names its manifest).
    """
    return {
        "name": str(data["name"]),
        "family": str(data["family"]),
        "spec": dict(data["spec"]),
        "spec_fingerprint": str(data["spec_fingerprint"]),
    }


def manifest_header(version: int, name: str, family: str, num_models: int) -> dict[str, Any]:
    """The fields every ``zoo.json`` starts with, a zoo's and a grouped zoo's alike (in order).

    Args:
        version: the format version (:data:`FORMAT_VERSION` or the grouped one).
        name: the zoo's name.
        family: its family.
        num_models: models of the complete zoo.

    Returns:
        ``format``, ``format_version``, ``name``, ``family`` and ``num_models``.
    """
    return {
        "format": FORMAT_NAME,
        "format_version": version,
        "name": name,
        "family": family,
        "num_models": num_models,
    }


def _as_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ManifestError(f"'finished' must be true or false, got {value!r}")
    return value


def check_name(
    name: Any, pattern: re.Pattern[str], what: str, rule: str, error: type[Exception]
) -> str:
    """Return ``name`` if it is a string that ``pattern`` matches whole.

    Names checked here become file or directory names inside a zoo, so nothing else passes.

    Args:
        name: the name to check (any value: it may come from a manifest or a user).
        pattern: the names allowed.
        what: what the name is, for the message (``group name``).
        rule: the message's rest after the name: ``pattern`` in words and what to do.
        error: the class raised.

    Raises:
        Exception: ``error`` with the one-line message ``<what> <name!r> <rule>``.
    """
    if not isinstance(name, str) or not pattern.fullmatch(name):
        raise error(f"{what} {name!r} {rule}")
    return name


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


def read_manifest_file(path: Path) -> Any:
    """The parsed JSON of a manifest file: a regular file of at most :data:`MAX_MANIFEST_BYTES`.

    Raises:
        ManifestError: for a special file, an oversized file, or anything but UTF-8 JSON.
    """
    try:
        with open(path, "rb", opener=_open_nonblocking) as handle:
            status = os.fstat(handle.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise ManifestError(f"{path} is not a regular file; weightzoo reads no other")
            if status.st_size > MAX_MANIFEST_BYTES:
                raise ManifestError(
                    f"{path} has {status.st_size} bytes, more than the {MAX_MANIFEST_BYTES} a "
                    "manifest may have; the zoo is malformed or malicious"
                )
            raw = handle.read(status.st_size + 1)  # (never a buffer of the bound's size)
        return parse_manifest_bytes(raw, str(path))
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from exc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a manifest may hold")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf
        raise ValueError(f"{text[:40]} is not a finite number")
    return value


def parse_manifest_bytes(raw: bytes, source: str) -> Any:
    """Parse a manifest's bytes: strict UTF-8 JSON without NaN or Infinity.

    Raises:
        ManifestError: for anything else (bad encoding, bad JSON, a number too long to convert,
            nesting too deep), naming ``source``.
    """
    try:
        return json.loads(
            raw.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float
        )
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise ManifestError(f"cannot parse {source}: {' '.join(str(exc).split())[:300]}") from exc


def _open_nonblocking(path: str, flags: int) -> int:
    # A FIFO in place of a manifest opens at once (and is then refused) instead of blocking.
    return os.open(path, flags | os.O_NONBLOCK)


def write_json_atomically(
    zoo_dir: Path,
    file: str,
    data: dict[str, Any],
    *,
    on_step: Callable[[str], None] | None = None,
) -> None:
    """Write a manifest atomically (temporary file, fsync, rename), mode 0644.

    Args:
        zoo_dir: the zoo directory (created if missing).
        file: the manifest's file name inside it.
        data: the JSON data.
        on_step: called with ``"before_manifest_replace"`` and ``"after_manifest_replace"``
            (the writer's fault-injection hook).
    """
    zoo_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=1)
    fd, tmp = tempfile.mkstemp(prefix=f".{file}.", suffix=".tmp", dir=zoo_dir)
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; a manifest is as readable as a shard
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if on_step is not None:
            on_step("before_manifest_replace")
        os.replace(tmp, zoo_dir / file)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise StorageWriteError(
            f"writing {zoo_dir / file} failed: {exc.strerror or exc}. Free some space (or fix "
            "the disk) and rerun the same command."
        ) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if on_step is not None:
        on_step("after_manifest_replace")


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
            models = row["models"]
            if not isinstance(models, list) or len(models) != 2:
                raise ManifestError(f"'models' must be [first, last], got {models!r}")
            first, last = (_count(m, "a shard's model position") for m in models)
            split = row["split"]
            if split not in SPLITS:
                raise ManifestError(f"split {split!r} is not one of {SPLITS}")
            sha256 = row["sha256"]
            if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
                raise ManifestError(f"sha256 {sha256!r} is not 64 lower-case hex digits")
            entry = cls(
                file=check_shard_file(row["file"], split, first),
                sha256=sha256,
                bytes=_count(row["bytes"], "a shard's size", high=1 << 62),
                models=(first, last),
                split=split,
                epochs=tuple(_epoch_list(row["epochs"])),
            )
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(f"malformed shard entry {row!r:.200}: {exc}") from exc
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
        finished: set by the writer once the shards cover every model and checkpoint exactly
            once; a finished manifest may have no gaps.
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
    finished: bool = False

    # -- reading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, zoo_dir: str | os.PathLike[str], *, file: str = MANIFEST_NAME) -> Manifest:
        """Read and validate ``<zoo_dir>/zoo.json`` (or another manifest file of the zoo).

        Args:
            zoo_dir: the zoo directory.
            file: the manifest's file name inside it, e.g. a slice manifest's
                (:func:`slice_manifest_name`).

        Raises:
            ZooNotFoundError: if the directory or manifest is missing.
            FormatVersionError: if the manifest was written by a newer format version.
            ManifestError: if it is malformed.
        """
        zoo_dir = Path(zoo_dir)
        path = zoo_dir / file
        if not path.is_file() and file == MANIFEST_NAME and any(zoo_dir.glob("zoo.slice-*.json")):
            raise ZooNotFoundError(
                f"{zoo_dir} holds the slices of a zoo (zoo.slice-I-of-N.json) but no "
                f"{MANIFEST_NAME} yet: run `weightzoo merge {zoo_dir}` once every slice is done"
            )
        if not path.is_file():
            what = "directory" if not zoo_dir.exists() else f"manifest {file}"
            raise ZooNotFoundError(
                f"no zoo at {zoo_dir}: the {what} does not exist. Generate one with "
                "`weightzoo generate NAME --out DIR` or download one with `weightzoo fetch NAME`."
            )
        return cls.from_dict(read_manifest_file(path), source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "manifest") -> Manifest:
        """Build from the parsed JSON.

        Raises:
            FormatVersionError: for a newer format version.
            ManifestError: for anything malformed.
        """
        version = read_format_version(data, source)
        if not isinstance(version, int):
            raise ManifestError(f"{source} has no integer 'format_version'")
        if version == GROUPED_FORMAT_VERSION:
            groups = [g.get("name") for g in data.get("groups", []) if isinstance(g, dict)]
            raise GroupedZooError(
                f"{source} is a grouped zoo (format version 2) with groups "
                f"{', '.join(map(str, groups)) or '(none yet)'}; this step reads one group: "
                "open it with weightzoo.Zoo(path).group(NAME), pass group=NAME (--group NAME "
                "on the command line), or give the group's directory"
            )
        try:
            manifest = cls(
                **identity_fields(data),
                layout=_layout(data["layout"]),
                epochs=_epoch_list(data["epochs"]),
                metrics=[str(m) for m in data["metrics"]],
                columns={str(k): _column_kind(k, v) for k, v in data["columns"].items()},
                stats_preset=str(data["stats_preset"]),
                stats_names=[str(s) for s in data["stats_names"]],
                num_models=_count(data["num_models"], "num_models"),
                split_counts={
                    str(k): _count(v, f"split_counts[{k!r}]")
                    for k, v in data["split_counts"].items()
                },
                shards=[ShardEntry.from_json(row) for row in data["shards"]],
                categories={
                    str(k): [str(v) for v in values]
                    for k, values in data.get("categories", {}).items()
                },
                extra=dict(data.get("extra", {})),
                finished=_as_bool(data.get("finished", False)),
            )
        except ManifestError as exc:
            # a shard row's or a field's own error: say which manifest it is in
            raise type(exc)(f"{source}: {exc}") from exc
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            text = " ".join(str(exc).split())[:300]
            raise ManifestError(f"{source} is malformed: missing or bad field {text}") from exc
        manifest._check_consistency(source)
        return manifest

    def _check_consistency(self, source: str) -> None:
        """Refuse a manifest whose shard entries could put a row in the wrong place.

        Checks bounds, split ranges, overlaps, epoch runs and, for a finished zoo, gaps.
        """
        if len(set(self.epochs)) != len(self.epochs):
            raise ManifestError(f"{source}: checkpoint epochs repeat: {_short(self.epochs)}")
        if self.num_models < 0:
            raise ManifestError(f"{source}: num_models is {self.num_models}")
        files = [s.file for s in self.shards]
        if len(set(files)) != len(files):
            raise ManifestError(f"{source}: a shard file is listed twice")
        ranges = self._split_ranges(source)
        epoch_index = {epoch: i for i, epoch in enumerate(self.epochs)}  # one lookup per shard
        for shard in self.shards:
            self._check_entry(shard, ranges, epoch_index, source)
        self._check_overlaps(source)
        if self.finished:
            self._check_no_gaps(source)

    def _split_ranges(self, source: str) -> dict[str, tuple[int, int]] | None:
        """Storage positions of each split (train, val, test in order), if the counts are known."""
        if not self.split_counts:
            return None
        unknown = set(self.split_counts) - set(SPLITS)
        if unknown or any(v < 0 for v in self.split_counts.values()):
            raise ManifestError(f"{source}: bad split_counts {self.split_counts}")
        if sum(self.split_counts.values()) != self.num_models:
            raise ManifestError(
                f"{source}: split_counts {self.split_counts} add up to "
                f"{sum(self.split_counts.values())}, but num_models is {self.num_models}"
            )
        ranges, first = {}, 0
        for split in SPLITS:
            count = self.split_counts.get(split, 0)
            ranges[split] = (first, first + count)
            first += count
        return ranges

    def _check_entry(
        self,
        shard: ShardEntry,
        ranges: dict[str, tuple[int, int]] | None,
        epoch_index: dict[int, int],
        source: str,
    ) -> None:
        where = f"{source}: shard {shard.file!r}"
        if shard.split not in SPLITS:
            raise ManifestError(f"{where} has split {shard.split!r}; use one of {SPLITS}")
        first, last = shard.models
        if not 0 <= first < last <= self.num_models:
            raise ManifestError(
                f"{where} holds models {[first, last]}, which is not a non-empty range within "
                f"[0, {self.num_models}): the manifest is damaged or was edited"
            )
        if ranges is not None:
            low, high = ranges[shard.split]
            if not low <= first < last <= high:
                raise ManifestError(
                    f"{where} is labelled {shard.split!r} but holds models {[first, last]}, "
                    f"outside that split's positions [{low}, {high}) given by split_counts"
                )
        if shard.bytes < 0:
            raise ManifestError(f"{where} has a negative size {shard.bytes}")
        epochs = list(shard.epochs)
        start = epoch_index.get(epochs[0], -1)
        if start < 0 or self.epochs[start : start + len(epochs)] != epochs:
            raise ManifestError(
                f"{where} lists epochs {_short(epochs)}, which is not a consecutive run of the "
                f"zoo's checkpoints {_short(self.epochs)} in their order"
            )

    def _check_overlaps(self, source: str) -> None:
        """Shards are blocks of models; epoch groups of one block share its range exactly."""
        blocks: dict[tuple[int, int], list[ShardEntry]] = {}
        for shard in self.shards:
            blocks.setdefault(shard.models, []).append(shard)
        previous: tuple[int, int] | None = None
        for models in sorted(blocks):
            if previous is not None and models[0] < previous[1]:
                raise ManifestError(
                    f"{source}: shards with models {list(previous)} and {list(models)} overlap; "
                    "every model must be stored exactly once"
                )
            previous = models
            group = blocks[models]
            if len({s.split for s in group}) > 1:
                raise ManifestError(f"{source}: models {list(models)} are in several splits")
            seen: set[int] = set()
            for shard in group:
                if seen & set(shard.epochs):
                    raise ManifestError(
                        f"{source}: models {list(models)} have epochs "
                        f"{sorted(seen & set(shard.epochs))} in more than one shard"
                    )
                seen |= set(shard.epochs)

    def _check_no_gaps(self, source: str) -> None:
        covered = sorted({s.models for s in self.shards})
        end = 0
        for first, last in covered:
            if first != end:
                raise ManifestError(
                    f"{source}: the zoo is marked finished but no shard holds models "
                    f"{end}..{first - 1}"
                )
            end = last
        if end != self.num_models:
            raise ManifestError(
                f"{source}: the zoo is marked finished but no shard holds models "
                f"{end}..{self.num_models - 1}"
            )
        held_by: dict[tuple[int, int], set[int]] = {}
        for shard in self.shards:  # one pass: a zoo may have tens of thousands of shards
            held_by.setdefault(shard.models, set()).update(shard.epochs)
        for models in covered:
            held = held_by[models]  # a subset of the zoo's epochs (each entry is checked)
            if len(held) != len(self.epochs):
                raise ManifestError(
                    f"{source}: the zoo is marked finished but models {list(models)} lack "
                    f"epochs {_short(sorted(set(self.epochs) - held))}"
                )
        if self.split_counts:
            counts = {k: v for k, v in self.split_counts.items() if v}
            if self.splits() != counts:
                raise ManifestError(
                    f"{source}: shards hold {self.splits()} models per split, split_counts "
                    f"says {counts}"
                )

    # -- writing ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``zoo.json``."""
        return manifest_header(FORMAT_VERSION, self.name, self.family, self.num_models) | {
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
            "finished": self.finished,
        }

    def save(
        self,
        zoo_dir: str | os.PathLike[str],
        *,
        file: str = MANIFEST_NAME,
        on_step: Callable[[str], None] | None = None,
    ) -> None:
        """Write ``zoo.json`` atomically (temporary file, fsync, rename), mode 0644.

        Args:
            zoo_dir: the zoo directory.
            file: the manifest's file name inside it (a slice manifest's, for a slice).
            on_step: called with ``"before_manifest_replace"`` and ``"after_manifest_replace"``
                (the writer's fault-injection hook).
        """
        write_json_atomically(Path(zoo_dir), file, self.to_dict(), on_step=on_step)

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
        split: SplitSelection = None,
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
