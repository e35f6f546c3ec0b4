"""Import MLDS networks: one PyTorch file or one JSON file per network.

No public description of MLC@Home's file layout survives (see docs/import.md), so this
importer takes the two shapes the archives are known to hold and documents the reading:

* ``<net>.pt`` / ``<net>.pth``: a ``state_dict`` (loaded with ``weights_only=True`` only), with
  an optional sidecar ``<net>.json`` of metadata;
* ``<net>.json``: ``{"state_dict" or "weights": {name: nested lists}, ...metadata}``.

Every network is one model with one checkpoint (its final weights, epoch label 0 unless the
metadata has ``epoch``). Scalar metadata becomes per-model columns, numeric keys containing
``loss`` or ``acc`` become metrics. Files are found recursively and ordered by natural sort of
their path; all networks must have the same tensor names and shapes. ``weightzoo import mlds``
finds it through the family (:meth:`~weightzoo.generate.base.Family.importer`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from weightzoo.errors import DataFilesMissingError, LayoutError, UnreadableFileError
from weightzoo.families.mlds.spec import FAMILY_NAME
from weightzoo.importers._common import (
    FLOAT32_MAX,
    ModelRecord,
    brief,
    column_arrays,
    epoch_label,
    inside,
    is_number,
    is_numeric_text,
    load_state_dict,
    metric_names_of,
    metric_value,
    read_json,
    require_dir,
    seed_of,
    write_zoo,
)
from weightzoo.storage.layout import Layout, natural_key
from weightzoo.storage.manifest import Manifest

__all__ = ["import_mlds"]

_TORCH_SUFFIXES = (".pt", ".pth")
_CLASS_KEYS = ("machine", "automaton", "class")  # metadata that names a network's class
_METRIC_WORDS = ("loss", "acc")


def _read_json(path: Path) -> dict[str, Any]:
    return read_json(path, what="a JSON object (a network with its metadata)")


def _tensor(path: Path, name: str, value: Any) -> np.ndarray:
    """A JSON tensor (nested lists of numbers) as float32, refused unless regular and finite.

    Raises:
        UnreadableFileError: for ragged lists, text, booleans, nulls, an empty tensor, or
            numbers beyond float32's range.
    """
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, RecursionError) as exc:  # ragged or inhomogeneous lists
        array, problem = None, f"is not a regular array of numbers ({type(exc).__name__})"
    else:
        problem = _tensor_problem(array)
    if array is None or problem:
        raise UnreadableFileError(
            f"{path}: tensor {name!r} {problem}; store it as nested lists of finite numbers and "
            "import again"
        )
    return array.astype(np.float32)


def _tensor_problem(array: np.ndarray) -> str:
    """What makes ``array`` no tensor of weights (``""`` if nothing)."""
    if array.dtype.kind not in "iuf":
        return f"holds {array.dtype} values (text, booleans, nulls or huge integers)"
    if array.size == 0:
        return f"is empty (shape {array.shape})"
    if not np.all(np.abs(array, dtype=np.float64) <= FLOAT32_MAX):
        return "holds numbers beyond float32's range"
    return ""


def _network(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(state_dict, metadata)`` of one network file."""
    if path.suffix in _TORCH_SUFFIXES:
        sidecar = path.with_suffix(".json")
        return load_state_dict(path), _read_json(sidecar) if sidecar.is_file() else {}
    data = _read_json(path)
    weights = data.pop("state_dict", None)
    if weights is None:
        weights = data.pop("weights", None)
    if not isinstance(weights, dict) or not weights:
        raise UnreadableFileError(
            f"{path} has no 'state_dict' or 'weights' object of tensors; add one (parameter "
            "name -> nested lists of numbers) or remove the file from SRC."
        )
    return {k: _tensor(path, k, v) for k, v in weights.items()}, data


def _meta_path(path: Path) -> Path:
    """The file a network's metadata comes from (its sidecar for a torch file)."""
    return path.with_suffix(".json") if path.suffix in _TORCH_SUFFIXES else path


