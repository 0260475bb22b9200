"""Pareto extraction: the subsets that no other subset beats on both cost and loss."""
from __future__ import annotations

import numpy as np


def pareto_front(cost: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Indices of the Pareto-optimal points, sorted by cost (then loss).

    A point is dominated when another has cost <= and loss <= with one strict; exact duplicates
    do not dominate each other, so both are kept. O(n log n): sort by (cost, loss) and keep each
    point whose loss is below every loss seen at a strictly smaller cost, or ties the best one at
    its own cost.
    """
    cost = np.asarray(cost, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    if len(cost) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((loss, cost))
    c, l = cost[order], loss[order]
    # best loss among all points with strictly smaller cost
    group_start = np.r_[True, c[1:] != c[:-1]]
    group_id = np.cumsum(group_start) - 1
    group_best = np.minimum.reduceat(l, np.flatnonzero(group_start))
    best_before = np.r_[np.inf, np.minimum.accumulate(group_best)[:-1]]
    keep = (l == group_best[group_id]) & (l < best_before[group_id])
    return order[keep]
