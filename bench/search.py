"""Search speed on the synthetic pool, each strategy against a straightforward Python-loop baseline.

    python bench/search.py            # the goal sizes (the exact frontier at --exact-models x --exact-texts)
    python bench/search.py --quick    # small sizes, seconds
    python bench/search.py --readings [loss_matrix.npz ...]   # pareto_prune global vs per_size vs exact

Baselines: pareto_prune as a per-(subset, model) loop with frozensets; exhaustive as an itertools
loop over subsets, one numpy min per subset, timed on its first --baseline-subsets subsets and
extrapolated linearly (its cost per subset is constant); the exact frontier (`exact`, branch and
bound) against a straightforward budgeted p-median MIP (scipy/HiGHS), solved at --mip-points
budgets and extrapolated to one solve per frontier point (a lower bound), its optima checked
against our frontier; and the library's full `milp` sweep against `exact` at --mip-sweep.
"""
from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_array, hstack, identity, kron, vstack

from mmc.ensemble.combiners import MinCombiner
from mmc.losses import LossMatrix
from mmc.pareto import pareto_front
from mmc.search import STRATEGIES, compare_to_exact, run_search
from mmc.synthetic import synthetic_loss_matrix


def loop_pareto_prune(weighted, params):
    """The paper's procedure written plainly: dict of frozenset -> (params, loss)."""
    m = len(params)
    kept = {frozenset([i]): (float(params[i]), float(weighted[i].sum())) for i in range(m)}
    kept = prune(kept)
    for k in range(2, m + 1):
        grown = {}
        for subset in [s for s in kept if len(s) == k - 1]:
            base = weighted[list(subset)].min(axis=0)
            for j in set(range(m)) - subset:
                grown[subset | {j}] = (sum(float(params[i]) for i in subset | {j}),
                                       float(np.minimum(base, weighted[j]).sum()))
        merged = prune({**kept, **grown})
        if not any(len(s) == k for s in merged):
            return merged
        kept = merged
    return kept


def prune(points):
    keys = list(points)
    cost, loss = np.array([points[s] for s in keys]).T
    return {keys[i]: points[keys[i]] for i in pareto_front(cost, loss)}


def loop_exhaustive_s_per_subset(weighted, n_subsets):
    m = len(weighted)
    subsets = itertools.islice((s for k in range(1, m + 1) for s in itertools.combinations(range(m), k)), n_subsets)
    start = time.perf_counter()
    count = sum(1 for s in subsets if weighted[list(s)].min(axis=0).sum() >= 0)
    return (time.perf_counter() - start) / count


def mip_best_within(weighted, params, budget):
    """min sum C[i, n] x[n, i]  s.t.  sum_i x[n, i] = 1, x[n, i] <= y[i], params . y <= budget, y binary:
    a straightforward budgeted p-median MIP, one solve per budget. Returns (loss, seconds)."""
    m, n = weighted.shape
    scale = 1000.0 / weighted.sum(axis=1).min()
    assign = hstack([csr_array((n, m)), kron(np.ones((1, m)), identity(n))])
    link = hstack([-kron(identity(m), np.ones((n, 1))), identity(m * n)])
    cap = csr_array(np.r_[params / budget, np.zeros(m * n)][None, :])  # share of the budget
    rows = vstack([assign, link, cap]).tocsr()
    start = time.perf_counter()
    res = milp(np.r_[np.zeros(m), (weighted * scale).ravel()], integrality=np.r_[np.ones(m), np.zeros(m * n)],
               constraints=LinearConstraint(rows, np.r_[np.ones(n), np.full(m * n + 1, -np.inf)],
                                            np.r_[np.ones(n), np.zeros(m * n), 1.0]),
               bounds=Bounds(0, np.r_[params <= budget, np.ones(m * n)]),
               options={"mip_rel_gap": 0.0, "primal_feasibility_tolerance": 1e-9, "mip_feasibility_tolerance": 1e-9})
    chosen = res.x[:m] > 0.5
    assert params[chosen].sum() <= budget
    return weighted[chosen].min(axis=0).sum(), time.perf_counter() - start


def timed(strategy, lm, **kw):
    cfg = STRATEGIES[strategy].schema(exact_check=False, **kw)
    start = time.perf_counter()
    result = run_search(MinCombiner(lm.weighted_losses()), lm.params, lm.models, cfg)
    return result, time.perf_counter() - start


