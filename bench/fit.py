"""Bootstrap speed: 200 resamples of a 71-model frontier, ours vs a naive per-resample loop.

Ours (mmc.uncertainty.bootstrap_fits): per-subset per-text minima once, all resamples in one matrix
product, then Pareto front and a warm-started refit per resample. Naive: per resample, index the
resampled texts and recompute every subset's oracle loss in a Python loop over subsets, then
the same front and refit. The naive loop is linear in resamples, so it is timed on --naive-resamples
of them and scaled to --resamples; its fits are checked against ours on those resamples.

    python bench/fit.py            # 10,000 texts, ~3,000 candidate subsets, 200 resamples
    python bench/fit.py --quick    # 2,000 texts, 50 resamples
"""
from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from mmc.fit import fit_power_law
from mmc.pareto import pareto_front
from mmc.search.pareto_prune import pareto_prune_search
from mmc.synthetic import synthetic_loss_matrix
from mmc.uncertainty import bootstrap_fits


def candidate_subsets(weighted, params, models, n_candidates, seed):
    """The Pareto-prune frontier subsets, the single models, and random subsets up to n_candidates."""
    front = pareto_prune_search(weighted, params, models).frontier_members
    rng = np.random.default_rng(seed)
    n_random = max(n_candidates - len(front) - len(models), 0)
    random = np.zeros((n_random, len(models)), dtype=bool)
    for row, k in zip(random, rng.integers(2, 12, n_random)):
        row[rng.choice(len(models), k, replace=False)] = True
    return np.unique(np.concatenate([np.eye(len(models), dtype=bool), front, random]), axis=0)


def oracle_losses(weighted, members):
    """Oracle loss of each subset: one (k, N) minimum per subset, in a Python loop."""
    return np.array([weighted[row].min(axis=0).sum() for row in members])


def naive_bootstrap(weighted, params, members, n_resamples, seed):
    """Alpha per curve and resample, recomputing all oracle losses per resample (mean aggregate)."""
    n_texts = weighted.shape[1]
    draws = np.random.default_rng(seed).multinomial(n_texts, np.full(n_texts, 1 / n_texts), size=n_resamples)
    cost = members @ params
    curves = {"ensemble": np.ones(len(members), dtype=bool), "single": members.sum(1) == 1}
    alphas = {curve: [] for curve in curves}
    for counts in draws:
        losses = oracle_losses(weighted[:, np.repeat(np.arange(n_texts), counts)], members)
        for curve, rows in curves.items():
            front = pareto_front(cost[rows], losses[rows])
            alphas[curve].append(fit_power_law(cost[rows][front], losses[rows][front], warn=False).alpha)
    return {curve: np.array(a) for curve, a in alphas.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 texts and 50 resamples")
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--naive-resamples", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=3000)
    args = parser.parse_args()
    n_texts, n_resamples = (2000, 50) if args.quick else (10_000, args.resamples)
    logging.basicConfig(level=logging.WARNING)

    lm = synthetic_loss_matrix(71, n_texts, seed=0)
    weighted = lm.weighted_losses()
    params = lm.params.astype(np.float64)
    members = candidate_subsets(weighted, params, lm.models, args.candidates, seed=0)
    print(f"{lm.n_models} models x {n_texts:,} texts, {len(members):,} candidate subsets "
          f"(mean size {members.sum(1).mean():.1f}), {n_resamples} resamples")

    start = time.perf_counter()
    boots = bootstrap_fits(weighted, params, members, n_resamples=n_resamples, seed=0)
    ours_s = time.perf_counter() - start
    for curve, boot in boots.items():
        (a_lo, a_hi), (l_lo, l_hi) = boot.interval("alpha"), boot.interval("L_inf")
        print(f"  {curve}: alpha {boot.fit.alpha:.4f} [{a_lo:.4f}, {a_hi:.4f}], "
              f"L_inf {boot.fit.L_inf:.4f} [{l_lo:.4f}, {l_hi:.4f}], failed {boot.n_failed}")

    n_naive = min(args.naive_resamples, n_resamples)
    start = time.perf_counter()
    naive = naive_bootstrap(weighted, params, members, n_naive, seed=0)
    naive_s = (time.perf_counter() - start) * n_resamples / n_naive
    for curve, alphas in naive.items():
        np.testing.assert_allclose(boots[curve].alpha[:n_naive], alphas, rtol=1e-3)
    print(f"ours:  {ours_s:.2f} s for {n_resamples} resamples")
    print(f"naive: {naive_s:.1f} s for {n_resamples} resamples (timed on {n_naive}, scaled)")
    print(f"speed-up: {naive_s / ours_s:.0f}x (same alphas on the {n_naive} resamples both ran)")


if __name__ == "__main__":
    main()
