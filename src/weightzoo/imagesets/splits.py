"""An image zoo's splits: train, validation (held out of the training set) and test.

The image readers themselves are :mod:`weightzoo.imagesets.readers` (imported, with torch, only
when data is loaded, so that listing specs stays light).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=4)
def load_splits(
    dataset: str,
    data_dir: str | None,
    size: int,
    grayscale: bool,
    val_fraction: float,
    data_seed: int,
) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The train, validation and test arrays an image zoo trains and is measured on.

    The validation split is the first ``round(val_fraction * n)`` entries of
    ``numpy.random.default_rng(data_seed).permutation(n)`` of the official training set (as
    :func:`~weightzoo.imagesets.readers.split_validation`); the test split is the official test
    set. Cached per process.

    Args:
        dataset: a name for :func:`~weightzoo.imagesets.readers.load_image_data`.
        data_dir: where its files are (``None``: the default data directory).
        size: side the images are resized to.
        grayscale: collapse RGB to one channel.
        val_fraction: share of the training set held out as validation.
        data_seed: seed of that hold-out.

    Returns:
        ``((train_x, train_y), (val_x, val_y), (test_x, test_y))``: float32 ``[N, C, size,
        size]`` images in ``[0, 1]`` and int64 labels.

    Raises:
        DataFilesMissingError: the dataset's files are not under ``data_dir``.
        ValueError: the images do not come out at ``size``.
    """
    from weightzoo.imagesets.readers import load_image_data  # torch: only when loading

    data = load_image_data(dataset, data_dir, resize=size, grayscale=grayscale)
    train_x = np.asarray(data.train_x, dtype=np.float32)
    train_y = np.asarray(data.train_y, dtype=np.int64)
    if train_x.shape[-1] != size or train_x.shape[-2] != size:
        raise ValueError(
            f"{dataset} images are {train_x.shape[-2:]} after resize={size}; expected {size}"
        )
    perm = np.random.default_rng(data_seed).permutation(len(train_x))
    n_val = round(val_fraction * len(train_x))
    val_idx, tr_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return (
        (train_x[tr_idx], train_y[tr_idx]),
        (train_x[val_idx], train_y[val_idx]),
        (np.asarray(data.test_x, dtype=np.float32), np.asarray(data.test_y, dtype=np.int64)),
    )
