"""Which models a selection keeps, and errors that say what the zoo holds when it keeps none.

The rules every entry point follows (:class:`~weightzoo.datasets.ZooDataset` and the Datasets
built on it, :class:`~weightzoo.datasets.GroupedBatches`, :class:`~weightzoo.lineage.LineagePairs`
and :meth:`Zoo.reader <weightzoo.zoo.Zoo.reader>`):

* ``split=``: a name that is no split is an :class:`~weightzoo.errors.UnknownSplitError`
  listing the zoo's splits, with a "did you mean" for a near miss (``"validation"``:
  ``"val"``).
* ``where={column: wanted}``: a column the zoo lacks is an
  :class:`~weightzoo.errors.UnknownColumnError` listing the columns. ``wanted`` is a value
  (floats compare with a relative tolerance of 1e-9), a collection of values (list, tuple,
  set, range or array: any of them), or a function of one value that returns a bool.
* ``where=function``: called with the metadata table ``{column: array}``; reading a column
  the zoo lacks is an :class:`~weightzoo.errors.UnknownColumnError` naming it and the
  columns there are. It returns one bool per model.
* A selection that keeps no model is an :class:`~weightzoo.errors.EmptySelectionError`
  naming the step that emptied it (the split, ``filter_viable``, a ``where`` column or
  function) and the values present there, unless ``allow_empty=True``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from weightzoo.errors import (
    EmptySelectionError,
    EpochError,
    InvalidOptionError,
    UnknownColumnError,
    UnknownSplitError,
)
from weightzoo.storage.manifest import SPLITS

if TYPE_CHECKING:
    from weightzoo.storage.manifest import Manifest
    from weightzoo.storage.reader import ZooReader
    from weightzoo.zoo import Zoo

#: A model filter: ``{column: value, collection of values or function of one value}``, or a
#: function of the per-model metadata dict (``{column: array}``) that returns a bool mask.
Where = Mapping[str, Any] | Callable[[dict[str, np.ndarray]], Any]

SHOWN = 10  # values a message lists before "... N more"
COLLECTIONS = (list, tuple, set, frozenset, range, np.ndarray)
OPT_IN = "or pass allow_empty=True for an empty dataset"
T = TypeVar("T")


def listing(values: Any, limit: int = SHOWN) -> str:
    """The distinct ``values``, sorted, for a message: ``'a', 'b', 'c' ... 4 more``."""
    flat = np.asarray(values, dtype=object).ravel().tolist()
    finite = [v for v in flat if not (isinstance(v, float) and math.isnan(v))]
    distinct = list(dict.fromkeys(finite))
    try:
        distinct.sort()
    except TypeError:  # mixed types: order by their text
        distinct.sort(key=repr)
    if len(finite) < len(flat):
        distinct.append(math.nan)
    shown = ", ".join(repr(v) for v in distinct[:limit])
    more = len(distinct) - limit
    return f"{shown} ... {more} more" if more > 0 else (shown or "nothing")


def did_you_mean(name: Any, known: Sequence[str]) -> str:
    """`` Did you mean 'val'?`` for near misses of ``name`` among ``known``, else ``""``.

    Besides difflib's close matches, a name one of whose ``_``-separated words starts another
    name's word counts (``validation``: ``val``; ``acc``: ``final_test_acc``), which difflib's
    similarity ratio misses for spellings of very different length.
    """
    text = str(name).lower()
    close = difflib.get_close_matches(text, list(known), n=3, cutoff=0.6)
    related = sorted(
        (k for k in known if k not in close and _shares_word(text, k.lower())),
        key=lambda k: -difflib.SequenceMatcher(None, text, k.lower()).ratio(),
    )
    found = [repr(k) for k in (close + related)[:3]]
    if not found:
        return ""
    shown = found[0] if len(found) == 1 else f"{', '.join(found[:-1])} or {found[-1]}"
    return f" Did you mean {shown}?"


def _shares_word(first: str, second: str) -> bool:
    """Whether a word (3+ letters) of one name starts a word of the other."""
    return any(
        min(len(a), len(b)) >= 3 and (a.startswith(b) or b.startswith(a))
        for a in first.split("_")
        for b in second.split("_")
    )


def split_counts(manifest: Manifest) -> str:
    """The splits a zoo holds, for messages: ``train (8 models), val (2), test (2)``."""
    counts = manifest.splits()
    if not counts:
        return "none written yet"
    parts = [f"{name} ({n})" for name, n in counts.items()]
    parts[0] = parts[0][:-1] + " models)"
    return ", ".join(parts)


def check_split_names(split: Any, manifest: Manifest, location: Any) -> None:
    """Refuse a split name that is no split, naming the zoo's splits and near misses.

    Other mistakes (a wrong type, an empty list) are left to
    :func:`weightzoo.storage.selection.check_splits`.

    Args:
        split: the ``split=`` option as given.
        manifest: the zoo's (or group's) manifest.
        location: the zoo's directory, for the message.

    Raises:
        UnknownSplitError: for a name other than ``train``, ``val``, ``test`` (or ``"all"``).
    """
    if split is None or split == "all":
        return
    names = [split] if isinstance(split, str) else split if isinstance(split, (list, tuple)) else []
    for name in names:
        if isinstance(name, str) and name not in SPLITS:
            raise UnknownSplitError(
                f"unknown split {name!r} for zoo {manifest.name!r} at {location}; its splits "
                f"are {split_counts(manifest)}. Pass one of {', '.join(SPLITS)} or "
                f"'all'.{did_you_mean(name, SPLITS)}"
            )


def check_epoch_names(epochs: Any, manifest: Manifest, location: Any) -> None:
    """Refuse an ``epochs=`` text other than ``"all"`` or ``"last"``, naming the zoo's epochs.

    Numbers the zoo has no checkpoint for are left to
    :func:`weightzoo.storage.selection.check_epochs`, which names them and the epochs there are.

    Raises:
        EpochError: for text such as ``"first"`` or ``"final"``.
    """
    if isinstance(epochs, str) and epochs not in ("all", "last"):
        raise EpochError(
            f"epochs must be a checkpoint label, a list of them, 'last' or 'all'; got "
            f"{epochs!r} for zoo {manifest.name!r} at {location}, whose epochs are "
            f"{listing(manifest.epochs)}"
        )


class MetadataTable(dict):
    """The per-model columns a ``where=`` function reads, ``{column: array}``.

    Reading a column the zoo lacks raises :class:`UnknownColumnError` (a ``KeyError``) that
    names the column and the columns there are; :attr:`read` records the columns read.
    """

    def __init__(self, columns: Mapping[str, np.ndarray], owner: str) -> None:
        super().__init__(columns)
        self.owner = owner
        self.read: list[str] = []

    def __getitem__(self, key: Any) -> np.ndarray:
        if key not in self.read:
            self.read.append(key)
        return super().__getitem__(key)

    def __missing__(self, key: Any) -> np.ndarray:
        self.read.remove(key)
        raise UnknownColumnError(
            f"where= function reads column {key!r}, which {self.owner} does not have; it can "
            f"read {', '.join(sorted(self))}.{did_you_mean(key, list(self))}"
        )


def matches(values: np.ndarray, wanted: Any) -> np.ndarray:
    """Where ``values`` equal ``wanted``, one of a collection of values, or pass a test.

    Args:
        values: one column, one value per model.
        wanted: a value, a list/tuple/set/range/array of values, or a function of one value
            that returns a bool (called once per distinct value).

    Returns:
        A bool mask over ``values``.
    """
    if callable(wanted):
        distinct, inverse = np.unique(values, return_inverse=True)
        passed = np.asarray([bool(wanted(v)) for v in distinct.tolist()], dtype=bool)
        return passed[inverse.reshape(-1)] if len(values) else np.zeros(0, dtype=bool)
    if isinstance(wanted, np.ndarray):
        options = wanted.ravel().tolist()
    else:
        options = list(wanted) if isinstance(wanted, COLLECTIONS) else [wanted]
    hit = np.zeros(len(values), dtype=bool)
    for option in options:
        if values.dtype == object:
            hit |= values.astype(str) == str(option)
        elif isinstance(option, (str, bytes)):
            continue  # text never equals a number
        elif values.dtype.kind == "f" and isinstance(option, (int, float, np.number)):
            hit |= np.isclose(values, float(option), rtol=1e-9, atol=0.0)
        else:
            hit |= values == option
    return hit


def metadata_table(zoo: Zoo, reader: ZooReader, split: Any, *, finals: bool) -> MetadataTable:
    """The per-model columns of ``reader``'s models, with ``final_<metric>`` when ``finals``."""
    table = MetadataTable(
        {k: v for k, v in reader.columns.items() if np.ndim(v) == 1}, f"zoo {zoo.name!r}"
    )
    if finals and not reader.num_models:
        # No model to read, but the same columns: a filter on final_* is not unknown here.
        for name, values in reader.metrics.items():
            table.setdefault(f"final_{name}", np.zeros(0, dtype=values.dtype))
    elif finals:
        last = zoo.reader(split, "last")
        local = {int(p): i for i, p in enumerate(last.positions)}
        rows = np.asarray([local[int(p)] for p in reader.positions], dtype=np.int64)
        for name, values in last.metrics.items():
            table.setdefault(f"final_{name}", values[rows, 0])
    return table