def readings(pools: dict) -> None:
    """The paper's pruning, read globally and per size, against the exact frontier of each pool."""
    print("| pool | reading | frontier points | subsets explored | Pareto configs kept | exact points missed "
          "(of) | max gap | s |\n|---|---|---|---|---|---|---|---|")
    for name, lm in pools.items():
        exact, _ = timed("exact", lm, time_limit=600)
        for prune in ("global", "per_size"):
            result, seconds = timed("pareto_prune", lm, prune=prune)
            missed = compare_to_exact(result, exact)
            print(f"| {name} | {prune} | {result.n_frontier:,} | {result.n_explored:,} | "
                  f"{result.stats['n_pareto_configs']:,} | {missed['missed_points']} ({exact.n_frontier}) | "
                  f"{missed['max_missed_gap']:.2g} | {seconds:.2f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--readings", nargs="*", metavar="LOSS_MATRIX_NPZ",
                    help="only compare pareto_prune's two readings: on synthetic 71 x 1,000 and on these matrices")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--exact-models", type=int, default=30)
    ap.add_argument("--exact-texts", type=int, default=1000)
    ap.add_argument("--baseline-subsets", type=int, default=20000)
    ap.add_argument("--mip-points", type=int, default=3, help="budgets solved by the straightforward MIP")
    ap.add_argument("--scale", type=int, nargs="*", default=None, help="exact: more pool sizes (models)")
    ap.add_argument("--mip-sweep", type=int, nargs=2, default=(16, 300), help="models texts: the full milp sweep")
    args = ap.parse_args()
    if args.readings is not None:
        pools = {"synthetic 71 x 1,000": synthetic_loss_matrix(71, 1000)}
        pools.update({path: LossMatrix.load(path) for path in args.readings})
        return readings(pools)
    prune_size, exh_size, exact_size = ((71, 2000), (16, 500), (12, 200)) if args.quick else \
        ((71, 10000), (20, 2000), (args.exact_models, args.exact_texts))
    if args.scale is None:
        args.scale = [] if args.quick else [40, 50, 60]

    lm = synthetic_loss_matrix(*prune_size)
    result, ours = timed("pareto_prune", lm)
    start = time.perf_counter()
    loop = loop_pareto_prune(lm.weighted_losses(), lm.params)
    base = time.perf_counter() - start
    assert len(loop) == result.n_frontier
    print(f"pareto_prune {prune_size[0]}x{prune_size[1]}: {ours:.2f} s (loop {base:.2f} s, x{base / ours:.1f}); "
          f"{result.n_frontier} Pareto configs, {result.n_explored} explored")

    lm = synthetic_loss_matrix(*exh_size)
    result, ours = timed("exhaustive", lm)
    base = loop_exhaustive_s_per_subset(lm.weighted_losses(), args.baseline_subsets) * result.n_explored
    print(f"exhaustive {exh_size[0]}x{exh_size[1]}: {ours:.2f} s (loop, extrapolated: {base:.1f} s, "
          f"x{base / ours:.0f}); {result.n_frontier} frontier points of {result.n_explored} subsets")

    lm = synthetic_loss_matrix(*exact_size)
    weighted = lm.weighted_losses()
    result, ours = timed("exact", lm, time_limit=600)
    at = np.linspace(0, result.n_frontier - 1, args.mip_points + 2).round().astype(int)[1:-1]
    solves = [mip_best_within(weighted, lm.params, result.frontier_params[j]) for j in at]
    np.testing.assert_allclose([loss for loss, _ in solves], result.frontier_loss[at], rtol=1e-7)
    per_solve = np.mean([s for _, s in solves])
    print(f"exact {exact_size[0]}x{exact_size[1]}: {ours:.2f} s (straightforward MIP, {len(at)} solves of {per_solve:.2f} s "
          f"extrapolated to {result.n_frontier} points: {per_solve * result.n_frontier:.0f} s, "
          f"x{per_solve * result.n_frontier / ours:.0f}); {result.n_frontier} frontier points, "
          f"{result.stats['n_nodes']} nodes, max gap {result.stats['max_mip_gap']:.1e}; MIP optima agree")
    for strategy in ("pareto_prune", "greedy"):
        print(f"  {strategy} vs the exact frontier: {compare_to_exact(timed(strategy, lm)[0], result)}")
    for n_models in args.scale:
        result, ours = timed("exact", synthetic_loss_matrix(n_models, exact_size[1]), time_limit=600)
        print(f"exact {n_models}x{exact_size[1]}: {ours:.2f} s, {result.n_frontier} frontier points, "
              f"{result.stats['n_nodes']} nodes, proven optimal: {result.stats['proven_optimal']}")
    lm = synthetic_loss_matrix(*args.mip_sweep)
    mip, mip_s = timed("milp", lm)
    fast, fast_s = timed("exact", lm)
    np.testing.assert_allclose(mip.frontier_loss, fast.frontier_loss, rtol=1e-9)
    print(f"milp (MIP sweep) {args.mip_sweep[0]}x{args.mip_sweep[1]}: {mip_s:.1f} s, {mip.n_frontier} points, "
          f"max MIP gap {mip.stats['max_mip_gap']:.1e}; exact on the same pool: {fast_s:.2f} s "
          f"(x{mip_s / fast_s:.0f}), same frontier")


if __name__ == "__main__":
    main()
