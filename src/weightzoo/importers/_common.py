"""What every importer shares: safe reading, column typing, DEST rules, and writing.

Everything an importer reads is treated as hostile data: JSON is parsed strictly
(:func:`read_json`), torch files only with ``weights_only=True`` (:func:`load_state_dict`),
``.npy`` headers are checked against the file size before mapping (:func:`load_npy`), no file
may link out of SRC (:func:`inside`), and DEST must be empty, absent or hold the same imported
zoo (:func:`check_dest`). The imported zoo's spec records the sha256 of every source file read
(:func:`source_digest`), so a changed source is a different zoo.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from weightzoo.blocks import STATS_PRESET, ModelRecord, stratified_splits, write_block
from weightzoo.errors import (
    DataFilesMissingError,
    InvalidOptionError,
    SourcePathError,
    SpecMismatchError,
    UnreadableFileError,
    UnsafeFileError,
    WeightzooError,
)
from weightzoo.features import statistics_names
from weightzoo.storage.hashing import sha256_file
from weightzoo.storage.layout import Layout
from weightzoo.storage.manifest import MANIFEST_NAME, SHARD_DIR, SPLITS, Manifest, shard_file_name
from weightzoo.storage.writer import LOCK_NAME, ZooWriter, refuse_foreign_files

SPLIT_SEED = 42
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
MODELS_PER_SHARD = 256
INT64_MAX = 2**63 - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)

# How a torch.save file begins: a zip archive (PyTorch >= 1.6) or a pickle (legacy format).
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


# -- JSON ---------------------------------------------------------------------------------------


class _NonFinite(ValueError):
    """A JSON number that is NaN or infinite where a finite one is required."""


def _reject_constant(token: str) -> float:
    raise _NonFinite(token)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(text)  # 1e400 parses as inf
    return value


def parse_json(text: str, source: str, *, finite: bool = True) -> Any:
    """Parse JSON text strictly.

    Args:
        text: the JSON text.
        source: where it came from (``path`` or ``path line N``), for messages.
        finite: refuse ``NaN``, ``Infinity`` and numbers beyond float range (``1e400``).

    Raises:
        UnreadableFileError: for malformed, too deeply nested or non-finite JSON.
    """
    hooks: dict[str, Any] = {}
    if finite:
        hooks = {"parse_constant": _reject_constant, "parse_float": _finite_float}
    try:
        return json.loads(text, **hooks)
    except _NonFinite as exc:
        raise UnreadableFileError(
            f"{source} holds the non-finite number {exc} where a finite one is expected; "
            "write a finite number (or null) and import again"
        ) from exc
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, 4300-digit ints, nesting
        raise UnreadableFileError(
            f"{source} is not readable JSON ({type(exc).__name__}: {_first_line(exc)}); "
            "repair it or remove it from SRC"
        ) from exc


def read_text(path: Path) -> str:
    """A source file's UTF-8 text.

    Raises:
        UnreadableFileError: if it cannot be read or is not UTF-8.
    """
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableFileError(
            f"{path} is not a readable UTF-8 text file ({type(exc).__name__}: "
            f"{_first_line(exc)}); re-save it as UTF-8 or remove it from SRC"
        ) from exc


def read_json(path: Path, *, finite: bool = True, what: str = "a JSON object") -> dict[str, Any]:
    """A source file holding one JSON object, parsed strictly (see :func:`parse_json`).

    Args:
        path: the file.
        finite: refuse non-finite numbers.
        what: what the object should be, for the message.

    Raises:
        UnreadableFileError: if it is unreadable, malformed, or not a JSON object.
    """
    data = parse_json(read_text(path), str(path), finite=finite)
    if not isinstance(data, dict):
        raise UnreadableFileError(
            f"{path} holds a JSON {type(data).__name__}, expected {what}; re-save it as one or "
            "remove it from SRC"
        )
    return data


def brief(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: source values go into one-line messages."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def is_number(value: Any) -> bool:
    """Whether a parsed JSON value is a number (``bool`` is not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_numeric_text(value: Any) -> bool:
    """Whether ``value`` is a string that spells a number (a metric stored as text)."""
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def metric_value(value: Any) -> float:
    """A metric as stored (float32): NaN unless a finite number within float32's range."""
    if not is_number(value) or not abs(value) <= FLOAT32_MAX:  # NaN fails the comparison
        return math.nan
    return float(value)


def epoch_label(value: Any, source: str) -> int:
    """A checkpoint label: a non-negative integer within int64 (``3.0`` is 3).

    Raises:
        UnreadableFileError: for anything else (``"last"``, ``1.5``, ``-1``, ``true``).
    """
    if is_number(value) and math.isfinite(value) and float(value).is_integer():
        label = int(value)
        if 0 <= label <= INT64_MAX:
            return label
    raise UnreadableFileError(
        f"{source}: epoch {brief(value)} is not a non-negative integer; write the checkpoint's "
        "epoch number (or drop the key) and import again"
    )


def seed_of(value: Any) -> int:
    """A model's seed from its metadata: an integral number within int64, else -1 (unknown)."""
    if is_number(value) and math.isfinite(value) and float(value).is_integer():
        seed = int(value)
        if -INT64_MAX <= seed <= INT64_MAX:
            return seed
    return -1


# -- tensors and arrays -------------------------------------------------------------------------


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Load a ``torch.save`` file with ``weights_only=True`` and return its tensors as numpy.

    A file holding ``{"state_dict": ...}`` or ``{"model_state_dict": ...}`` is unwrapped.
    Floating-point tensors (any precision) are returned as float32; other entries are skipped.

    Raises:
        UnsafeFileError: if the file needs unpickling of arbitrary objects.
        UnreadableFileError: if it is unreadable, not a state_dict, or holds no float tensors.
    """
    import torch

    _require_torch_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeFileError(
            f"{path} cannot be loaded with torch.load(weights_only=True) ({_first_line(exc)}); "
            "weightzoo never unpickles arbitrary objects. Re-save it as a plain state_dict "
            "(torch.save(model.state_dict(), path)) in a trusted environment and import again."
        ) from exc
    except Exception as exc:  # torch reports a bad file as RuntimeError, EOFError, KeyError...
        raise UnreadableFileError(
            f"{path} is not a readable torch.save file ({type(exc).__name__}: "
            f"{_first_line(exc)}); it may be truncated or from another program. Re-save it "
            "with torch.save(state_dict, path) and import again."
        ) from exc
    return _float_tensors(path, obj)


def _float_tensors(path: Path, obj: Any) -> dict[str, np.ndarray]:
    """The float tensors of a loaded ``torch.save`` object, which must be a state_dict."""
    import torch

    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise UnreadableFileError(
            f"{path} holds a {type(obj).__name__}, not a state_dict of tensors. Re-save it with "
            "torch.save(model.state_dict(), path) and import again."
        )
    tensors = {}
    for key, value in obj.items():
        if not (isinstance(value, torch.Tensor) and value.is_floating_point()):
            continue
        if value.layout != torch.strided:
            raise UnreadableFileError(
                f"{path}: tensor {str(key)!r} is stored {value.layout} (not dense); save "
                "dense tensors (tensor.to_dense()) and import again"
            )
        _require_backed(path, str(key), value)
        # bfloat16 and float8 have no numpy dtype; every zoo stores float32 anyway
        tensors[str(key)] = value.detach().to("cpu", torch.float32).numpy()
    if not tensors:
        raise UnreadableFileError(
            f"{path} holds no floating-point tensors. Re-save it with "
            "torch.save(model.state_dict(), path) and import again."
        )
    return tensors


def _require_backed(path: Path, key: str, value: Any) -> None:
    """Refuse a tensor that has more elements than its storage holds, or reaches beyond it.

    A pickle may rebuild a tensor as any view of its storage: a (65536, 65536) view with zero
    strides of a one-element storage takes 1.6 KB on disk and 16 GiB once copied. A view that
    holds no more elements than its storage (a transposed weight does) costs no more memory
    than its file holds.
    """
    size = value.element_size()
    held = value.untyped_storage().nbytes()
    copied = value.numel() * size
    last = value.storage_offset() + sum(
        (n - 1) * stride for n, stride in zip(value.shape, value.stride(), strict=True)
    )
    reached = (last + 1) * size if value.numel() else 0
    if max(copied, reached) <= held:
        return
    raise UnreadableFileError(
        f"{path}: tensor {key!r} of shape {tuple(value.shape)} and strides {value.stride()} "
        f"needs {max(copied, reached)} bytes but its storage holds {held}; save plain tensors "
        "(tensor.contiguous().clone()) and import again"
    )


def _require_torch_file(path: Path) -> None:
    """Refuse an empty file, and one that is not a zip archive or a pickle, before torch."""
    _require_content(path)
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head.startswith(_TORCH_MAGIC):
        raise UnreadableFileError(
            f"{path} is not a torch.save file (it begins with {head!r}, neither a zip archive "
            "nor a pickle). Re-save it with torch.save(state_dict, path) or remove it from SRC."
        )


def load_npy(path: Path) -> np.ndarray:
    """Memory-map a numeric ``.npy`` file, after checking its header against its size.

    Raises:
        DataFilesMissingError: if the file is missing.
        UnsafeFileError: if the array needs unpickling (object dtype).
        UnreadableFileError: for a malformed header, a non-numeric dtype, or a header that
            declares more data than the file holds (nothing is allocated for it).
    """
    if not path.is_file():
        raise DataFilesMissingError(f"{path} is missing; copy it into SRC and import again")
    _require_content(path)
    shape, dtype, offset = _npy_header(path)
    if dtype.hasobject:
        raise UnsafeFileError(
            f"{path} holds Python objects that would need unpickling; weightzoo reads only "
            "numeric .npy arrays. Convert it to a float array first."
        )
    if dtype.kind not in "fiu" or dtype.fields is not None:
        raise UnreadableFileError(
            f"{path} holds dtype {dtype}, not numbers; save the weights as a float array "
            "(np.save(path, weights.astype(np.float32))) and import again"
        )
    declared = math.prod(shape) * dtype.itemsize
    held = path.stat().st_size - offset
    if declared > held:
        raise UnreadableFileError(
            f"{path} declares shape {shape} ({declared} bytes of {dtype}) but holds {held} "
            "bytes of data; it is truncated or its header is wrong. Copy it again from the source."
        )
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise UnreadableFileError(
            f"{path} is not a readable .npy array ({type(exc).__name__}: {_first_line(exc)}); "
            "copy it again from the source"
        ) from exc


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset)`` from an ``.npy`` header, without reading the data."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as handle:
            version = fmt.read_magic(handle)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _fortran, dtype = read(handle)
            return tuple(int(d) for d in shape), np.dtype(dtype), handle.tell()
    except (ValueError, TypeError, EOFError, OSError, SyntaxError) as exc:
        raise UnreadableFileError(
            f"{path} has no valid .npy header ({type(exc).__name__}: {_first_line(exc)}); "
            "it may be truncated or not an .npy file. Copy it again from the source."
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _require_content(path: Path) -> None:
    if path.stat().st_size == 0:
        raise UnreadableFileError(f"{path} is empty (0 bytes); copy it again from the source")


# -- columns ------------------------------------------------------------------------------------


def column_arrays(
    rows: Sequence[Mapping[str, Any]], sources: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Per-model metadata dicts -> typed columns (bool, int64, float64 with NaN, or str).

    A key missing from some models becomes NaN (numeric) or ``""`` (str); lists and dicts are
    stored as their JSON text, and integers beyond int64 as their digits (a str column).

    Args:
        rows: one dict per model.
        sources: the file each row came from, for messages (default: unnamed).

    Raises:
        UnreadableFileError: for a key or text that is not storable UTF-8 (a NUL character, a
            file name that is not UTF-8), and for two keys that become the same column name.
    """
    origin = list(sources) if sources is not None else ["SRC"] * len(rows)
    keys: dict[str, str] = {}  # column name -> source key
    for row, source in zip(rows, origin, strict=True):
        for key in row:
            name = _column_name(key, source)
            if keys.setdefault(name, key) != key:
                raise UnreadableFileError(
                    f"{source}: keys {brief(keys[name])} and {brief(key)} both become column "
                    f"{brief(name)} "
                    "('::' is written '.', '/' '_'); rename one and import again"
                )
    columns: dict[str, np.ndarray] = {}
    for name, key in keys.items():
        values = [row.get(key) for row in rows]
        for value, source in zip(values, origin, strict=True):
            if isinstance(value, str):
                _check_text(value, f"{source}: the value of {brief(key)}")
        columns[name] = _typed_column(values)
    return columns


def metric_names_of(keys: Iterable[str], source: str) -> dict[str, str]:
    """``{source key: stored metric name}`` (``/`` written ``_``), checked storable and distinct.

    Raises:
        UnreadableFileError: for a name a zoo cannot store (empty, ``.``, NUL, not UTF-8) and
            for two keys that become one name.
    """
    names: dict[str, str] = {}
    for key in keys:
        _check_text(key, f"{source}: the metric")
        name = key.replace("/", "_")
        if name in ("", ".", ".."):
            raise UnreadableFileError(
                f"{source}: metric name {brief(key)} cannot be stored; rename it and import again"
            )
        clash = next((k for k, v in names.items() if v == name), None)
        if clash is not None:
            raise UnreadableFileError(
                f"{source}: metrics {brief(clash)} and {brief(key)} both become {brief(name)} "
                "('/' is written "
                "'_'); rename one and import again"
            )
        names[key] = name
    return names


def _column_name(key: str, source: str) -> str:
    _check_text(key, f"{source}: the key")
    return key.replace("::", ".").replace("/", "_")


def _check_text(text: str, what: str) -> None:
    """Text must be UTF-8 without NUL to be stored in HDF5 (names and string columns)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        bad = True
    else:
        bad = "\x00" in text
    if bad:
        raise UnreadableFileError(
            f"{what} {brief(text)} holds a NUL or a character that is not UTF-8, which a zoo "
            "cannot store; rename it (or the file) and import again"
        )


def _typed_column(values: list[Any]) -> np.ndarray:
    present = [v for v in values if v is not None]
    complete = len(present) == len(values)
    ints_fit = all(-INT64_MAX <= v <= INT64_MAX for v in present if isinstance(v, int))
    if present and complete and all(isinstance(v, bool) for v in present):
        return np.asarray(values, dtype=bool)
    if present and ints_fit and all(isinstance(v, int) and type(v) is not bool for v in present):
        if complete:
            return np.asarray(values, dtype=np.int64)
        return np.asarray([math.nan if v is None else v for v in values], dtype=float)
    if present and ints_fit and all(isinstance(v, (int, float)) for v in present):
        return np.asarray([math.nan if v is None else v for v in values], dtype=float)
    return np.asarray(
        ["" if v is None else v if isinstance(v, str) else json.dumps(v) for v in values],
        dtype=object,
    )


# -- source identity and DEST -------------------------------------------------------------------


def source_digest(root: Path, files: Iterable[Path]) -> str:
    """One sha256 over the sorted ``(path relative to root, sha256)`` pairs of ``files``.

    Every file is hashed streamed (:func:`weightzoo.storage.hashing.sha256_file`), so a zoo
    imported from changed content has another spec, and so another fingerprint.
    """
    pairs = sorted((p.relative_to(root).as_posix(), sha256_file(p)) for p in set(files))
    return hashlib.sha256(json.dumps(pairs).encode("ascii")).hexdigest()


def spec_fingerprint(spec: Mapping[str, Any]) -> str:
    """The writer's identity of a spec: sha256 of its canonical JSON."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_dest(dest: str | os.PathLike[str], spec: Mapping[str, Any] | None = None) -> None:
    """DEST must be absent, empty, or hold the imported zoo of this very spec (to resume).

    Import never writes into a directory that holds anything else, so it cannot delete or
    overwrite a user's files. Without ``spec`` only the directory's contents are checked (a
    fast check before the source is read); with it, an existing zoo must have its fingerprint.

    Args:
        dest: the zoo directory to write.
        spec: the full spec of the zoo to import (as given to the writer).

    Raises:
        InvalidOptionError: if DEST is a file, or a non-empty directory without a zoo, or holds
            an unreadable manifest.
        SourcePathError: if the zoo's manifest, shard folder or lock in DEST is a link.
        SpecMismatchError: if DEST holds a zoo of another spec (another source content).
    """
    path = Path(dest)
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir():
        raise InvalidOptionError(
            f"DEST {dest} exists and is not a directory; import writes a zoo directory. "
            "Choose an absent or empty DEST."
        )
    if not (path / MANIFEST_NAME).exists() and not (path / MANIFEST_NAME).is_symlink():
        refuse_foreign_files(path)
        return
    for name in (MANIFEST_NAME, SHARD_DIR, LOCK_NAME):
        if (path / name).is_symlink():
            raise SourcePathError(
                f"DEST {dest} holds {name} as a link; weightzoo never writes a zoo through a "
                "link. Choose another DEST."
            )
    if spec is not None:
        _check_same_zoo(path, spec)


def _check_same_zoo(path: Path, spec: Mapping[str, Any]) -> None:
    try:
        existing = Manifest.load(path)
    except WeightzooError as exc:
        raise InvalidOptionError(
            f"DEST {path} holds a {MANIFEST_NAME} that is not a readable zoo manifest "
            f"({_first_line(exc)}); choose another DEST"
        ) from exc
    if existing.spec_fingerprint == spec_fingerprint(spec):
        return
    keys = set(existing.spec) | set(spec)
    changed = sorted(k for k in keys if existing.spec.get(k) != spec.get(k))
    raise SpecMismatchError(
        f"DEST {path} already holds zoo {existing.name!r} made from other content (differing "
        f"spec fields: {', '.join(changed) or 'none'}); import into another DEST, or delete "
        f"{path} to start over"
    )


# -- writing ------------------------------------------------------------------------------------


def write_zoo(
    dest: str | os.PathLike[str],
    *,
    name: str,
    family: str,
    spec: Mapping[str, Any],
    source_files: tuple[Path, Sequence[Path]],
    layout: Layout,
    epochs: Sequence[int],
    metric_names: Sequence[str],
    columns: Mapping[str, np.ndarray],
    load: Callable[[int], ModelRecord],
    strata: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
) -> Manifest:
    """Write an imported zoo in the standard format, reading one block of models at a time.

    The spec gets ``source_sha256`` (:func:`source_digest` of every source file the importer
    reads) and the split rule; DEST is checked against it (:func:`check_dest`) before the
    writer opens it, so a changed source is refused in a DEST holding the old import, and an
    unchanged one resumes. Models are split with the generator's rule
    (:func:`weightzoo.blocks.stratified_splits`, seed :data:`SPLIT_SEED`), stratified by
    ``strata`` where the source says what a model's class or hyperparameter node is, and
    written block by block with :func:`weightzoo.blocks.write_block`.

    Args:
        dest: the zoo directory to write.
        name: zoo name.
        family: importer name (``modelzoo``, ``cnn-zoo``, ``mlds``).
        spec: what was imported (source, configuration); becomes the manifest's spec.
        source_files: ``(SRC, files)``: every file the importer reads, under SRC.
        layout: layout of a weight row.
        epochs: checkpoint labels.
        metric_names: metric names every model provides.
        columns: per-model columns, including ``model_id`` and ``seed``, in source order.
        load: reads model ``i`` (source order).
        strata: each model's stratum in source order (default: one stratum).
        splits: each model's split in source order, as its source publishes them (e.g. the
            splits other papers use); replaces the rule, and the spec records their sha256.

    Returns:
        The finished manifest.

    Raises:
        SpecMismatchError: if DEST holds a zoo imported from other content.
        InvalidOptionError: if DEST holds anything but this zoo, SRC's name is not UTF-8, or
            ``splits`` names a split other than train, val and test.
    """
    _check_text(name, f"SRC {source_files[0]}: its name")
    count = len(columns["model_id"])
    rule = _split_rule(splits, count)
    full_spec = json.loads(
        json.dumps({**spec, "source_sha256": source_digest(*source_files), "split": rule})
    )
    check_dest(dest, full_spec)
    ids = list(range(count))
    chosen = (
        dict(enumerate(str(s) for s in splits))
        if splits is not None
        else stratified_splits(
            ids,
            list(strata) if strata is not None else [""] * count,
            fractions=SPLIT_FRACTIONS,
            seed=SPLIT_SEED,
        )
    )
    with ZooWriter(
        dest,
        name=name,
        family=family,
        spec=full_spec,
        spec_fingerprint=spec_fingerprint(full_spec),
        layout=layout,
        epochs=epochs,
        metrics=metric_names,
        stats_names=statistics_names(layout, STATS_PRESET),
        stats_preset=STATS_PRESET,
        num_models=count,
        split_counts={s: sum(v == s for v in chosen.values()) for s in SPLITS},
        extra={"importer": family},
    ) as writer:
        position = 0
        for split in SPLITS:
            members = [i for i in ids if chosen[i] == split]
            for start in range(0, len(members), MODELS_PER_SHARD):
                block = members[start : start + MODELS_PER_SHARD]
                first = position + start
                if writer.has_shard(shard_file_name(split, first)):
                    continue
                known = {k: np.asarray(v)[block] for k, v in columns.items()}
                known["split"] = np.asarray([split] * len(block), dtype=object)
                write_block(
                    writer,
                    [load(i) for i in block],
                    split=split,
                    first=first,
                    order=block,
                    columns=known,
                )
            position += len(members)
        return writer.finish()


def _split_rule(splits: Sequence[str] | None, count: int) -> dict[str, Any]:
    """What the spec records of the split: weightzoo's rule, or the sha256 of given splits."""
    if splits is None:
        return {"seed": SPLIT_SEED, "fractions": list(SPLIT_FRACTIONS)}
    if len(splits) != count:
        raise InvalidOptionError(
            f"{len(splits)} splits given for {count} models; give one split per model"
        )
    unknown = sorted({str(s) for s in splits} - set(SPLITS))
    if unknown:
        raise InvalidOptionError(
            f"split {brief(unknown[0])} is not one of {', '.join(SPLITS)}; map the source's "
            "split names to those"
        )
    digest = hashlib.sha256(json.dumps([str(s) for s in splits]).encode()).hexdigest()
    return {"given": digest}


# -- paths --------------------------------------------------------------------------------------


def require_dir(
    src: str | os.PathLike[str], what: str, dest: str | os.PathLike[str] | None = None
) -> Path:
    """The source directory, checked to exist and not to hold ``dest``; DEST checked too.

    Raises:
        DataFilesMissingError: if it does not exist.
        SourcePathError: if ``dest`` is ``src`` or lies inside it (a second run would read the
            zoo written by the first as source files).
        InvalidOptionError: if DEST holds anything but an imported zoo (:func:`check_dest`).
    """
    path = Path(src)
    if not path.is_dir():
        raise DataFilesMissingError(f"{what} source directory {path} does not exist")
    if dest is not None:
        try:
            target, base = Path(dest).resolve(), path.resolve()
        except (RuntimeError, OSError) as exc:  # Python < 3.13 reports a loop as RuntimeError
            raise InvalidOptionError(
                f"DEST {dest} cannot be resolved ({_first_line(exc)}): it is a symbolic link "
                "loop. Choose another DEST."
            ) from exc
        if target == base or target.is_relative_to(base):
            raise SourcePathError(
                f"DEST {dest} lies inside SRC {src}: a second run would read its own output as "
                "source files. Choose a DEST outside SRC."
            )
        check_dest(dest)
    return path


def refuse_loop(path: Path) -> Path:
    """``path``, checked not to be (or pass through) a symbolic link loop.

    Raises:
        SourcePathError: for a link that never ends.
    """
    try:
        path.resolve()
    except (RuntimeError, OSError) as exc:  # Python < 3.13 reports a loop as RuntimeError
        raise SourcePathError(
            f"{path} cannot be resolved ({_first_line(exc)}): it is a symbolic link loop. "
            "Replace the link with the file it should name, or remove it from SRC."
        ) from exc
    return path


def inside(root: Path, path: Path) -> Path:
    """``path``, checked to resolve (links followed) to a place inside ``root``.

    Raises:
        SourcePathError: for a file (or a directory on its way) linked out of ``root``, or a
            link that never ends (a loop).
    """
    real, base = refuse_loop(path).resolve(), root.resolve()
    if not real.is_relative_to(base):
        raise SourcePathError(
            f"{path} is a link to {real}, outside the source directory {root}; weightzoo never "
            "follows a link out of SRC. Copy the file into SRC instead."
        )
    return path


def source_file(root: Path, path: Path) -> Path | None:
    """``path`` if it is a regular file inside ``root``, ``None`` if there is nothing there.

    A link is followed only inside ``root``; a directory, FIFO or device is not a source file.

    Raises:
        SourcePathError: for a link out of ``root`` or a link loop (see :func:`inside`).
        UnreadableFileError: for something at ``path`` that is not a regular file.
    """
    if not path.exists() and not path.is_symlink():
        return None
    inside(root, path)
    if not path.is_file():
        raise UnreadableFileError(
            f"{path} is not a regular file; replace it with the file it should be, or remove "
            "it from SRC"
        )
    return path
