"""Pareto extraction: the subsets that no other subset beats on both cost and loss."""
from __future__ import annotations

import numpy as np

REL_TOL = 1e-9  # losses summed in another order differ in the last bits: closer losses are ties


def pareto_front(cost: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Indices of the Pareto-optimal points, sorted by cost (then loss).

    A point is kept when its loss is below every loss at a strictly smaller cost by more than REL_TOL
    (relative), and within REL_TOL of the best loss at its own cost. So a costlier subset whose loss is
    lower only by rounding (the same per-text minima summed in another order) is not a frontier point,
    and exact or rounding-level duplicates at one cost are all kept. O(n log n): sort by (cost, loss)
    and compare each point with the best loss of the cheaper ones.
    """
    cost = np.asarray(cost, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    if len(cost) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((loss, cost))
    c, l = cost[order], loss[order]
    group_start = np.r_[True, c[1:] != c[:-1]]
    group_id = np.cumsum(group_start) - 1
    group_best = np.minimum.reduceat(l, np.flatnonzero(group_start))
    best_before = np.r_[np.inf, np.minimum.accumulate(group_best)[:-1]]  # among strictly smaller costs
    with np.errstate(invalid="ignore"):  # inf - inf for the cheapest group, which always has a first point
        beats_cheaper = np.where(np.isfinite(best_before), best_before - REL_TOL * np.abs(best_before), np.inf)
    best = group_best[group_id]
    keep = (l <= best + REL_TOL * np.abs(best)) & (l < beats_cheaper[group_id])
    return order[keep]
