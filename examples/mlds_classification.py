"""Classify MLDS networks from their flattened weights (the paper's Tables 1 and 2, small).

1. 5-class machine classification on DS1 (and DS2): fit on the train+val splits, score on the
   test split; also 5-fold cross-validated accuracy over all networks (steadier on small zoos).
2. Clean (DS1) vs backdoor (DS2) detection per machine, the same two ways.

Classifiers: standardised logistic regression and 1-nearest-neighbour (scikit-learn).

Usage::

    weightzoo generate mlds-ds1 --out zoos/mlds-ds1
    weightzoo generate mlds-ds2 --out zoos/mlds-ds2
    python examples/mlds_classification.py zoos [--features weights|stats]
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import weightzoo
from weightzoo.generate.mlds.machines import MACHINES

CLASSIFIERS = {
    "logreg": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
    "1-nn": lambda: make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=1)),
}


FEATURE = "weights"  # set from --features in main()


def arrays(dataset, target: str) -> tuple[np.ndarray, np.ndarray]:
    """Features (final weights or their per-layer statistics) and labels of every item."""
    items = [dataset[i] for i in range(len(dataset))]
    return (
        np.stack([item[FEATURE].numpy().ravel() for item in items]),
        np.asarray([int(item[target]) for item in items]),
    )


def scores(fit: tuple, test: tuple, every: tuple) -> dict[str, str]:
    """Test-split accuracy and 5-fold CV accuracy of each classifier."""
    out = {}
    folds = min(5, int(np.bincount(every[1]).min()))
    for name, make in CLASSIFIERS.items():
        test_acc = make().fit(*fit).score(*test)
        cv = StratifiedKFold(folds, shuffle=True, random_state=0)
        cv_acc = cross_val_score(make(), *every, cv=cv).mean()
        out[name] = f"test {test_acc:6.1%} (n={len(test[1])}), {folds}-fold CV {cv_acc:6.1%}"
    return out


def split_sets(make_dataset, target: str):
    """(train+val, test, all) arrays of a dataset factory taking the split name."""
    fit = [arrays(make_dataset(s), target) for s in ("train", "val")]
    fit = (np.concatenate([f[0] for f in fit]), np.concatenate([f[1] for f in fit]))
    test = arrays(make_dataset("test"), target)
    every = (np.concatenate([fit[0], test[0]]), np.concatenate([fit[1], test[1]]))
    return fit, test, every


def main() -> None:
    """Print the classification tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="directory holding mlds-ds1 and mlds-ds2")
    parser.add_argument(
        "--features",
        default="weights",
        choices=["weights", "stats"],
        help="flattened weights, or the stored per-layer statistics s(w)",
    )
    args = parser.parse_args()
    global FEATURE
    FEATURE = args.features
    kwargs = {"filter_viable": False, "features": args.features}
    for subset in ("ds1", "ds2"):
        try:
            sets = split_sets(
                lambda s, subset=subset: weightzoo.MLDS(
                    args.root, subset=subset, split=s, **kwargs
                ),
                "machine",
            )
        except FileNotFoundError as exc:
            print(f"skipping {subset}: {exc}")
            continue
        print(f"machine classification, {subset} ({len(sets[2][1])} networks, 5 classes):")
        for name, text in scores(*sets).items():
            print(f"  {name:>6}: {text}")
    print("clean (DS1) vs backdoor (DS2) detection per machine:")
    for machine in MACHINES:
        try:
            sets = split_sets(
                lambda s, machine=machine: weightzoo.MLDSBackdoor(
                    args.root, machine=machine, split=s, **kwargs
                ),
                "backdoor",
            )
        except FileNotFoundError as exc:
            print(f"skipping backdoor detection: {exc}")
            return
        for name, text in scores(*sets).items():
            print(f"  {machine:>20} {name:>6}: {text}")


if __name__ == "__main__":
    main()
