"""The loss-landscape phase of every model and checkpoint, from its landscape metrics.

The taxonomy is that of "Taxonomizing local versus global structure in neural network loss
landscapes" (Yang, Hodgkinson, Theisen, Zou, Gonzalez, Ramchandran, Mahoney;
arXiv:2107.11228), as "A Model Zoo on Phase Transitions in Neural Networks" (Schürholt,
Meynent, Zhou, Lu, Yang, Borth; arXiv:2504.18072) labels its zoos:

| phase | train loss | Hessian | mode connectivity ``mc`` | CKA |
| --- | --- | --- | --- | --- |
| I | high | large (sharp) | negative (a barrier) | -- |
| II | high | large (sharp) | positive or near zero | -- |
| III | small | small (flat) | negative (a barrier) | -- |
| IV-A | small | small (flat) | near zero or positive | low |
| IV-B | small | small (flat) | near zero or positive | high |

Local structure (sharp: phases I and II; flat: III and IV) is read from the training loss and,
where a threshold is given, the Hessian; global structure from the sign and size of ``mc``
(:func:`weightzoo.landscape.signed_mc`, negative when the trained curve between two seed
siblings rises above its ends); CKA between the siblings splits phase IV. Neither paper gives
numbers for the thresholds, so the defaults below are this library's reading (see
``docs/phase.md``); every one is a keyword argument.

:func:`assign_phases` is the rule on arrays; :func:`write_phases` applies it to a zoo's
``landscape`` side file and stores the labels there as the int8 array ``phase`` (an index into
:data:`PHASES`, -1 where a metric is missing), with the labels and thresholds in the side
file's attributes; :func:`read_phases` turns them back into labels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from weightzoo.errors import InvalidOptionError
from weightzoo.storage.manifest import Manifest
from weightzoo.storage.reader import ZooReader
from weightzoo.storage.sidecar import Sidecar, read_sidecar, write_sidecar

__all__ = [
    "DEFAULT_THRESHOLDS",
    "PHASES",
    "UNKNOWN",
    "assign_phases",
    "read_phases",
    "write_phases",
]

PHASES = ("I", "II", "III", "IV-A", "IV-B")
"""The phase labels, in the order of their codes in the side file."""

UNKNOWN = "?"
"""The label of a checkpoint whose metrics are missing (NaN), e.g. a model without sibling."""

DEFAULT_THRESHOLDS: dict[str, Any] = {
    "loss_threshold": 0.1,
    "hessian": "hessian_trace",
    "hessian_threshold": None,
    "mc_tolerance": 0.05,
    "cka_threshold": 0.9,
}
"""The defaults of :func:`assign_phases`' keyword arguments (our reading; see its docs)."""

#: The side file ``weightzoo landscape`` writes (and the phase labels are added to).
LANDSCAPE_SIDECAR = "landscape"


def assign_phases(
    metrics: Mapping[str, np.ndarray],
    train_loss: np.ndarray,
    *,
    loss_threshold: float = 0.1,
    hessian: str = "hessian_trace",
    hessian_threshold: float | None = None,
    mc_tolerance: float = 0.05,
    cka_threshold: float = 0.9,
) -> np.ndarray:
    """The phase label of every entry of ``train_loss`` (any shape, e.g. models x checkpoints).

    Args:
        metrics: arrays of ``train_loss``'s shape: ``mc`` (signed mode connectivity of the
            loss to a seed sibling), ``cka`` (to the same sibling) and, with a
            ``hessian_threshold``, the ``hessian`` metric.
        train_loss: the training loss.
        loss_threshold: above it a model is under-trained, i.e. locally sharp (phases I, II).
            Yang et al. put high training loss and a large Hessian together; the default 0.1
            (cross-entropy) is our reading.
        hessian: the Hessian metric to read (``"hessian_trace"`` or ``"hessian_top"``).
        hessian_threshold: if given, a Hessian above it also makes a model sharp. None (the
            default) leaves local structure to the training loss: the Hessian's scale depends
            on the network and the loss, so no one number fits every zoo.
        mc_tolerance: ``mc < -mc_tolerance`` is a barrier (globally poorly connected: phases
            I, III); ``mc`` within the tolerance counts as zero (well connected).
        cka_threshold: in phase IV, CKA at or above it is IV-B (similar representations),
            below it IV-A.

    Returns:
        str array of ``train_loss``'s shape: one of :data:`PHASES`, or :data:`UNKNOWN` where a
        needed metric is NaN.

    Raises:
        InvalidOptionError: a missing metric, a shape that differs, or a bad threshold.
    """
    loss = np.asarray(train_loss, dtype=np.float64)
    needed = ["mc", "cka"] + ([hessian] if hessian_threshold is not None else [])
    missing = [m for m in needed if m not in metrics]
    if missing:
        raise InvalidOptionError(
            f"assign_phases needs the landscape metrics {missing}; compute them with "
            "`weightzoo landscape ZOO --metrics hessian_top hessian_trace cka mc`"
        )
    arrays = {m: np.asarray(metrics[m], dtype=np.float64) for m in needed}
    for name, array in arrays.items():
        if array.shape != loss.shape:
            raise InvalidOptionError(
                f"metric {name!r} has shape {array.shape}, train_loss {loss.shape}; pass arrays "
                "of the same models and checkpoints"
            )
    if not mc_tolerance >= 0 or not np.isfinite(loss_threshold):
        raise InvalidOptionError(
            f"mc_tolerance must be >= 0 and loss_threshold finite; got {mc_tolerance}, "
            f"{loss_threshold}"
        )
    mc, cka = arrays["mc"], arrays["cka"]
    sharp = loss > loss_threshold
    if hessian_threshold is not None:
        sharp |= arrays[hessian] > hessian_threshold
    barrier = mc < -mc_tolerance
    out = np.full(loss.shape, UNKNOWN, dtype="<U4")
    out[sharp & barrier] = "I"
    out[sharp & ~barrier] = "II"
    out[~sharp & barrier] = "III"
    out[~sharp & ~barrier & (cka < cka_threshold)] = "IV-A"
    out[~sharp & ~barrier & (cka >= cka_threshold)] = "IV-B"
    unknown = np.isnan(loss) | np.isnan(mc) | (~sharp & ~barrier & np.isnan(cka))
    if hessian_threshold is not None:
        unknown |= np.isnan(arrays[hessian]) & ~(loss > loss_threshold)
    out[unknown] = UNKNOWN
    return out


