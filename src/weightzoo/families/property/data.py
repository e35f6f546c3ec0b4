"""The data of property-inference zoos: labelled pools with a binary property per item.

A property-inference zoo trains many models per *ratio* ``r``: each model's training subset is
drawn so that a share ``r`` of its items has the property. Victim and adversary models draw
from two disjoint pools; every model is measured on one shared test set. The setting is that of
Suri & Evans, *Formalizing and Estimating Distribution Inference Risks* (arXiv:2109.06024), and
of Hartmann et al., *Distribution inference risks: identifying and mitigating sources of
leakage* (arXiv:2209.08541).

Two data sets, both offline and deterministic by seed:

- ``"synthetic"``: Gaussian features and a binary property feature ``a`` (the last input
  column). Items with the property have their Gaussian features shifted by ``+shift`` along a
  fixed direction, and the label is a probit of a fixed linear function of the features and the
  property, so the property changes both ``P(x)`` and ``P(y)``, while ``E[y | x, a]`` is the same
  in every pool and at every ratio;
- ``"digits"``: scikit-learn's 8x8 digits (1,797 images, 64 pixels scaled to ``[0, 1]``, ten
  classes); the property is "the digit is even".

Pure numpy (scikit-learn for the digits); no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from weightzoo.errors import InvalidOptionError

__all__ = [
    "DATASETS",
    "POOLS",
    "Pool",
    "PropertyData",
    "load_property_data",
    "synthetic_items",
    "training_subset",
]

DATASETS = ("synthetic", "digits")
"""The data sets a property spec can name (see the module docs)."""
POOLS = ("victim", "adversary")
"""The two disjoint pools, victim and adversary, in :attr:`PropertyData.pools` order."""
SYNTHETIC_SHIFT = 1.0
SYNTHETIC_NOISE = 0.5
SYNTHETIC_PROPERTY_WEIGHT = 1.5


@dataclass(frozen=True)
class Pool:
    """Items of one pool (or the test set).

    Attributes:
        x: float32 inputs ``[N, features]``.
        y: int64 labels ``[N]``.
        prop: bool ``[N]``: whether the item has the property.
        index: int64 ``[N]``: each item's position in the whole data set, to check that
            pools are disjoint.
    """

    x: np.ndarray
    y: np.ndarray
    prop: np.ndarray
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class PropertyData:
    """The victim and adversary pools and the shared test set of one data set."""

    pools: dict[str, Pool]
    test: Pool
    features: int
    classes: int


def synthetic_items(
    count: int, features: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` synthetic items: inputs ``[count, features]``, labels and property flags.

    The first ``features - 1`` columns are standard normal, shifted by :data:`SYNTHETIC_SHIFT`
    along a fixed unit direction for items with the property; the last column is the property
    flag (0 or 1), drawn with probability 1/2. The label is
    ``1[w . z + SYNTHETIC_PROPERTY_WEIGHT * (a - 1/2) + SYNTHETIC_NOISE * e > 0]`` with a fixed
    unit ``w`` and standard normal ``e`` (a probit of a linear function). ``w`` and the shift
    direction come from ``seed`` too, so one seed fixes the whole distribution.
    """
    if features < 2:
        raise InvalidOptionError(f"synthetic data needs at least 2 features, got {features}")
    rng = np.random.default_rng(seed)
    dims = features - 1
    teacher = rng.standard_normal(dims)
    teacher /= np.linalg.norm(teacher)
    direction = rng.standard_normal(dims)
    direction /= np.linalg.norm(direction)
    prop = rng.random(count) < 0.5
    z = rng.standard_normal((count, dims)) + SYNTHETIC_SHIFT * prop[:, None] * direction
    logit = z @ teacher + SYNTHETIC_PROPERTY_WEIGHT * (prop - 0.5)
    y = (logit + SYNTHETIC_NOISE * rng.standard_normal(count) > 0).astype(np.int64)
    x = np.concatenate([z, prop[:, None]], axis=1).astype(np.float32)
    return x, y, prop


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: offline

    bunch = load_digits()
    return (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64)


@lru_cache(maxsize=8)
def load_property_data(
    dataset: str, data_seed: int, pool_size: int, test_size: int, features: int = 8
) -> PropertyData:
    """The two disjoint pools and the test set of ``dataset``, split by ``data_seed``.

    The items are permuted by ``numpy.random.default_rng(data_seed)``; the first ``test_size``
    form the test set, the next ``pool_size`` the victim pool and the next ``pool_size`` the
    adversary pool. Cached per process.

    Args:
        dataset: ``"synthetic"`` or ``"digits"``.
        data_seed: seed of the synthetic draw and of the split.
        pool_size: items per pool.
        test_size: items of the test set.
        features: synthetic inputs (ignored for digits, which have 64).

    Raises:
        InvalidOptionError: an unknown data set, or pools larger than the data.
    """
    if dataset == "synthetic":
        total = test_size + 2 * pool_size
        x, y, prop = synthetic_items(total, features, data_seed)
        classes = 2
    elif dataset == "digits":
        x, y = _digits()
        prop = y % 2 == 0
        classes = 10
    else:
        raise InvalidOptionError(f"unknown property data set {dataset!r}; known: {DATASETS}")
    needed = test_size + 2 * pool_size
    if needed > len(y):
        raise InvalidOptionError(
            f"{dataset} has {len(y)} items, fewer than the test set ({test_size}) and two pools "
            f"of {pool_size} need ({needed}); lower pool_size or test_size"
        )
    order = np.random.default_rng([data_seed, 1]).permutation(len(y))

    def pool(index: np.ndarray) -> Pool:
        index = np.sort(index)
        return Pool(x[index], y[index], prop[index], index.astype(np.int64))

    test = pool(order[:test_size])
    victim = pool(order[test_size : test_size + pool_size])
    adversary = pool(order[test_size + pool_size : needed])
    pools = dict(zip(POOLS, (victim, adversary), strict=True))
    return PropertyData(pools, test, int(x.shape[1]), classes)


def training_subset(pool: Pool, ratio: float, size: int, seed: int) -> np.ndarray:
    """Positions (into ``pool``) of a training subset whose property share is ``ratio``.

    ``round(ratio * size)`` items are drawn without replacement from the pool's items with the
    property and the rest from those without, by ``numpy.random.default_rng([seed, 2])``; the
    positions come back shuffled.

    Raises:
        InvalidOptionError: if the pool has too few items of either kind.
    """
    with_prop = round(ratio * size)
    yes, no = np.flatnonzero(pool.prop), np.flatnonzero(~pool.prop)
    if with_prop > len(yes) or size - with_prop > len(no):
        raise InvalidOptionError(
            f"a subset of {size} items at ratio {ratio} needs {with_prop} items with the property "
            f"and {size - with_prop} without; the pool has {len(yes)} and {len(no)}: lower "
            "train_size or raise pool_size"
        )
    rng = np.random.default_rng([seed, 2])
    chosen = np.concatenate(
        [rng.choice(yes, with_prop, replace=False), rng.choice(no, size - with_prop, replace=False)]
    )
    return rng.permutation(chosen).astype(np.int64)
