"""The exact frontier, fast (strategy `exact`): branch and bound over subsets, seeded with the heuristic frontier.

The same answer as the epsilon-constraint MIP of `milp` (one budgeted p-median per frontier point,
scipy/HiGHS), which spends seconds per point proving what a combinatorial bound proves in
microseconds: 30 models x 1,000 texts take under a second instead of tens of minutes
(docs/benchmarks.md). The bound is strong when models of similar size make similar errors (real
and synthetic pools); on unstructured random losses it weakens, and `time_limit` then stops it
with honest per-point gaps.

Models are sorted by decreasing parameter count; a node is a subset S whose descendants add only
models after its last one (cheaper ones), so every subset is reached once. A descendant of cost c
holds S plus models of the remaining suffix that each fit in c - P(S), so its loss is at least
    LB_S(c) = sum_x min(min_{i in S} C[i, x], min_{j in suffix, P_j <= c - P(S)} C[j, x]),
the oracle of S with every individually affordable remaining model: a suffix minimum over the
cheapest models, tabulated once. The incumbent frontier f (best known loss within cost c, a step
function starting from the pareto_prune and greedy frontiers and improved by every node) is
constant on each interval between its costs, and LB_S is non-increasing, so S's descendants are
pruned when, at the top cost of every interval they reach, LB_S >= f * (1 - mip_rel_gap). Pruned
subsets are never better than a found one: the frontier is exact (up to ties, of which one subset
is kept). Nodes go depth first in batches, so memory stays bounded and f improves early.

On `time_limit` the open nodes' bounds give each frontier point's gap (stats `mip_gaps`; all
zero when the search finishes).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mmc.ensemble.combiners import MinCombiner
from mmc.pareto import pareto_front
from mmc.progress import bar
from mmc.search.config import SolverSearch
from mmc.search.greedy import GreedySearch, greedy_search
from mmc.search.pareto_prune import ParetoPruneSearch, pareto_prune_search
from mmc.search.result import SearchResult

BATCH_BYTES = 64 * 2**20  # memory of one batch's bounds
TIE_TOLERANCE = 1e-12  # relative: losses this close to a known point's are ties, not improvements


@dataclass
class ExactSearch(SolverSearch):
    strategy: str = "exact"


def exact_search(combiner: MinCombiner, params: np.ndarray, models: np.ndarray, cfg: ExactSearch) -> SearchResult:
    weighted, time_limit, mip_rel_gap = combiner.weighted, cfg.time_limit, cfg.mip_rel_gap
    m = len(weighted)
    max_k = min(cfg.max_k or m, m)
    order = np.argsort(-params, kind="stable")
    by_size = weighted[order]  # models by decreasing size
    cost_sorted = params[order].astype(np.float64)
    suffix_min = np.full((m + 1, by_size.shape[1]), np.inf)  # row s: per-text minimum of models s..m-1
    for s in range(m - 1, -1, -1):
        suffix_min[s] = np.minimum(suffix_min[s + 1], by_size[s])
    prune_below = 1 - max(mip_rel_gap, TIE_TOLERANCE)

    known = [greedy_search(combiner, params, models, GreedySearch(max_k=cfg.max_k)),
             pareto_prune_search(combiner, params, models, ParetoPruneSearch(max_k=cfg.max_k))]
    front_members = np.concatenate([r.frontier_members[:, order] for r in known])  # in sorted model order
    front_cost = np.concatenate([r.frontier_params for r in known])
    front_loss = np.concatenate([r.frontier_loss for r in known])

    front = (front_members, front_cost, front_loss)
    batch = max(1, BATCH_BYTES // (8 * (m + 1) * by_size.shape[1]))  # bounds are (nodes, m + 1, texts)
    stack = [(np.eye(m, dtype=bool), by_size.copy(), np.arange(m))]  # batches of (members, per-text min, last model)
    n_nodes, deadline = 0, time.perf_counter() + time_limit
    progress = bar(desc="exact nodes")
    while stack and time.perf_counter() < deadline:
        members, row_min, last = stack.pop()
        cost = members @ cost_sorted
        front = absorb(front, members, cost, row_min.sum(axis=1))
        lower = descendant_bounds(row_min, cost, last, suffix_min, cost_sorted, front[1])
        open_ = np.flatnonzero((lower < front[2] * prune_below).any(axis=1) & (members.sum(axis=1) < max_k))
        for node in np.array_split(open_, -(-len(open_) * (m - 1) // batch)) if len(open_) else []:  # ~batch children
            parent, child = np.nonzero(np.arange(m) > last[node, None])  # every later (cheaper) model
            grown = members[node[parent]]
            grown[np.arange(len(child)), child] = True
            stack.append((grown, np.minimum(row_min[node[parent]], by_size[child]), child))
        n_nodes += len(members)
        progress.update(len(members))
    progress.close()

    for members, row_min, _ in stack:  # unexplored after the time limit: their own points first
        front = absorb(front, members, members @ cost_sorted, row_min.sum(axis=1))
    gaps = np.zeros(len(front[2]))
    for members, row_min, last in stack:
        lower = descendant_bounds(row_min, members @ cost_sorted, last, suffix_min, cost_sorted, front[1])
        gaps = np.maximum(gaps, 1 - lower.min(axis=0) / front[2])
    front_members, front_cost, front_loss = front
    return SearchResult.from_candidates(
        "exact", models, front_members[:, np.argsort(order)], front_cost, front_loss,
        stats={"mip_gaps": gaps.tolist(), "max_mip_gap": float(gaps.max()), "n_nodes": n_nodes,
               "n_open_nodes": sum(len(b[0]) for b in stack),
               "proven_optimal": float(gaps.max()) <= mip_rel_gap},
    )


def absorb(front, members, cost, loss):
    """The incumbent frontier (members, cost, loss; sorted by cost, one subset per cost) with new points."""
    members, cost, loss = (np.concatenate([a, b]) for a, b in zip(front, (members, cost, loss)))
    keep = pareto_front(cost, loss)
    keep = keep[np.unique(cost[keep], return_index=True)[1]]  # exact ties: one subset is enough
    return members[keep], cost[keep], loss[keep]


def descendant_bounds(row_min, cost, last, suffix_min, cost_sorted, front_cost) -> np.ndarray:
    """(nodes, frontier points): a lower bound on the loss of every descendant of each node (S plus
    later models) whose cost is below the next frontier point's; +inf where no descendant has such a cost."""
    m = len(cost_sorted)
    suffix_loss = np.minimum(row_min[:, None, :], suffix_min[None]).sum(axis=2)  # (nodes, m + 1)
    top = np.r_[front_cost[1:] - 1, np.inf]  # highest cost of each frontier interval
    room = top[None, :] - cost[:, None]
    first_fit = np.searchsorted(-cost_sorted, -room, side="left")  # first (largest) model with P <= room
    start = np.maximum(last[:, None] + 1, first_fit)
    lower = np.take_along_axis(suffix_loss, start, axis=1)
    return np.where(start < m, lower, np.inf)
