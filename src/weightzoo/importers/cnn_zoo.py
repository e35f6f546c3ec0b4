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

A caller may take only the first networks (``models``: in the order their first row appears),
and give each network its split (``splits``, keyed by :func:`network_key`) where the split
must match a published one, e.g. the fixed splits that later papers use for this zoo.
"""

from __future__ import annotations

import ast
import csv
import gzip
import itertools
import math
import os
import re
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from weightzoo.errors import (
    DataFilesMissingError,
    InvalidOptionError,
    LayoutError,
    UnreadableFileError,
)
from weightzoo.importers._common import (
    ModelRecord,
    brief,
    column_arrays,
    epoch_label,
    inside,
    load_npy,
    metric_names_of,
    metric_value,
    require_dir,
    seed_of,
    write_zoo,
)
from weightzoo.storage.layout import Layout, natural_key
from weightzoo.storage.manifest import Manifest

_STEP_COLUMNS = ("step", "epoch", "global_step")
_Variable = tuple[str, int, int, tuple[int, ...]]  # varname, start, end, TensorFlow shape


# The most rows metrics_index() reads: the largest dataset of the Small CNN Zoo has 270,000
# (30,000 networks x 9 checkpoints, per the zoo's README); a file inflating to more is not one.
MAX_INDEX_ROWS = 1 << 20
# The most characters of distinct network keys (modeldir paths) metrics_index() keeps: 30,000
# paths of up to 2 KiB each.
MAX_INDEX_KEY_CHARS = 64 << 20

# The longest line of a metrics.csv.gz weightzoo reads (the published files' lines are a few
# hundred characters): a compressed file may otherwise inflate to one line of gigabytes.
MAX_CSV_LINE = 1 << 20


def _bounded_lines(handle: Any, path: Path) -> Iterator[str]:
    """The lines of a text file, refusing one longer than :data:`MAX_CSV_LINE` characters."""
    while line := handle.readline(MAX_CSV_LINE + 1):
        if len(line) > MAX_CSV_LINE:
            raise UnreadableFileError(
                f"{path} has a line of more than {MAX_CSV_LINE} characters; it is not a Small "
                "CNN Zoo metrics file. Copy the original file and import again."
            )
        yield line


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


def torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape :func:`tf_to_torch` gives a TensorFlow ``shape`` (nothing is allocated)."""
    if len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    if len(shape) == 2:
        return (shape[1], shape[0])
    return shape


