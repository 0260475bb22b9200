"""The paper's iterative Pareto pruning (Lu et al.): grow subsets one model at a time from Pareto sets.

The paper extends "Pareto-optimal ensembles of size k-1" by one model. Two readings (`prune`):
- global (default): level k extends the frontier subsets of size k-1 found at the last level by every
  model not in them, merges the new subsets with the frontier of all sizes so far and prunes back to
  it; it stops at the first size that adds no frontier point, or at max_k. Few parents, fast.
- per_size: level k extends the Pareto set of the size-(k-1) subsets (Pareto within that size only)
  and keeps the Pareto set of the size-k subsets, up to max_k; the frontier is taken over every kept
  subset at the end. Many more parents, hence more subsets explored and fewer frontier points missed.
Both are heuristics: a frontier subset whose parents were all pruned is never reached (see compare_to_exact).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mmc.ensemble.combiners import Combiner, take
from mmc.pareto import pareto_front
from mmc.progress import bar
from mmc.registry import choices
from mmc.search.config import SearchConfig
from mmc.search.result import SearchResult


PRUNES = ("global", "per_size")


@dataclass
class ParetoPruneSearch(SearchConfig):
    strategy: str = "pareto_prune"
    prune: str = field(default="global", metadata=choices(PRUNES))  # the paper's rule, read globally or per size


def pareto_prune_search(combiner: Combiner, params: np.ndarray, models: np.ndarray, cfg: ParetoPruneSearch
                        ) -> SearchResult:
    m = len(params)
    max_k = min(cfg.max_k or m, m)
    singles = combiner.singles()
    members, cost, loss = np.eye(m, dtype=bool), params.astype(np.float64), combiner.loss(singles)
    explored_params, explored_loss = [cost], [loss]
    front = pareto_front(cost, loss)
    members, cost, loss = members[front], cost[front], loss[front]
    parent_state = take(singles, front)  # states of the frontier subsets of the last size
    parents = np.arange(len(front))  # their rows in members
    kept_per_size = [len(front)]

    for k in bar(range(2, max_k + 1), desc="pareto_prune"):
        child_loss = np.stack([combiner.loss(combiner.merge(take(parent_state, slice(p, p + 1)), singles))
                               for p in range(len(parents))])  # (parents, m)
        parent_id, added = np.nonzero(~members[parents])
        child = members[parents[parent_id]].copy()
        child[np.arange(len(child)), added] = True
        packed = np.packbits(child, axis=1)
        _, first = np.unique(packed.view(f"V{packed.shape[1]}").ravel(), return_index=True)  # one subset, many parents
        child, parent_id, added = child[first], parent_id[first], added[first]
        child_cost = cost[parents[parent_id]] + params[added]
        child_loss = child_loss[parent_id, added]
        explored_params.append(child_cost)
        explored_loss.append(child_loss)

        if cfg.prune == "global":  # the frontier of every size so far; its new points are the next parents
            all_members = np.concatenate([members, child])
            all_cost, all_loss = np.concatenate([cost, child_cost]), np.concatenate([loss, child_loss])
            front = pareto_front(all_cost, all_loss)
            new = front[front >= len(members)] - len(members)
            members, cost, loss = all_members[front], all_cost[front], all_loss[front]
            parents = np.flatnonzero(front >= len(all_members) - len(child))
        else:  # the Pareto set of this size alone, kept beside those of the smaller sizes
            new = pareto_front(child_cost, child_loss)
            parents = len(members) + np.arange(len(new))
            members = np.concatenate([members, child[new]])
            cost, loss = np.concatenate([cost, child_cost[new]]), np.concatenate([loss, child_loss[new]])
        kept_per_size.append(len(new))
        if len(new) == 0:
            break
        parent_state = combiner.merge(take(parent_state, parent_id[new]), take(singles, added[new]))

    return SearchResult.from_candidates(
        "pareto_prune", models, members, cost, loss,
        explored_params=np.concatenate(explored_params), explored_loss=np.concatenate(explored_loss),
        stats={"n_pareto_configs": len(loss), "kept_per_size": kept_per_size},
    )
