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
result lines are matched to checkpoints one to one when their counts agree and shifted by one
(checkpoint 0 has no metrics) when there is one line fewer.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
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

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint_(\d+)$")
_METRIC_WORDS = ("loss", "acc", "ggap", "sparsity")


def _checkpoints(trial: Path) -> dict[int, Path]:
    found = {}
    for child in trial.iterdir():
        match = _CHECKPOINT.match(child.name)
        if match and (child / "checkpoints").is_file():
            found[int(match.group(1))] = child / "checkpoints"
    return dict(sorted(found.items()))


def _results(trial: Path) -> list[dict[str, Any]]:
    path = trial / "result.json"
    if not path.is_file():
        return []
    lines = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise UnreadableFileError(
                    f"{path} line {number} is not JSON: {exc}. Repair the line or remove the "
                    "trial from SRC."
                ) from exc
    return lines


def _metric_keys(lines: list[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for line in lines:
        for key, value in line.items():
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if numeric and any(w in key for w in _METRIC_WORDS) and key not in keys:
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


def import_modelzoo(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Manifest:
    """Convert a Model Zoos directory into a weightzoo zoo.

    Args:
        src: the zoo root (holding one directory per trial with ``params.json``).
        dest: the weightzoo zoo directory to write.

    Returns:
        The written manifest.

    Raises:
        DataFilesMissingError: if ``src`` holds no trial directories or checkpoints.
        LayoutError: if models have different tensor shapes.
        UnsafeFileError: if a checkpoint needs unpickling of arbitrary objects.
    """
    root = require_dir(src, "Model Zoos", dest)
    trials = sorted(
        (p for p in root.iterdir() if (p / "params.json").is_file()),
        key=lambda p: natural_key(p.name),
    )
    if not trials:
        raise DataFilesMissingError(
            f"{root} has no trial directories with a params.json; point SRC at the zoo root"
        )
    checkpoints = {t: _checkpoints(t) for t in trials}
    for trial in trials:
        found = [trial / "params.json", trial / "result.json", *checkpoints[trial].values()]
        for path in found:
            if path.exists():
                inside(root, path)
    if (root / "config.json").exists():
        inside(root, root / "config.json")
    empty = [t.name for t, c in checkpoints.items() if not c]
    if empty:
        raise DataFilesMissingError(
            f"trial(s) {', '.join(empty[:5])} in {root} have no checkpoint_*/checkpoints files"
        )
    epochs = sorted({e for found in checkpoints.values() for e in found})

    # the layout: natural tensor order, identical shapes in every model
    first_sd = load_state_dict(next(iter(checkpoints[trials[0]].values())))
    ref_names, ref_shapes = _canonical(first_sd)
    keys_per_model: list[list[str]] = []
    for trial in trials:
        path = next(iter(checkpoints[trial].values()))
        names, shapes = _canonical(first_sd if trial is trials[0] else load_state_dict(path))
        if shapes != ref_shapes:
            raise LayoutError(
                f"{path} has tensor shapes {shapes}, but {trials[0].name} has {ref_shapes}; "
                "import zoos of different architectures separately"
            )
        keys_per_model.append(names)
    renamed = any(names != ref_names for names in keys_per_model)
    layout_names = _rank_names(ref_names) if renamed else ref_names
    layout = Layout(zip(layout_names, ref_shapes, strict=True))

    results = {t: _results(t) for t in trials}
    metric_names: list[str] = []
    for lines in results.values():
        metric_names += [k for k in _metric_keys(lines) if k not in metric_names]

    rows, strata = [], []
    for index, trial in enumerate(trials):
        params = json.loads((trial / "params.json").read_text(encoding="utf-8"))
        strata.append(_node(params))
        seed = params.get("seed")
        row = {
            "model_id": index,
            "seed": int(seed) if isinstance(seed, (int, float)) else -1,
            "trial": trial.name,
        }
        row.update({f"param:{k}": v for k, v in params.items()})
        if renamed:
            row["state_dict_keys"] = json.dumps(keys_per_model[index])
        rows.append(row)
    columns = column_arrays(rows)

    def load(index: int) -> ModelRecord:
        trial = trials[index]
        weights = np.full((len(epochs), layout.num_params), np.nan, dtype=np.float32)
        for epoch, path in checkpoints[trial].items():
            sd = load_state_dict(path)
            names, shapes = _canonical(sd)
            if shapes != ref_shapes:
                raise LayoutError(f"{path} has tensor shapes {shapes}, expected {ref_shapes}")
            row = weights[epochs.index(epoch)]
            for tensor, name in zip(layout, names, strict=True):
                row[tensor.offset : tensor.stop] = sd[name].reshape(-1)
        lines = results[trial]
        found = list(checkpoints[trial])
        shift = 1 if len(lines) == len(found) - 1 else 0
        if lines and len(lines) not in (len(found), len(found) - 1):
            logger.warning(
                "%s: %d result lines for %d checkpoints; matched in order, rest NaN",
                trial,
                len(lines),
                len(found),
            )
        metrics = {k: np.full(len(epochs), np.nan, dtype=np.float32) for k in metric_names}
        for position, epoch in enumerate(found):
            line_index = position - shift
            if 0 <= line_index < len(lines):
                for key in metric_names:
                    value = lines[line_index].get(key)
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        metrics[key][epochs.index(epoch)] = (
                            value if math.isfinite(value) else np.nan
                        )
        return ModelRecord(index, weights, metrics)

    config_path = root / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    return write_zoo(
        dest,
        name=root.name,
        family="modelzoo",
        spec={"importer": "modelzoo", "source": root.name, "config": config, "renamed": renamed},
        layout=layout,
        epochs=epochs,
        metric_names=[m.replace("/", "_") for m in metric_names],
        columns=columns,
        load=lambda i: _rename_metrics(load(i)),
        strata=strata,
    )


def _rename_metrics(model: ModelRecord) -> ModelRecord:
    renamed = {k.replace("/", "_"): v for k, v in model.metrics.items()}
    return ModelRecord(model.model_id, model.weights, renamed)


def _node(params: dict[str, Any]) -> str:
    """A trial's hyperparameter node: its ``params.json`` without the seed, as JSON."""
    node = {k: v for k, v in params.items() if k.rsplit("::", 1)[-1] != "seed"}
    return json.dumps(node, sort_keys=True, default=str)
