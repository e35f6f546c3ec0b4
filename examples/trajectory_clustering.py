"""Single-linkage clustering of every checkpoint of a trajectory zoo (the trajectory paper's check).

All checkpoints of all models (every split) are clustered in weight space with single-linkage
agglomerative clustering, cut at as many clusters as there are models. Reported, as in Tables
2-3 of the trajectory paper:

- purity: the share of checkpoints that belong to their cluster's dominant model;
- ordered initial epochs: per cluster, how many checkpoints from epoch 0 on are recovered in
  order (mean over clusters);
- ordered epochs: the share of consecutive pairs in the recovered order that are consecutive
  epochs ``e -> e + 1`` (the zoos store a checkpoint after every epoch).

The order is recovered without labels (our reading of "order the samples ... by decreasing
distance"): the two checkpoints furthest apart in a cluster are its ends; the end whose nearest
neighbour is further away is the start (early updates are the largest); the checkpoints are
then sorted by decreasing distance to the other end.

Usage::

    weightzoo generate trajectory-digits-cnn --models 30 --epochs 20 --out zoos/traj-cnn
    python examples/trajectory_clustering.py zoos/traj-cnn [--svd 10]
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import cdist

from weightzoo import Trajectories


def recover_order(points: np.ndarray) -> np.ndarray:
    """Indices of ``points`` (one trajectory's checkpoints) in their recovered training order."""
    if len(points) < 3:
        return np.arange(len(points))
    dist = cdist(points, points)
    a, b = np.unravel_index(np.argmax(dist), dist.shape)
    nearest = np.where(np.eye(len(points), dtype=bool), np.inf, dist).min(1)
    start, end = (a, b) if nearest[a] >= nearest[b] else (b, a)
    order = np.argsort(-dist[end], kind="stable")
    # the start is the furthest point from the end by construction; keep it first on ties
    return np.concatenate([[start], order[order != start]])


def main() -> None:
    """Parse the arguments, run, print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo", help="a trajectory zoo directory")
    parser.add_argument("--svd", type=int, help="cluster in the top-k SVD subspace instead")
    args = parser.parse_args()

    data = Trajectories(args.zoo, split="all", filter_viable=False)
    batch = data.batch(np.arange(len(data)))
    weights = batch["weights"].numpy().astype(np.float64)  # [models, checkpoints, params]
    epochs = batch["epoch"].numpy()[0]
    models, checkpoints, params = weights.shape
    points = weights.reshape(models * checkpoints, params)
    owner = np.repeat(np.arange(models), checkpoints)
    epoch_of = np.tile(epochs, models)
    space = f"full weight space ({params})"
    if args.svd:
        centred = points - points.mean(0)
        u, s, _ = np.linalg.svd(centred, full_matrices=False)
        points = u[:, : args.svd] * s[: args.svd]
        space = f"SVD {args.svd}"

    labels = fcluster(linkage(points, method="single"), t=models, criterion="maxclust")
    dominant_total = 0
    initial, ordered_pairs, pairs = [], 0, 0
    for cluster in np.unique(labels):
        members = np.flatnonzero(labels == cluster)
        counts = np.bincount(owner[members], minlength=models)
        dominant = int(np.argmax(counts))
        dominant_total += counts[dominant]
        own = members[owner[members] == dominant]
        recovered = epoch_of[own][recover_order(points[own])]
        truth = np.sort(recovered)
        initial.append(int(np.argmax(np.append(recovered != truth, True))))
        ordered_pairs += int((np.diff(recovered) == 1).sum())  # checkpoints are every epoch
        pairs += max(0, len(own) - 1)
    purity = dominant_total / len(points)
    print(
        f"{args.zoo}: {models} models x {checkpoints} checkpoints, {space}; "
        f"{len(np.unique(labels))} clusters"
    )
    print(f"cluster purity:         {purity:.3f}")
    print(f"ordered initial epochs: {np.mean(initial):.1f} of {checkpoints} (mean per cluster)")
    print(f"ordered epochs:         {ordered_pairs / max(1, pairs):.3f} of consecutive pairs")


if __name__ == "__main__":
    main()
