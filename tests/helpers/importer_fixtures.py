"""Source trees in each published importer layout, and readers of what an import wrote.

Shared by the importer tests: each builder writes a small zoo in the real published layout
(Model Zoos trial directories, the Small CNN Zoo's three files, MLDS network files) and returns
what it wrote, so that a test can compare the imported zoo with it.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import pickle
from pathlib import Path

import h5py
import numpy as np
import torch

from weightzoo.cli import run
from weightzoo.features import layer_statistics_numpy
from weightzoo.storage.manifest import Manifest
from weightzoo.storage.verify import verify_zoo


class Gadget:
    """Something only full unpickling can rebuild."""

    def __init__(self) -> None:
        self.value = 3


def read_back(zoo: Path) -> tuple[Manifest, dict[int, dict]]:
    """Every stored model by model_id: weights, stats, metrics and columns."""
    manifest = Manifest.load(zoo)
    assert verify_zoo(zoo) == []
    models: dict[int, dict] = {}
    for entry in manifest.shards:
        with h5py.File(zoo / entry.file, "r") as f:
            ids = f["models/model_id"][:]
            for row, model_id in enumerate(ids):
                models[int(model_id)] = {
                    "weights": f["weights"][row],
                    "stats": f["stats"][row],
                    "metrics": {m: f[f"metrics/{m}"][row] for m in manifest.metrics},
                    "columns": {
                        c: (v.decode() if isinstance(v, bytes) else v)
                        for c in manifest.columns
                        for v in [f[f"models/{c}"][row]]
                    },
                    "split": entry.split,
                }
    assert sorted(models) == list(range(manifest.num_models))
    return manifest, models


def check_stats(manifest: Manifest, models: dict[int, dict]) -> None:
    for model in models.values():
        expected = layer_statistics_numpy(model["weights"], manifest.layout)
        np.testing.assert_array_equal(model["stats"], expected)


# -- Model Zoos ---------------------------------------------------------------------------------


def modelzoo_tree(root: Path, rng: np.random.Generator) -> dict[str, dict]:
    """Six trials; odd ones have dropout (module indices 0, 4 instead of 0, 3)."""
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"model::nlin": "grid_search(['relu','tanh'])"}))
    (root / "dataset.pt").write_bytes(pickle.dumps(Gadget()))  # must never be read
    truth = {}
    for i in (1, 2, 10, 11, 20, 3):  # natural order: 1, 2, 3, 10, 11, 20
        name = f"NN_tune_trainable_{i}_seed={i}"
        trial = root / name
        trial.mkdir()
        dropout = i % 2 == 1
        head = 4 if dropout else 3
        params = {
            "model::type": "CNN",
            "model::dropout": 0.5 if dropout else 0.0,
            "model::o_dim": 4,
            "optim::lr": 1e-3 * i,
            "seed": i,
        }
        (trial / "params.json").write_text(json.dumps(params))
        ckpts = {}
        for epoch in range(3):
            sd = {
                "module_list.0.weight": torch.from_numpy(rng.normal(size=(2, 1, 3, 3))).float(),
                "module_list.0.bias": torch.from_numpy(rng.normal(size=2)).float(),
                f"module_list.{head}.weight": torch.from_numpy(rng.normal(size=(10, 2))).float(),
                f"module_list.{head}.bias": torch.from_numpy(rng.normal(size=10)).float(),
            }
            folder = trial / f"checkpoint_{epoch:06d}"
            folder.mkdir()
            torch.save(sd, folder / "checkpoints")
            torch.save({"state": {}}, folder / "optimizer")
            ckpts[epoch] = sd
        # even trials log every checkpoint, odd ones skip epoch 0 (the off-by-one of the zoos)
        first = 1 if dropout else 0
        lines = [
            {"training_iteration": e, "test_acc": 0.1 * e + i / 100, "train_loss": 2.0 - e}
            for e in range(first, 3)
        ]
        (trial / "result.json").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
        truth[name] = {"params": params, "ckpts": ckpts, "first": first, "i": i}
    return truth


# -- Small CNN Zoo ------------------------------------------------------------------------------

VARIABLES = [
    ("sequential/conv2d/kernel:0", (3, 3, 1, 2)),
    ("sequential/conv2d/bias:0", (2,)),
    ("sequential/dense/kernel:0", (2, 3)),
    ("sequential/dense/bias:0", (3,)),
]


def cnn_zoo_tree(root: Path, rng: np.random.Generator) -> np.ndarray:
    root.mkdir()
    with open(root / "layout.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["varname", "start_idx", "end_idx", "shape"])
        offset = 0
        for name, shape in VARIABLES:
            size = int(np.prod(shape))
            writer.writerow([name, offset, offset + size, str(shape)])
            offset += size
    order = [(m, s) for s in (0, 100) for m in ("b", "a", "c", "d")]  # rows not grouped by model
    weights = rng.normal(size=(len(order), offset)).astype(np.float32)
    np.save(root / "weights.npy", weights)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["modeldir", "step", "test_accuracy", "train_loss", "config.learning_rate"])
    for row, (model, step) in enumerate(order):
        writer.writerow([f"run/{model}", step, row / 10, 1.0 - row / 10, ord(model) / 1000])
    with gzip.open(root / "metrics.csv.gz", "wt") as handle:
        handle.write(text.getvalue())
    return weights


# -- MLDS ---------------------------------------------------------------------------------------


def mlds_tree(root: Path, rng: np.random.Generator) -> dict[str, dict]:
    (root / "sub").mkdir(parents=True)
    truth = {}
    for i in range(6):
        sd = {
            "gru.weight_ih_l0": rng.normal(size=(6, 3)).astype(np.float32),
            "gru.bias_ih_l0": rng.normal(size=6).astype(np.float32),
            "fc.weight": rng.normal(size=(2, 2)).astype(np.float32),
        }
        meta = {"machine": f"m{i % 2}", "seed": 100 + i, "final_loss": 0.5 / (i + 1)}
        if i < 3:
            path = root / f"net{i}.pt"
            torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, path)
            (root / f"net{i}.json").write_text(json.dumps(meta))
        else:
            path = root / "sub" / f"net{i}.json"
            path.write_text(
                json.dumps({"state_dict": {k: v.tolist() for k, v in sd.items()}, **meta})
            )
        truth[path.relative_to(root).as_posix()] = {"sd": sd, "meta": meta}
    return truth


# -- errors -------------------------------------------------------------------------------------


def one_line_error(capsys, argv, *needles):
    """Run the CLI: exit 1 and exactly one stderr line holding every needle; return it."""
    assert run(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err
