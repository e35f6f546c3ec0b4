"""Type aliases shared across the package; it imports no weightzoo module, so any may use it."""

from __future__ import annotations

import os

#: A filesystem path as callers may pass it: a string or any ``os.PathLike`` of ``str``.
PathLike = str | os.PathLike[str]
