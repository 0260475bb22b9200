"""The exact frontier: a budgeted p-median MIP solved for every budget breakpoint (epsilon-constraint).

For budget B:  min sum_{n,i} C[i,n] x[n,i]  s.t.  sum_i x[n,i] = 1,  x[n,i] <= y[i],
sum_i params[i] y[i] <= B,  (sum_i y[i] <= max_k),  y binary, x in [0, 1]. Given y, the best x
serves every text by its best chosen model, so the optimum is the best oracle loss within B. The
sweep starts at B = all parameters; after an optimum of cost P the next budget is just below P,
until no model fits. Every frontier point is one solve, so the sweep is exact when every solve
closes its gap (stats `mip_gaps`), up to the cost resolution: subsets costing within
COST_RESOLUTION * P below a frontier point of cost P are not told apart (HiGHS works in floating
point, with feasibility tolerances set to 1e-9 here).

Exact compression: texts whose columns of C are identical are merged (their weights add up).
Warm start: scipy's milp takes no starting solution, so the best loss within B among the greedy
and pareto_prune frontiers is passed to HiGHS as the objective bound (a cutoff that prunes every
node that cannot beat it); when nothing beats it, HiGHS reports no solution and the heuristic's
subset is the optimum. Models that serve no text are dropped from each MIP solution, so the
next budget starts below the cheapest subset of that loss.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np

from mmc.ensemble.combiners import MinCombiner
from mmc.progress import bar
from mmc.search.config import SolverSearch
from mmc.search.greedy import GreedySearch, greedy_search
from mmc.search.pareto_prune import ParetoPruneSearch, pareto_prune_search
from mmc.search.result import SearchResult

OBJECTIVE_SCALE = 1000.0  # best single model's loss in solver units: HiGHS's absolute gap (1e-6) is negligible
COST_RESOLUTION = 1e-8  # relative step below a frontier point's cost to the next budget
TOLERANCES = {"primal_feasibility_tolerance": 1e-9, "mip_feasibility_tolerance": 1e-9}  # HiGHS options


@dataclass
class MilpSearch(SolverSearch):
    strategy: str = "milp"


def milp_search(combiner: MinCombiner, params: np.ndarray, models: np.ndarray, cfg: MilpSearch) -> SearchResult:
    from scipy.optimize import Bounds, LinearConstraint, milp  # scipy.optimize: slow to import, only used here
    from scipy.sparse import csr_array, hstack, identity, kron, vstack

    weighted, max_k, time_limit, mip_rel_gap = combiner.weighted, cfg.max_k, cfg.time_limit, cfg.mip_rel_gap
    m = len(weighted)
    params = np.asarray(params, dtype=np.int64)
    columns, counts = np.unique(weighted, axis=1, return_counts=True)  # identical texts: exact merge
    n = columns.shape[1]
    scale = OBJECTIVE_SCALE / weighted.sum(axis=1).min()
    objective = np.r_[np.zeros(m), (columns * counts * scale).ravel()]  # y, then x[i, n] model-major

    total = int(params.sum())
    assign = hstack([csr_array((n, m)), kron(np.ones((1, m)), identity(n))])  # sum_i x[n, i] = 1
    link = hstack([-kron(identity(m), np.ones((n, 1))), identity(m * n)])  # x[n, i] - y[i] <= 0
    rows = [assign, link, csr_array(np.r_[params / total, np.zeros(m * n)][None, :])]  # budget share
    if max_k is not None and max_k < m:
        rows.append(csr_array(np.r_[np.ones(m), np.zeros(m * n)][None, :]))
    matrix = vstack(rows).tocsr()
    lower = np.r_[np.ones(n), np.full(m * n + len(rows) - 2, -np.inf)]
    integrality = np.r_[np.ones(m), np.zeros(m * n)]
    known = [greedy_search(combiner, params, models, GreedySearch(max_k=cfg.max_k)),
             pareto_prune_search(combiner, params, models, ParetoPruneSearch(max_k=cfg.max_k))]
    known_members = np.concatenate([r.frontier_members for r in known])  # incumbents: heuristic frontiers
    known_params = np.concatenate([r.frontier_params for r in known])
    known_loss = np.concatenate([r.frontier_loss for r in known])

    members, costs, losses, gaps, solve_s = [], [], [], [], []
    budget, shrink = total, 0.0  # exact integer budget; the solver's is `shrink` below it
    progress = bar(desc="milp budgets")
    while budget >= params.min():
        within = np.flatnonzero(known_params <= budget)
        incumbent = within[np.argmin(known_loss[within])]
        upper = np.r_[np.ones(n), np.zeros(m * n), (budget - shrink) / total, [max_k] * (len(rows) - 3)]
        options = {"time_limit": time_limit, "mip_rel_gap": mip_rel_gap, **TOLERANCES,
                   "objective_bound": known_loss[incumbent] * scale * (1 + 1e-9)}
        start = time.perf_counter()
        with warnings.catch_warnings():  # scipy warns that it passes the HiGHS options verbatim
            warnings.simplefilter("ignore", RuntimeWarning)
            res = milp(objective, integrality=integrality, constraints=LinearConstraint(matrix, lower, upper),
                       bounds=Bounds(0, np.r_[params <= budget, np.ones(m * n)]), options=options)
        solve_s.append(time.perf_counter() - start)
        chosen = known_members[incumbent]
        if res.x is not None:
            mip_chosen = serving(weighted, res.x[:m] > 0.5)
            if params[mip_chosen].sum() > budget:  # within the solver's tolerance only: tighten, solve again
                shrink = max(1.0, 10 * shrink)
                continue
            if weighted[mip_chosen].min(axis=0).sum() < weighted[chosen].min(axis=0).sum():
                chosen = mip_chosen
        cost, loss = int(params[chosen].sum()), weighted[chosen].min(axis=0).sum()
        bound = res.mip_dual_bound if res.mip_dual_bound is not None and np.isfinite(res.mip_dual_bound) else None
        gaps.append(0.0 if res.status == 2 or bound is None else max(0.0, 1 - float(bound) / (loss * scale)))
        members.append(chosen)
        costs.append(cost)
        losses.append(loss)
        budget, shrink = cost - 1, COST_RESOLUTION * cost
        progress.update()
    progress.close()
    return SearchResult.from_candidates(
        "milp", models, np.array(members), np.array(costs, float), np.array(losses),
        stats={"mip_gaps": gaps, "max_mip_gap": max(gaps), "n_solves": len(solve_s), "solve_s": solve_s,
               "n_texts_compressed": n, "proven_optimal": max(gaps) <= max(mip_rel_gap, 1e-6)},
    )


def serving(weighted: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """The chosen models that are best on some text: the others only add cost (the solver may keep them)."""
    index = np.flatnonzero(chosen)
    out = np.zeros_like(chosen)
    out[index[np.unique(weighted[index].argmin(axis=0))]] = True
    return out