def _layout_row(path: Path, number: int, row: dict[str, Any]) -> _Variable:
    """One ``layout.csv`` row, checked: non-negative span that its positive shape fills."""
    try:
        shape = tuple(int(d) for d in ast.literal_eval(row["shape"]))
        start, end = int(row["start_idx"]), int(row["end_idx"])
        varname = str(row["varname"])
    except (KeyError, ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise LayoutError(
            f"{path} line {number}: bad row {brief(row)} ({type(exc).__name__}); each row needs "
            "varname, start_idx, end_idx and a shape like (3, 3, 1, 16)"
        ) from exc
    if any(d <= 0 for d in shape) or not 0 <= start <= end or end - start != math.prod(shape):
        raise LayoutError(
            f"{path} line {number}: {varname} spans [{start}, {end}) for shape {shape}; a "
            "variable needs positive dimensions and end_idx - start_idx values, one per weight"
        )
    return varname, start, end, shape


def _read_layout(path: Path) -> list[_Variable]:
    if not path.is_file():
        raise DataFilesMissingError(f"{path} is missing; copy it into SRC and import again")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [_layout_row(path, n, row) for n, row in enumerate(csv.DictReader(handle), 2)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UnreadableFileError(
            f"{path} is not a readable CSV file ({type(exc).__name__}: {exc}); copy it again "
            "from the source"
        ) from exc
    if not rows:
        raise LayoutError(f"{path} lists no variables; copy it again from the source")
    spans = sorted((start, end, name) for name, start, end, _ in rows)
    for (_, end, name), (start, _, following) in itertools.pairwise(spans):
        if start < end:
            raise LayoutError(
                f"{path}: {following} starts at {start}, inside {name} (which ends at {end}); "
                "variables must not overlap. Copy layout.csv again from the source."
            )
    return rows


def _number(text: str) -> float | int | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _read_metrics(path: Path, rows: int) -> list[dict[str, Any]]:
    """``metrics.csv.gz``: exactly ``rows`` complete lines (reading stops at one too many)."""
    if not path.is_file():
        raise DataFilesMissingError(f"{path} is missing; copy it into SRC and import again")
    table: list[dict[str, Any]] = []
    try:
        with gzip.open(path, "rt", newline="", encoding="utf-8") as handle:
            for number, row in enumerate(csv.DictReader(_bounded_lines(handle, path)), 2):
                if None in row or None in row.values():
                    raise UnreadableFileError(
                        f"{path} line {number} has {'more' if None in row else 'fewer'} fields "
                        "than its header; copy the file again from the source"
                    )
                if len(table) == rows:
                    break
                table.append({k: _number(v) for k, v in row.items()})
            else:
                number = 0
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as exc:
        raise UnreadableFileError(
            f"{path} is not a readable gzip CSV file ({type(exc).__name__}: {exc}); copy it "
            "again from the source"
        ) from exc
    if len(table) != rows or number:
        raise LayoutError(
            f"{path} has {'more than ' if number else ''}{len(table)} rows but weights.npy has "
            f"{rows}; they must describe the same checkpoints in the same order"
        )
    return table


def _metric_columns(path: Path, table: list[dict[str, Any]], step_key: str | None) -> list[str]:
    """Numeric columns of the first row that are neither keys nor ``config.*``, checked numeric.

    Raises:
        UnreadableFileError: for a metric holding text in some row (an empty cell is NaN).
    """
    skip = {"modeldir", step_key}
    names = [
        k
        for k, v in table[0].items()
        if k not in skip and not k.startswith("config.") and isinstance(v, (int, float))
    ]
    for number, row in enumerate(table, 2):
        for key in names:
            if isinstance(row[key], str) and row[key].strip():
                raise UnreadableFileError(
                    f"{path} line {number}: metric {key!r} is {brief(row[key])}, not a number; "
                    "write numbers (or leave the cell empty) and import again"
                )
    return names


def network_key(row: Mapping[str, Any], index: int) -> str:
    """The network a ``metrics.csv.gz`` row belongs to: its ``modeldir``, else its row number.

    Args:
        row: the row, with values as the importer types them (see :func:`metrics_index`).
        index: the row's position (0-based) in the file and in ``weights.npy``.
    """
    return str(row["modeldir"]) if "modeldir" in row else str(index)


def step_column(header: Sequence[str]) -> str | None:
    """The column that orders a network's checkpoints (``step``, ``epoch``), if any."""
    return next((k for k in _STEP_COLUMNS if k in header), None)


def _too_many_rows(path: Path, limit: int, weights_rows: int | None) -> Exception:
    if weights_rows is not None and weights_rows <= limit:
        return LayoutError(
            f"{path} has more than {limit} rows but weights.npy has {weights_rows}; they must "
            "describe the same checkpoints in the same order"
        )
    return UnreadableFileError(
        f"{path} has more than {limit} rows, more than any dataset of the Small CNN Zoo "
        "(270,000); it is not a metrics file of the zoo: check where it came from"
    )


class _Keys:
    """The distinct network keys of an index, each kept once, bounded in characters in all."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._seen: dict[str, str] = {}
        self._chars = 0

    def keep(self, key: str) -> str:
        """``key``, as the one copy kept for every row of its network."""
        kept = self._seen.get(key)
        if kept is not None:
            return kept
        self._chars += len(key)
        if self._chars > MAX_INDEX_KEY_CHARS:
            raise UnreadableFileError(
                f"{self._path} names networks (modeldir) in more than {MAX_INDEX_KEY_CHARS} "
                f"characters in all, by row {len(self._seen) + 1}; it is not a metrics file of "
                "the Small CNN Zoo: check where it came from"
            )
        self._seen[key] = key
        return key


def metrics_index(path: Path, max_rows: int | None = None) -> list[tuple[str, Any]]:
    """Each row's network key and step (``None`` without a step column), read cheaply.

    Reads only the key and step columns of every row, typed as :func:`import_cnn_zoo` types
    them, so a caller can choose networks and splits before the import. What it holds stays
    bounded whatever the file inflates to: rows are counted as they are read, and the first
    beyond ``max_rows`` (never more than :data:`MAX_INDEX_ROWS`) is refused before it is kept;
    each network's key is kept once, in at most :data:`MAX_INDEX_KEY_CHARS` characters in all.

    Args:
        path: the ``metrics.csv.gz``.
        max_rows: the rows of ``weights.npy``, where known (``None``: :data:`MAX_INDEX_ROWS`).

    Raises:
        UnreadableFileError: for a file that is not a readable gzip CSV, or larger than any
            dataset of the zoo.
        LayoutError: for more rows than ``max_rows``.
    """
    limit = MAX_INDEX_ROWS if max_rows is None else min(max_rows, MAX_INDEX_ROWS)
    index: list[tuple[str, Any]] = []
    keys = _Keys(path)
    try:
        with gzip.open(path, "rt", newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(_bounded_lines(handle, path))
            step_key = step_column(reader.fieldnames or [])
            for number, row in enumerate(reader):
                if number == limit:
                    raise _too_many_rows(path, limit, max_rows)
                typed = {"modeldir": _number(row["modeldir"] or "")} if "modeldir" in row else {}
                step = _number(row[step_key] or "") if step_key else None
                index.append((keys.keep(network_key(typed, number)), step))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as exc:
        raise UnreadableFileError(
            f"{path} is not a readable gzip CSV file ({type(exc).__name__}: {exc}); copy it "
            "again from the source"
        ) from exc
    return index


def _models(path: Path, table: list[dict[str, Any]], step_key: str | None) -> dict[str, list[int]]:
    """Rows grouped by ``modeldir``, each checkpoint (step) at most once per model."""
    groups: dict[str, list[int]] = {}
    seen: set[tuple[str, int]] = set()
    for index, row in enumerate(table):
        key = network_key(row, index)
        step = epoch_label(row[step_key], f"{path} line {index + 2}") if step_key else 0
        if (key, step) in seen:
            raise UnreadableFileError(
                f"{path} line {index + 2}: model {brief(key)} has step {step} twice; remove the "
                "duplicate row (and its weights.npy row) and import again"
            )
        seen.add((key, step))
        groups.setdefault(key, []).append(index)
    return groups


def check_models(models: int | None) -> None:
    """Refuse a ``models`` count that is not a whole number >= 1 (``None``: all networks).

    Raises:
        InvalidOptionError: naming the value.
    """
    if models is not None and (isinstance(models, bool) or not isinstance(models, int)):
        raise InvalidOptionError(f"models={models!r} is not a whole number; pass a count >= 1")
    if models is not None and models < 1:
        raise InvalidOptionError(f"models={models} takes no network; pass a count >= 1")


def _given_splits(splits: Mapping[str, str], keys: Sequence[str], path: Path) -> list[str]:
    """Each imported network's split from ``splits``; every network must have one."""
    missing = [key for key in keys if key not in splits]
    if missing:
        raise LayoutError(
            f"{path}: network {brief(missing[0])} (and {len(missing) - 1} more) has no split in "
            "the splits given; give every network its split, or none to use weightzoo's rule"
        )
    return [str(splits[key]) for key in keys]


def _counted(load: Callable[[int], ModelRecord], total: int, name: str, progress: bool) -> Any:
    """``load``, advancing a progress bar over the networks (closed after the last one)."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="model", desc=name, disable=not progress)

    def counted(model: int) -> ModelRecord:
        record = load(model)
        bar.update(1)
        if bar.n >= total:
            bar.close()
        return record

    return counted


def import_cnn_zoo(
    src: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    models: int | None = None,
    splits: Mapping[str, str] | None = None,
    progress: bool = False,
) -> Manifest:
    """Convert one dataset's Small CNN Zoo directory into a weightzoo zoo.

    Args:
        src: directory holding ``weights.npy``, ``layout.csv`` and ``metrics.csv.gz``.
        dest: the weightzoo zoo directory to write.
        models: only the first ``models`` networks, in the order of their first row
            (``None``: all); the spec records the count.
        splits: each network's split (``train``, ``val`` or ``test``) by :func:`network_key`,
            in place of weightzoo's rule; every imported network must have one.
        progress: show a progress bar over the networks written.

    Returns:
        The written manifest.

    Raises:
        DataFilesMissingError: if a file is missing.
        LayoutError: if ``layout.csv`` and ``weights.npy`` disagree, a span is absurd, or
            ``splits`` lacks a network.
        UnreadableFileError: for malformed files, steps or metrics.
        UnsafeFileError: if ``weights.npy`` is an object array.
        InvalidOptionError: for ``models`` < 1, or a split name other than train, val, test.
    """
    check_models(models)
    root = require_dir(src, "Small CNN Zoo", dest)
    layout_path = inside(root, root / "layout.csv")
    variables = _read_layout(layout_path)
    weights_path = inside(root, root / "weights.npy")
    weights = load_npy(weights_path)
    width = max(end for _, _, end, _ in variables)
    if weights.ndim == 2 and weights.shape[0] == 0:
        raise UnreadableFileError(f"{weights_path} holds no rows (shape {weights.shape})")
    if weights.ndim != 2 or weights.shape[1] < width:
        raise LayoutError(
            f"{weights_path} has shape {weights.shape}; layout.csv needs rows of {width} values. "
            "Copy the matching layout.csv and weights.npy from the source."
        )
    metrics_path = inside(root, root / "metrics.csv.gz")
    table = _read_metrics(metrics_path, weights.shape[0])

    names = {torch_name(v): (s, e, shape) for v, s, e, shape in variables}
    if len(names) != len(variables):
        raise LayoutError(f"{layout_path}: variable names collide after renaming")
    layout = Layout.from_shapes(
        {n: torch_shape(shape) for n, (_, _, shape) in names.items()}, sort=True
    )

    step_key = step_column(list(table[0]))
    groups = _models(metrics_path, table, step_key)
    if models is not None:
        groups = dict(itertools.islice(groups.items(), models))  # first rows first
    model_keys = sorted(groups, key=natural_key)
    chosen = [index for key in model_keys for index in groups[key]]
    epochs = sorted({int(table[i][step_key]) for i in chosen}) if step_key else [0]
    metric_names = metric_names_of(
        _metric_columns(metrics_path, table, step_key), str(metrics_path)
    )
    given = _given_splits(splits, model_keys, metrics_path) if splits is not None else None

    rows = []
    for model_id, key in enumerate(model_keys):
        head = table[groups[key][0]]
        row = {"model_id": model_id, "modeldir": key}
        row.update({k: v for k, v in head.items() if k.startswith("config.")})
        row["seed"] = seed_of(head.get("config.seed", head.get("seed")))
        rows.append(row)
    columns = column_arrays(rows, [str(metrics_path)] * len(rows))

    def load(model: int) -> ModelRecord:
        out = np.full((len(epochs), layout.num_params), np.nan, dtype=np.float32)
        metrics = {n: np.full(len(epochs), np.nan, dtype=np.float32) for n in metric_names.values()}
        for index in groups[model_keys[model]]:
            column = epochs.index(int(table[index][step_key])) if step_key else 0
            raw = np.asarray(weights[index], dtype=np.float32)
            for tensor in layout:
                start, end, tf_shape = names[tensor.name]
                value = tf_to_torch(raw[start:end].reshape(tf_shape))
                out[column, tensor.offset : tensor.stop] = value.reshape(-1)
            for key, name in metric_names.items():
                metrics[name][column] = metric_value(table[index].get(key))
        return ModelRecord(model, out, metrics)

    spec: dict[str, Any] = {
        "importer": "cnn-zoo",
        "source": root.name,
        "variables": [v[0] for v in variables],
    }
    if models is not None:
        spec["models"] = models  # another count is another zoo
    return write_zoo(
        dest,
        name=root.name,
        family="cnn-zoo",
        spec=spec,
        source_files=(root, [layout_path, weights_path, metrics_path]),
        layout=layout,
        epochs=epochs,
        metric_names=list(metric_names.values()),
        columns=columns,
        load=_counted(load, len(model_keys), root.name, progress),
        splits=given,
    )
