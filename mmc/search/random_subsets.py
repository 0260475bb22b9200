"""Random subsets of every size: the baseline that any search should beat."""
from __future__ import annotations

import math

import numpy as np

from mmc.search.result import SearchResult

CHUNK_BYTES = 64 * 2**20  # memory of one gathered (subsets x size x texts) block


def random_search(weighted: np.ndarray, params: np.ndarray, models: np.ndarray, n_random: int,
                  max_k: int | None = None, seed: int = 0) -> SearchResult:
    """`n_random` distinct subsets of each size 1..max_k (all of them where there are fewer), seeded."""
    m, n = weighted.shape
    rng = np.random.default_rng(seed)
    members, losses = [], []
    for k in range(1, min(max_k or m, m) + 1):
        want = min(n_random, math.comb(m, k))
        picks = np.zeros((0, k), dtype=np.int64)
        while len(picks) < want:  # draw, dedupe, top up: few rounds, since want <= C(m, k)
            draw = np.sort(rng.random((2 * want, m)).argsort(axis=1)[:, :k], axis=1)
            picks = np.unique(np.concatenate([picks, draw]), axis=0)
        picks = picks[rng.permutation(len(picks))[:want]]
        chunk = max(1, CHUNK_BYTES // (8 * k * n))
        losses += [weighted[picks[i: i + chunk]].min(axis=1).sum(axis=1) for i in range(0, want, chunk)]
        block = np.zeros((want, m), dtype=bool)
        np.put_along_axis(block, picks, True, axis=1)
        members.append(block)
    members = np.concatenate(members)
    return SearchResult.from_candidates("random", models, members, members @ params.astype(np.float64),
                                        np.concatenate(losses))
