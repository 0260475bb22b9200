"""Collaboration search: which subsets of models give the lowest oracle loss per parameter budget.

`run_search` checks its inputs, dispatches on cfg.strategy (one module each, all returning a
SearchResult), and records n_explored, n_frontier, wall_s and, where the exact frontier is at hand,
how many of its points the strategy missed (compare_to_exact).
"""
from __future__ import annotations

import math
import time

import numpy as np

from mmc.config import SearchConfig
from mmc.errors import MMCError
from mmc.losses import LossMatrix
from mmc.search.compare import compare_to_exact
from mmc.search.exact import exact_search
from mmc.search.exhaustive import exhaustive_search
from mmc.search.greedy import greedy_search
from mmc.search.milp import milp_search
from mmc.search.pareto_prune import pareto_prune_search
from mmc.search.random_subsets import random_search
from mmc.search.result import SearchResult

STRATEGIES = ("exhaustive", "pareto_prune", "greedy", "milp", "exact", "random")

__all__ = ["STRATEGIES", "SearchResult", "compare_to_exact", "run_search", "select_families"]


def run_search(weighted: np.ndarray, params: np.ndarray, models: np.ndarray, cfg: SearchConfig) -> SearchResult:
    """Search subsets of the pool; weighted is C (M, N) from LossMatrix.weighted_losses."""
    weighted, params, models = check_inputs(weighted, params, models, cfg)
    start = time.perf_counter()
    result = _dispatch(weighted, params, models, cfg)
    result.stats.update(n_explored=result.n_explored, n_frontier=result.n_frontier,
                        wall_s=time.perf_counter() - start)
    if cfg.strategy == "exhaustive":
        result.stats.update(missed_points=0, max_missed_gap=0.0, mean_missed_gap=0.0)
    elif cfg.exact_check and len(models) <= cfg.exact_max_models and n_subsets(len(models), cfg.max_k) <= cfg.max_subsets:
        exact = exhaustive_search(weighted, params, models, cfg.max_k)
        result.stats.update(compare_to_exact(result, exact))
    return result


def _dispatch(weighted, params, models, cfg: SearchConfig) -> SearchResult:
    if cfg.strategy == "exhaustive":
        return exhaustive_search(weighted, params, models, cfg.max_k)
    if cfg.strategy == "pareto_prune":
        return pareto_prune_search(weighted, params, models, cfg.max_k)
    if cfg.strategy == "greedy":
        return greedy_search(weighted, params, models, cfg.max_k)
    if cfg.strategy == "milp":
        return milp_search(weighted, params, models, cfg.max_k, cfg.time_limit, cfg.mip_rel_gap)
    if cfg.strategy == "exact":
        return exact_search(weighted, params, models, cfg.max_k, cfg.time_limit, cfg.mip_rel_gap)
    return random_search(weighted, params, models, cfg.n_random, cfg.max_k, cfg.seed)


def n_subsets(n_models: int, max_k: int | None) -> int:
    return sum(math.comb(n_models, k) for k in range(1, min(max_k or n_models, n_models) + 1))


def check_inputs(weighted, params, models, cfg: SearchConfig):
    """One-line MMCError for any bad input, before any work; returns the arrays as float64/int64/str."""
    if cfg.strategy not in STRATEGIES:
        raise MMCError(f"unknown search strategy {cfg.strategy!r}; use one of {', '.join(STRATEGIES)}")
    weighted, models = np.asarray(weighted, dtype=np.float64), np.asarray(models, dtype=str)
    params = np.asarray(params, dtype=np.float64)
    m = len(models)
    if weighted.ndim != 2 or weighted.shape[0] != m or weighted.shape[1] == 0 or params.shape != (m,) or m == 0:
        raise MMCError(f"search needs losses (models, texts) with texts > 0, params (models,) and names (models,); "
                       f"got losses {weighted.shape}, params {params.shape}, {m} names")
    dupes = sorted({x for x in models.tolist() if models.tolist().count(x) > 1})
    if dupes:
        raise MMCError(f"duplicate model names {dupes}; give every model of the pool a unique name")
    bad = ~np.isfinite(weighted).all(axis=1)
    if bad.any():
        raise MMCError(f"non-finite losses for models {models[bad].tolist()}; rescore them with scoring.force=true")
    bad = ~(np.isfinite(params) & (params > 0) & (params == np.round(params)))
    if bad.any():
        raise MMCError(f"models {models[bad].tolist()} have no positive integer parameter count; set their `params`")
    if cfg.max_k is not None and cfg.max_k < 1:
        raise MMCError(f"search.max_k={cfg.max_k}; use null (all sizes) or a size >= 1")
    if cfg.strategy == "random" and cfg.n_random < 1:
        raise MMCError(f"search.n_random={cfg.n_random}; draw at least 1 subset per size")
    if cfg.strategy in ("milp", "exact") and cfg.time_limit <= 0:
        raise MMCError(f"search.time_limit={cfg.time_limit}; give the solver a positive number of seconds")
    if cfg.strategy == "exhaustive" and n_subsets(m, cfg.max_k) > cfg.max_subsets:
        raise MMCError(f"exhaustive search over {m} models means {n_subsets(m, cfg.max_k):.3g} subsets "
                       f"(limit search.max_subsets={cfg.max_subsets}); set search.max_k or use search=exact or search=pareto_prune")
    return weighted, params.astype(np.int64), models


def select_families(lm: LossMatrix, families: list[str] | None) -> LossMatrix:
    """The models of the given families (None: all), e.g. one family for a homogeneous frontier."""
    if families is None:
        return lm
    available = sorted(set(lm.families.tolist()))
    unknown = sorted(set(families) - set(available))
    if unknown or not families:
        raise MMCError(f"unknown or no families {unknown or families} in search.families; "
                       f"available: {', '.join(available)}")
    return lm.select_models(np.flatnonzero(np.isin(lm.families, families)))
