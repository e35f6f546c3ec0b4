"""The image splits a Model Zoos or trajectory zoo trains on, on the training device.

The splits themselves (train, validation held out of the training set, test) are
:func:`weightzoo.imagesets.splits.load_splits`', which evaluation reads too: looked up on each call,
so that a test may serve smaller splits to generation and evaluation alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from weightzoo.families._fields import ImageSplitFields
from weightzoo.imagesets import splits as image_splits

__all__ = ["Split", "device_splits"]


@dataclass
class Split:
    """One split of an image dataset on the training device."""

    x: torch.Tensor
    y: torch.Tensor


def device_splits(spec: ImageSplitFields, device: str) -> list[Split]:
    """The train, validation and test splits of a spec's dataset on ``device``.

    Args:
        spec: a spec with the image fields (Model Zoos, trajectory or phase: its dataset,
            image size, channels, validation fraction, data seed and data directory).
        device: torch device.

    Raises:
        DataFilesMissingError: the dataset's files are not on disk (the message names them).
    """
    arrays = image_splits.load_splits(
        spec.dataset,
        spec.data_dir,
        spec.image_size,
        spec.in_channels == 1,
        spec.val_fraction,
        spec.data_seed,
    )
    return [
        Split(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)) for x, y in arrays
    ]
