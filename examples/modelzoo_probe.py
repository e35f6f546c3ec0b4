"""Linear probe on the stored per-layer statistics s(w) of a Model Zoos zoo (Table 3 check).

Fits ridge regressions from s(w) (the ``stats`` feature, the ``modelzoo`` preset) to a
checkpoint's test accuracy, epoch and generalization gap on the zoo's ``train`` split (every
checkpoint of every model) and reports R^2 on the ``test`` split, whose models the probe never
saw. The Model Zoos paper reports R^2 >= 0.9 for accuracy on its Seed zoos.

Usage::

    weightzoo generate modelzoo-digits-cnn-s-seed --models 100 --epochs 15 --out zoos/probe
    python examples/modelzoo_probe.py zoos/probe
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from weightzoo import ZooDataset

TARGETS = ("test_acc", "epoch", "ggap")


def split_arrays(zoo: str, split: str, skip_init: bool) -> tuple[np.ndarray, dict]:
    """Stats ``[n, features]`` and the targets of every checkpoint of one split."""
    data = ZooDataset(
        zoo, split=split, epochs="all", features="stats", targets=("test_acc", "ggap", "epoch")
    )
    batch = data.batch(np.arange(len(data)))
    keep = batch["epoch"].numpy() > 0 if skip_init else np.ones(len(data), dtype=bool)
    targets = {t: batch[t].numpy().astype(np.float64)[keep] for t in TARGETS}
    return batch["stats"].numpy().astype(np.float64)[keep], targets


def main() -> None:
    """Parse the arguments, run, print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo", help="a Model Zoos zoo directory (e.g. a generated digits zoo)")
    parser.add_argument(
        "--skip-init", action="store_true", help="leave out the epoch-0 checkpoints"
    )
    args = parser.parse_args()
    train_x, train_y = split_arrays(args.zoo, "train", args.skip_init)
    test_x, test_y = split_arrays(args.zoo, "test", args.skip_init)
    print(
        f"{args.zoo}: {train_x.shape[1]} statistics; train {len(train_x)} checkpoints, "
        f"test {len(test_x)} checkpoints"
    )
    for target in TARGETS:
        probe = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-4, 3, 15)))
        probe.fit(train_x, train_y[target])
        r2 = r2_score(test_y[target], probe.predict(test_x))
        print(f"R^2 {target:9s} (test split): {r2:.3f}")


if __name__ == "__main__":
    main()