def model_mask(zoo: Zoo, reader: ZooReader, where: Where, split: Any = None) -> np.ndarray:
    """The models of ``reader`` that ``where`` keeps, as a bool mask (which may be all False).

    Args:
        zoo: the zoo.
        reader: a :class:`~weightzoo.storage.ZooReader` over a selection of it.
        where: ``{column: value, collection or function of a value}`` or a function of the
            metadata dict.
        split: the reader's split selection (to read ``final_*`` metrics of the same models).

    Raises:
        UnknownColumnError: for a column the zoo does not have.
        InvalidOptionError: for a ``where`` of the wrong type, or a function whose result is
            not one bool per model.
    """
    return _where_mask(zoo, reader, where, split, None)


def _where_mask(
    zoo: Zoo, reader: ZooReader, where: Where, split: Any, within: np.ndarray | None
) -> np.ndarray:
    """``where``'s mask; with ``within`` (the models kept so far), empty is an error."""
    if not callable(where) and not isinstance(where, Mapping):
        raise InvalidOptionError(
            f"where must be a dict {{column: value}} or a function, got {where!r}"
        )
    columns = {k for k, v in reader.columns.items() if np.ndim(v) == 1}
    finals = callable(where) or any(k not in columns for k in where)
    table = metadata_table(zoo, reader, split, finals=finals)
    if callable(where):
        mask = np.asarray(where(table))
        if mask.dtype != bool or mask.shape != (reader.num_models,):
            raise InvalidOptionError(
                f"where= function must return a bool array of {reader.num_models} values (one "
                f"per model), got dtype {mask.dtype} and shape {mask.shape}"
            )
        if within is not None and not (mask & within).any():
            raise EmptySelectionError(_empty_function(zoo, split, table, within))
        return mask
    mask = np.ones(reader.num_models, dtype=bool)
    for name, wanted in where.items():
        if name not in table:
            raise UnknownColumnError(
                f"where: zoo {zoo.name!r} at {zoo.path} has no column {name!r}; columns: "
                f"{', '.join(sorted(table))}.{did_you_mean(name, list(table))}"
            )
        hit = matches(table[name], wanted)
        if within is not None and not (within & mask & hit).any():
            raise EmptySelectionError(_empty_column(zoo, split, where, name, table, within & mask))
        mask &= hit
    return mask


