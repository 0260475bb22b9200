"""Search speed on the synthetic pool, each strategy against a straightforward Python-loop baseline.

    python bench/search.py            # the goal sizes (milp at --milp-models x --milp-texts)
    python bench/search.py --quick    # small sizes, seconds

Baselines: pareto_prune as a per-(subset, model) loop with frozensets; exhaustive (and milp) as an
itertools loop over subsets, one numpy min per subset, timed on its first --baseline-subsets
subsets and extrapolated linearly (its cost per subset is constant).
"""
from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from mmc.config import SearchConfig
from mmc.frontier import pareto_front
from mmc.search import compare_to_exact, run_search
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


def timed(strategy, lm, **kw):
    cfg = SearchConfig(strategy=strategy, exact_check=False, **kw)
    start = time.perf_counter()
    result = run_search(lm.weighted_losses(), lm.params, lm.models, cfg)
    return result, time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--milp-models", type=int, default=30)
    ap.add_argument("--milp-texts", type=int, default=1000)
    ap.add_argument("--baseline-subsets", type=int, default=20000)
    args = ap.parse_args()
    prune_size, exh_size, milp_size = ((71, 2000), (16, 500), (12, 200)) if args.quick else \
        ((71, 10000), (20, 2000), (args.milp_models, args.milp_texts))

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

    lm = synthetic_loss_matrix(*milp_size)
    result, ours = timed("milp", lm, time_limit=120)
    base = loop_exhaustive_s_per_subset(lm.weighted_losses(), args.baseline_subsets) * (2**milp_size[0] - 1)
    print(f"milp {milp_size[0]}x{milp_size[1]}: {ours:.1f} s (loop exhaustive, extrapolated: {base:.3g} s, "
          f"x{base / ours:.3g}); {result.n_frontier} frontier points, {result.stats['n_solves']} solves, "
          f"mean {np.mean(result.stats['solve_s']):.2f} s, max gap {result.stats['max_mip_gap']:.1e}")
    for strategy in ("pareto_prune", "greedy"):
        print(f"  {strategy} vs the exact (milp) frontier: {compare_to_exact(timed(strategy, lm)[0], result)}")


if __name__ == "__main__":
    main()
