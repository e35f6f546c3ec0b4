"""MLDS: which machine a network mimics, and clean vs backdoored, from its weights.

Reproduces Tables 1 and 2 of *MLDS: A Dataset for Weight-Space Analysis of Neural Networks*
(John Clemens, 2021, arXiv:2104.10555): scikit-learn classifiers with default hyperparameters
on the flattened final weights of each network. Table 2 trains on 800 and validates on 200
networks per class: here the zoo's ``train`` + ``val`` splits fit and its ``test`` split scores.
Table 1 names no split: here it is stratified 5-fold cross-validation over every network
(shuffled with a fixed seed), which also steadies the estimate on small zoos.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.ensemble import AdaBoostClassifier, RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.naive_bayes import GaussianNB
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from weightzoo.analysis.data import FIT_SPLITS, arrays, class_column, zoo_label
from weightzoo.analysis.tables import Row, Skipped, Table, UnsupportedTableError
from weightzoo.errors import WeightzooError
from weightzoo.zoo import Zoo

SOURCE = "Clemens, MLDS: A Dataset for Weight-Space Analysis of Neural Networks (arXiv:2104.10555)"
SEED = 0
FOLDS = 5

Factory = Callable[[], Any]

TABLE1_CLASSIFIERS: dict[str, Factory] = {
    "DecisionTree": lambda: DecisionTreeClassifier(random_state=SEED),
    "MLP": lambda: MLPClassifier(random_state=SEED),
    "RandForest": lambda: RandomForestClassifier(random_state=SEED),
    "NaiveBayes": GaussianNB,
}
TABLE2_CLASSIFIERS: dict[str, Factory] = {
    "SVM": SVC,
    "DecisionTree": lambda: DecisionTreeClassifier(random_state=SEED),
    "RandomForest": lambda: RandomForestClassifier(random_state=SEED),
    "MLP": lambda: MLPClassifier(random_state=SEED),
    "AdaBoost": lambda: AdaBoostClassifier(random_state=SEED),
    "NaiveBayes": GaussianNB,
}

# The paper's published accuracies (%), Table 1: one row per data set, 1,000 networks per class.
PAPER_TABLE1: dict[str, tuple[str, dict[str, float]]] = {
    "ds1": (
        "MLDS-DS1-1000",
        {"classes": 5, "DecisionTree": 87, "MLP": 100, "RandForest": 100, "NaiveBayes": 99},
    ),
    "ds2": (
        "MLDS-DS2-1000",
        {"classes": 5, "DecisionTree": 88, "MLP": 99, "RandForest": 99, "NaiveBayes": 97},
    ),
    "ds3": (
        "MLDS-DS3-1000",
        {"classes": 100, "DecisionTree": 3, "MLP": 46, "RandForest": 5, "NaiveBayes": 23},
    ),
}
# The paper's published accuracies (%), Table 2: DS1 vs DS2 networks of one machine, one
# column per classifier of TABLE2_CLASSIFIERS, in its order.
_TABLE2_ROWS = {
    "EightBitMachine": (87, 78, 96, 91, 94, 99),
    "SingleDirectMachine": (96, 81, 95, 96, 99, 100),
    "SingleInvertMachine": (52, 49, 52, 53, 48, 55),
    "SimpleXORMachine": (86, 85, 91, 85, 94, 99),
    "ParityMachine": (63, 55, 71, 66, 69, 61),
}
PAPER_TABLE2: dict[str, dict[str, float]] = {
    machine: dict(zip(TABLE2_CLASSIFIERS, accuracy, strict=True))
    for machine, accuracy in _TABLE2_ROWS.items()
}


def accuracies(
    classifiers: dict[str, Factory],
    fit: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
) -> dict[str, float]:
    """Test accuracy (%) of each classifier fitted on ``fit``; deterministic (fixed seeds)."""
    out = {}
    with warnings.catch_warnings():
        # Defaults on purpose (as in the paper): an MLP that stops at max_iter is still scored.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name, make in classifiers.items():
            out[name] = 100.0 * float(make().fit(*fit).score(*test))
    return out


def subset_of(zoo: Zoo) -> str | None:
    """``ds1``, ``ds2`` or ``ds3`` from the zoo's spec (or name), else ``None``."""
    subset = zoo.manifest.spec.get("subset")
    if subset in PAPER_TABLE1:
        return str(subset)
    return next((s for s in PAPER_TABLE1 if f"-{s}" in zoo.name), None)


