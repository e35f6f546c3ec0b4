"""Plain text for the terminal: sizes, checkpoint labels, names that came from a publisher."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from weightzoo.escaping import one_line

__all__ = ["epochs_text", "first_few", "human_bytes", "plain"]


def human_bytes(size: float) -> str:
    """``size`` bytes in decimal units: ``512 B``, ``3.2 MB``."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def epochs_text(epochs: Sequence[int]) -> str:
    """Checkpoint labels written so that they cannot be misread as a range.

    Runs of three or more equally spaced labels become ``first..last every step``; the
    rest are listed: ``[0, 1000]`` is ``0, 1000`` and ``[0, 1, ..., 50]`` is
    ``0..50 every 1``.
    """
    parts: list[str] = []
    i = 0
    while i < len(epochs):
        j = i + 1
        if j < len(epochs):
            step = epochs[j] - epochs[i]
            while j + 1 < len(epochs) and epochs[j + 1] - epochs[j] == step:
                j += 1
            if j - i >= 2:
                parts.append(f"{epochs[i]}..{epochs[j]} every {step}")
                i = j + 1
                continue
        parts.append(str(epochs[i]))
        i += 1
    return ", ".join(parts) or "none"


def first_few(names: list[str], shown: int = 5) -> str:
    """Up to ``shown`` names and how many more, so that an error stays one readable line."""
    rest = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {rest} more" if rest > 0 else "")


def plain(value: Any) -> Any:
    """``value`` with every string in it (keys too) as :func:`one_line` plain text.

    A zoo's names come from its publisher: escape sequences (colours, OSC window titles),
    bidi overrides and line breaks in them must not act on the terminal that prints them.
    """
    if isinstance(value, str):
        return one_line(value, limit=None)
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value