def _empty_column(
    zoo: Zoo, split: Any, where: Mapping[str, Any], name: str, table: dict, kept: np.ndarray
) -> str:
    """The message for a ``where`` column whose wanted values no kept model has."""
    wanted = where[name]
    before = list(where.items())[: list(where).index(name)]
    earlier = [_condition(k, v) for k, v in before]
    among = f" among the {int(kept.sum())} with {', '.join(earlier)}" if earlier else ""
    values = table[name][kept]
    hint = ""
    if values.dtype.kind in "biuf" and _has_text(wanted):
        kind = "true/false" if values.dtype.kind == "b" else "numbers"
        hint = f" ({kind}: {wanted!r} is text)"
    return (
        f"where: no model in {_split_phrase(split)} of zoo {zoo.name!r} at {zoo.path} has "
        f"{_condition(name, wanted)}{among}; {name} holds {listing(values)}{hint}. Ask for a "
        f"value from that list, {OPT_IN}"
    )


def _condition(name: str, wanted: Any) -> str:
    """One ``where`` condition as a message shows it."""
    if callable(wanted):
        return f"{name} passing {getattr(wanted, '__qualname__', repr(wanted))}"
    return f"{name}={wanted!r}"


def _has_text(wanted: Any) -> bool:
    options = list(wanted) if isinstance(wanted, COLLECTIONS) else [wanted]
    return any(isinstance(option, str) for option in options)


