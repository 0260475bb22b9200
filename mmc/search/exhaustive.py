"""Every subset (of size <= max_k): the exact frontier for pools up to ~22 models, for any combiner.

Subsets are split into a low part (the first b models, all 2^b subsets tabulated: their combiner
states) and a high part (the other models, walked depth first). Both are incremental: a subset's
state is its parent's with one more model merged in. Each high subset then meets all low subsets in
one vectorised merge and loss over a (2^b, ...) table, a chunk of bounded memory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mmc.ensemble.combiners import Combiner, take
from mmc.errors import MMCError
from mmc.pareto import pareto_front
from mmc.progress import bar
from mmc.search.config import SearchConfig
from mmc.search.result import SearchResult

CHUNK_BYTES = 32 * 2**20  # memory of one table of low subsets' states


@dataclass
class ExhaustiveSearch(SearchConfig):
    strategy: str = "exhaustive"
    max_subsets: int = 2**24  # refuse pools with more subsets than this (2^24: 24 models)

    def check_pool(self, n_models: int) -> None:
        if n_subsets(n_models, self.max_k) > self.max_subsets:
            raise MMCError(f"exhaustive search over {n_models} models means {n_subsets(n_models, self.max_k):.3g} "
                           f"subsets (limit search.max_subsets={self.max_subsets}); set search.max_k or use "
                           "search=exact or search=pareto_prune")


def n_subsets(n_models: int, max_k: int | None) -> int:
    return sum(math.comb(n_models, k) for k in range(1, min(max_k or n_models, n_models) + 1))


def exhaustive_search(combiner: Combiner, params: np.ndarray, models: np.ndarray, cfg: SearchConfig
                      ) -> SearchResult:
    m = len(params)
    max_k = min(cfg.max_k or m, m)
    total = n_subsets(m, max_k)
    n_low = int(min(m, max(1, np.floor(np.log2(CHUNK_BYTES / combiner.state_bytes()))), math.ceil(math.log2(total + 1))))
    singles = combiner.singles()
    low_state, low_params, low_size = subset_table(combiner, params[:n_low])
    low_code = np.arange(len(low_params), dtype=np.int64)

    explored_params, explored_loss, cand_code, cand_params, cand_loss = [], [], [], [], []
    n_high = sum(math.comb(m - n_low, k) for k in range(min(max_k, m - n_low) + 1))
    for high_code, high_state, high_params, high_size in bar(
            high_subsets(combiner, singles, n_low, params, max_k), total=n_high, desc="exhaustive"):
        keep = np.flatnonzero(low_size <= max_k - high_size)
        keep = keep[keep > 0] if high_code == 0 else keep  # the empty subset is no candidate
        low = low_state if len(keep) == len(low_params) else take(low_state, keep)
        loss = combiner.loss(low if high_state is None else combiner.merge(low, high_state))
        if high_code != 0:  # the high subset alone (low code 0) has no low state to merge with
            loss[keep == 0] = combiner.loss(high_state)
        cost = low_params[keep] + high_params
        explored_params.append(cost)
        explored_loss.append(loss)
        front = pareto_front(cost, loss)  # only a chunk's own frontier can reach the global one
        cand_code.append(low_code[keep][front] | (high_code << n_low))
        cand_params.append(cost[front])
        cand_loss.append(loss[front])

    codes = np.concatenate(cand_code)
    members = (codes[:, None] >> np.arange(m)) & 1
    return SearchResult.from_candidates(
        "exhaustive", models, members.astype(bool), np.concatenate(cand_params), np.concatenate(cand_loss),
        explored_params=np.concatenate(explored_params), explored_loss=np.concatenate(explored_loss),
    )


def subset_table(combiner: Combiner, params: np.ndarray):
    """States, parameters and sizes of all 2^b subsets of the first b models, indexed by bit code.

    The subsets whose highest bit is j are those below 2^j with model j merged in; row 0 (the empty
    subset) holds model 0's state as a placeholder that callers never read as a subset.
    """
    b = len(params)
    singles = combiner.singles()
    state = tuple(np.empty((2**b,) + a.shape[1:], a.dtype) for a in singles)
    cost, size = np.zeros(2**b), np.zeros(2**b, dtype=np.int64)
    for j in range(b):
        half = 2**j
        single = take(singles, slice(j, j + 1))
        for table, part in zip(state, single):
            table[half] = part[0]
        if half > 1:
            for table, part in zip(state, combiner.merge(take(state, slice(1, half)), single)):
                table[half + 1: 2 * half] = part
        cost[half: 2 * half] = cost[:half] + params[j]
        size[half: 2 * half] = size[:half] + 1
    for table, part in zip(state, take(singles, slice(0, 1))):
        table[0] = part[0]
    return state, cost, size


def high_subsets(combiner: Combiner, singles, first: int, params: np.ndarray, max_k: int):
    """Depth-first (code, state, params, size) of every subset of the models from `first` on with size <= max_k;
    the empty subset comes first, with state None."""
    stack = [(first, 0, None, 0.0, 0)]
    while stack:
        start, code, state, cost, size = stack.pop()
        yield code, state, cost, size
        if size < max_k:
            for j in range(start, len(params)):
                single = take(singles, slice(j, j + 1))
                grown = single if state is None else combiner.merge(state, single)
                stack.append((j + 1, code | (1 << (j - first)), grown, cost + params[j], size + 1))
