"""Landscape metrics of a tiny-LM zoo's checkpoints, kept in the zoo's ``landscape`` side file.

The loss is the zoo's own: mean next-token cross-entropy on a fixed set of training windows
(the same for every model). ``cka`` compares the last hidden state (after the final
LayerNorm, every position of every window flattened) of a fixed set of validation windows;
``mc`` and the other pair metrics train a Bézier curve between the two models on the same
training windows. A model's partner is its *seed sibling*: the next model, by seed and
cyclically, of the same load and temperature (model dimension and batch size); a model
without one gets NaN. The ``phase`` labels are added by the callers (``weightzoo landscape`` and
the family's ``finalize``), as for every phase-transition zoo.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from weightzoo._types import EpochSelection, SplitSelection
from weightzoo.architectures import build_model
from weightzoo.families.tinylm.data import corpus_for, window_starts, windows
from weightzoo.families.tinylm.spec import FAMILY_NAME
from weightzoo.landscape import driver
from weightzoo.landscape.options import Knobs, LandscapeOptions, resolve_options
from weightzoo.storage.sidecar import SidecarRecord
from weightzoo.zoo import Zoo

__all__ = [
    "DEFAULT_METRICS",
    "TINYLM_LANDSCAPE",
    "compute_lm_landscape",
    "lm_accuracy",
    "lm_loss",
    "seed_siblings",
]

DEFAULT_METRICS = ("hessian_top", "hessian_trace", "cka", "mc")
"""What ``finalize`` stores for every checkpoint."""

TINYLM_LANDSCAPE = LandscapeOptions(
    chunk=4, iters=20, probes=10, steps=50, points=5, batches=2, batch_size=16, cka_samples=32
)
"""The knobs of :func:`compute_lm_landscape` (and ``finalize``): 2 batches of 16 training
windows, ``cka`` on 32 validation windows, 20 power-iteration steps, 10 probes, 50 curve steps
and 5 path times, 4 models per call."""


def lm_loss(outputs: Tensor, targets: Tensor) -> Tensor:
    """Mean next-token cross-entropy of logits ``[n, L, V]`` against tokens ``[n, L]``."""
    return F.cross_entropy(outputs.flatten(0, -2), targets.flatten())


def lm_accuracy(outputs: Tensor, targets: Tensor) -> Tensor:
    """Fraction of next tokens predicted right."""
    return (outputs.argmax(-1) == targets).to(outputs.dtype).mean()


def seed_siblings(columns: dict[str, np.ndarray], count: int) -> np.ndarray:
    """Each model's seed sibling, as an index into the selection (-1: none).

    Models with equal ``load`` and ``temperature`` (else ``model_dim`` and ``batch_size``)
    form a cell; within a cell, ordered by ``seed`` (then position), each model's partner is
    the next one, cyclically.
    """
    keys = ("load", "temperature") if "load" in columns else ("model_dim", "batch_size")
    cells: dict[tuple[Any, ...], list[int]] = {}
    for i in range(count):
        cells.setdefault(tuple(np.asarray(columns[k])[i].item() for k in keys), []).append(i)
    seeds = np.asarray(columns.get("seed", np.arange(count)))
    out = np.full(count, -1, dtype=np.int64)
    for members in cells.values():
        if len(members) > 1:
            ordered = sorted(members, key=lambda i: (int(seeds[i]), i))
            out[ordered] = np.roll(ordered, -1)
    return out


def compute_lm_landscape(
    zoo: Zoo | str | os.PathLike[str],
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    split: SplitSelection = "all",
    epochs: EpochSelection = "all",
    options: Knobs = None,
    data_dir: str | None = None,
    device: str = "cpu",
    progress: bool = True,
    name: str = "landscape",
) -> SidecarRecord:
    """Measure landscape metrics of every selected checkpoint of a tiny-LM zoo.

    The loss is measured on ``options.batches`` batches of ``options.batch_size`` training
    windows; ``cka`` compares the last hidden state of ``options.cka_samples`` validation
    windows (``None``: :data:`TINYLM_LANDSCAPE`'s).

    Args:
        zoo: a tiny-LM zoo.
        metrics: names from :data:`weightzoo.landscape.METRICS`.
        split: the models to measure (``"all"`` by default).
        epochs: checkpoints to measure (``"all"`` by default, ``"last"``, or labels).
        options: the knobs, or a mapping of some over :data:`TINYLM_LANDSCAPE` (the default).
        data_dir: where ``openwebtext/`` is (GPT-2 zoos).
        device: torch device.
        progress: show a progress bar over checkpoints.
        name: the side file's name.

    Returns:
        The side file's record.

    Raises:
        InvalidOptionError: for a zoo of another family, an unknown knob or a bad count.
        UnknownMetricError: for a metric name that does not exist.
        CorpusMismatchError: the byte corpus here is not the one the zoo was trained on.
        OpenWebTextMissingError: a GPT-2 zoo without its data on disk.
    """
    zoo = zoo if isinstance(zoo, Zoo) else Zoo(zoo)
    metrics = driver.metric_list(metrics)
    options = resolve_options(options, TINYLM_LANDSCAPE)
    driver.check_family(zoo, FAMILY_NAME, "tiny-LM")
    spec = dict(zoo.manifest.spec)
    data = corpus_for(spec, f"zoo {zoo.name!r} at {zoo.path}", data_dir)
    length = int(spec["context"])
    target = torch.device(device)

    def tensors(tokens: np.ndarray, starts: np.ndarray) -> tuple[Tensor, Tensor]:
        x, y = windows(tokens, starts, length)
        return torch.from_numpy(x).to(target), torch.from_numpy(y).to(target)

    batch_size = options.batch_size
    train = window_starts(len(data.train), length, length, limit=options.batches * batch_size)
    batch_data = [
        tensors(data.train, train[i : i + batch_size]) for i in range(0, len(train), batch_size)
    ]
    cka_windows = options.cka_samples or TINYLM_LANDSCAPE.cka_samples
    cka_inputs = tensors(data.val, window_starts(len(data.val), length, length, cka_windows))[0]
    module = build_model(spec, layout=zoo.layout, source=str(zoo.manifest_file)).to(target)
    selection = driver.Selection.open(zoo, split, epochs)
    inputs = {
        "layout": zoo.layout,
        "accuracy_fn": lm_accuracy,
        "cka_inputs": cka_inputs,
        "cka_layer": "ln_f",
    }
    everyone = np.arange(selection.count)
    part = driver.Part(everyone, module, batch_data, lm_loss, metrics, options, inputs)
    partner = seed_siblings(selection.columns, selection.count)
    out = driver.measure(selection, [part], partner, metrics, device=target, progress=progress)
    attrs = {
        "windows": len(train),
        "batch_size": batch_size,
        "cka": f"last hidden state (ln_f) of {len(cka_inputs)} validation windows",
        "partner": "seed sibling: next seed of the same load and temperature, cyclic",
    }
    what = "loss-landscape metrics on the zoo's next-token loss"
    return driver.write_landscape(selection, name, out, what, options, attrs)