def _empty_function(zoo: Zoo, split: Any, table: MetadataTable, kept: np.ndarray) -> str:
    """The message for a ``where=`` function that keeps none of the kept models."""
    read = "; ".join(f"{c}: {_describe(table[c][kept])}" for c in table.read if c in table)
    return (
        f"where= function keeps none of the {int(kept.sum())} models in {_split_phrase(split)} "
        f"of zoo {zoo.name!r} at {zoo.path}; "
        + (f"the columns it read hold {read}" if read else "it read no column")
        + f". Loosen it, {OPT_IN}"
    )


def _describe(values: np.ndarray) -> str:
    """Values for a message: the range of measured or many numbers, else their list."""
    many = 3 if values.dtype.kind == "f" else SHOWN
    if values.dtype.kind in "iuf" and len(np.unique(values)) > many:
        finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        if finite.size:
            return f"{finite.min():.4g} to {finite.max():.4g}"
    return listing(values)


def _split_phrase(split: Any) -> str:
    if split is None or split == "all":
        return "all splits"
    if isinstance(split, str):
        return f"split {split!r}"
    return f"splits {', '.join(map(str, split))}"


def select_models(
    zoo: Zoo,
    reader: ZooReader,
    *,
    split: Any,
    where: Where | None = None,
    filter_viable: bool = True,
    allow_empty: bool = False,
) -> np.ndarray:
    """The local indices of the models a Dataset serves, in storage order.

    Models are kept in steps: those with every selected checkpoint on disk, then (with
    ``filter_viable``) the viable ones, then those ``where`` keeps.

    Args:
        zoo: the zoo (or group) read.
        reader: a reader over the selected splits and epochs of ``zoo``.
        split: the split selection as given (for messages and ``final_*`` metrics).
        where: a filter (see :data:`Where`), or ``None``.
        filter_viable: drop models with a NaN/Inf or diverged checkpoint.
        allow_empty: return an empty selection instead of raising.

    Raises:
        EmptySelectionError: when a step keeps no model, naming the step and what it saw.
        UnknownColumnError, InvalidOptionError: as :func:`model_mask`.
    """
    keep = reader.complete.copy()
    if not allow_empty and not keep.any():
        raise EmptySelectionError(_empty_split(zoo, reader, split))
    if filter_viable:
        viable = reader.column("viable").astype(bool)
        if not allow_empty and not (keep & viable).any():
            raise EmptySelectionError(
                f"none of the {int(keep.sum())} models in {_split_phrase(split)} of zoo "
                f"{zoo.name!r} at {zoo.path} is viable (each has a NaN/Inf or diverged "
                f"checkpoint); pass filter_viable=False to read them, {OPT_IN}"
            )
        keep &= viable
    if where is not None:
        keep &= _where_mask(zoo, reader, where, split, None if allow_empty else keep)
    return np.flatnonzero(keep)