def _train_loss(zoo_dir: str | os.PathLike[str], models: np.ndarray, epochs: list[int]):
    """``train_loss [len(models), len(epochs)]`` of storage positions ``models``."""
    manifest = Manifest.load(zoo_dir)
    if "train_loss" not in manifest.metrics:
        raise InvalidOptionError(
            f"zoo {manifest.name!r} stores no train_loss metric; the phases need it"
        )
    reader = ZooReader(zoo_dir, split=None, epochs=epochs, manifest=manifest)
    local = {int(p): i for i, p in enumerate(reader.positions.tolist())}
    rows = np.asarray([local[int(p)] for p in models], dtype=np.int64)
    column = [reader.epochs.index(e) for e in epochs]
    return reader.metrics["train_loss"][np.ix_(rows, column)]


def write_phases(
    zoo_dir: str | os.PathLike[str], *, name: str = LANDSCAPE_SIDECAR, **thresholds: Any
) -> np.ndarray:
    """Label every model and checkpoint of the zoo's landscape side file and store ``phase``.

    The side file is rewritten with its arrays, the int8 array ``phase`` (codes into
    :data:`PHASES`, -1 for :data:`UNKNOWN`) and the attributes ``phase_labels`` and
    ``phase_thresholds``. Running it again replaces ``phase`` (idempotent).

    Args:
        zoo_dir: the zoo directory.
        name: the side file.
        **thresholds: keyword arguments of :func:`assign_phases`.

    Returns:
        The labels ``[models, checkpoints]`` of the side file's models and epochs.

    Raises:
        SidecarNotFoundError: the zoo has no such side file (run ``weightzoo landscape``).
        InvalidOptionError: metrics missing from it, or an unknown threshold.
    """
    unknown = sorted(set(thresholds) - set(DEFAULT_THRESHOLDS))
    if unknown:
        raise InvalidOptionError(
            f"unknown phase threshold(s) {unknown}; known: {', '.join(DEFAULT_THRESHOLDS)}"
        )
    with Sidecar(zoo_dir, name) as sidecar:
        attrs, shared_names, per_names = sidecar.attrs, sidecar.shared, sidecar.arrays
    data = read_sidecar(zoo_dir, name)
    models, epochs = data["models"], [int(e) for e in data["epochs"]]
    loss = _train_loss(zoo_dir, models, epochs)
    rule = {**DEFAULT_THRESHOLDS, **thresholds}
    labels = assign_phases(data, loss, **rule)
    codes = np.full(labels.shape, -1, dtype=np.int8)
    for code, label in enumerate(PHASES):
        codes[labels == label] = code
    per = {k: data[k] for k in per_names if k != "phase"}
    per["phase"] = codes
    shared = {k: data[k] for k in shared_names}
    attrs |= {"phase_labels": list(PHASES), "phase_unknown": -1, "phase_thresholds": rule}
    write_sidecar(zoo_dir, name, per, attrs, shared=shared or None, models=models, epochs=epochs)
    return labels


def read_phases(
    zoo_dir: str | os.PathLike[str], *, name: str = LANDSCAPE_SIDECAR
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The stored phase labels of a zoo.

    Returns:
        ``(labels [models, checkpoints] str, models (storage positions), epochs)``.

    Raises:
        SidecarNotFoundError: no landscape side file.
        InvalidOptionError: the side file has no ``phase`` array (run :func:`write_phases`).
    """
    with Sidecar(zoo_dir, name) as sidecar:
        if "phase" not in sidecar.arrays:
            raise InvalidOptionError(
                f"the {name!r} side file of {zoo_dir} has no phase labels; run "
                "weightzoo.landscape.taxonomy.write_phases on the zoo"
            )
        codes = np.array(sidecar["phase"])
        labels = list(sidecar.attrs.get("phase_labels", PHASES))
        models, epochs = sidecar.models.copy(), list(sidecar.epochs)
    table = np.asarray([*labels, UNKNOWN], dtype="<U4")
    return table[np.where(codes < 0, len(labels), codes)], models, epochs
