"""Random subsets of every size: the baseline that any search should beat."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mmc.ensemble.combiners import Combiner
from mmc.errors import MMCError
from mmc.search.config import SearchConfig
from mmc.search.result import SearchResult


@dataclass
class RandomSearch(SearchConfig):
    strategy: str = "random"
    n_random: int = 200  # subsets per size
    seed: int = 0

    def check(self, path: str) -> None:
        super().check(path)
        if self.n_random < 1:
            raise MMCError(f"{path}.n_random={self.n_random}; draw at least 1 subset per size")


def random_search(combiner: Combiner, params: np.ndarray, models: np.ndarray, cfg: RandomSearch) -> SearchResult:
    """`n_random` distinct subsets of each size 1..max_k (all of them where there are fewer), seeded."""
    m = len(params)
    rng = np.random.default_rng(cfg.seed)
    members = []
    for k in range(1, min(cfg.max_k or m, m) + 1):
        want = min(cfg.n_random, math.comb(m, k))
        picks = np.zeros((0, k), dtype=np.int64)
        while len(picks) < want:  # draw, dedupe, top up: few rounds, since want <= C(m, k)
            draw = np.sort(rng.random((2 * want, m)).argsort(axis=1)[:, :k], axis=1)
            picks = np.unique(np.concatenate([picks, draw]), axis=0)
        picks = picks[rng.permutation(len(picks))[:want]]
        block = np.zeros((want, m), dtype=bool)
        np.put_along_axis(block, picks, True, axis=1)
        members.append(block)
    members = np.concatenate(members)
    return SearchResult.from_candidates("random", models, members, members @ params.astype(np.float64),
                                        combiner.subset_losses(members))
