"""Collaboration search: which subsets of models give the lowest ensemble loss per parameter budget.

STRATEGIES is the one list of strategies (conf/search/<name>.yaml selects one). Every strategy takes
a combiner (mmc.ensemble.combiners: how members are combined on each text), the parameter counts and
the model names, and returns a SearchResult. `run_search` checks the inputs, dispatches, and records
n_explored, n_frontier, wall_s and, where the exhaustive frontier is cheap, how many of its points the
strategy missed (compare_to_exact).
"""
from __future__ import annotations

import time

import numpy as np

from mmc.ensemble.combiners import Combiner
from mmc.errors import MMCError
from mmc.losses import LossMatrix, check_finite, check_models
from mmc.registry import Option, Registry, check_node
from mmc.search.compare import compare_to_exact
from mmc.search.config import SearchConfig
from mmc.search.exact import ExactSearch, exact_search
from mmc.search.exhaustive import ExhaustiveSearch, exhaustive_search, n_subsets
from mmc.search.greedy import GreedySearch, greedy_search
from mmc.search.milp import MilpSearch, milp_search
from mmc.search.pareto_prune import ParetoPruneSearch, pareto_prune_search
from mmc.search.random_subsets import RandomSearch, random_search
from mmc.search.result import SearchResult

STRATEGIES = Registry("search strategy", [
    Option("exhaustive", exhaustive_search, ExhaustiveSearch),
    Option("pareto_prune", pareto_prune_search, ParetoPruneSearch),
    Option("greedy", greedy_search, GreedySearch),
    Option("milp", milp_search, MilpSearch),
    Option("exact", exact_search, ExactSearch),
    Option("random", random_search, RandomSearch),
], key="strategy")

__all__ = ["STRATEGIES", "SearchConfig", "SearchResult", "check_monotone", "compare_to_exact", "run_search",
           "select_families"]


def run_search(combiner: Combiner, params: np.ndarray, models: np.ndarray, cfg: SearchConfig) -> SearchResult:
    """Search subsets of the pool under `combiner` with the strategy `cfg` is a schema of."""
    params, models = check_inputs(combiner, params, models, cfg)
    start = time.perf_counter()
    result = STRATEGIES.run(cfg.strategy)(combiner, params, models, cfg)
    result.stats.update(n_explored=result.n_explored, n_frontier=result.n_frontier,
                        wall_s=time.perf_counter() - start)
    if cfg.strategy == "exhaustive":
        result.stats.update(missed_points=0, max_missed_gap=0.0, mean_missed_gap=0.0)
    elif cfg.exact_check and exact_check_evals(combiner, len(models), cfg.max_k) <= cfg.exact_check_max_evals:
        result.stats.update(compare_to_exact(result, exhaustive_search(combiner, params, models, cfg)))
    return result


def exact_check_evals(combiner: Combiner, n_models: int, max_k: int | None) -> int:
    """(subset, text) evaluations of an exhaustive search: what the exact check costs."""
    return n_subsets(n_models, max_k) * combiner.state_bytes() // 8


def check_inputs(combiner: Combiner, params, models, cfg: SearchConfig):
    """One-line MMCError for any bad input, before any work; returns params as int64 and names as str."""
    models, params = np.asarray(models, dtype=str), np.asarray(params)
    m = len(models)
    if m == 0 or params.shape != (m,) or combiner.n_models != m:
        raise MMCError(f"search needs one parameter count and one name per model of the combiner; got "
                       f"{combiner.n_models} models, params {params.shape}, {m} names")
    check_models(models, params)
    single = combiner.per_text(combiner.singles())
    if single.shape[1] == 0:
        raise MMCError("search got losses on 0 texts; the corpus is empty: check the dataset")
    check_finite(models, single)
    check_monotone(cfg, combiner.monotone)
    STRATEGIES[cfg.strategy]  # an unknown name raises, listing the known ones
    check_node(cfg, "search")
    cfg.check_pool(m)
    return params.astype(np.int64), models


def check_monotone(cfg: SearchConfig, monotone: bool) -> None:
    """exact and milp prune with bounds that hold only when adding a model never raises the loss."""
    if cfg.needs_monotone and not monotone:
        raise MMCError(f"search={cfg.strategy} bounds assume the oracle, and this ensemble's loss can rise when a "
                       "model is added; use search=pareto_prune, exhaustive, greedy or random")


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