def _scalars(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Scalar metadata; a metric (``loss``/``acc`` key) stored as text is refused."""
    scalars = {}
    for key, value in meta.items():
        if is_numeric_text(value) and any(w in key for w in _METRIC_WORDS):
            raise UnreadableFileError(
                f"{_meta_path(path)}: metric {key!r} is the text {brief(value)}; store it as a "
                "JSON number and import again"
            )
        if value is None or isinstance(value, (str, int, float, bool)):
            scalars[key] = value
    return scalars


def _metric_keys(metas: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    """Keys with ``loss``/``acc`` that are numbers somewhere, checked numbers (or null) everywhere.

    Raises:
        UnreadableFileError: for a metric that is a number in one network and not in another.
    """
    keys = sorted(
        {
            k
            for _, meta in metas
            for k, v in meta.items()
            if is_number(v) and any(w in k for w in _METRIC_WORDS)
        }
    )
    for path, meta in metas:
        for key in keys:
            value = meta.get(key)
            if value is not None and not is_number(value):
                raise UnreadableFileError(
                    f"{_meta_path(path)}: metric {key!r} is {brief(value)}, a number in other "
                    "networks; store it as a number (or null) and import again"
                )
    return keys


def _stratum(meta: dict[str, Any]) -> str:
    """A network's class where its metadata names one (machine or automaton), else ``""``."""
    for key in _CLASS_KEYS:
        if meta.get(key) is not None:
            return f"{key}={meta[key]}"
    return ""


def _files(root: Path) -> tuple[list[Path], list[Path]]:
    """Network files in natural order of their paths, and the sidecars present."""
    candidates = [p for p in root.rglob("*") if p.suffix in (*_TORCH_SUFFIXES, ".json")]
    for path in candidates:
        inside(root, path)  # before is_file(): a link loop or a link out of SRC is refused
    candidates = [p for p in candidates if p.is_file()]  # not directories, FIFOs, devices
    torch_files = [p for p in candidates if p.suffix in _TORCH_SUFFIXES]
    sidecars = {p.with_suffix(".json") for p in torch_files}
    files = [p for p in candidates if p not in sidecars]
    files.sort(key=lambda p: natural_key(p.relative_to(root).as_posix()))
    return files, [s for s in sidecars if s.is_file()]


def import_mlds(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Manifest:
    """Convert a directory of MLDS network files into a weightzoo zoo.

    Args:
        src: directory holding ``*.pt``/``*.pth`` and/or ``*.json`` network files.
        dest: the weightzoo zoo directory to write.

    Returns:
        The written manifest.

    Raises:
        DataFilesMissingError: if no network file is found.
        LayoutError: if networks have different tensors or epochs.
        UnreadableFileError: for malformed JSON, tensors or metadata.
        UnsafeFileError: if a ``.pt`` file needs unpickling of arbitrary objects.
    """
    root = require_dir(src, "MLDS", dest)
    files, sidecars = _files(root)
    if not files:
        raise DataFilesMissingError(f"{root} holds no .pt, .pth or .json network files")

    first_sd, _ = _network(files[0])
    layout = Layout.from_shapes({k: v.shape for k, v in first_sd.items()}, sort=True)
    metas = []
    for index, path in enumerate(files):
        sd, meta = _network(path) if index else (first_sd, _network(path)[1])
        layout.check_shapes({k: v.shape for k, v in sd.items()}, source=str(path))
        metas.append((path, meta))
    epochs = {epoch_label(meta.get("epoch", 0), str(_meta_path(p))) for p, meta in metas}
    if len(epochs) > 1:
        raise LayoutError(
            f"networks in {root} are at different epochs {sorted(epochs)}; import them "
            "separately (a zoo's models share one checkpoint schedule)"
        )
    scalars_per_network = [_scalars(path, meta) for path, meta in metas]
    metric_keys = _metric_keys(metas)
    metric_names = metric_names_of(metric_keys, f"the metadata of {root}")
    rows, strata, metric_rows = [], [], []
    for index, ((path, meta), scalars) in enumerate(zip(metas, scalars_per_network, strict=True)):
        row = {"model_id": index, "file": path.relative_to(root).as_posix()}
        row.update({f"meta:{k}": v for k, v in scalars.items() if k not in metric_names})
        row["seed"] = seed_of(scalars.get("seed"))
        rows.append(row)
        metric_rows.append({metric_names[k]: meta.get(k) for k in metric_keys})
        strata.append(_stratum(scalars))
    columns = column_arrays(rows, [str(_meta_path(p)) for p, _ in metas])

    def load(index: int) -> ModelRecord:
        sd, _ = _network(files[index])
        layout.check_shapes({k: v.shape for k, v in sd.items()}, source=str(files[index]))
        row = np.empty((1, layout.num_params), dtype=np.float32)
        for tensor in layout:
            row[0, tensor.offset : tensor.stop] = np.asarray(sd[tensor.name]).reshape(-1)
        metrics = {
            name: np.asarray([metric_value(v)], dtype=np.float32)
            for name, v in metric_rows[index].items()
        }
        return ModelRecord(index, row, metrics)

    return write_zoo(
        dest,
        name=root.name,
        family=FAMILY_NAME,
        spec={"importer": FAMILY_NAME, "source": root.name, "files": len(files)},
        source_files=(root, [*files, *sidecars]),
        layout=layout,
        epochs=sorted(epochs),
        metric_names=list(metric_names.values()),
        columns=columns,
        load=load,
        strata=strata,
    )
