"""Import MLDS networks: one PyTorch file or one JSON file per network.

No public description of MLC@Home's file layout survives (see docs/import.md), so this
importer takes the two shapes the archives are known to hold and documents the reading:

* ``<net>.pt`` / ``<net>.pth``: a ``state_dict`` (loaded with ``weights_only=True`` only), with
  an optional sidecar ``<net>.json`` of metadata;
* ``<net>.json``: ``{"state_dict" or "weights": {name: nested lists}, ...metadata}``.

Every network is one model with one checkpoint (its final weights, epoch label 0 unless the
metadata has ``epoch``). Scalar metadata becomes per-model columns, numeric keys containing
``loss`` or ``acc`` become metrics. Files are found recursively and ordered by natural sort of
their path; all networks must have the same tensor names and shapes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from weightzoo.errors import DataFilesMissingError, LayoutError, UnreadableFileError
from weightzoo.importers._common import (
    ModelRecord,
    column_arrays,
    inside,
    load_state_dict,
    require_dir,
    write_zoo,
)
from weightzoo.storage.layout import Layout, natural_key
from weightzoo.storage.manifest import Manifest

_TORCH_SUFFIXES = (".pt", ".pth")
_CLASS_KEYS = ("machine", "automaton", "class")  # metadata that names a network's class


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableFileError(
            f"{path} is not readable JSON: {exc}. Re-save it as UTF-8 JSON or remove it from SRC."
        ) from exc
    if not isinstance(data, dict):
        raise UnreadableFileError(
            f"{path} holds a {type(data).__name__}, expected a JSON object (a network with its "
            "metadata). Remove it from SRC or re-save it as one."
        )
    return data


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
    return {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}, data


def _stratum(meta: dict[str, Any]) -> str:
    """A network's class where its metadata names one (machine or automaton), else ``""``."""
    for key in _CLASS_KEYS:
        if meta.get(key) is not None:
            return f"{key}={meta[key]}"
    return ""


def import_mlds(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Manifest:
    """Convert a directory of MLDS network files into a weightzoo zoo.

    Args:
        src: directory holding ``*.pt``/``*.pth`` and/or ``*.json`` network files.
        dest: the weightzoo zoo directory to write.

    Returns:
        The written manifest.

    Raises:
        DataFilesMissingError: if no network file is found.
        LayoutError: if networks have different tensors.
        UnsafeFileError: if a ``.pt`` file needs unpickling of arbitrary objects.
    """
    root = require_dir(src, "MLDS", dest)
    torch_files = [p for p in root.rglob("*") if p.suffix in _TORCH_SUFFIXES]
    sidecars = {p.with_suffix(".json") for p in torch_files}
    json_files = [p for p in root.rglob("*.json") if p not in sidecars]
    files = sorted(
        torch_files + json_files, key=lambda p: natural_key(p.relative_to(root).as_posix())
    )
    for path in [*files, *(s for s in sidecars if s.exists())]:
        inside(root, path)
    if not files:
        raise DataFilesMissingError(f"{root} holds no .pt, .pth or .json network files")

    first_sd, _ = _network(files[0])
    layout = Layout.from_shapes({k: v.shape for k, v in first_sd.items()}, sort=True)
    rows, metric_rows, epochs_seen, strata = [], [], set(), []
    for index, path in enumerate(files):
        sd, meta = _network(path) if index else (first_sd, _network(path)[1])
        layout.check_shapes({k: v.shape for k, v in sd.items()}, source=str(path))
        scalars = {
            k: v for k, v in meta.items() if v is None or isinstance(v, (str, int, float, bool))
        }
        metrics = {
            k: float(v)
            for k, v in scalars.items()
            if isinstance(v, (int, float))
            and not isinstance(v, bool)
            and ("loss" in k or "acc" in k)
        }
        epochs_seen.add(int(meta.get("epoch", 0)))
        seed = scalars.get("seed")
        row = {"model_id": index, "file": path.relative_to(root).as_posix()}
        row.update({f"meta:{k}": v for k, v in scalars.items() if k not in metrics})
        row["seed"] = int(seed) if isinstance(seed, (int, float)) else -1
        rows.append(row)
        metric_rows.append(metrics)
        strata.append(_stratum(scalars))
    if len(epochs_seen) > 1:
        raise LayoutError(
            f"networks in {root} are at different epochs {sorted(epochs_seen)}; import them "
            "separately (a zoo's models share one checkpoint schedule)"
        )
    metric_names = sorted({k for m in metric_rows for k in m})
    columns = column_arrays(rows)

    def load(index: int) -> ModelRecord:
        sd, _ = _network(files[index])
        row = np.empty((1, layout.num_params), dtype=np.float32)
        for tensor in layout:
            row[0, tensor.offset : tensor.stop] = np.asarray(sd[tensor.name]).reshape(-1)
        metrics = {
            k: np.asarray([metric_rows[index].get(k, np.nan)], dtype=np.float32)
            for k in metric_names
        }
        return ModelRecord(index, row, metrics)

    return write_zoo(
        dest,
        name=root.name,
        family="mlds",
        spec={"importer": "mlds", "source": root.name, "files": len(files)},
        layout=layout,
        epochs=sorted(epochs_seen),
        metric_names=metric_names,
        columns=columns,
        load=load,
        strata=strata,
    )
