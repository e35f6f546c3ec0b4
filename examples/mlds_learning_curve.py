"""MLDS Table 1 as a learning curve: classifier accuracy against networks per machine.

Takes one MLDS zoo generated with many networks per machine (``--per-class``) and scores the
paper's Table 1 classifiers (scikit-learn defaults, stratified 5-fold cross-validation) on the
first ``n`` networks of every machine (``replicate < n``) for each ``n`` of ``--sizes``, on the
flattened final weights (the paper's features) and on the per-layer statistics s(w). Beside the
accuracies it prints two facts about the weight space itself: the accuracy of a 1-nearest-
neighbour classifier, and the median distance between two networks of one machine over that
between networks of two machines (1.0: networks of one machine lie no closer together).

With ``--table2 OTHER`` (a DS2 zoo beside a DS1 zoo, or the reverse) it scores the paper's
Table 2 instead: per machine, clean against backdoored networks, the first ``n`` of each kind,
by stratified 5-fold cross-validation over the ``2n`` networks (the paper fits 800 and tests
200 per kind; at a few dozen networks a single test split would hold a handful).

The paper, *MLDS: A Dataset for Weight-Space Analysis of Neural Networks* (John Clemens, 2021,
arXiv:2104.10555), fits its classifiers on 1,000 networks per machine; its values are printed
in the last row.

Usage::

    weightzoo generate mlds-ds1 --per-class 200 --out zoos/mlds-ds1-200
    python examples/mlds_learning_curve.py zoos/mlds-ds1-200 --sizes 16,40,100,200 \
        --plot learning-curve.png
    python examples/mlds_learning_curve.py zoos/mlds-ds1-200 --table2 zoos/mlds-ds2-40 \
        --sizes 16,40
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
    PAPER_TABLE2,
    SEED,
    TABLE1_CLASSIFIERS,
    TABLE2_CLASSIFIERS,
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


def _final_weights(zoo: Zoo, feature: str) -> dict[str, np.ndarray]:
    label = class_column(zoo)
    if label is None:
        raise InvalidOptionError(f"{zoo.path} is not an MLDS zoo: it has no machine column")
    data = arrays(zoo, split="all", features=(feature,), targets=(label, "replicate"))
    return {"x": data[feature], "machine": data[label], "replicate": data["replicate"]}


def table2_curve(clean: Zoo, backdoor: Zoo, sizes: list[int], feature: str) -> list[dict]:
    """Table 2 per machine and size: clean (label 0) against backdoored (label 1) networks."""
    kinds = [_final_weights(clean, feature), _final_weights(backdoor, feature)]
    machines = [m for m in PAPER_TABLE2 if all(m in set(kind["machine"]) for kind in kinds)]
    rows = []
    for size in sizes:
        for machine in machines:
            xs, ys = [], []
            for flag, kind in enumerate(kinds):
                chosen = (kind["machine"] == machine) & (kind["replicate"] < size)
                if int(chosen.sum()) < size:
                    zoo = (clean, backdoor)[flag]
                    raise InvalidOptionError(
                        f"--sizes {size}: {zoo.path} holds {int(chosen.sum())} {machine} "
                        f"networks; generate it with --per-class {size} or drop that size"
                    )
                xs.append(kind["x"][chosen])
                ys.append(np.full(int(chosen.sum()), flag))
            row = {"per machine": size, "machine": machine, "features": feature}
            row |= cv_accuracies(TABLE2_CLASSIFIERS, np.concatenate(xs), np.concatenate(ys), FOLDS)
            rows.append(row)
    return rows


def table2_markdown(rows: list[dict]) -> str:
    """Table 2 rows as a markdown table, each machine's paper row after its last size."""
    names = list(TABLE2_CLASSIFIERS)
    head = ["machine", "per kind", "features", *names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for machine in dict.fromkeys(row["machine"] for row in rows):
        for row in (r for r in rows if r["machine"] == machine):
            cells = [machine, str(row["per machine"]), FEATURES[row["features"]]]
            lines.append("| " + " | ".join(cells + [f"{row[n]:.1f}" for n in names]) + " |")
        paper = PAPER_TABLE2[machine]
        cells = [machine, "1000 (paper)", FEATURES["weights"]]
        lines.append("| " + " | ".join(cells + [f"{paper[n]:.0f}" for n in names]) + " |")
    return "\n".join(lines)


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
    parser.add_argument(
        "--table2",
        metavar="OTHER",
        help="score Table 2 (clean vs backdoored per machine) against this DS2 (or DS1) zoo",
    )
    args = parser.parse_args()
    try:
        sizes = sorted({int(text) for text in args.sizes.split(",")})
    except ValueError:
        parser.error(f"--sizes {args.sizes!r}: give comma-separated whole numbers, e.g. 16,40")
    zoo = Zoo(args.zoo)
    if args.table2:
        other = Zoo(args.table2)
        clean, backdoor = (zoo, other) if subset_of(zoo) != "ds2" else (other, zoo)
        print(f"clean {clean.path}, backdoored {backdoor.path}")
        for feature in FEATURES:
            print(table2_markdown(table2_curve(clean, backdoor, sizes, feature)))
        return
    paper = PAPER_TABLE1.get(subset_of(zoo) or "", (None, None))[1]
    rows = curve(zoo, sizes)
    print(f"{zoo.name} at {zoo.path} (spec fingerprint {zoo.manifest.spec_fingerprint[:12]})")
    print(markdown(rows, paper))
    if args.plot:
        plot(rows, paper, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
