"""How far a strategy's frontier falls short of the exact one."""
from __future__ import annotations

import numpy as np

from mmc.pareto import REL_TOL
from mmc.search.result import SearchResult


def compare_to_exact(result: SearchResult, exact: SearchResult) -> dict:
    """Exact frontier points that `result` missed, and by how much.

    An exact point (P, L) is missed when no point of `result` costs <= P with loss <= L; its gap is
    the best loss `result` reaches within budget P minus L (inf where it reaches nothing).
    """
    order = np.argsort(result.frontier_params, kind="stable")
    cost, best = result.frontier_params[order], np.minimum.accumulate(result.frontier_loss[order])
    at = np.searchsorted(cost, exact.frontier_params, side="right") - 1
    reached = np.where(at >= 0, best[np.maximum(at, 0)], np.inf)
    gap = reached - exact.frontier_loss
    missed = gap > REL_TOL * np.abs(exact.frontier_loss)
    return {
        "exact_points": int(exact.n_frontier),
        "missed_points": int(missed.sum()),
        "max_missed_gap": float(gap[missed].max()) if missed.any() else 0.0,
        "mean_missed_gap": float(gap[missed].mean()) if missed.any() else 0.0,
    }
