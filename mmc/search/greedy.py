"""Greedy subset growth with lazy evaluation (CELF), swept over budgets.

The oracle loss is a facility-location objective: the gain of adding model j to S is
sum_x max(m_S(x) - C_j(x), 0), where m_S is S's per-text minimum (the worst model's loss for the
empty set). Gains only shrink as S grows (submodularity), so a stale gain is an upper bound and
only the top of the priority queue needs recomputing (CELF). Two rules: cost-benefit (gain per
parameter) and unit cost (gain per model); for each budget the model that would overflow it is
skipped. Every prefix of every chain is a candidate, as is every single model (the classic
guarantee for budgeted greedy takes the better of greedy and the best single); the frontier keeps
the better one per budget.
"""
from __future__ import annotations

import heapq

import numpy as np

from mmc.search.result import SearchResult


def greedy_search(weighted: np.ndarray, params: np.ndarray, models: np.ndarray, max_k: int | None = None
                  ) -> SearchResult:
    m = len(weighted)
    max_k = min(max_k or m, m)
    params = params.astype(np.float64)
    rules = {"cost_benefit": params, "unit_cost": np.ones(m)}
    chains = [greedy_chain(weighted, params, unit, np.inf, max_k) for unit in rules.values()]
    budgets = np.unique(np.concatenate([params] + [np.cumsum(params[c]) for c, _ in chains]))
    chains += [greedy_chain(weighted, params, unit, b, max_k) for unit in rules.values() for b in budgets]

    members, losses = [np.eye(m, dtype=bool)], [weighted.sum(axis=1)]  # every single model
    for chain, prefix_loss in chains:
        prefixes = np.zeros((len(chain), m), dtype=bool)
        prefixes[:, chain] = np.tri(len(chain), dtype=bool)  # row i: the first i + 1 models
        members.append(prefixes)
        losses.append(prefix_loss)
    prefixes, loss = np.concatenate(members), np.concatenate(losses)
    prefixes, first = np.unique(prefixes, axis=0, return_index=True)
    return SearchResult.from_candidates("greedy", models, prefixes, prefixes @ params, loss[first],
                                        stats={"n_chains": len(chains), "n_budgets": len(budgets)})


def greedy_chain(weighted: np.ndarray, params: np.ndarray, unit: np.ndarray, budget: float, max_k: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Models in the order greedy adds them (best gain per `unit`, within `budget`, at most max_k),
    and the loss of each prefix."""
    current = weighted.max(axis=0)
    gains = np.maximum(current - weighted, 0).sum(axis=1)
    queue = [(-g / u, j, 0) for j, (g, u) in enumerate(zip(gains, unit)) if params[j] <= budget]
    heapq.heapify(queue)
    chain, prefix_loss, spent = [], [], 0.0
    while queue and len(chain) < max_k:
        neg_ratio, j, stamp = heapq.heappop(queue)
        if spent + params[j] > budget:
            continue  # spending only grows: j never fits again
        if stamp < len(chain):  # stale upper bound: recompute and requeue
            gain = np.maximum(current - weighted[j], 0).sum()
            heapq.heappush(queue, (-gain / unit[j], j, len(chain)))
            continue
        if neg_ratio >= 0:
            break  # no model lowers the loss any more
        chain.append(j)
        spent += params[j]
        np.minimum(current, weighted[j], out=current)
        prefix_loss.append(current.sum())
    return np.array(chain, dtype=np.int64), np.array(prefix_loss)
