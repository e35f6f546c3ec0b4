"""Pre-training and fine-tuning tasks of the ViT zoo, offline, on scikit-learn's 8x8 digits.

The zoo of Falk et al., *A Model Zoo of Vision Transformers* (arXiv:2504.10231) pre-trains on
ImageNet-1k and fine-tunes on CIFAR-100. Its offline counterpart here keeps the structure with
data that ships with scikit-learn (:func:`weightzoo.imagesets.readers.load_image_data`
``("digits", resize=8)``, the stratified 80/20 train/test split):

- supervised pre-training on the digits ``0..4`` (:data:`PRETRAIN_DIGITS`);
- SimCLR-style contrastive pre-training on every digit's training images, labels unused;
- fine-tuning on the digits ``5..9`` (:data:`FINETUNE_DIGITS`), labels ``0..4``.

No fine-tuning *test* image is ever seen in pre-training (the test split is shared by all
tasks), and the supervised pre-training never sees a fine-tuning class. Images are scaled from
``[0, 1]`` to ``[-1, 1]`` (blank is -1).

The contrastive views are drawn by :func:`augment`: a random shift of up to one pixel in each
direction (the vacated border blank) and Gaussian pixel noise, the augmentations that make
sense for 8x8 glyphs (crops and colour jitter do not).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from weightzoo.errors import DataFilesMissingError

__all__ = [
    "ALL_DIGITS",
    "FINETUNE_DIGITS",
    "PRETRAIN_DIGITS",
    "DigitTask",
    "augment",
    "check_paper_data",
    "digit_task",
]

PRETRAIN_DIGITS = (0, 1, 2, 3, 4)
"""Classes of the supervised pre-training task."""
FINETUNE_DIGITS = (5, 6, 7, 8, 9)
"""Classes of the fine-tuning task (served as labels 0..4)."""
ALL_DIGITS = tuple(range(10))
"""Images of the contrastive pre-training task."""
BLANK = -1.0
"""Value of an empty pixel after scaling to [-1, 1]."""


@dataclass(frozen=True, eq=False)
class DigitTask:
    """Images of some digit classes, train and test, as float32 in [-1, 1].

    Attributes:
        classes: the digits, in label order (label ``k`` is digit ``classes[k]``).
        train_x: ``[N, 1, 8, 8]``.
        train_y: int64 ``[N]`` labels ``0..len(classes)-1``.
        test_x: ``[M, 1, 8, 8]``.
        test_y: int64 ``[M]``.
    """

    classes: tuple[int, ...]
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


@lru_cache(maxsize=8)
def digit_task(classes: Sequence[int]) -> DigitTask:
    """The 8x8 digits of ``classes`` (train and test splits), labels by position in ``classes``.

    Args:
        classes: distinct digits ``0..9``.

    Raises:
        ValueError: for a digit outside ``0..9`` or a repeated digit.
    """
    classes = tuple(int(c) for c in classes)
    if len(set(classes)) != len(classes) or not all(0 <= c <= 9 for c in classes):
        raise ValueError(f"classes must be distinct digits 0..9, got {list(classes)}")
    from weightzoo.imagesets.readers import load_image_data  # sklearn + torch when loading

    data = load_image_data("digits", resize=8)
    label = np.full(10, -1, dtype=np.int64)
    label[list(classes)] = np.arange(len(classes))

    def pick(x: Tensor, y: Tensor) -> tuple[np.ndarray, np.ndarray]:
        digits = y.numpy()
        keep = label[digits] >= 0
        images = x.numpy()[keep] * 2.0 - 1.0
        return np.ascontiguousarray(images, dtype=np.float32), label[digits[keep]]

    train_x, train_y = pick(data.train_x, data.train_y)
    test_x, test_y = pick(data.test_x, data.test_y)
    return DigitTask(classes, train_x, train_y, test_x, test_y)


def augment(
    x: Tensor, generator: torch.Generator, *, max_shift: int = 1, noise: float = 0.1
) -> Tensor:
    """One random view of each image: a shift of up to ``max_shift`` pixels, then noise.

    Draws from ``generator`` only (on the CPU), so a model's views depend on its own seed.

    Args:
        x: images ``[B, C, H, W]`` in ``[-1, 1]``.
        generator: the model's generator.
        max_shift: largest shift in each direction; the vacated border is :data:`BLANK`.
        noise: standard deviation of the Gaussian noise added to every pixel.

    Returns:
        ``[B, C, H, W]`` on ``x``'s device.
    """
    batch, _, height, width = x.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (batch, 2), generator=generator)
    jitter = torch.randn(tuple(x.shape), generator=generator) * noise
    s = max_shift
    padded = torch.nn.functional.pad(x, (s, s, s, s), value=BLANK)
    rows = (torch.arange(height) + s - shifts[:, :1]).to(x.device)  # [B, H]
    cols = (torch.arange(width) + s - shifts[:, 1:]).to(x.device)  # [B, W]
    index = torch.arange(batch, device=x.device)[:, None, None]
    view = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]
    return view.permute(0, 3, 1, 2) + jitter.to(x.device)


# ----------------------------------------------------------------------- the paper's data
IMAGENET_FOLDERS = ("train", "val")


def check_paper_data(data_dir: str | Path | None) -> None:
    """Check for ImageNet-1k and CIFAR-100 under ``data_dir``, naming every missing file.

    ImageNet-1k is expected in the usual class-folder layout, ``<data_dir>/imagenet/train/
    <wnid>/*.JPEG`` and ``<data_dir>/imagenet/val/<wnid>/*.JPEG``; CIFAR-100 as the binary
    version that :func:`~weightzoo.imagesets.readers.load_image_data` reads.

    Raises:
        DataFilesMissingError: listing each missing folder or file and where to get it.
    """
    from weightzoo.imagesets.readers import default_data_dir, load_image_data

    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    lines: list[str] = []
    for folder in IMAGENET_FOLDERS:
        path = root / "imagenet" / folder
        if not (path.is_dir() and any(p.is_dir() for p in path.iterdir())):
            lines.append(f"  missing: {path}/<wnid>/*.JPEG (ImageNet-1k {folder} images)")
    if lines:
        lines.append(
            "Get ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from image-net.org and "
            "unpack them into one folder per class (wnid)."
        )
    try:
        load_image_data("cifar100", root)
    except DataFilesMissingError as exc:
        lines.append(str(exc))
    if lines:
        raise DataFilesMissingError(
            f"the ViT zoo of arXiv:2504.10231 pre-trains on ImageNet-1k and fine-tunes on "
            f"CIFAR-100; files are missing under {root}:\n" + "\n".join(lines)
        )
