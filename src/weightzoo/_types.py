"""Type aliases shared across the package; it imports no weightzoo module, so any may use it."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

#: A filesystem path as callers may pass it: a string or any ``os.PathLike`` of ``str``.
PathLike = str | os.PathLike[str]

#: Which splits to read: a split name, several, or ``None``/``"all"`` for every split
#: (:func:`weightzoo.storage.selection.check_splits`).
SplitSelection = str | Sequence[str] | None

#: Which checkpoints to read, by epoch label: one, several, ``"last"``, or ``None``/``"all"``
#: for every checkpoint (:func:`weightzoo.storage.selection.check_epochs`).
EpochSelection = int | str | Iterable[int] | None
