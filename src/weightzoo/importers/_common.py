"""What every importer shares: safe loading, column typing, and writing through the blocks."""

from __future__ import annotations

import json
import math
import os
import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from weightzoo.blocks import STATS_PRESET, ModelRecord, stratified_splits, write_block
from weightzoo.errors import (
    DataFilesMissingError,
    SourcePathError,
    UnreadableFileError,
    UnsafeFileError,
)
from weightzoo.features import statistics_names
from weightzoo.storage.layout import Layout
from weightzoo.storage.manifest import SPLITS, Manifest
from weightzoo.storage.manifest import shard_file_name
from weightzoo.storage.writer import ZooWriter

SPLIT_SEED = 42
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
MODELS_PER_SHARD = 256


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Load a ``torch.save`` file with ``weights_only=True`` and return its tensors as numpy.

    A file holding ``{"state_dict": ...}`` or ``{"model_state_dict": ...}`` is unwrapped.

    Raises:
        UnsafeFileError: if the file needs unpickling of arbitrary objects.
        UnreadableFileError: if it is unreadable, not a state_dict, or holds no float tensors.
    """
    import torch

    _require_content(path)
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
    tensors = {
        str(k): v.detach().cpu().numpy()
        for k, v in obj.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point()
    }
    if not tensors:
        raise UnreadableFileError(
            f"{path} holds no floating-point tensors. Re-save it with "
            "torch.save(model.state_dict(), path) and import again."
        )
    return tensors


def load_npy(path: Path) -> np.ndarray:
    """Memory-map an ``.npy`` file; object arrays (which need pickle) are refused.

    Raises:
        DataFilesMissingError: if the file is missing.
        UnsafeFileError: if the array needs unpickling.
    """
    if not path.is_file():
        raise DataFilesMissingError(f"{path} is missing")
    _require_content(path)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc) or "Python objects" in str(exc):
            raise UnsafeFileError(
                f"{path} holds Python objects that would need unpickling; weightzoo reads only "
                "numeric .npy arrays. Convert it to a float array first."
            ) from exc
        raise UnreadableFileError(f"{path} is not a readable .npy array ({exc})") from exc
    except (EOFError, OSError) as exc:
        raise UnreadableFileError(
            f"{path} is not a readable .npy array ({type(exc).__name__}: {_first_line(exc)}); "
            "it may be truncated. Copy it again from the source."
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _require_content(path: Path) -> None:
    if path.stat().st_size == 0:
        raise UnreadableFileError(f"{path} is empty (0 bytes); copy it again from the source")


def column_arrays(rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Per-model metadata dicts -> typed columns (bool, int64, float64 with NaN, or str).

    A key missing from some models becomes NaN (numeric) or ``""`` (str); lists and dicts are
    stored as their JSON text.
    """
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    columns: dict[str, np.ndarray] = {}
    for key in keys:
        values = [row.get(key) for row in rows]
        present = [v for v in values if v is not None]
        name = key.replace("::", ".").replace("/", "_")
        if present and all(isinstance(v, bool) for v in present) and len(present) == len(values):
            columns[name] = np.asarray(values, dtype=bool)
        elif present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            if len(present) == len(values):
                columns[name] = np.asarray(values, dtype=np.int64)
            else:
                columns[name] = np.asarray([math.nan if v is None else v for v in values], float)
        elif present and all(isinstance(v, (int, float)) for v in present):
            columns[name] = np.asarray([math.nan if v is None else v for v in values], float)
        else:
            columns[name] = np.asarray(
                ["" if v is None else v if isinstance(v, str) else json.dumps(v) for v in values],
                dtype=object,
            )
    return columns


def write_zoo(
    dest: str | os.PathLike[str],
    *,
    name: str,
    family: str,
    spec: Mapping[str, Any],
    layout: Layout,
    epochs: Sequence[int],
    metric_names: Sequence[str],
    columns: Mapping[str, np.ndarray],
    load: Callable[[int], ModelRecord],
    strata: Sequence[str] | None = None,
) -> Manifest:
    """Write an imported zoo in the standard format, reading one block of models at a time.

    Models are split with the generator's rule (:func:`weightzoo.blocks.stratified_splits`,
    seed :data:`SPLIT_SEED`), stratified by ``strata`` where the source says what a model's
    class or hyperparameter node is, and written block by block with
    :func:`weightzoo.blocks.write_block`.

    Args:
        dest: the zoo directory to write.
        name: zoo name.
        family: importer name (``modelzoo``, ``cnn-zoo``, ``mlds``).
        spec: what was imported (source, configuration); becomes the manifest's spec.
        layout: layout of a weight row.
        epochs: checkpoint labels.
        metric_names: metric names every model provides.
        columns: per-model columns, including ``model_id`` and ``seed``, in source order.
        load: reads model ``i`` (source order).
        strata: each model's stratum in source order (default: one stratum).

    Returns:
        The finished manifest.
    """
    count = len(columns["model_id"])
    ids = list(range(count))
    splits = stratified_splits(
        ids,
        list(strata) if strata is not None else [""] * count,
        fractions=SPLIT_FRACTIONS,
        seed=SPLIT_SEED,
    )
    with ZooWriter(
        dest,
        name=name,
        family=family,
        spec={**spec, "split": {"seed": SPLIT_SEED, "fractions": list(SPLIT_FRACTIONS)}},
        layout=layout,
        epochs=epochs,
        metrics=metric_names,
        stats_names=statistics_names(layout, STATS_PRESET),
        stats_preset=STATS_PRESET,
        num_models=count,
        split_counts={s: sum(v == s for v in splits.values()) for s in SPLITS},
        extra={"importer": family},
    ) as writer:
        position = 0
        for split in SPLITS:
            members = [i for i in ids if splits[i] == split]
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


def require_dir(
    src: str | os.PathLike[str], what: str, dest: str | os.PathLike[str] | None = None
) -> Path:
    """The source directory, checked to exist and not to hold ``dest``.

    Raises:
        DataFilesMissingError: if it does not exist.
        SourcePathError: if ``dest`` is ``src`` or lies inside it (a second run would read the
            zoo written by the first as source files).
    """
    path = Path(src)
    if not path.is_dir():
        raise DataFilesMissingError(f"{what} source directory {path} does not exist")
    if dest is not None:
        target, base = Path(dest).resolve(), path.resolve()
        if target == base or target.is_relative_to(base):
            raise SourcePathError(
                f"DEST {dest} lies inside SRC {src}: a second run would read its own output as "
                "source files. Choose a DEST outside SRC."
            )
    return path


def inside(root: Path, path: Path) -> Path:
    """``path``, checked to resolve (links followed) to a place inside ``root``.

    Raises:
        SourcePathError: for a file (or a directory on its way) linked out of ``root``.
    """
    real, base = path.resolve(), root.resolve()
    if not real.is_relative_to(base):
        raise SourcePathError(
            f"{path} is a link to {real}, outside the source directory {root}; weightzoo never "
            "follows a link out of SRC. Copy the file into SRC instead."
        )
    return path
