"""Single-linkage clustering of a trajectory zoo's checkpoints (the trajectory paper's Tables 2-3).

All checkpoints of all models are clustered in weight space, cut at as many clusters as there
are models, in the full space and after a truncated SVD; reported per space: cluster purity,
ordered initial epochs and the share of ordered epochs, with the paper's values beside ours.
See docs/analysis.md for how the order is recovered.

Usage::

    weightzoo generate trajectory-digits-cnn --models 30 --train-epochs 20 --out zoos/traj-cnn
    python examples/trajectory_clustering.py zoos/traj-cnn [--svd 50 10 5]
"""

from __future__ import annotations

import argparse

from weightzoo import Zoo
from weightzoo.analysis import trajectories


def main() -> None:
    """Parse the arguments, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo", help="a trajectory zoo directory")
    parser.add_argument(
        "--svd",
        type=int,
        nargs="*",
        default=list(trajectories.SVD_DIMS),
        help="SVD sizes to cluster in besides the full space (default: the paper's)",
    )
    args = parser.parse_args()
    print(trajectories.trajectory_table(Zoo(args.zoo), dims=args.svd).to_text())


if __name__ == "__main__":
    main()
