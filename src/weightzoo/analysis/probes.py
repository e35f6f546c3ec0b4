"""Model Zoos: linear probes from weights w and per-layer statistics s(w) to model properties.

Reproduces Table 3 of *Model Zoos: A Dataset of Diverse Populations of Neural Network Models*
(Schürholt, Taskiran, Knyazev, Giró-i-Nieto, Borth; NeurIPS 2022 Datasets and Benchmarks;
arXiv:2209.14764): R^2 of linear regressions to a checkpoint's test accuracy, generalization
gap and epoch, and accuracy of linear classifiers for the initialisation method and the
activation function, from the flattened weights w and from s(w), the zoo's stored per-layer
statistics (``modelzoo`` preset). Every checkpoint of every model is one sample; the ridge
penalty is chosen on the zoo's ``val`` split, probes are refitted on ``train`` + ``val`` and
scored on its ``test`` split, whose models they never see.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.linalg import LinAlgWarning
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from weightzoo.analysis.data import arrays, zoo_label
from weightzoo.analysis.tables import Row, Skipped, Table, UnsupportedTableError
from weightzoo.errors import WeightzooError
from weightzoo.storage.manifest import SPLITS
from weightzoo.zoo import Zoo

SOURCE = (
    "Schürholt, Taskiran, Knyazev, Giró-i-Nieto, Borth, Model Zoos: A Dataset of Diverse "
    "Populations of Neural Network Models (arXiv:2209.14764)"
)
SEED = 0
ALPHAS = np.logspace(-3, 5, 9)
FEATURES = {"w": "weights", "s(w)": "stats"}
REGRESSION = {"Accuracy": "test_acc", "GGap": "ggap", "Epoch": "epoch"}
CLASSIFICATION = {"Init": "init", "Act": "activation"}
COLUMNS = [f"{t} {f}" for t in [*REGRESSION, *CLASSIFICATION] for f in FEATURES]
# Flattened weights of larger models are omitted, as the paper does for ResNet-18.
MAX_WEIGHT_PARAMS = 100_000
# At most this many checkpoints per split enter a probe (a seeded subsample beyond it).
MAX_ROWS = 60_000

# The paper's published values (%), Table 3, in COLUMNS order. "-" is n/a or "-" in the
# paper (Init/Act of Seed zoos, w of ResNet-18); "?" is a value whose digits are ambiguous in
# the text we read (a lost decimal point where both readings are plausible). Both read as None.
_PAPER_TEXT = """
mnist         cnn-s    seed          92.3  98.7   2.1  68.8  87.2  97.8     -     -     -     -
mnist         cnn-s    hyp-10-rand  -11.2  69.4 -49.8  13.7 -95.5  14.3  42.6  77.6  45.5  78.5
mnist         cnn-s    hyp-10-fix    66.5  70.1     ?  12.5  -4.8  14.5  94.3  79.8  81.2  76.8
fashion-mnist cnn-s    seed          87.5  97.2  20.9  60.5  89.1  97.1     -     -     -     -
fashion-mnist cnn-s    hyp-10-rand    8.7  76.9 -47.5  13.7 -70.1  18.9  48.4  81.5  47.9  79.6
fashion-mnist cnn-s    hyp-10-fix    62.4  75.6     ?  12.6  -2.0  17.0  95.4  81.6  84.6  71.7
svhn          cnn-s    seed          91.0  98.6 -42.8  65.9  66.9  92.5     -     -     -     -
svhn          cnn-s    hyp-10-rand   -8.6  90.3 -55.3  27.6 -30.5  11.1  38.2  58.5  55.7  72.3
svhn          cnn-s    hyp-10-fix    64.2  89.9  17.5  27.4  -0.1  11.1  67.3  58.2  76.1  73.6
usps          cnn-s    seed          92.5  98.7  44.3  71.8  86.0  98.4     -     -     -     -
usps          cnn-s    hyp-10-rand  -11.5  70.3 -35.2  13.6 -75.7  21.3  49.2  88.8  43.7  66.2
usps          cnn-s    hyp-10-fix    73.2  70.8  10.8  14.7  18.9  23.0  96.3  88.1  74.5  72.7
cifar10       cnn-s    seed          75.3  96.0  27.0  90.2  68.6  91.1     -     -     -     -
cifar10       cnn-s    hyp-10-rand   50.1  88.0   4.3  40.5  -2.7  34.2  34.0  50.5  71.5  80.9
cifar10       cnn-s    hyp-10-fix    67.0  87.9  38.2  42.9  27.0  31.8  72.0  52.2  75.6  80.0
cifar10       cnn-m    seed          83.6  98.2  33.4  92.9  86.5  95.7     -     -     -     -
cifar10       cnn-m    hyp-10-rand   32.6  90.5  -0.9     ? -10.5  35.5  41.6  51.6  69.1  83.1
cifar10       cnn-m    hyp-10-fix    64.5  91.4  30.4  40.7  29.8  35.3  74.5  54.9  71.7  86.0
stl10         cnn-s    seed          17.8  91.2   2.0  30.2  45.3  95.0     -     -     -     -
stl10         cnn-s    hyp-10-rand   -8.7     ? -44.0   9.3 -68.8  19.1  41.3  93.9  46.3  66.8
stl10         cnn-s    hyp-10-fix    76.1  76.5   6.7  10.7  21.2  22.4  98.1  91.3  78.1  62.6
stl10         cnn-m    seed             ?  94.2   2.8  37.3   5.6  98.7     -     -     -     -
stl10         cnn-m    hyp-10-rand  -79.6  74.1     ?  10.7     ?  18.8  43.8  90.4  49.4  68.3
stl10         cnn-m    hyp-10-fix    84.1  71.7  10.4  11.7  14.6  19.1  97.8  92.8  78.8  68.0
cifar10       resnet18 seed             -  96.8     -  76.7     -  99.6     -     -     -     -
cifar100      resnet18 seed             -  97.4     -  95.4     -  99.9     -     -     -     -
tiny-imagenet resnet18 seed             -  96.1     -  87.5     -  99.9     -     -     -     -
"""
_PAPER_NAMES = {
    "mnist": "MNIST", "fashion-mnist": "F-MNIST", "svhn": "SVHN", "usps": "USPS",
    "cifar10": "CIFAR10", "stl10": "STL", "cifar100": "CIFAR100", "tiny-imagenet": "t-ImageNet",
    "cnn-s": "CNN (s)", "cnn-m": "CNN (l)", "resnet18": "ResNet-18",
    "seed": "Seed", "hyp-10-rand": "Hyp-10-r", "hyp-10-fix": "Hyp-10-f",
}  # fmt: skip


def _parse_paper(text: str) -> dict[tuple[str, str, str], dict[str, float | None]]:
    table = {}
    for line in text.strip().splitlines():
        dataset, arch, config, *values = line.split()
        numbers = [None if v in ("-", "?") else float(v) for v in values]
        table[(dataset, arch, config)] = dict(zip(COLUMNS, numbers, strict=True))
    return table


PAPER_TABLE3 = _parse_paper(_PAPER_TEXT)


def paper_row(zoo: Zoo) -> tuple[str | None, dict[str, float | None] | None]:
    """The paper's Table 3 row for this zoo's dataset, architecture and configuration.

    A zoo on a data set the paper did not use (scikit-learn's digits) is compared with the
    paper's MNIST row of the same architecture and configuration, labelled as such.
    """
    spec = zoo.manifest.spec
    key = (spec.get("dataset"), spec.get("architecture"), spec.get("config"))
    label = None
    if key not in PAPER_TABLE3:
        nearest = ("mnist", key[1], key[2])
        if nearest not in PAPER_TABLE3:
            return None, None
        label = f"(nearest: the paper has no {key[0]} zoo)"
        key = nearest
    name = " ".join(_PAPER_NAMES[k] for k in key)
    return (name if label is None else f"{name} {label}"), PAPER_TABLE3[key]


def _load(zoo: Zoo, split: str, features: list[str], targets: list[str]) -> dict[str, np.ndarray]:
    try:
        data = arrays(zoo, split=split, epochs="all", features=features, targets=targets)
    except WeightzooError as exc:
        raise UnsupportedTableError(f"cannot read {zoo.path}: {exc}") from exc
    n = len(data["epoch"])
    if n > MAX_ROWS:
        keep = np.sort(np.random.default_rng(SEED).choice(n, MAX_ROWS, replace=False))
        data = {k: v[keep] for k, v in data.items()}
    return data


def alpha_splits(is_val: np.ndarray, groups: np.ndarray) -> list | None:
    """Where the ridge penalty is chosen: the val split, else 5 folds grouped by model.

    Checkpoints of one model are near copies, so they never fall on both sides of a split
    (leave-one-out over checkpoints would reward memorising models).
    """
    if is_val.any() and (~is_val).any():
        return [(np.flatnonzero(~is_val), np.flatnonzero(is_val))]
    models = len(np.unique(groups))
    if models < 2:
        return None
    return list(GroupKFold(n_splits=min(5, models)).split(groups, groups=groups))


def _regression_r2(fit: dict[str, np.ndarray], test: dict[str, np.ndarray], x: str, y: str):
    keep = np.isfinite(fit[y])
    test_keep = np.isfinite(test[y])
    target = fit[y][keep]
    if (
        target.size < 2
        or np.ptp(target) == 0
        or test_keep.sum() < 2
        or np.ptp(test[y][test_keep]) == 0
    ):
        return None  # a constant target has no R^2
    splits = alpha_splits(fit["is_val"][keep], fit["model"][keep])
    probe = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS, cv=splits))
    with warnings.catch_warnings():
        # The smallest penalties meet near-singular systems when features outnumber samples;
        # the val split then rejects them.
        warnings.simplefilter("ignore", LinAlgWarning)
        warnings.filterwarnings("ignore", "Singular matrix", UserWarning)
        probe.fit(fit[x][keep], target)
    return 100.0 * float(r2_score(test[y][test_keep], probe.predict(test[x][test_keep])))


def _classification_accuracy(fit: dict[str, np.ndarray], test: dict[str, np.ndarray], x, y):
    if len(np.unique(fit[y])) < 2:
        return None
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(fit[x], fit[y])
    return 100.0 * float(probe.score(test[x], test[y]))


def table3_row(zoo: Zoo) -> tuple[Row, list[str]]:
    """One row of Table 3 for ``zoo``, and notes on what was left out.

    Raises:
        UnsupportedTableError: no ``test_acc`` metric, or an empty train or test split.
    """
    metrics = zoo.manifest.metrics
    if "test_acc" not in metrics:
        raise UnsupportedTableError(
            f"{zoo.path} has no test_acc metric: Table 3 probes image classifiers' accuracy"
        )
    targets = [m for m in ("test_acc", "ggap", "train_acc") if m in metrics]
    targets += [c for c in CLASSIFICATION.values() if c in zoo.manifest.columns]
    notes = []
    features = dict(FEATURES)
    if zoo.layout.num_params > MAX_WEIGHT_PARAMS:
        features.pop("w")
        notes.append(
            f"{zoo.name}: w left out ({zoo.layout.num_params:,} parameters), as the paper does "
            "for ResNet-18"
        )
    for name in ("train", "test"):
        if not zoo.manifest.splits().get(name):
            raise UnsupportedTableError(
                f"{zoo.path} has no {name} split; Table 3 fits probes on train and scores "
                "them on test (generate more models)"
            )
    parts = {
        name: _load(zoo, name, list(features.values()), targets)
        if zoo.manifest.splits().get(name)
        else None
        for name in SPLITS
    }
    for name in ("train", "test"):
        if len(parts[name]["epoch"]) == 0:
            raise UnsupportedTableError(
                f"no viable model in the {name} split of {zoo.path}; Table 3 fits probes on "
                "train and scores them on test (generate more models)"
            )
    for part in parts.values():
        if part is None:
            continue
        if "ggap" not in part and "train_acc" in part:
            part["ggap"] = part["train_acc"] - part["test_acc"]
        part["epoch"] = part["epoch"].astype(np.float64)
    train, val, test = parts["train"], parts["val"], parts["test"]
    fit = train if val is None else {k: np.concatenate([train[k], val[k]]) for k in train}
    fit["is_val"] = np.arange(len(fit["epoch"])) >= len(train["epoch"])
    ours: dict[str, Any] = dict.fromkeys(COLUMNS)
    for short, feature in features.items():
        for title, target in REGRESSION.items():
            if target in fit:
                ours[f"{title} {short}"] = _regression_r2(fit, test, feature, target)
        for title, column in CLASSIFICATION.items():
            if column in fit:
                ours[f"{title} {short}"] = _classification_accuracy(fit, test, feature, column)
    counts = [
        (len(np.unique(p["model"])), len(p["epoch"])) if p is not None else (0, 0)
        for p in (train, val, test)
    ]
    notes.append(
        f"{zoo.name}: train / val / test models "
        + " / ".join(str(c[0]) for c in counts)
        + ", checkpoints "
        + " / ".join(str(c[1]) for c in counts)
    )
    label, paper = paper_row(zoo)
    return Row(zoo_label(zoo), ours, paper, label), notes


def table3(zoos: Sequence[Zoo]) -> tuple[Table | None, list[Skipped]]:
    """Table 3 over one or more zoos (a row each; see :func:`table3_row`), and the skipped."""
    table = Table(
        id="modelzoo.table3",
        title="Model Zoos Table 3: linear probes from weights w and statistics s(w)",
        source=f"{SOURCE}, Table 3",
        unit="R^2 % (Accuracy, GGap, Epoch) and accuracy % (Init, Act) on the test split",
        columns=list(COLUMNS),
        notes=[
            "every checkpoint is a sample; standardised ridge regression with the penalty "
            "(1e-3..1e5) chosen on the val split, then refitted on train+val, and standardised "
            "logistic regression (C=1) fitted on train+val; scored on the test split; '-' where "
            "the zoo holds one value (Seed zoos: one init and activation) or the target is "
            "missing",
        ],
    )
    skipped = []
    for zoo in zoos:
        try:
            row, notes = table3_row(zoo)
        except UnsupportedTableError as exc:
            skipped.append(Skipped(table.id, zoo_label(zoo), str(exc)))
            continue
        table.rows.append(row)
        table.notes.extend(notes)
    return (table if table.rows else None), skipped
