"""Realisable ensembles beside the oracle, on the evaluation texts of the run's split.

- realisable_table: for the whole pool and for each subset of the (all-text) oracle frontier, the loss and
  the parameters run per text of every ensemble option that applies to the run's data: realisable.csv.
- ensemble_frontiers: the chosen option's own frontier, searched like the oracle's, and the oracle's frontier
  on the same evaluation texts, so that their fits and gaps compare like with like.
"""
from __future__ import annotations

import numpy as np

from mmc.ensemble import ENSEMBLES, EnsembleConfig, EnsembleData, build_combiner
from mmc.ensemble.combiners import Combiner
from mmc.errors import MMCError
from mmc.search import SearchConfig, SearchResult, run_search


def applicable_options(chosen: EnsembleConfig, data: EnsembleData) -> tuple[dict[str, Combiner], dict[str, str]]:
    """Every ensemble option that applies to `data` as a combiner (the chosen one with its settings, the others
    with their defaults on the same split), and why each other one does not apply."""
    combiners, skipped = {}, {}
    for name in ENSEMBLES:
        option = chosen if name == chosen.kind else ENSEMBLES[name].schema(
            train_fraction=chosen.train_fraction, seed=chosen.seed)
        try:
            combiners[name] = build_combiner(option, data)
        except MMCError as e:
            skipped[name] = str(e)
    return combiners, skipped


def realisable_table(combiners: dict[str, Combiner], members: np.ndarray, params: np.ndarray,
                     models: np.ndarray) -> list[dict]:
    """Rows {subset, members, k, params, loss_<option>, active_params_<option>}: the whole pool first
    (subset "pool"), then each subset of `members` (bool (F, M), subset "frontier")."""
    members = np.vstack([np.ones((1, len(params)), dtype=bool), np.asarray(members, dtype=bool)])
    columns = {}
    for name, combiner in combiners.items():
        columns[f"loss_{name}"], columns[f"active_params_{name}"] = combiner.evaluate(members, params)
    rows = []
    for i, row in enumerate(members):
        rows.append({"subset": "pool" if i == 0 else "frontier", "members": "+".join(sorted(models[row].tolist())),
                     "k": int(row.sum()), "params": int(params[row].sum()),
                     **{key: float(values[i]) for key, values in columns.items()}})
    return rows


def ensemble_frontiers(combiner: Combiner, oracle: Combiner, params: np.ndarray, models: np.ndarray,
                       search: SearchConfig) -> tuple[SearchResult, np.ndarray, SearchResult]:
    """(the option's frontier, its frontier subsets' parameters run per text, the oracle's frontier) on the
    evaluation texts, each found by the run's search strategy."""
    result = run_search(combiner, params, models, search)
    active = combiner.evaluate(result.frontier_members, params)[1]
    return result, active, run_search(oracle, params, models, search)


def eval_split_summary(data: EnsembleData) -> dict:
    """What analysis.json records of the split."""
    split = data.split
    return {"n_train": len(split.train), "n_evaluation": len(split.evaluation),
            "train_by_domain": {d: int((split.domains[split.train] == d).sum()) for d in np.unique(split.domains)}}

