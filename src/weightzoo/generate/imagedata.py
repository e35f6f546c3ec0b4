"""The image-data readers, re-exported from :mod:`weightzoo.tasks.imagedata` (their home)."""

from weightzoo.tasks.imagedata import (
    DATASETS,
    DIGITS_SPLIT_SEED,
    ImageData,
    default_data_dir,
    load_image_data,
    split_validation,
)

__all__ = [
    "DATASETS",
    "DIGITS_SPLIT_SEED",
    "ImageData",
    "default_data_dir",
    "load_image_data",
    "split_validation",
]
