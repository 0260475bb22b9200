"""The split routers learn from: training texts and evaluation texts, stratified by domain.

Every domain keeps at least one evaluation text, and gives round(train_fraction * n_d) of its n_d texts
(at most n_d - 1) to training, drawn with a seeded generator; a domain of one text has no training text.
Realisable ensembles are reported on the evaluation texts only, beside the oracle on the same texts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TextSplit:
    domains: np.ndarray  # str (N,), every text's domain
    train: np.ndarray  # int64 indices of the training texts, sorted
    evaluation: np.ndarray  # int64 indices of the evaluation texts, sorted (never empty)

    def domains_without_training(self) -> list[str]:
        return sorted(set(self.domains.tolist()) - set(self.domains[self.train].tolist()))


def split_texts(domains, train_fraction: float, seed: int) -> TextSplit:
    domains = np.asarray(domains, dtype=str)
    rng = np.random.default_rng(seed)
    train = []
    for domain in sorted(set(domains.tolist())):  # sorted: the draw does not depend on text order across domains
        where = np.flatnonzero(domains == domain)
        n_train = min(int(np.floor(train_fraction * len(where) + 0.5)), len(where) - 1)
        train.append(rng.permutation(where)[:n_train])
    train = np.sort(np.concatenate(train)).astype(np.int64) if train else np.zeros(0, dtype=np.int64)
    evaluation = np.setdiff1d(np.arange(len(domains)), train).astype(np.int64)
    return TextSplit(domains, train, evaluation)
