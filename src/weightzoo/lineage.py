"""Lineage in a grouped zoo: which model was fine-tuned from which, and pairs of their weights.

A zoo records lineage in the per-model column ``parent``: the model id of the model another
one started from, ``-1`` for a model trained from scratch (a pre-trained model). Model ids are
unique across the groups of a grouped zoo, so a parent and its children may sit in different
groups (the ViT zoo's ``pretrain`` and ``finetune-<head>`` groups): a *parent group* is one
whose models all have parent -1, a *child group* one whose models have parents.

:class:`LineagePairs` serves every fine-tuned model with its parent: ``(parent weights, child
weights, info)``. Parent and child have different layouts where their heads differ; with
``shared=True`` both rows are cut to the tensors they share (same name and shape: the ViT's
backbone), which also lets one Dataset span several child groups.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from weightzoo._types import EpochSelection, PathLike
from weightzoo.datasets import ZooDataset
from weightzoo.errors import (
    GroupRequiredError,
    InvalidOptionError,
    ManifestError,
    UnknownColumnError,
)
from weightzoo.selection import build_parts, items_across
from weightzoo.storage.layout import Layout
from weightzoo.zoo import NO_PARENT, PARENT_COLUMN, Zoo

INFO_COLUMNS = ("optimizer", "lr", "pretraining", "head", "seed")
"""Columns copied into each item's ``info`` where the child group has them."""

__all__ = [
    "LineagePairs",
    "ModelLocation",
    "child_groups",
    "columns_of",
    "locate_models",
    "parent_groups",
    "parent_of",
    "shared_names",
]


@dataclass(frozen=True)
class ModelLocation:
    """Where a model id lives: its group (``None`` in a version-1 zoo) and storage position."""

    group: str | None
    position: int


def _column(part: Zoo, name: str) -> np.ndarray | None:
    columns = part.reader(epochs="last").columns
    return np.asarray(columns[name]) if name in columns else None


def locate_models(zoo: Zoo) -> dict[int, ModelLocation]:
    """``{model id: where it is}`` over every group of ``zoo`` (every model on disk).

    Raises:
        ManifestError: for an id outside its group's range in the top manifest, or held twice
            (shards changed after generation: ``weightzoo verify`` names them), which would
            otherwise pair a child with another model's weights.
    """
    out: dict[int, ModelLocation] = {}
    for part in zoo.parts():
        reader = part.reader(epochs="last")
        ids = None
        if part.grouped is not None and part.group_name is not None:
            ids = part.grouped.entry(part.group_name).model_ids
        for model_id, position in zip(reader.column("model_id"), reader.positions, strict=True):
            model_id = int(model_id)
            why = None
            if ids is not None and model_id not in ids:
                why = f"outside its group's ids {ids.start}..{ids.stop - 1}"
            elif model_id in out:
                why = "held twice"
            if why is not None:
                raise ManifestError(
                    f"model id {model_id} of {part.path} is {why} in zoo {zoo.root}: its shards "
                    f"were changed; run `weightzoo verify {zoo.root}` and fetch or generate the "
                    "damaged group again"
                )
            out[model_id] = ModelLocation(part.group_name, int(position))
    return out


def _has_parents(part: Zoo) -> bool | None:
    parents = _column(part, PARENT_COLUMN)
    if parents is None:
        return None
    return bool((parents.astype(np.int64) != NO_PARENT).any())


def parent_groups(zoo: Zoo) -> list[str]:
    """Groups with a ``parent`` column whose models all start from scratch (parent -1)."""
    return [p.group_name or "" for p in zoo.parts() if _has_parents(p) is False]


def child_groups(zoo: Zoo) -> list[str]:
    """Groups whose models have parents (fine-tuned models)."""
    return [p.group_name or "" for p in zoo.parts() if _has_parents(p)]


def parent_of(zoo: Zoo, model_id: int) -> int | None:
    """The model id that model ``model_id`` was fine-tuned from; ``None`` for a root model.

    The same as :meth:`weightzoo.Zoo.parent_of`.

    Raises:
        UnknownColumnError: for a zoo without a ``parent`` column, or an id it does not hold.
    """
    return zoo.parent_of(model_id)


def shared_names(first: Layout, second: Layout) -> list[str]:
    """Tensor names both layouts hold with the same shape, in ``first``'s order."""
    theirs = {e.name: e.shape for e in second}
    return [e.name for e in first if theirs.get(e.name) == e.shape]


def columns_of(layout: Layout, names: Sequence[str]) -> np.ndarray:
    """Positions in a row of ``layout`` of the values of tensors ``names``, in that order."""
    return np.concatenate(
        [np.arange(layout[n].offset, layout[n].offset + layout[n].numel) for n in names]
    )


