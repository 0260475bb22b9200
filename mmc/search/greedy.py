"""Greedy subset growth with lazy evaluation (CELF), swept over budgets.

The oracle loss is a facility-location objective: the gain of adding model j to S is
sum_x max(m_S(x) - C_j(x), 0), where m_S is S's per-text minimum (the worst model's loss for the
empty set). Gains only shrink as S grows (submodularity), so a stale gain is an upper bound and
only the top of the priority queue needs recomputing (CELF). Two rules: cost-benefit (gain per
parameter) and unit cost (gain per model); for each budget the model that would overflow it is
skipped. Every prefix of every chain is a candidate, as is every single model (the classic
guarantee for budgeted greedy takes the better of greedy and the best single); the frontier keeps
the better one per budget. Other combiners (mixtures, routers) are not submodular: their gains
can grow, so each step recomputes every gain instead.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from mmc.ensemble.combiners import Combiner, take
from mmc.search.config import SearchConfig
from mmc.search.result import SearchResult


@dataclass
class GreedySearch(SearchConfig):
    strategy: str = "greedy"


def greedy_search(combiner: Combiner, params: np.ndarray, models: np.ndarray, cfg: SearchConfig) -> SearchResult:
    m = len(params)
    max_k = min(cfg.max_k or m, m)
    params = params.astype(np.float64)
    rules = {"cost_benefit": params, "unit_cost": np.ones(m)}
    chains = [greedy_chain(combiner, params, unit, np.inf, max_k) for unit in rules.values()]
    budgets = np.unique(np.concatenate([params] + [np.cumsum(params[c]) for c, _ in chains]))
    chains += [greedy_chain(combiner, params, unit, b, max_k) for unit in rules.values() for b in budgets]

    members, losses = [np.eye(m, dtype=bool)], [combiner.single_losses]  # every single model
    for chain, prefix_loss in chains:
        prefixes = np.zeros((len(chain), m), dtype=bool)
        prefixes[:, chain] = np.tri(len(chain), dtype=bool)  # row i: the first i + 1 models
        members.append(prefixes)
        losses.append(prefix_loss)
    prefixes, loss = np.concatenate(members), np.concatenate(losses)
    prefixes, first = np.unique(prefixes, axis=0, return_index=True)
    return SearchResult.from_candidates("greedy", models, prefixes, prefixes @ params, loss[first],
                                        stats={"n_chains": len(chains), "n_budgets": len(budgets)})


def greedy_chain(combiner: Combiner, params: np.ndarray, unit: np.ndarray, budget: float, max_k: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Models in the order greedy adds them (best gain per `unit`, within `budget`, at most max_k),
    and the loss of each prefix. The empty subset's loss is the combiner's baseline."""
    singles = combiner.singles()
    current, current_loss = None, combiner.baseline()

    def gains(index: np.ndarray) -> np.ndarray:
        grown = take(singles, index) if current is None else combiner.merge(current, take(singles, index))
        return current_loss - combiner.loss(grown)

    affordable = np.flatnonzero(params <= budget)
    queue = [(-g / unit[j], j, 0) for j, g in zip(affordable, gains(affordable))]
    heapq.heapify(queue)
    chain, prefix_loss, spent = [], [], 0.0
    while queue and len(chain) < max_k:
        if not combiner.submodular and queue[0][2] < len(chain):  # stale gains bound nothing: refresh them all
            index = np.array([j for _, j, _ in queue])
            queue = [(-g / unit[j], j, len(chain)) for j, g in zip(index, gains(index))]
            heapq.heapify(queue)
        neg_ratio, j, stamp = heapq.heappop(queue)
        if spent + params[j] > budget:
            continue  # spending only grows: j never fits again
        if stamp < len(chain):  # a stale gain, an upper bound when gains only shrink: recompute and requeue
            heapq.heappush(queue, (-gains(np.array([j]))[0] / unit[j], j, len(chain)))
            continue
        if neg_ratio >= 0:
            break  # no model lowers the loss any more
        chain.append(j)
        spent += params[j]
        single = take(singles, slice(j, j + 1))
        current = single if current is None else combiner.merge(current, single)
        current_loss = float(combiner.loss(current)[0])
        prefix_loss.append(current_loss)
    return np.array(chain, dtype=np.int64), np.array(prefix_loss)