def _split_arrays(zoo: Zoo, label: str, feature: str) -> tuple[dict, dict]:
    present = zoo.manifest.splits()
    if not present.get("test"):
        raise UnsupportedTableError(
            f"no network in the test split of {zoo.path}; generate more networks "
            "(--per-class) so that the 70/15/15 split has a test part"
        )
    if not any(present.get(s) for s in FIT_SPLITS):
        raise UnsupportedTableError(f"no network in the train or val split of {zoo.path}")
    try:
        fit = arrays(zoo, split=FIT_SPLITS, features=(feature,), targets=(label,))
        test = arrays(zoo, split="test", features=(feature,), targets=(label,))
    except WeightzooError as exc:
        raise UnsupportedTableError(f"cannot read {zoo.path}: {exc}") from exc
    return fit, test


def cv_accuracies(
    classifiers: dict[str, Factory], x: np.ndarray, y: np.ndarray, folds: int
) -> dict[str, float]:
    """Mean stratified ``folds``-fold cross-validated accuracy (%) of each classifier."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name, make in classifiers.items():
            out[name] = 100.0 * float(cross_val_score(make(), x, y, cv=splitter).mean())
    return out


def table1_row(zoo: Zoo, *, feature: str = "weights") -> Row:
    """One row of Table 1: classify ``zoo``'s networks by machine (or automaton).

    Args:
        zoo: an MLDS zoo (a ``machine`` or ``automaton`` column).
        feature: ``"weights"`` (the paper's) or ``"stats"``.

    Raises:
        UnsupportedTableError: no class column, fewer than two classes, or a class with fewer
            than two viable networks (cross-validation needs two).
    """
    label = class_column(zoo)
    if label is None:
        raise UnsupportedTableError(
            f"{zoo.path} has no machine or automaton column: Table 1 classifies MLDS "
            "networks by the machine they mimic"
        )
    try:
        data = arrays(zoo, split="all", features=(feature,), targets=(label,))
    except WeightzooError as exc:
        raise UnsupportedTableError(f"cannot read {zoo.path}: {exc}") from exc
    classes, counts = np.unique(data[label], return_counts=True)
    if len(classes) < 2:
        found = f"only {label} {str(classes[0])!r}" if len(classes) else "no viable network"
        raise UnsupportedTableError(
            f"{found} in {zoo.path}; Table 1 needs networks of at least two classes "
            "(generate more with --per-class / --machines)"
        )
    if counts.min() < 2:
        lonely = ", ".join(str(c) for c in classes[counts < 2])
        raise UnsupportedTableError(
            f"{label} {lonely} of {zoo.path} has fewer than 2 viable networks; "
            "cross-validation needs 2 of every class (generate more with --per-class)"
        )
    folds = int(min(FOLDS, counts.min()))
    ours: dict[str, Any] = {"classes": len(classes), "networks": len(data[label]), "folds": folds}
    ours |= cv_accuracies(TABLE1_CLASSIFIERS, data[feature], data[label], folds)
    paper_label, paper = PAPER_TABLE1.get(subset_of(zoo) or "", (None, None))
    return Row(zoo_label(zoo), ours, paper, paper_label)


def table1(zoos: Sequence[Zoo], *, feature: str = "weights") -> tuple[Table | None, list[Skipped]]:
    """Table 1 over one or more MLDS zoos (one row each), and the zoos that were skipped."""
    table = Table(
        id="mlds.table1",
        title="MLDS Table 1: which machine a network mimics, from its flattened final weights",
        source=f"{SOURCE}, Table 1",
        unit="accuracy %, mean of stratified k-fold cross-validation over every network",
        columns=["classes", "networks", "folds", *TABLE1_CLASSIFIERS],
        notes=[
            "scikit-learn defaults (random_state=0); features: "
            + ("flattened weights" if feature == "weights" else "per-layer statistics s(w)"),
            "the paper's networks: 1,000 per class; 'networks' and 'folds' are ours",
        ],
    )
    skipped = []
    for zoo in zoos:
        try:
            table.rows.append(table1_row(zoo, feature=feature))
        except UnsupportedTableError as exc:
            skipped.append(Skipped(table.id, zoo_label(zoo), str(exc)))
    return (table if table.rows else None), skipped


def _clean_and_backdoor(first: Zoo, second: Zoo) -> tuple[Zoo, Zoo]:
    flags = {}
    for zoo in (first, second):
        missing = [c for c in ("machine", "backdoor") if c not in zoo.manifest.columns]
        if missing:
            raise UnsupportedTableError(
                f"{zoo.path} has no {' or '.join(missing)} column: Table 2 compares MLDS DS1 "
                "(clean) and DS2 (backdoor) networks of the same machines"
            )
        values = set(np.unique(zoo.reader(epochs="last").column("backdoor")).tolist())
        if len(values) != 1:
            raise UnsupportedTableError(
                f"{zoo.path} mixes clean and backdoored networks; pass a DS1 and a DS2 zoo"
            )
        flags[id(zoo)] = int(values.pop())
    if flags[id(first)] == flags[id(second)]:
        kind = "backdoored" if flags[id(first)] else "clean"
        raise UnsupportedTableError(
            f"both zoos hold {kind} networks; Table 2 needs one DS1 (clean) and one DS2 "
            "(backdoor) zoo"
        )
    if first.layout.num_params != second.layout.num_params:
        raise UnsupportedTableError(
            f"{first.path} and {second.path} have different architectures "
            f"({first.layout.num_params} vs {second.layout.num_params} parameters)"
        )
    return (second, first) if flags[id(first)] else (first, second)


def table2(first: Zoo, second: Zoo, *, feature: str = "weights") -> Table:
    """Table 2: per machine, tell DS1 (clean) from DS2 (backdoored) networks.

    Args:
        first: a DS1 (clean) or DS2 (backdoor) zoo.
        second: the other one.
        feature: ``"weights"`` (the paper's) or ``"stats"``.

    Raises:
        UnsupportedTableError: if the zoos are not one clean and one backdoored MLDS zoo of the
            same architecture, or share no machine.
    """
    clean, backdoor = _clean_and_backdoor(first, second)
    parts = {
        "clean": _split_arrays(clean, "machine", feature),
        "backdoor": _split_arrays(backdoor, "machine", feature),
    }
    machines = [
        m
        for m in clean.manifest.categories.get("machine", [])
        if m in set(backdoor.manifest.categories.get("machine", []))
    ]
    if not machines:
        raise UnsupportedTableError(f"{clean.path} and {backdoor.path} share no machine")
    order = list(PAPER_TABLE2)
    machines.sort(key=lambda m: (order.index(m) if m in order else len(order), m))
    table = Table(
        id="mlds.table2",
        title="MLDS Table 2: clean (DS1) vs backdoored (DS2) networks of each machine",
        source=f"{SOURCE}, Table 2",
        unit="accuracy on the test split, % (fit on train+val; chance 50)",
        columns=["fit", "test", *TABLE2_CLASSIFIERS],
        notes=[
            f"clean: {zoo_label(clean)}; backdoored: {zoo_label(backdoor)}; scikit-learn "
            "defaults (random_state=0) on "
            + ("flattened weights" if feature == "weights" else "per-layer statistics s(w)"),
            "the paper: 1,000 networks of each kind per machine, 800 to train, 200 to test",
        ],
    )
    for machine in machines:
        sets = []
        for split in (0, 1):
            xs, ys = [], []
            for kind, flag in (("clean", 0), ("backdoor", 1)):
                part = parts[kind][split]
                keep = part["machine"] == machine
                xs.append(part[feature][keep])
                ys.append(np.full(int(keep.sum()), flag))
            sets.append((np.concatenate(xs), np.concatenate(ys)))
        (fit_x, fit_y), (test_x, test_y) = sets
        ours: dict[str, Any] = {"fit": len(fit_y), "test": len(test_y)}
        if len(np.unique(fit_y)) < 2 or len(test_y) == 0:
            table.notes.append(
                f"{machine}: needs clean and backdoored networks in train+val and at least one "
                f"in test (has {len(fit_y)} / {len(test_y)}); not scored"
            )
            ours |= dict.fromkeys(TABLE2_CLASSIFIERS)
        else:
            ours |= accuracies(TABLE2_CLASSIFIERS, (fit_x, fit_y), (test_x, test_y))
        paper = PAPER_TABLE2.get(machine)
        table.rows.append(Row(machine, ours, paper, machine if paper else None))
    return table
