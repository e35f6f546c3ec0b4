"""Digits (and other image) splits cut short, for fast generation and evaluation in tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from weightzoo.generate.modelzoo import family as fam_module
from weightzoo.tasks import images


@contextmanager
def cut_image_splits(train: int, other: int) -> Iterator[None]:
    """Serve the first ``train`` training and ``other`` val/test images of every split.

    Patches the generator's and the evaluation's view of the data alike, so that a zoo is
    evaluated on the data it was trained and measured on.
    """
    original = images.load_splits
    original.cache_clear()

    def small(*args):
        (trx, tr_y), (vx, vy), (tex, tey) = original(*args)
        return (trx[:train], tr_y[:train]), (vx[:other], vy[:other]), (tex[:other], tey[:other])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fam_module, "_load_splits", small)
        patch.setattr(images, "load_splits", small)
        yield
    original.cache_clear()
