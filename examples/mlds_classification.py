"""Classify MLDS networks from their weights: the MLDS paper's Tables 1 and 2, small.

1. Which machine a network mimics (DS1, DS2): four scikit-learn classifiers with default
   hyperparameters, fitted on the train+val splits and scored on the test split.
2. Clean (DS1) vs backdoored (DS2) networks of each machine, six classifiers, the same way.

The paper's numbers are printed beside ours. `weightzoo report zoos/mlds-ds1 zoos/mlds-ds2`
prints the same tables plus the training quality of both zoos.

Usage::

    weightzoo generate mlds-ds1 --out zoos/mlds-ds1
    weightzoo generate mlds-ds2 --out zoos/mlds-ds2
    python examples/mlds_classification.py zoos/mlds-ds1 zoos/mlds-ds2 [--features stats]
    python examples/mlds_classification.py zoos    # a directory holding mlds-ds1 and mlds-ds2
"""

from __future__ import annotations

import argparse

from weightzoo import Zoo
from weightzoo.analysis import UnsupportedTableError, mlds
from weightzoo.datasets import resolve_zoo_dir


def main() -> None:
    """Print Tables 1 and 2."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ds1", help="an MLDS DS1 zoo, or a directory holding mlds-ds1 and -ds2")
    parser.add_argument("ds2", nargs="?", help="the matching DS2 (backdoor) zoo directory")
    parser.add_argument(
        "--features",
        default="weights",
        choices=["weights", "stats"],
        help="flattened weights (the paper's) or the stored per-layer statistics s(w)",
    )
    args = parser.parse_args()
    if args.ds2 is None:
        paths = [resolve_zoo_dir(args.ds1, name) for name in ("mlds-ds1", "mlds-ds2")]
    else:
        paths = [args.ds1, args.ds2]
    zoos = [Zoo(path) for path in paths]
    table, skipped = mlds.table1(zoos, feature=args.features)
    if table is not None:
        print(table.to_text(), end="\n\n")
    for line in skipped:
        print(line.line())
    try:
        print(mlds.table2(*zoos, feature=args.features).to_text())
    except UnsupportedTableError as exc:
        print(f"skipped Table 2: {exc}")


if __name__ == "__main__":
    main()
