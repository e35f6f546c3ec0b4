"""Groups of spec fields that several families declare with one meaning, declared once.

Each group is a frozen dataclass that a spec mixes in before
:class:`~weightzoo.generate.base.ZooSpec` (``class MySpec(GridOptions, ImageSplitFields,
ZooSpec)``): its fields come right after the base spec's, and a spec that needs another default
for one of them declares that field again (it keeps its place). Specs are compared and
fingerprinted by their fields' names and values, never by their order.

Like the ``spec.py`` modules that use it, this module imports neither torch nor the generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ImageSplitFields", "LandscapeFields"]


@dataclass(frozen=True)
class ImageSplitFields:
    """The fields of an image-classification spec that fix its data and its splits.

    They are what :func:`weightzoo.imagesets.splits.load_splits` reads (through
    :func:`weightzoo.families.modelzoo.data.device_splits` when a zoo trains, and
    :class:`weightzoo.functional.ImageEvalTask` when it is measured), and what the network's
    input and output sizes follow.

    Attributes:
        dataset: name for :func:`weightzoo.imagesets.readers.load_image_data`.
        image_size: side the images are resized to.
        in_channels: image channels the network takes (1 = greyscale).
        num_classes: classes of the dataset.
        loss: ``"ce"`` (cross-entropy) or ``"mse"`` (on one-hot targets).
        val_fraction: share of the official training set held out as the validation split.
        data_seed: seed of that hold-out.
        data_dir: where the image files are; not part of the spec's identity (excluded from
            ``to_dict``, the fingerprint and equality), given at generate time.
    """

    dataset: str = "digits"
    image_size: int = 28
    in_channels: int = 1
    num_classes: int = 10
    loss: str = "ce"
    val_fraction: float = 0.15
    data_seed: int = 42
    data_dir: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class LandscapeFields:
    """How much work the ``landscape`` side file of a phase-transition zoo spends per model.

    The metrics are those of :mod:`weightzoo.landscape`; a family adds the fields its own
    measurement needs besides these.

    Attributes:
        landscape_probes: Hutchinson probes of ``hessian_trace``.
        landscape_steps: training steps of each mode-connectivity curve.
    """

    landscape_probes: int = 20
    landscape_steps: int = 100
