"""Lineage recovery and fine-tuning accuracy of a zoo of pre-trained and fine-tuned models.

The ViT zoo of Falk, Meynent, Pfammatter, Schürholt, Borth, *A Model Zoo of Vision
Transformers* (arXiv:2504.10231) fine-tunes every pre-trained model many ways, and names model
lineage (which pre-trained model a fine-tuned one came from) as an application. The simplest
test of whether lineage survives fine-tuning in weight space: for each fine-tuned model, is the
nearest pre-trained model its parent? Both are compared on the tensors they share (the
backbone; the heads differ), by cosine similarity and by L2 distance of the flattened rows.
Chance is one over the number of pre-trained models.

At checkpoint 0 every child holds its parent's backbone exactly, so recovery there is 100% by
construction; the tables read the children's last checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from weightzoo.analysis.data import arrays, zoo_label
from weightzoo.analysis.tables import Row, Table, UnsupportedTableError
from weightzoo.lineage import child_groups, columns_of, parent_groups, shared_names
from weightzoo.zoo import PARENT_COLUMN, Zoo

SOURCE = (
    "Falk, Meynent, Pfammatter, Schürholt, Borth, A Model Zoo of Vision Transformers "
    "(arXiv:2504.10231); weightzoo's nearest-parent test"
)
DISTANCES = ("cosine", "l2")
_GRID = ("head", "optimizer", "lr")


def _groups(zoo: Zoo) -> tuple[list[str], list[str]]:
    if zoo.grouped is None:
        raise UnsupportedTableError(
            "lineage needs a grouped zoo of pre-trained and fine-tuned models (vit-digits)"
        )
    parents, children = parent_groups(zoo), child_groups(zoo)
    if not parents or not children:
        raise UnsupportedTableError(
            f"the zoo's groups {zoo.groups} hold no pre-trained/fine-tuned pair of groups "
            f"(a {PARENT_COLUMN!r} column of -1 in one, parent ids in another)"
        )
    return parents, children


def _cut(rows: np.ndarray, zoo: Zoo, names: list[str]) -> np.ndarray:
    return rows[:, columns_of(zoo.layout, names)].astype(np.float64)


def lineage_recovery(
    zoo: Zoo, *, epoch: int | str = "last", split: str = "all"
) -> dict[str, np.ndarray]:
    """Each fine-tuned model's nearest pre-trained model, by cosine similarity and L2 distance.

    Args:
        zoo: a grouped zoo with a parent group and child groups.
        epoch: the children's checkpoint (the parents' is their last).
        split: the children's split(s).

    Returns:
        ``{"model", "parent", "cosine", "l2", "parent_similarity", "other_similarity", "head",
        "optimizer", "lr", "pretraining"}``: one entry per child; ``cosine`` / ``l2`` are the
        predicted parent ids, ``parent_similarity`` the cosine similarity to the parent and
        ``other_similarity`` the largest to any other pre-trained model.

    Raises:
        UnsupportedTableError: for a zoo without lineage, or parent groups whose shared
            tensors differ.
    """
    parent_names, child_names = _groups(zoo)
    parent_zoos = [zoo.group(g) for g in parent_names]
    out: dict[str, list[Any]] = {}
    for name in child_names:
        child = zoo.group(name)
        columns = child.reader(epochs="last").columns
        targets = ["model_id", PARENT_COLUMN] + [c for c in (*_GRID, "pretraining") if c in columns]
        data = arrays(child, split=split, epochs=epoch, targets=targets, filter_viable=False)
        shared = [shared_names(p.layout, child.layout) for p in parent_zoos]
        if any(s != shared[0] for s in shared) or not shared[0]:
            raise UnsupportedTableError(
                f"the parent groups {parent_names} and group {name!r} share no common tensors"
            )
        parents = [
            arrays(p, split="all", epochs="last", targets=["model_id"], filter_viable=False)
            for p in parent_zoos
        ]
        ids = np.concatenate([p["model_id"] for p in parents])
        rows = np.concatenate(
            [_cut(p["weights"], z, shared[0]) for p, z in zip(parents, parent_zoos, strict=True)]
        )
        kids = _cut(data["weights"], child, shared[0])
        unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        cosine = (kids / np.linalg.norm(kids, axis=1, keepdims=True)) @ unit.T
        distance = ((kids[:, None, :] - rows[None, :, :]) ** 2).sum(-1)
        own = ids[None, :] == np.asarray(data[PARENT_COLUMN])[:, None]
        found = {
            "model": data["model_id"],
            "parent": data[PARENT_COLUMN],
            "cosine": ids[cosine.argmax(1)],
            "l2": ids[distance.argmin(1)],
            "parent_similarity": np.where(own, cosine, -np.inf).max(1),
            "other_similarity": np.where(own, -np.inf, cosine).max(1),
        }
        for column in (*_GRID, "pretraining"):
            found[column] = data.get(column, np.full(len(kids), "", dtype=object))
        for key, value in found.items():
            out.setdefault(key, []).append(np.asarray(value))
    result = {k: np.concatenate(v) for k, v in out.items()}
    result["parents"] = ids
    return result


def _cells(found: dict[str, np.ndarray]) -> Iterable[tuple[str, np.ndarray]]:
    keys = sorted(
        {(str(h), str(o), float(lr)) for h, o, lr in zip(*(found[c] for c in _GRID), strict=True)},
        key=lambda k: (k[0], k[1], -k[2]),
    )
    for head, optimizer, lr in keys:
        mask = (
            (found["head"].astype(str) == head)
            & (found["optimizer"].astype(str) == optimizer)
            & np.isclose(found["lr"].astype(float), lr)
        )
        yield f"{head} {optimizer} lr={lr:g}", mask


def lineage_table(zoo: Zoo, *, epoch: int | str = "last") -> Table:
    """Share of fine-tuned models whose nearest pre-trained model is their parent.

    Rows: every head x optimizer x learning rate, then all children.

    Raises:
        UnsupportedTableError: for a zoo without lineage.
    """
    found = lineage_recovery(zoo, epoch=epoch)
    count = len(found["parents"])
    table = Table(
        id="vit.lineage",
        title="Lineage recovery: is a fine-tuned model's nearest pre-trained model its parent?",
        source=SOURCE,
        unit="% of fine-tuned models (last checkpoint) whose nearest pre-trained model on the "
        "shared backbone tensors is their parent",
        columns=["models", *DISTANCES, "cos parent", "cos other"],
        zoo=zoo_label(zoo),
        notes=[
            f"{count} pre-trained models: chance is {100.0 / count:.1f}%",
            "cos parent / cos other: median cosine similarity to the parent / to the most "
            "similar other pre-trained model",
            "at checkpoint 0 a child holds its parent's backbone exactly (100% by construction)",
        ],
    )
    cells = [*_cells(found), ("all", np.ones(len(found["model"]), dtype=bool))]
    for label, mask in cells:
        ours: dict[str, Any] = {"models": int(mask.sum())}
        for distance in DISTANCES:
            hits = found[distance][mask] == found["parent"][mask]
            ours[distance] = 100.0 * float(hits.mean()) if mask.any() else None
        for column, key in (("cos parent", "parent_similarity"), ("cos other", "other_similarity")):
            values = found[key][mask]
            ours[column] = float(np.median(values)) if np.isfinite(values).all() else None
        table.rows.append(Row(label, ours))
    return table


def finetune_table(zoo: Zoo) -> Table:
    """Fine-tuned test accuracy per head x optimizer x learning rate (and per pre-training).

    Raises:
        UnsupportedTableError: for a zoo without lineage.
    """
    _, children = _groups(zoo)
    parts: dict[str, list[np.ndarray]] = {}
    for name in children:
        child = zoo.group(name)
        meta = child.metadata()
        if "final_test_acc" not in meta:
            raise UnsupportedTableError(f"group {name!r} records no test_acc metric")
        for column in (*_GRID, "pretraining", "final_test_acc"):
            parts.setdefault(column, []).append(np.asarray(meta[column]))
    found = {k: np.concatenate(v) for k, v in parts.items()}
    kinds = sorted(set(found["pretraining"].astype(str)))
    table = Table(
        id="vit.finetune",
        title="Fine-tuned test accuracy per head, optimizer and learning rate",
        source=SOURCE,
        unit="test accuracy at the last checkpoint, %: mean over the children (min, max), and "
        "the mean per pre-training of the parent",
        columns=["models", "mean", "min", "max", *kinds],
        zoo=zoo_label(zoo),
    )
    accuracy = 100.0 * found["final_test_acc"].astype(float)
    for label, mask in _cells(found):
        ours: dict[str, Any] = {
            "models": int(mask.sum()),
            "mean": float(accuracy[mask].mean()),
            "min": float(accuracy[mask].min()),
            "max": float(accuracy[mask].max()),
        }
        for kind in kinds:
            chosen = mask & (found["pretraining"].astype(str) == kind)
            ours[kind] = float(accuracy[chosen].mean()) if chosen.any() else None
        table.rows.append(Row(label, ours))
    return table