class LineagePairs(Dataset):
    """Every fine-tuned model with its parent: items ``(parent, child, info)``.

    ``parent`` is the parent's weight row at ``parent_epoch`` (its last checkpoint, the one
    fine-tuning starts from), ``child`` the child's row at each checkpoint of ``epochs``, both
    float32 tensors; ``info`` is a dict with ``model`` and ``parent`` (model ids), ``epoch``,
    and the child's ``optimizer``, ``lr``, ``pretraining``, ``head``, ``seed`` where recorded.
    The default collate batches items into ``(parents [B, P], children [B, C], info)``.

    Args:
        root: a grouped zoo (or a :class:`Zoo`).
        group: the child group to serve; needed when the zoo has several and ``shared`` is
            False (their rows differ in length).
        split: split(s) of the children (``"all"`` for every child); parents are read from
            any split.
        epochs: the children's checkpoints (as for :class:`weightzoo.ZooDataset`).
        parent_epoch: the parents' checkpoint (``"last"`` by default).
        shared: cut both rows to the tensors parent and child share (the backbone).
        transform: applied to each item ``(parent, child, info)``.
        allow_empty: accept a selection that keeps no child (a child group without a selected
            model is always accepted, as long as another one has one).

    Raises:
        InvalidOptionError: for a zoo without lineage (no child group).
        GroupRequiredError: for several child groups without ``group`` or ``shared``.
        UnknownGroupError: for a group the zoo does not have.
        EmptySelectionError: for a selection that keeps no child of any chosen group.
    """

    def __init__(
        self,
        root: Zoo | PathLike,
        *,
        group: str | None = None,
        split: str | Sequence[str] = "train",
        epochs: EpochSelection = "last",
        parent_epoch: int | str = "last",
        shared: bool = False,
        transform: Callable[[Any], Any] | None = None,
        allow_empty: bool = False,
    ) -> None:
        self.zoo = root if isinstance(root, Zoo) else Zoo(root)
        children = child_groups(self.zoo)
        if not children:
            raise InvalidOptionError(
                f"zoo {self.zoo.name!r} at {self.zoo.root} has no fine-tuned models (no group "
                f"with a {PARENT_COLUMN!r} column naming parents); LineagePairs needs a zoo "
                "such as vit-digits"
            )
        if group is not None:
            if group not in children:
                self.zoo.group(group)  # UnknownGroupError for a group the zoo does not have
                raise InvalidOptionError(
                    f"group {group!r} of zoo {self.zoo.name!r} holds no fine-tuned models; "
                    f"child groups: {', '.join(children)}"
                )
            chosen = [group]
        elif len(children) == 1 or shared:
            chosen = children
        else:
            raise GroupRequiredError(
                f"zoo {self.zoo.name!r} has child groups {', '.join(children)} whose rows "
                "differ in length; pass group=NAME, or shared=True for the tensors parent and "
                "child share"
            )
        self.shared, self.transform, self.parent_epoch = shared, transform, parent_epoch
        self.locations = locate_models(self.zoo)

        def build(name: str, empty: bool) -> ZooDataset:
            part = self.zoo.group(name) if self.zoo.grouped is not None else self.zoo
            keep = [*INFO_COLUMNS, PARENT_COLUMN, "model_id"]
            columns = part.reader(epochs="last").columns
            return ZooDataset(
                part,
                split=split,
                epochs=epochs,
                targets=[c for c in keep if c in columns],
                ids=True,
                allow_empty=empty,
            )

        self.parts = build_parts(build, chosen, chosen, allow_empty=allow_empty)
        self.cumulative = np.cumsum([0] + [len(p) for p in self.parts])
        self._parent_rows: dict[int, np.ndarray] = {}
        self._zoos: dict[str | None, Zoo] = {}
        self._shared: dict[tuple[str | None, str | None], tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return int(self.cumulative[-1])

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_parent_rows"] = {}  # reread in each worker process
        state["_zoos"] = {}
        return state

    def _parent_zoo(self, parent: int) -> Zoo:
        where = self.locations.get(parent)
        if where is None:
            raise UnknownColumnError(
                f"parent model {parent} is not on disk in zoo {self.zoo.name!r}; fetch the "
                "group that holds it"
            )
        if where.group not in self._zoos:
            self._zoos[where.group] = (
                self.zoo.group(where.group) if where.group is not None else self.zoo
            )
        return self._zoos[where.group]

    def _shared_columns(self, parent: int, child: Zoo) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the shared tensors in the parent's row and in the child's."""
        key = (self.locations[parent].group, child.group_name)
        if key not in self._shared:
            parent_layout = self._parent_zoo(parent).layout
            names = shared_names(parent_layout, child.layout)
            self._shared[key] = (
                columns_of(parent_layout, names),
                columns_of(child.layout, names),
            )
        return self._shared[key]

    def _parent_row(self, parent: int) -> np.ndarray:
        if parent not in self._parent_rows:
            zoo = self._parent_zoo(parent)
            row = zoo.rows(self.locations[parent].position, self.parent_epoch)
            self._parent_rows[parent] = row[0]
        return self._parent_rows[parent]

    def _items(self, part: Any, local: Sequence[int]) -> list[tuple[Any, Any, dict]]:
        batch = part.batch(list(local))
        items = []
        parents = batch[PARENT_COLUMN].tolist()
        rows = batch["weights"].numpy()
        for k, parent in enumerate(parents):
            parent_row = self._parent_row(int(parent))[None]
            child_row = rows[k : k + 1]
            if self.shared:
                in_parent, in_child = self._shared_columns(int(parent), part.zoo)
                parent_row, child_row = parent_row[:, in_parent], child_row[:, in_child]
            info: dict[str, Any] = {
                "model": int(batch["model_id"][k]),
                "parent": int(parent),
                "epoch": int(batch["epoch"][k]),
            }
            for column in INFO_COLUMNS:
                if column in batch:
                    value = batch[column][k]
                    if column in part.classes:
                        value = part.classes[column][int(value)]
                    info[column] = value.item() if isinstance(value, torch.Tensor) else value
            item = (torch.from_numpy(parent_row[0].copy()), torch.from_numpy(child_row[0]), info)
            items.append(self.transform(item) if self.transform is not None else item)
        return items

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, Any, dict]]:
        return items_across(self.parts, self.cumulative, indices, self._items)

    def __getitem__(self, index: int) -> tuple[Any, Any, dict]:
        """Item ``index``: ``(parent row, child row, info)``."""
        return self.__getitems__([int(index)])[0]
