"""A seeded, stratified sample of a grid of models (``--models N``).

A grid position is one model: its hyperparameters (the axes) and its seed. Positions with the
same axes are the seeds of one grid node. :func:`stratified_positions` first covers every value
of every axis with as few nodes as it can (a greedy set cover), then spreads the remaining
models over the nodes in a seeded order, taking a second seed of a node only once every node
has one.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

SAMPLES = ("first", "stratified")
"""Values of a grid spec's ``sample``: the first N positions, or :func:`stratified_positions`."""

Pair = tuple[str, Hashable]


def _nodes(axes: Sequence[Mapping[str, Hashable]]) -> list[list[int]]:
    """The grid's nodes in order of first appearance, each its positions in grid order."""
    index: dict[frozenset[Pair], int] = {}
    nodes: list[list[int]] = []
    for position, values in enumerate(axes):
        key = frozenset(values.items())
        if key not in index:
            index[key] = len(nodes)
            nodes.append([])
        nodes[index[key]].append(position)
    return nodes


def _greedy_cover(pairs: list[frozenset[Pair]], rank: list[int], limit: int) -> list[int]:
    """Nodes that each add the most missing (axis, value) pairs, ties by ``rank``."""
    missing = set().union(*pairs)
    chosen: list[int] = []
    left = set(range(len(pairs)))
    while missing and len(chosen) < limit:
        best = max(left, key=lambda node: (len(pairs[node] & missing), -rank[node]))
        chosen.append(best)
        left.discard(best)
        missing -= pairs[best]
    return chosen


def stratified_positions(axes: Sequence[Mapping[str, Hashable]], n: int, seed: int) -> list[int]:
    """``n`` grid positions that hold every value of every axis where ``n`` allows.

    First, greedily, the nodes that add the most (axis, value) pairs not yet present (ties
    broken by a permutation seeded by ``seed``), until every value is present or ``n`` nodes are
    taken; then the other nodes in the permutation's order; then second seeds of the nodes in
    that order, and so on. Each node gives its seeds in grid order.

    For a full Cartesian grid, ``n >= `` the longest axis covers every value; for any grid,
    ``n >= `` the number of (axis, value) pairs minus the number of axes plus one does (every
    greedy step adds a pair, the first adds one per axis).

    Args:
        axes: per grid position (in grid order), its hyperparameter values ``{axis: value}``;
            positions with equal values are seeds of one node.
        n: positions to choose, at most ``len(axes)``.
        seed: seed of the tie-breaking and filling order.

    Returns:
        ``n`` distinct positions, in grid order.

    Raises:
        ValueError: if ``n`` is not in ``1 .. len(axes)``.
    """
    if not 1 <= n <= len(axes):
        raise ValueError(f"a sample of {n} models needs 1 .. {len(axes)} (the grid's models)")
    nodes = _nodes(axes)
    order = [int(i) for i in np.random.default_rng(seed).permutation(len(nodes))]
    rank = [0] * len(nodes)
    for position, node in enumerate(order):
        rank[node] = position
    pairs = [frozenset(axes[positions[0]].items()) for positions in nodes]
    first = _greedy_cover(pairs, rank, n)
    taken = set(first)
    node_order = first + [node for node in order if node not in taken]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n:  # one seed of every node, then a second, ...
        chosen += [nodes[node][depth] for node in node_order if depth < len(nodes[node])]
        depth += 1
    return sorted(chosen[:n])
