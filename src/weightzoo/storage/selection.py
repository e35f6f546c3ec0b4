"""Validation of user selections (splits, epochs) against a manifest, with helpful errors."""

from __future__ import annotations

import difflib
import operator
from typing import Any

from weightzoo._types import EpochSelection, SplitSelection
from weightzoo.errors import EpochError, UnknownSplitError
from weightzoo.storage.manifest import SPLITS, Manifest


def check_splits(split: SplitSelection, manifest: Manifest) -> list[str]:
    """Normalise a split selection: ``None``/``"all"`` -> every split.

    Raises:
        UnknownSplitError: naming the bad split and the valid ones.
    """
    if split is None or split == "all":
        return list(SPLITS)
    if isinstance(split, str):
        names = [split]
    elif isinstance(split, (list, tuple)) and all(isinstance(s, str) for s in split):
        names = list(split)
    else:
        raise UnknownSplitError(
            f"split must be a split name ({', '.join(SPLITS)}), a list of them or 'all'; "
            f"got {split!r} for zoo {manifest.name!r}"
        )
    if not names:
        raise UnknownSplitError("the split selection is empty; pass a split name or 'all'")
    for name in names:
        if name not in SPLITS:
            close = difflib.get_close_matches(str(name), SPLITS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownSplitError(
                f"unknown split {name!r} for zoo {manifest.name!r}; use one of "
                f"{', '.join(SPLITS)} or 'all'.{hint}"
            )
    return names


def check_epochs(epochs: EpochSelection, manifest: Manifest) -> list[int]:
    """Normalise an epoch selection to checkpoint labels in the zoo's order.

    Accepts ``None``/``"all"`` (every checkpoint), ``"last"``, one epoch, or several.

    Raises:
        EpochError: naming the epochs the zoo does not have and the ones it has.
    """
    available = manifest.epochs
    if epochs is None or epochs == "all":
        return list(available)
    if epochs == "last":
        return [available[-1]]
    if isinstance(epochs, str):
        raise EpochError(f"epochs must be an int, a list of ints, 'all' or 'last'; got {epochs!r}")
    if hasattr(epochs, "__index__") and getattr(epochs, "ndim", 0) == 0:
        wanted = [_epoch_label(epochs)]  # int, numpy integer, 0-d integer tensor
    else:
        try:
            wanted = [_epoch_label(e) for e in epochs]
        except TypeError:
            raise EpochError(
                f"epochs must be an int, a list of ints, 'all' or 'last'; got {epochs!r}"
            ) from None
    missing = [e for e in wanted if e not in available]
    if missing:
        shown = _describe(available)
        raise EpochError(
            f"zoo {manifest.name!r} has no checkpoint for epoch(s) {missing}; it has {shown}. "
            "Pass epochs from that list, 'last' or 'all'."
        )
    if not wanted:
        raise EpochError("the epoch selection is empty; pass at least one epoch, or 'all'")
    order = {e: i for i, e in enumerate(available)}
    return sorted(dict.fromkeys(wanted), key=order.__getitem__)


def _epoch_label(value: Any) -> int:
    """An integer epoch label; ``1.5`` or ``True`` are refused rather than truncated."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise EpochError(f"an epoch must be an integer checkpoint label, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise EpochError(f"an epoch must be an integer checkpoint label, got {value!r}") from None


def _describe(epochs: list[int]) -> str:
    if len(epochs) > 6 and epochs == list(range(epochs[0], epochs[-1] + 1)):
        return f"epochs {epochs[0]}..{epochs[-1]}"
    return f"epochs {epochs}"
