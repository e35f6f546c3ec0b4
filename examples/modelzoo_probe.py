r"""Linear probes from weights w and statistics s(w): the Model Zoos paper's Table 3, small.

Ridge regressions to each checkpoint's test accuracy, generalization gap and epoch (R^2), and
logistic regressions to the initialisation and activation where the zoo varies them: the ridge
penalty is chosen on the zoo's val split, each probe is fitted on train+val and scored on its
test split; the paper's row beside ours.

Usage::

    weightzoo generate modelzoo-digits-cnn-s-hyp-10-rand --models 96 --train-epochs 10 \
        --out zoos/hyp
    python examples/modelzoo_probe.py zoos/hyp
"""

from __future__ import annotations

import argparse

from weightzoo import Zoo
from weightzoo.analysis import probes


def main() -> None:
    """Parse the arguments, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoos", nargs="+", help="Model Zoos (or trajectory) zoo directories")
    args = parser.parse_args()
    table, skipped = probes.table3([Zoo(path) for path in args.zoos])
    if table is not None:
        print(table.to_text())
    for line in skipped:
        print(line.line())


if __name__ == "__main__":
    main()
