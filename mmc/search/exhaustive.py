"""Every subset (of size <= max_k): the exact frontier for pools up to ~22 models.

Subsets are split into a low part (the first b models, all 2^b subsets tabulated: their per-text
minimum rows) and a high part (the other models, walked depth first). Both are incremental: a
subset's per-text minimum is its parent's with one more row folded in. Each high subset then
meets all low subsets in one vectorised (2^b, N) minimum and row sum, a chunk of bounded memory.
"""
from __future__ import annotations

import math

import numpy as np
from tqdm import tqdm

from mmc.frontier import pareto_front
from mmc.search.result import SearchResult

CHUNK_BYTES = 32 * 2**20  # memory of one (low subsets x texts) chunk


def exhaustive_search(weighted: np.ndarray, params: np.ndarray, models: np.ndarray, max_k: int | None = None
                      ) -> SearchResult:
    m, n = weighted.shape
    max_k = min(max_k or m, m)
    n_subsets = sum(math.comb(m, k) for k in range(1, max_k + 1))
    n_low = int(min(m, max(1, np.floor(np.log2(CHUNK_BYTES / (8 * n)))), math.ceil(math.log2(n_subsets + 1))))
    low_min, low_params, low_size = subset_table(weighted[:n_low], params[:n_low])
    low_code = np.arange(len(low_min), dtype=np.int64)

    explored_params, explored_loss, cand_code, cand_params, cand_loss = [], [], [], [], []
    buffer = np.empty_like(low_min)
    n_high = sum(math.comb(m - n_low, k) for k in range(min(max_k, m - n_low) + 1))
    for high_code, high_min, high_params, high_size in tqdm(
            high_subsets(weighted[n_low:], params[n_low:], max_k), total=n_high, desc="exhaustive", leave=False):
        keep = low_size <= max_k - high_size
        if high_code == 0:
            keep[0] = False  # the empty subset
        out = buffer[: keep.sum()]
        np.minimum(low_min[keep], high_min, out=out)
        loss = out.sum(axis=1)
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


def subset_table(rows: np.ndarray, params: np.ndarray):
    """Per-text minimum, parameters and size of all 2^b subsets of b rows, indexed by bit code.

    The subsets whose highest bit is j are those below 2^j with row j folded in (empty set: +inf).
    """
    b, n = rows.shape
    table = np.empty((2**b, n))
    table[0] = np.inf
    cost = np.zeros(2**b)
    size = np.zeros(2**b, dtype=np.int64)
    for j in range(b):
        half = 2**j
        np.minimum(table[:half], rows[j], out=table[half: 2 * half])
        cost[half: 2 * half] = cost[:half] + params[j]
        size[half: 2 * half] = size[:half] + 1
    return table, cost, size


def high_subsets(rows: np.ndarray, params: np.ndarray, max_k: int):
    """Depth-first (code, per-text minimum, params, size) of every subset of rows with size <= max_k."""
    stack = [(0, 0, np.full(rows.shape[1], np.inf), 0.0, 0)]
    while stack:
        start, code, row_min, cost, size = stack.pop()
        yield code, row_min, cost, size
        if size < max_k:
            for j in range(start, len(rows)):
                stack.append((j + 1, code | (1 << j), np.minimum(row_min, rows[j]), cost + params[j], size + 1))
