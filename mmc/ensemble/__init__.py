"""Ensembles: how a subset's members are combined on a text (conf/ensemble/<name>.yaml selects one).

ENSEMBLES is the one list of options. Each builds a combiner (mmc.ensemble.combiners) on the evaluation
texts of the run's split (mmc.ensemble.split) from an EnsembleData; search strategies, tables and fits
then treat every option alike. `oracle` is the paper's: per text, the member with the lowest loss.
The realisable ones: `mixture` (whole-text Bayesian mixture, uniform prior), `domain_router` and
`knn_router` (routers whose predictions are learnt from the training texts only, mmc.ensemble.routers).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import numpy as np
from omegaconf import MISSING

from mmc.ensemble.combiners import Combiner, MinCombiner, MixtureCombiner, RouterCombiner
from mmc.ensemble.routers import domain_predictor, knn_predictor, nearest_training_texts
from mmc.ensemble.split import TextSplit
from mmc.errors import MMCError
from mmc.losses import LossConfig, LossMatrix
from mmc.registry import Option, Registry


@dataclass
class EnsembleData:
    """What every ensemble option is built from: the run's losses on all texts, their split, and side data."""

    lm: LossMatrix
    loss: LossConfig
    split: TextSplit
    texts: Optional[list[str]] = None  # aligned with lm.text_ids; None when the texts are not at hand

    def __post_init__(self):
        self.per_text = self.lm.per_text_loss(self.loss.unit, self.loss.ref_bytes_per_token)  # (M, N)
        self.weights = self.lm.text_weights(self.loss.aggregate)  # (N,), sum 1

    def eval_weights(self) -> np.ndarray:
        """(E,) the weights of the evaluation texts, renormalised: losses are means over those texts."""
        w = self.weights[self.split.evaluation]
        return w / w.sum()

    def eval_weighted(self) -> np.ndarray:
        """C (M, E) on the evaluation texts: the oracle's input there."""
        return self.per_text[:, self.split.evaluation] * self.eval_weights()[None, :]

    def train_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """(losses (M, T), weights (T,)) of the training texts: all a router may learn from."""
        return self.per_text[:, self.split.train], self.weights[self.split.train]


@dataclass
class EnsembleConfig:
    kind: str = MISSING  # set by the option: ensemble=oracle, ...
    train_fraction: float = 0.5  # share of each domain's texts that routers learn from; the rest evaluate
    seed: int = 0  # the split's draw

    monotone: ClassVar[bool] = False  # adding a member never raises the loss (search=exact and milp need it)

    def check(self, path: str) -> None:
        if not 0 < self.train_fraction < 1:
            raise MMCError(f"{path}.train_fraction={self.train_fraction}; use a share strictly between 0 and 1")

    def check_data(self, split: TextSplit, has_texts: bool) -> None:
        """One-line MMCError when this option cannot run on these texts (checked before any scoring)."""


@dataclass
class OracleEnsemble(EnsembleConfig):
    kind: str = "oracle"

    monotone = True


@dataclass
class MixtureEnsemble(EnsembleConfig):
    kind: str = "mixture"


@dataclass
class DomainRouterEnsemble(EnsembleConfig):
    kind: str = "domain_router"

    def check_data(self, split: TextSplit, has_texts: bool) -> None:
        domains = sorted(set(split.domains.tolist()))
        if len(domains) < 2:
            raise MMCError(f"ensemble=domain_router needs texts of several domains, the corpus has one "
                           f"({domains[0]!r}); use a corpus with domains or ensemble=knn_router")
        empty = split.domains_without_training()
        if empty:
            raise MMCError(f"the split leaves domains {empty} without training texts for ensemble=domain_router; "
                           "raise ensemble.train_fraction or give those domains more texts")


@dataclass
class KnnRouterEnsemble(EnsembleConfig):
    kind: str = "knn_router"
    k: int = 10  # training texts whose losses predict an evaluation text's

    def check(self, path: str) -> None:
        super().check(path)
        if self.k < 1:
            raise MMCError(f"{path}.k={self.k}; use at least 1 neighbour")

    def check_data(self, split: TextSplit, has_texts: bool) -> None:
        if not has_texts:
            raise MMCError("ensemble=knn_router compares texts, and this loss matrix comes without them; "
                           "score a corpus (dataset=..., a scored pool) or choose another ensemble")
        if self.k > len(split.train):
            raise MMCError(f"ensemble.k={self.k} is larger than the {len(split.train)} training texts; lower "
                           "ensemble.k or raise ensemble.train_fraction")


def oracle(cfg: OracleEnsemble, data: EnsembleData) -> Combiner:
    return MinCombiner(data.eval_weighted())


def mixture(cfg: MixtureEnsemble, data: EnsembleData) -> Combiner:
    evaluation = data.split.evaluation
    scale = data.eval_weights() / data.lm.unit_length(data.loss.unit, data.loss.ref_bytes_per_token)[evaluation]
    return MixtureCombiner(data.lm.nll[:, evaluation], scale)


def domain_router(cfg: DomainRouterEnsemble, data: EnsembleData) -> Combiner:
    train_loss, train_weights = data.train_inputs()
    split = data.split
    predicted = domain_predictor(train_loss, train_weights, split.domains[split.train],
                                 split.domains[split.evaluation])
    return RouterCombiner(predicted, data.eval_weighted())


def knn_router(cfg: KnnRouterEnsemble, data: EnsembleData) -> Combiner:
    train_loss, train_weights = data.train_inputs()
    neighbours = nearest_training_texts(data.texts, data.split.train, data.split.evaluation, cfg.k)
    return RouterCombiner(knn_predictor(train_loss, train_weights, neighbours), data.eval_weighted())


ENSEMBLES = Registry("ensemble", [
    Option("oracle", oracle, OracleEnsemble),
    Option("mixture", mixture, MixtureEnsemble),
    Option("domain_router", domain_router, DomainRouterEnsemble),
    Option("knn_router", knn_router, KnnRouterEnsemble),
])


def build_combiner(cfg: EnsembleConfig, data: EnsembleData) -> Combiner:
    """The combiner of option `cfg` on the evaluation texts of `data`, after its data check."""
    cfg.check_data(data.split, data.texts is not None)
    return ENSEMBLES.run(cfg.kind)(cfg, data)
