"""Import the Model Zoos paper's published layout (Ray Tune trial directories).

```
<root>/config.json                     grid spec (kept verbatim in the manifest's spec)
<root>/dataset.pt                      pickled datasets: never read
<root>/<trial>/params.json             flat config -> per-model columns
<root>/<trial>/result.json             JSON lines -> per-checkpoint metrics
<root>/<trial>/checkpoint_000050/checkpoints   torch.save(state_dict)
```

Pitfalls handled (see docs/import.md): trials are ordered by natural sort of their names
(never ``iterdir()`` order); tensors are ordered by natural sort, and when models of one zoo
have different ``module_list`` indices (dropout shifts them) but the same sequence of shapes,
they are renamed by rank (``layer0.weight`` ...) with the original keys kept per model in the
``state_dict_keys`` column; shapes come from the checkpoints (``model::o_dim`` is not trusted);
result lines are matched to checkpoints by their ``training_iteration`` (else ``epoch``), which
is the number of the ``checkpoint_XXXXXX`` folder Ray Tune saves after that iteration, so a
trial with only some of its checkpoints (a partial download) gets the right metrics. Lines that
carry neither key are matched by position: one to one when their counts agree, shifted by one
(checkpoint 0 has no metrics) when there is one line fewer.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from weightzoo.errors import DataFilesMissingError, LayoutError, UnreadableFileError
from weightzoo.families.modelzoo.spec import FAMILY_NAME
from weightzoo.importers._common import (
    ModelRecord,
    brief,
    column_arrays,
    epoch_label,
    is_number,
    load_state_dict,
    metric_names_of,
    metric_value,
    parse_json,
    read_json,
    read_text,
    refuse_loop,
    require_dir,
    seed_of,
    source_file,
    write_zoo,
)
from weightzoo.storage.layout import Layout, natural_key
from weightzoo.storage.manifest import Manifest

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint_([0-9]{1,18})$")  # 18 digits always fit int64
_METRIC_WORDS = ("loss", "acc", "ggap", "sparsity")


def _trials(root: Path) -> list[Path]:
    """Trial directories (those with a ``params.json``), in natural order of their names."""
    trials = []
    for child in root.iterdir():
        if child.is_symlink():
            refuse_loop(child)
        if child.is_dir() and source_file(root, child / "params.json") is not None:
            trials.append(child)
    return sorted(trials, key=lambda p: natural_key(p.name))


def _checkpoints(root: Path, trial: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for child in trial.iterdir():
        match = _CHECKPOINT.match(child.name)
        if not match:
            continue
        path = source_file(root, refuse_loop(child) / "checkpoints") if child.is_dir() else None
        if path is None:
            continue
        epoch = epoch_label(int(match.group(1)), str(child))
        if epoch in found:
            raise UnreadableFileError(
                f"{path} and {found[epoch]} are both checkpoint {epoch}; remove one from SRC"
            )
        found[epoch] = path
    return dict(sorted(found.items()))


def _results(root: Path, trial: Path) -> tuple[Path | None, list[dict[str, Any]]]:
    """``result.json`` (if any) and its lines, each a JSON object with numeric metrics."""
    path = source_file(root, trial / "result.json")
    if path is None:
        return None, []
    lines = []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        data = parse_json(line, where, finite=False)  # NaN losses of diverged runs are data
        if not isinstance(data, dict):
            raise UnreadableFileError(
                f"{where} holds a JSON {type(data).__name__}, expected an object of results; "
                "repair the line or remove the trial from SRC"
            )
        for key, value in data.items():
            if any(w in key for w in _METRIC_WORDS) and isinstance(value, (str, bool)):
                raise UnreadableFileError(
                    f"{where}: metric {key!r} is {brief(value)}, not a number; store metrics as "
                    "JSON numbers (or null) and import again"
                )
        lines.append(data)
    return path, lines


def _metric_keys(lines: list[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for line in lines:
        for key, value in line.items():
            if is_number(value) and any(w in key for w in _METRIC_WORDS) and key not in keys:
                keys.append(key)
    return keys


def _canonical(sd: dict[str, np.ndarray]) -> tuple[list[str], list[tuple[int, ...]]]:
    names = sorted(sd, key=natural_key)
    return names, [tuple(sd[n].shape) for n in names]


def _rank_names(names: list[str]) -> list[str]:
    """``module_list.4.weight`` -> ``layer1.weight``: modules numbered by natural order."""
    modules: list[str] = []
    for name in names:
        module = name.rpartition(".")[0]
        if module not in modules:
            modules.append(module)
    return [f"layer{modules.index(n.rpartition('.')[0])}.{n.rpartition('.')[2]}" for n in names]


def _unnumbered(name: str) -> str:
    return re.sub(r"[0-9]+", "#", name)


def _match_reference(
    path: Path, sd: dict[str, np.ndarray], ref_path: Path, ref: dict[str, np.ndarray]
) -> list[str]:
    """The names of ``sd`` in natural order, checked to be the reference's up to numbering.

    Names may differ from the reference's only in module numbers that keep the modules'
    ranks (dropout shifts ``module_list`` indices); shapes must be equal.

    Raises:
        LayoutError: naming the file, the first tensor that differs and how.
    """
    names, shapes = _canonical(sd)
    ref_names, ref_shapes = _canonical(ref)
    advice = "import zoos of different architectures separately"
    if len(names) != len(ref_names):
        first = sorted(set(names) ^ set(ref_names), key=natural_key)[0]
        raise LayoutError(
            f"{path} has {len(names)} tensors but {ref_path} has {len(ref_names)} (first "
            f"difference: {first!r}); {advice}"
        )
    ranks, ref_ranks = _rank_names(names), _rank_names(ref_names)
    for i, (name, ref_name) in enumerate(zip(names, ref_names, strict=True)):
        if shapes[i] != ref_shapes[i]:
            raise LayoutError(
                f"{path}: tensor {name!r} has shape {shapes[i]}, but {ref_name!r} in its place "
                f"in {ref_path} has {ref_shapes[i]}; {advice}"
            )
        if _unnumbered(name) != _unnumbered(ref_name) or ranks[i] != ref_ranks[i]:
            raise LayoutError(
                f"{path}: tensor {name!r} does not match {ref_name!r} in its place in {ref_path} "
                f"(names may differ only in module numbers); {advice}"
            )
    return names


def _fill(
    path: Path, sd: dict[str, np.ndarray], names: dict[str, str], layout: Layout
) -> np.ndarray:
    """One checkpoint's weight row, each tensor placed by its name (``names``: key -> layout).

    Raises:
        LayoutError: for a tensor missing, unexpected or of another shape than the layout's.
    """
    missing = [n for n in names if n not in sd]
    extra = [n for n in sd if n not in names]
    if missing or extra:
        name = (missing or extra)[0]
        what = "is missing" if missing else "is not in the trial's first checkpoint"
        raise LayoutError(
            f"{path}: tensor {name!r} {what}; every checkpoint of a trial must hold the same "
            "tensors. Repair the checkpoint or remove it from SRC."
        )
    row = np.empty(layout.num_params, dtype=np.float32)
    for name, value in sd.items():
        tensor = layout[names[name]]
        if tuple(value.shape) != tensor.shape:
            raise LayoutError(
                f"{path}: tensor {name!r} has shape {tuple(value.shape)}, the zoo's layout has "
                f"{tensor.shape} ({tensor.name}); repair the checkpoint or remove it from SRC"
            )
        row[tensor.offset : tensor.stop] = value.reshape(-1)
    return row


# The keys of a result line that name the checkpoint it belongs to, in order of preference.
_ITERATION_KEYS = ("training_iteration", "epoch")


def _line_labels(path: Path | None, lines: list[dict[str, Any]]) -> list[int | None] | None:
    """Each line's checkpoint label (its ``training_iteration``, else ``epoch``).

    Returns:
        One label per line (``None`` for a line without the key), or ``None`` when no line has
        either key (the lines are then matched by position).

    Raises:
        UnreadableFileError: for a label that is not a non-negative integer.
    """
    for key in _ITERATION_KEYS:
        if any(key in line for line in lines):
            return [
                None if line.get(key) is None else epoch_label(line[key], f"{path}: {key}")
                for line in lines
            ]
    return None


def _positions(found: list[int], lines: list[dict[str, Any]], trial: Path) -> dict[int, int]:
    """Checkpoint -> line, by position: the rule for lines that carry no iteration."""
    shift = 1 if len(lines) == len(found) - 1 else 0
    if lines and len(lines) not in (len(found), len(found) - 1):
        logger.warning(
            "%s: %d result lines for %d checkpoints; matched in order, rest NaN",
            trial,
            len(lines),
            len(found),
        )
    return {
        epoch: position - shift
        for position, epoch in enumerate(found)
        if 0 <= position - shift < len(lines)
    }


def _metrics(
    trial: Path,
    epochs: list[int],
    found: list[int],
    results: tuple[Path | None, list[dict[str, Any]]],
    names: dict[str, str],
) -> dict[str, np.ndarray]:
    """Per-checkpoint metrics: result lines matched to checkpoints (see the module's notes).

    ``names`` maps a result key to its stored metric name.
    """
    path, lines = results
    labels = _line_labels(path, lines)
    if labels is None:
        matched = _positions(found, lines, trial)
    else:
        # a restored trial repeats iterations: the last line is the run its checkpoint holds
        by_label = {label: index for index, label in enumerate(labels) if label is not None}
        matched = {epoch: by_label[epoch] for epoch in found if epoch in by_label}
    metrics = {name: np.full(len(epochs), np.nan, dtype=np.float32) for name in names.values()}
    for epoch, line_index in matched.items():
        for key, name in names.items():
            metrics[name][epochs.index(epoch)] = metric_value(lines[line_index].get(key))
    return metrics


def import_modelzoo(
    src: str | os.PathLike[str], dest: str | os.PathLike[str], *, name: str | None = None
) -> Manifest:
    """Convert a Model Zoos directory into a weightzoo zoo.

    Args:
        src: the zoo root (holding one directory per trial with ``params.json``).
        dest: the weightzoo zoo directory to write.
        name: the zoo's name (default: the name of ``src``).

    Returns:
        The written manifest.

    Raises:
        DataFilesMissingError: if ``src`` holds no trial directories or checkpoints.
        LayoutError: if a checkpoint's tensor names or shapes differ from the zoo's layout.
        UnreadableFileError: for malformed JSON, a checkpoint that is not a state_dict, or a
            metric stored as text.
        UnsafeFileError: if a checkpoint needs unpickling of arbitrary objects.
    """
    root = require_dir(src, "Model Zoos", dest)
    trials = _trials(root)
    if not trials:
        raise DataFilesMissingError(
            f"{root} has no trial directories with a params.json; point SRC at the zoo root"
        )
    checkpoints = {t: _checkpoints(root, t) for t in trials}
    empty = [t.name for t, c in checkpoints.items() if not c]
    if empty:
        raise DataFilesMissingError(
            f"trial(s) {', '.join(empty[:5])} in {root} have no checkpoint_*/checkpoints files"
        )
    epochs = sorted({e for found in checkpoints.values() for e in found})
    config_path = source_file(root, root / "config.json")
    config = read_json(config_path, what="an object (the grid)") if config_path else {}

    # the layout: natural tensor order, identical shapes in every model, names up to numbering
    ref_path = next(iter(checkpoints[trials[0]].values()))
    ref = load_state_dict(ref_path)
    keys_per_model = []
    for trial in trials:
        path = next(iter(checkpoints[trial].values()))
        sd = ref if trial is trials[0] else load_state_dict(path)
        keys_per_model.append(_match_reference(path, sd, ref_path, ref))
    ref_names, ref_shapes = _canonical(ref)
    renamed = any(names != ref_names for names in keys_per_model)
    layout_names = _rank_names(ref_names) if renamed else ref_names
    layout = Layout(zip(layout_names, ref_shapes, strict=True))
    # each trial's keys -> the layout's names (its first checkpoint's natural order)
    name_maps = [dict(zip(keys, layout_names, strict=True)) for keys in keys_per_model]

    results = {t: _results(root, t) for t in trials}
    metric_keys: list[str] = []
    for _, lines in results.values():
        metric_keys += [k for k in _metric_keys(lines) if k not in metric_keys]
    metric_names = metric_names_of(metric_keys, f"the result.json files of {root}")

    rows, strata, params_files = [], [], []
    for index, trial in enumerate(trials):
        params_files.append(trial / "params.json")
        params = read_json(params_files[-1], what="an object of hyperparameters")
        strata.append(_node(params))
        row = {"model_id": index, "seed": seed_of(params.get("seed")), "trial": trial.name}
        row.update({f"param:{k}": v for k, v in params.items()})
        if renamed:
            row["state_dict_keys"] = json.dumps(keys_per_model[index])
        rows.append(row)
    columns = column_arrays(rows, [str(p) for p in params_files])

    def load(index: int) -> ModelRecord:
        trial = trials[index]
        weights = np.full((len(epochs), layout.num_params), np.nan, dtype=np.float32)
        for epoch, path in checkpoints[trial].items():
            sd = load_state_dict(path)
            weights[epochs.index(epoch)] = _fill(path, sd, name_maps[index], layout)
        metrics = _metrics(trial, epochs, list(checkpoints[trial]), results[trial], metric_names)
        return ModelRecord(index, weights, metrics)

    sources = [*params_files, *(p for c in checkpoints.values() for p in c.values())]
    sources += [p for p, _ in results.values() if p is not None]
    sources += [config_path] if config_path else []
    return write_zoo(
        dest,
        name=name or root.name,
        family=FAMILY_NAME,
        spec={"importer": FAMILY_NAME, "source": root.name, "config": config, "renamed": renamed},
        source_files=(root, sources),
        layout=layout,
        epochs=epochs,
        metric_names=list(metric_names.values()),
        columns=columns,
        load=load,
        strata=strata,
    )


def _node(params: dict[str, Any]) -> str:
    """A trial's hyperparameter node: its ``params.json`` without the seed, as JSON."""
    node = {k: v for k, v in params.items() if k.rsplit("::", 1)[-1] != "seed"}
    return json.dumps(node, sort_keys=True, default=str)
