"""Digits (and other image) splits cut short, for fast generation and evaluation in tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from weightzoo.imagesets import splits as image_splits


@contextmanager
def cut_image_splits(train: int, other: int) -> Iterator[None]:
    """Serve the first ``train`` training and ``other`` val/test images of every split.

    Generation and evaluation both look the splits up in :mod:`weightzoo.imagesets.splits` on each
    call, so one patch serves them alike: a zoo is evaluated on the data it was trained on.
    """
    original = image_splits.load_splits
    original.cache_clear()

    def small(*args):
        (trx, tr_y), (vx, vy), (tex, tey) = original(*args)
        return (trx[:train], tr_y[:train]), (vx[:other], vy[:other]), (tex[:other], tey[:other])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(image_splits, "load_splits", small)
        yield
    original.cache_clear()
