"""MLDS Table 1 as a learning curve: classifier accuracy against networks per machine.

Takes one MLDS zoo generated with many networks per machine (``--per-class``) and scores the
paper's Table 1 classifiers (scikit-learn defaults, stratified 5-fold cross-validation) on the
first ``n`` networks of every machine (``replicate < n``) for each ``n`` of ``--sizes``, on the
flattened final weights (the paper's features) and on the per-layer statistics s(w). Beside the
accuracies it prints two facts about the weight space itself: the accuracy of a 1-nearest-
neighbour classifier, and the median distance between two networks of one machine over that
between networks of two machines (1.0: networks of one machine lie no closer together).

The paper, *MLDS: A Dataset for Weight-Space Analysis of Neural Networks* (John Clemens, 2021,
arXiv:2104.10555), fits its classifiers on 1,000 networks per machine; its values are printed
in the last row.

Usage::

    weightzoo generate mlds-ds1 --per-class 200 --out zoos/mlds-ds1-200
    python examples/mlds_learning_curve.py zoos/mlds-ds1-200 --sizes 16,40,100,200 \
        --plot learning-curve.png
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import pairwise_distances
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from weightzoo import Zoo
from weightzoo.analysis.data import arrays, class_column
from weightzoo.analysis.mlds import (
    FOLDS,
    PAPER_TABLE1,
    SEED,
    TABLE1_CLASSIFIERS,
    cv_accuracies,
    subset_of,
)
from weightzoo.errors import InvalidOptionError

FEATURES = {"weights": "flattened weights", "stats": "s(w)"}


def nearest_neighbour_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    """Cross-validated accuracy (%) of a 1-nearest-neighbour classifier (Euclidean)."""
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=SEED)
    return 100.0 * float(cross_val_score(KNeighborsClassifier(1), x, y, cv=folds).mean())


def distance_ratio(x: np.ndarray, y: np.ndarray) -> float:
    """Median distance within a class over the median distance across classes."""
    distances = pairwise_distances(x)
    same = y[:, None] == y[None, :]
    np.fill_diagonal(same, False)
    across = y[:, None] != y[None, :]
    return float(np.median(distances[same]) / np.median(distances[across]))


def curve(zoo: Zoo, sizes: list[int]) -> list[dict]:
    """One row per (size, feature): classifier accuracies and the weight-space facts."""
    label = class_column(zoo)
    if label is None:
        raise InvalidOptionError(f"{zoo.path} is not an MLDS zoo: it has no machine column")
    data = arrays(zoo, split="all", features=tuple(FEATURES), targets=(label, "replicate"))
    largest = int(data["replicate"].max()) + 1
    rows = []
    for size in sizes:
        if size > largest:
            raise InvalidOptionError(
                f"--sizes {size}: {zoo.path} holds at most {largest} networks per machine; "
                f"generate it with --per-class {size} or drop that size"
            )
        chosen = data["replicate"] < size
        labels = data[label][chosen]
        for feature in FEATURES:
            x = data[feature][chosen]
            started = time.perf_counter()
            row = {"per machine": size, "networks": int(chosen.sum()), "features": feature}
            row |= cv_accuracies(TABLE1_CLASSIFIERS, x, labels, FOLDS)
            row["1-NN"] = nearest_neighbour_accuracy(x, labels)
            row["within/across"] = distance_ratio(x, labels)
            row["seconds"] = time.perf_counter() - started
            rows.append(row)
    return rows


def markdown(rows: list[dict], paper: dict[str, float] | None) -> str:
    """The rows as a markdown table, the paper's Table 1 row last."""
    names = list(TABLE1_CLASSIFIERS)
    head = ["per machine", "networks", "features", *names, "1-NN", "within/across"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row["per machine"]), str(row["networks"]), FEATURES[row["features"]]]
        cells += [f"{row[name]:.1f}" for name in names]
        cells += [f"{row['1-NN']:.1f}", f"{row['within/across']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if paper is not None:
        cells = ["1000 (paper)", str(5 * 1000), FEATURES["weights"]]
        cells += [f"{paper[name]:.0f}" for name in names] + ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], paper: dict[str, float] | None, path: str) -> None:
    """Accuracy against networks per machine, one colour per classifier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for colour, name in zip(colours, [*TABLE1_CLASSIFIERS, "1-NN"], strict=False):
        for feature, style in (("weights", "-"), ("stats", "--")):
            chosen = [row for row in rows if row["features"] == feature]
            sizes = [row["per machine"] for row in chosen]
            values = [row[name] for row in chosen]
            label = f"{name}, {FEATURES[feature]}"
            ax.plot(sizes, values, style, marker="o", color=colour, label=label)
        if paper is not None and name in paper:
            ax.plot([1000], [paper[name]], marker="*", markersize=12, color=colour)
    ax.set_xscale("log")
    ticks = sorted({r["per machine"] for r in rows} | ({1000} if paper else set()))
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("networks per machine (stars: the paper's 1,000)")
    ax.set_ylabel("accuracy % (5-fold CV)")
    ax.set_ylim(0, 102)
    ax.axhline(20, color="grey", linewidth=0.8, linestyle=":")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    """Print the learning curve (and save its plot with --plot)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo", help="an MLDS zoo directory (mlds-ds1 or mlds-ds2)")
    parser.add_argument("--sizes", default="16,40,100,200", help="networks per machine, e.g. 16,40")
    parser.add_argument("--plot", help="save the curve as this image (png, svg, ...)")
    args = parser.parse_args()
    try:
        sizes = sorted({int(text) for text in args.sizes.split(",")})
    except ValueError:
        parser.error(f"--sizes {args.sizes!r}: give comma-separated whole numbers, e.g. 16,40")
    zoo = Zoo(args.zoo)
    paper = PAPER_TABLE1.get(subset_of(zoo) or "", (None, None))[1]
    rows = curve(zoo, sizes)
    print(f"{zoo.name} at {zoo.path} (spec fingerprint {zoo.manifest.spec_fingerprint[:12]})")
    print(markdown(rows, paper))
    if args.plot:
        plot(rows, paper, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
