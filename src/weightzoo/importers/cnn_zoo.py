"""Import the Small CNN Zoo of Unterthiner et al. (weights.npy, metrics.csv.gz, layout.csv).

* ``weights.npy``: float ``[rows, 4970]``, one row per checkpoint of a network, TensorFlow layout
  (conv kernels ``[H, W, in, out]``, dense kernels ``[in, out]``);
* ``layout.csv``: ``varname, start_idx, end_idx, shape`` per variable of a row;
* ``metrics.csv.gz``: one line per row of ``weights.npy``, in the same order.

Variables are renamed to PyTorch (``sequential/conv2d_1/kernel:0`` -> ``conv2d_1.weight``) and
kernels transposed to PyTorch's layout (``[out, in, H, W]``, ``[out, in]``). Rows are grouped into
networks by ``modeldir`` and ordered by ``step`` (or ``epoch``); without those columns every row
is its own network with one checkpoint. ``config.*`` columns become per-model columns, every
other numeric column a metric.
"""

from __future__ import annotations

import ast
import csv
import gzip
import os
import re
from pathlib import Path

import numpy as np

from weightzoo.errors import DataFilesMissingError, LayoutError, UnreadableFileError
from weightzoo.importers._common import (
    ModelRecord,
    column_arrays,
    inside,
    load_npy,
    require_dir,
    write_zoo,
)
from weightzoo.storage.layout import Layout, natural_key
from weightzoo.storage.manifest import Manifest

_STEP_COLUMNS = ("step", "epoch", "global_step")


def torch_name(varname: str) -> str:
    """``sequential/conv2d_1/kernel:0`` -> ``conv2d_1.weight`` (first scope dropped if nested)."""
    parts = re.sub(r":\d+$", "", varname).split("/")
    if len(parts) > 2:
        parts = parts[1:]
    leaf = {"kernel": "weight", "bias": "bias"}.get(parts[-1], parts[-1])
    return ".".join([*parts[:-1], leaf])


def tf_to_torch(array: np.ndarray) -> np.ndarray:
    """HWIO -> OIHW for 4-D kernels, ``[in, out]`` -> ``[out, in]`` for 2-D; others unchanged."""
    if array.ndim == 4:
        return np.ascontiguousarray(array.transpose(3, 2, 0, 1))
    if array.ndim == 2:
        return np.ascontiguousarray(array.T)
    return array


def _read_layout(path: Path) -> list[tuple[str, int, int, tuple[int, ...]]]:
    if not path.is_file():
        raise DataFilesMissingError(f"{path} is missing")
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                shape = tuple(int(d) for d in ast.literal_eval(row["shape"]))
                start, end = int(row["start_idx"]), int(row["end_idx"])
            except (KeyError, ValueError, SyntaxError, TypeError) as exc:
                raise LayoutError(f"{path}: bad row {row} ({exc})") from exc
            if end - start != int(np.prod(shape)):
                raise LayoutError(
                    f"{path}: {row['varname']} spans {end - start} values, shape {shape}"
                )
            rows.append((row["varname"], start, end, shape))
    return rows


def _number(text: str) -> float | int | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def import_cnn_zoo(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Manifest:
    """Convert one dataset's Small CNN Zoo directory into a weightzoo zoo.

    Args:
        src: directory holding ``weights.npy``, ``layout.csv`` and ``metrics.csv.gz``.
        dest: the weightzoo zoo directory to write.

    Returns:
        The written manifest.

    Raises:
        DataFilesMissingError: if a file is missing.
        LayoutError: if ``layout.csv`` and ``weights.npy`` disagree.
        UnsafeFileError: if ``weights.npy`` is an object array.
    """
    root = require_dir(src, "Small CNN Zoo", dest)
    variables = _read_layout(inside(root, root / "layout.csv"))
    weights_path = inside(root, root / "weights.npy")
    weights = load_npy(weights_path)
    width = max(end for _, _, end, _ in variables)
    if weights.ndim == 2 and weights.shape[0] == 0:
        raise UnreadableFileError(f"{weights_path} holds no rows (shape {weights.shape})")
    if weights.ndim != 2 or weights.shape[1] < width:
        raise LayoutError(
            f"{root / 'weights.npy'} has shape {weights.shape}; layout.csv needs rows of {width}"
        )
    metrics_path = inside(root, root / "metrics.csv.gz")
    if not metrics_path.is_file():
        raise DataFilesMissingError(f"{metrics_path} is missing")
    with gzip.open(metrics_path, "rt", newline="", encoding="utf-8") as handle:
        table = [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(handle)]
    if len(table) != weights.shape[0]:
        raise LayoutError(
            f"{metrics_path} has {len(table)} rows but weights.npy has {weights.shape[0]}; "
            "they must describe the same checkpoints in the same order"
        )

    names = {torch_name(v): (s, e, shape) for v, s, e, shape in variables}
    if len(names) != len(variables):
        raise LayoutError(f"{root / 'layout.csv'}: variable names collide after renaming")
    shapes = {
        n: tf_to_torch(np.empty(shape, dtype=np.uint8)).shape for n, (_, _, shape) in names.items()
    }
    layout = Layout.from_shapes(shapes, sort=True)

    step_key = next((k for k in _STEP_COLUMNS if table and k in table[0]), None)
    groups: dict[str, list[int]] = {}
    for index, row in enumerate(table):
        key = str(row["modeldir"]) if "modeldir" in row else str(index)
        groups.setdefault(key, []).append(index)
    model_keys = sorted(groups, key=natural_key)
    epochs = sorted({int(table[i][step_key]) for i in range(len(table))}) if step_key else [0]

    skip = {"modeldir", step_key}
    first = table[0] if table else {}
    metric_names = [
        k
        for k, v in first.items()
        if k not in skip and not k.startswith("config.") and isinstance(v, (int, float))
    ]
    rows = []
    for model_id, key in enumerate(model_keys):
        head = table[groups[key][0]]
        row = {"model_id": model_id, "modeldir": key}
        row.update({k: v for k, v in head.items() if k.startswith("config.")})
        seed = head.get("config.seed", head.get("seed"))
        row["seed"] = int(seed) if isinstance(seed, (int, float)) else -1
        rows.append(row)
    columns = column_arrays(rows)

    def load(model: int) -> ModelRecord:
        out = np.full((len(epochs), layout.num_params), np.nan, dtype=np.float32)
        metrics = {k: np.full(len(epochs), np.nan, dtype=np.float32) for k in metric_names}
        for index in groups[model_keys[model]]:
            column = epochs.index(int(table[index][step_key])) if step_key else 0
            raw = np.asarray(weights[index], dtype=np.float32)
            for tensor in layout:
                start, end, tf_shape = names[tensor.name]
                value = tf_to_torch(raw[start:end].reshape(tf_shape))
                out[column, tensor.offset : tensor.stop] = value.reshape(-1)
            for key in metric_names:
                value = table[index].get(key)
                if isinstance(value, (int, float)):
                    metrics[key][column] = value
        return ModelRecord(model, out, metrics)

    return write_zoo(
        dest,
        name=root.name,
        family="cnn-zoo",
        spec={"importer": "cnn-zoo", "source": root.name, "variables": [v[0] for v in variables]},
        layout=layout,
        epochs=epochs,
        metric_names=metric_names,
        columns=columns,
        load=load,
    )