def _empty_split(zoo: Zoo, reader: ZooReader, split: Any) -> str:
    """The message for a split (and epoch) selection without a complete model."""
    where = f"{_split_phrase(split)} of zoo {zoo.name!r} at {zoo.path}"
    if reader.num_models == 0:
        return (
            f"no model in {where}; its splits are {split_counts(zoo.manifest)}. Pass a split "
            f"from that list or 'all', {OPT_IN}"
        )
    return (
        f"none of the {reader.num_models} models in {where} has every selected checkpoint "
        f"(epochs {reader.epochs}) on disk; pass epochs= from {zoo.manifest.epochs} that its "
        f"shards hold, fetch the rest, {OPT_IN}"
    )


def build_parts(
    build: Callable[[Any, bool], T],
    parts: Sequence[Any],
    names: Sequence[str],
    *,
    allow_empty: bool = False,
) -> list[T]:
    """Datasets over several parts of a zoo (groups, subsets): some may be empty, not all.

    Args:
        build: ``build(part, allow_empty)`` makes one part's Dataset.
        parts: the parts.
        names: their names, for the message.
        allow_empty: accept every part being empty.

    Returns:
        One Dataset per part, in order.

    Raises:
        EmptySelectionError: when every part is empty (and ``allow_empty`` is False): the
            single part's own error, or one naming each part's reason.
    """
    built: list[T] = []
    empty: list[tuple[str, EmptySelectionError]] = []
    for part, name in zip(parts, names, strict=True):
        try:
            built.append(build(part, allow_empty))
        except EmptySelectionError as exc:
            empty.append((name, exc))
            built.append(build(part, True))
    if empty and len(empty) == len(parts):
        if len(empty) == 1:
            raise empty[0][1]
        reasons = "; ".join(f"[{name}] {exc}" for name, exc in empty)
        raise EmptySelectionError(f"the selection keeps no model in any part: {reasons}")
    return built


def part_positions(
    indices: Sequence[int] | np.ndarray, cumulative: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where items of a Dataset over several parts lie: the part of each, and its index there.

    Args:
        indices: item indices; negative ones count from the end, as for a list.
        cumulative: ``[0, len(part 0), len(part 0) + len(part 1), ...]``.

    Returns:
        ``(part, local)``, one entry per index.

    Raises:
        IndexError: for an index outside the Dataset.
    """
    flat = np.asarray(indices, dtype=np.int64).reshape(-1)
    size = int(cumulative[-1])
    if flat.size and (flat.min() < -size or flat.max() >= size):
        raise IndexError(f"index out of range for a dataset of {size} items")
    flat = flat % size if size else flat
    part = np.searchsorted(cumulative, flat, side="right") - 1
    return part, flat - cumulative[part]


def items_across(
    parts: Sequence[Any],
    cumulative: np.ndarray,
    indices: Sequence[int] | np.ndarray,
    read: Callable[[Any, list[int]], Sequence[T]],
) -> list[T]:
    """The items at ``indices`` of a Dataset over several parts, one ``read`` per part.

    Args:
        parts: the parts' Datasets.
        cumulative: as for :func:`part_positions`.
        indices: item indices, in the order wanted.
        read: ``read(part, local indices)`` gives that part's items, in that order.

    Raises:
        IndexError: for an index outside the Dataset.
    """
    part, local = part_positions(indices, cumulative)
    items: list[Any] = [None] * len(part)
    for p, dataset in enumerate(parts):
        where = np.flatnonzero(part == p)
        if where.size:
            read_here = read(dataset, local[where].tolist())
            for position, item in zip(where.tolist(), read_here, strict=True):
                items[position] = item
    return items
