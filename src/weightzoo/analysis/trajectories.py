"""Training trajectories: recover each model's checkpoints, and their order, without labels.

Reproduces Tables 2 and 3 of *An Investigation of the Weight Space to Monitor the Training
Progress of Neural Networks* (Schürholt, Borth; arXiv:2006.10424). Every checkpoint of every
model is a point in weight space; single-linkage agglomerative clustering is cut at as many
clusters as there are models, in the full space and after a truncated SVD to a few dimensions.
Per space:

- **purity**: the share of checkpoints that belong to their cluster's dominant model;
- **ordered initial epochs**: per cluster, how many of the dominant model's checkpoints, from
  its first on, the recovered order puts in place (mean over clusters);
- **ordered epochs**: the share of consecutive pairs in the recovered orders that are
  consecutive checkpoints ``k -> k + 1`` of the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.cluster import AgglomerativeClustering

from weightzoo.analysis.data import arrays, zoo_label
from weightzoo.analysis.tables import Row, Table, UnsupportedTableError
from weightzoo.errors import WeightzooError
from weightzoo.zoo import Zoo

SOURCE = (
    "Schürholt, Borth, An Investigation of the Weight Space to Monitor the Training Progress "
    "of Neural Networks (arXiv:2006.10424)"
)
SVD_DIMS = (500, 100, 50, 25, 10, 5)
COLUMNS = ["purity", "ordered initial epochs", "ordered epochs"]
# Single linkage costs O(points^2 x dims) time (O(points) memory); beyond this, skip.
MAX_POINTS = 15_000

# The paper's published values: Table 2 (MLP zoo, 2,160 weights) and Table 3 (CNN zoo, 1,376),
# 250 models with a checkpoint per epoch; rows keyed by SVD dimension, 0 for the full space.
PAPER_TABLES: dict[str, tuple[str, int, dict[int, tuple[float, float, float]]]] = {
    "mlp": (
        "Table 2 (MLP zoo)",
        2160,
        {
            0: (1.0, 4.512, 0.357),
            500: (1.0, 4.632, 0.339),
            100: (1.0, 4.532, 0.325),
            50: (1.0, 4.212, 0.303),
            25: (1.0, 3.684, 0.273),
            10: (1.0, 2.916, 0.227),
            5: (0.843, 2.038, 0.177),
        },
    ),
    "cnn": (
        "Table 3 (CNN zoo)",
        1376,
        {
            0: (1.0, 20.184, 0.693),
            500: (1.0, 21.848, 0.732),
            100: (1.0, 18.632, 0.689),
            50: (1.0, 17.728, 0.675),
            25: (1.0, 15.852, 0.643),
            10: (0.896, 12.094, 0.568),
            5: (0.465, 8.175, 0.471),
        },
    ),
}


@dataclass(frozen=True)
class ClusterScores:
    """The three scores of one space."""

    purity: float
    ordered_initial: float
    ordered_share: float
    clusters: int


def recover_order(points: np.ndarray) -> np.ndarray:
    """Indices of one trajectory's ``points`` in their recovered training order.

    The paper orders "the samples ... by decreasing distance" without saying from what. Our
    reading: the two points furthest apart are the ends; the end whose nearest neighbour is
    further away is the start (early updates are the largest); the points are then sorted by
    decreasing distance to the other end.
    """
    if len(points) < 3:
        return np.arange(len(points))
    dist = cdist(points, points)
    a, b = np.unravel_index(np.argmax(dist), dist.shape)
    nearest = np.where(np.eye(len(points), dtype=bool), np.inf, dist).min(axis=1)
    start, end = (a, b) if nearest[a] >= nearest[b] else (b, a)
    order = np.argsort(-dist[end], kind="stable")
    # The start is the point furthest from the end by construction; keep it first on ties.
    return np.concatenate([[start], order[order != start]])


def cluster_scores(points: np.ndarray, owner: np.ndarray, step: np.ndarray) -> ClusterScores:
    """Cluster ``points`` into as many clusters as models and score purity and order.

    Args:
        points: ``[n, d]`` checkpoints.
        owner: ``[n]`` model of each checkpoint (0..models-1).
        step: ``[n]`` checkpoint index of each point along its model's trajectory (0, 1, ...).
    """
    models = len(np.unique(owner))
    labels = AgglomerativeClustering(n_clusters=models, linkage="single").fit_predict(points)
    dominant_total, initial, ordered_pairs, pairs = 0, [], 0, 0
    for cluster in np.unique(labels):
        members = np.flatnonzero(labels == cluster)
        counts = np.bincount(owner[members])
        dominant = int(np.argmax(counts))
        dominant_total += int(counts[dominant])
        own = members[owner[members] == dominant]
        recovered = step[own][recover_order(points[own])]
        in_place = np.append(recovered != np.sort(recovered), True)
        initial.append(int(np.argmax(in_place)))
        ordered_pairs += int((np.diff(recovered) == 1).sum())
        pairs += max(0, len(own) - 1)
    return ClusterScores(
        purity=dominant_total / len(points),
        ordered_initial=float(np.mean(initial)),
        ordered_share=ordered_pairs / max(1, pairs),
        clusters=len(np.unique(labels)),
    )


def svd_coordinates(points: np.ndarray) -> np.ndarray:
    """Coordinates of ``points`` on their right singular vectors, largest first (no centring).

    The first ``k`` columns are the truncated SVD to ``k`` dimensions.
    """
    u, s, _ = np.linalg.svd(points, full_matrices=False)
    return u * s


def architecture_of(zoo: Zoo) -> str | None:
    """``mlp`` or ``cnn`` for a trajectory zoo (from its spec or name), else ``None``."""
    arch = zoo.manifest.spec.get("architecture")
    if arch in PAPER_TABLES:
        return str(arch)
    return next((a for a in PAPER_TABLES if zoo.name.endswith(f"-{a}")), None)


def trajectory_table(
    zoo: Zoo, *, dims: Sequence[int] = SVD_DIMS, max_points: int = MAX_POINTS
) -> Table:
    """The paper's Table 2 or 3 for ``zoo``: one row for the full space, one per SVD size.

    Every model of every split is used (the clustering has no labels to fit).

    Raises:
        UnsupportedTableError: fewer than 2 models or 3 checkpoints, or too many points.
    """
    epochs = zoo.epochs
    if len(epochs) < 3:
        raise UnsupportedTableError(
            f"{zoo.path} has {len(epochs)} checkpoints per model; trajectory clustering "
            "needs at least 3"
        )
    points_needed = len(zoo) * len(epochs)
    if points_needed > max_points:
        raise UnsupportedTableError(
            f"{zoo.path} has {len(zoo)} models x {len(epochs)} checkpoints = {points_needed:,} "
            f"points, more than the {max_points:,} that single-linkage clustering is run on; "
            "use weightzoo.analysis.trajectories.trajectory_table(zoo, max_points=...)"
        )
    try:
        data = arrays(zoo, split="all", epochs="all", features=("weights",))
    except WeightzooError as exc:
        raise UnsupportedTableError(f"cannot read {zoo.path}: {exc}") from exc
    _, owner = np.unique(data["model"], return_inverse=True)
    if owner.size == 0 or owner.max() < 1:
        raise UnsupportedTableError(
            f"{zoo.path} has fewer than 2 viable models; clustering needs several trajectories"
        )
    step = np.searchsorted(np.asarray(epochs), data["epoch"])
    points = data["weights"].astype(np.float64)
    arch = architecture_of(zoo)
    paper_name, paper_dims, paper = PAPER_TABLES.get(arch or "", (None, 0, {}))
    table = Table(
        id="trajectories.clustering",
        title=f"Trajectories Tables 2-3: single-linkage clusters of every checkpoint of "
        f"{zoo_label(zoo)}",
        source=f"{SOURCE}, {paper_name or 'Tables 2-3'}",
        unit="purity and ordered-epoch share in [0, 1]; ordered initial epochs as a count",
        columns=list(COLUMNS),
        notes=[
            f"{zoo_label(zoo)}: {owner.max() + 1} models x {len(epochs)} checkpoints, cut at "
            f"{owner.max() + 1} clusters"
            + ("; the paper: 250 models x 51 checkpoints" if paper else ""),
            "SVD: projection on the top right singular vectors of the uncentred checkpoint "
            "matrix; sizes at or above its rank are left out",
        ],
        zoo=zoo_label(zoo),
    )
    rank = min(points.shape)
    if rank <= max(dims, default=0):
        rank = int(np.linalg.matrix_rank(points))
    sizes = [k for k in dims if k < rank]
    coordinates = svd_coordinates(points) if sizes else points
    for k in [0, *sizes]:
        scores = cluster_scores(points if k == 0 else coordinates[:, :k], owner, step)
        values = (scores.purity, scores.ordered_initial, scores.ordered_share)
        reference = paper.get(k)
        table.rows.append(
            Row(
                f"full ({points.shape[1]})" if k == 0 else f"SVD {k}",
                dict(zip(COLUMNS, values, strict=True)),
                None if reference is None else dict(zip(COLUMNS, reference, strict=True)),
                None if reference is None else (f"{k} (SVD)" if k else f"{paper_dims} (weights)"),
            )
        )
    return table
