"""Ensembles: how a subset's members are combined on a text (conf/ensemble/<name>.yaml selects one).

ENSEMBLES is the one list of options. Each builds a combiner (mmc.ensemble.combiners) on the evaluation
texts of the run's split (mmc.ensemble.split) from an EnsembleData; search strategies, tables and fits
then treat every option alike. `oracle` is the paper's: per text, the member with the lowest loss.
The realisable ones: `mixture` (whole-text Bayesian mixture, uniform prior), `domain_router` and
`knn_router` (routers whose predictions are learnt from the training texts only, mmc.ensemble.routers).
Finer than a text, from per-token losses (mmc.segments): `segment_oracle` (the best member per segment: a
lower bound for any system switching at those boundaries), `switching_mixture` (fixed share over segments,
its rate chosen on the training texts) and `prefix_router` (every member reads a prefix, the best of them
the rest).
On multiple-choice items (a mmc.choices.ChoiceMatrix: a loss is an error, 1 or 0), `oracle` solves an item when
any member does, `mixture` averages the members' distributions over the choices, `domain_router` routes each task
to its best member on the training items, and three options apply to items only: `oracle_loss` (the member with
the lowest loss on the right answer: the paper's rule carried over, not realisable), `vote` (majority, ties to the
larger model) and `confidence` (the member most sure of its answer).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Optional

import numpy as np
from omegaconf import MISSING

from mmc.ensemble.combiners import (ChoiceMixtureCombiner, Combiner, MinCombiner, MixtureCombiner, PrefixRouterCombiner,
                                    RouterCombiner, SwitchingMixtureCombiner, VoteCombiner)
from mmc.ensemble.routers import domain_predictor, knn_predictor, nearest_training_texts
from mmc.ensemble.split import TextSplit
from mmc.errors import MMCError
from mmc.losses import LossConfig, LossMatrix
from mmc.registry import Option, Registry, choices
from mmc.segments import GRANULARITIES, Cuts, common_boundaries, prefix_cuts, segment_nll, unit_cuts


@dataclass
class EnsembleData:
    """What every ensemble option is built from: the run's losses on all texts, their split, and side data."""

    lm: LossMatrix  # or a mmc.choices.ChoiceMatrix (data_kind "choices"), whose losses are errors
    loss: LossConfig
    split: TextSplit
    texts: Optional[list[str]] = None  # aligned with lm.text_ids; None when the texts are not at hand
    tokens: Any = None  # a mmc.token_losses.TokenLosses of lm's models and texts; None without per-token losses
    _segments: dict = field(default_factory=dict, repr=False)  # granularity -> (segment NLL (M, G), Cuts)

    def __post_init__(self):
        self.per_text = self.lm.per_text_loss(self.loss.unit, self.loss.ref_bytes_per_token)  # (M, N)
        self.weights = self.lm.text_weights(self.loss.aggregate)  # (N,), sum 1

    @property
    def data_kind(self) -> str:
        return self.lm.data_kind

    def eval_weights(self) -> np.ndarray:
        """(E,) the weights of the evaluation texts, renormalised: losses are means over those texts."""
        return self.part_weights(self.split.evaluation)

    def part_weights(self, texts: np.ndarray) -> np.ndarray:
        """The weights of some texts, renormalised: losses are means over those texts."""
        w = self.weights[texts]
        return w / w.sum()

    def nats_scale(self, texts: np.ndarray) -> np.ndarray:
        """(len(texts),) what turns a text's NLL in nats into its weighted loss among `texts`."""
        return self.part_weights(texts) / self.lm.unit_length(self.loss.unit, self.loss.ref_bytes_per_token)[texts]

    @cached_property
    def common(self) -> Cuts:
        """The boundaries common to every model, per text (from the token losses)."""
        return common_boundaries(self.tokens, self.lm.n_bytes)

    def segments(self, granularity: str) -> tuple[np.ndarray, Cuts]:
        """(segment NLL (M, G) in nats, their cuts) of every text at `granularity`, computed once per run."""
        if granularity not in self._segments:
            cuts = unit_cuts(self.texts or [], self.common, granularity)
            self._segments[granularity] = segment_nll(self.tokens, cuts), cuts
        return self._segments[granularity]

    def segments_of(self, granularity: str, texts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(segment NLL (M, G'), each segment's position in `texts` (G',), scale (len(texts),)) of the segments of
        `texts` (sorted indices) at `granularity`: what a segment combiner on those texts takes."""
        nll, cuts = self.segments(granularity)
        position = np.full(self.lm.n_texts, -1)
        position[texts] = np.arange(len(texts))
        keep = position[cuts.segment_text] >= 0
        return nll[:, keep], position[cuts.segment_text[keep]], self.nats_scale(texts)

    def eval_weighted(self) -> np.ndarray:
        """C (M, E) on the evaluation texts: the oracle's input there."""
        return self.per_text[:, self.split.evaluation] * self.eval_weights()[None, :]

    def train_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """(losses (M, T), weights (T,)) of the training texts: all a router may learn from."""
        return self.per_text[:, self.split.train], self.weights[self.split.train]


DATA_KINDS = {"texts": "texts", "choices": "multiple-choice items"}  # what a matrix's losses are of


@dataclass
class EnsembleConfig:
    kind: str = MISSING  # set by the option: ensemble=oracle, ...
    train_fraction: float = 0.5  # share of each domain's texts that routers learn from; the rest evaluate
    seed: int = 0  # the split's draw

    monotone: ClassVar[bool] = False  # adding a member never raises the loss (search=exact and milp need it)
    data_kinds: ClassVar[tuple[str, ...]] = ("texts",)  # what it combines (DATA_KINDS)

    def check(self, path: str) -> None:
        if not 0 < self.train_fraction < 1:
            raise MMCError(f"{path}.train_fraction={self.train_fraction}; use a share strictly between 0 and 1")

    def check_data(self, split: TextSplit, has_texts: bool, has_tokens: bool, data_kind: str) -> None:
        """One-line MMCError when this option cannot run on these texts or items (checked before any scoring);
        `data_kind` says which (DATA_KINDS)."""
        if data_kind not in self.data_kinds:
            usable = [name for name in ENSEMBLES if data_kind in ENSEMBLES[name].schema.data_kinds]
            raise MMCError(f"ensemble={self.kind} does not apply to {DATA_KINDS[data_kind]}; use one of "
                           f"{', '.join(usable)}")


BOTH = ("texts", "choices")


@dataclass
class OracleEnsemble(EnsembleConfig):
    kind: str = "oracle"

    monotone = True
    data_kinds = BOTH


@dataclass
class MixtureEnsemble(EnsembleConfig):
    kind: str = "mixture"

    data_kinds = BOTH


@dataclass
class DomainRouterEnsemble(EnsembleConfig):
    kind: str = "domain_router"

    data_kinds = BOTH

    def check_data(self, split: TextSplit, has_texts: bool, has_tokens: bool, data_kind: str) -> None:
        super().check_data(split, has_texts, has_tokens, data_kind)
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

    def check_data(self, split: TextSplit, has_texts: bool, has_tokens: bool, data_kind: str) -> None:
        super().check_data(split, has_texts, has_tokens, data_kind)
        if not has_texts:
            raise MMCError("ensemble=knn_router compares texts, and this loss matrix comes without them; "
                           "score a corpus (dataset=..., a scored pool) or choose another ensemble")
        if self.k > len(split.train):
            raise MMCError(f"ensemble.k={self.k} is larger than the {len(split.train)} training texts; lower "
                           "ensemble.k or raise ensemble.train_fraction")


NO_TOKENS = ("needs per-token losses, and this loss matrix has none; score a pool (zoo, local, tiny_random) with "
             "scoring.token_losses=true")


@dataclass
class SegmentEnsemble(EnsembleConfig):
    """The options that combine members segment by segment (mmc.segments)."""

    granularity: str = field(default="line", metadata=choices(GRANULARITIES))  # where members may switch

    def check_data(self, split: TextSplit, has_texts: bool, has_tokens: bool, data_kind: str) -> None:
        super().check_data(split, has_texts, has_tokens, data_kind)
        if not has_tokens:
            raise MMCError(f"ensemble={self.kind} {NO_TOKENS}")
        if self.granularity != "text" and not has_texts:
            raise MMCError(f"ensemble.granularity={self.granularity} cuts texts at their {self.granularity}s, and "
                           "the texts are not at hand; use ensemble.granularity=text or score a corpus")


@dataclass
class SegmentOracleEnsemble(SegmentEnsemble):
    kind: str = "segment_oracle"

    monotone = True


@dataclass
class SwitchingMixtureEnsemble(SegmentEnsemble):
    kind: str = "switching_mixture"
    # fixed-share rates tried on the training texts; the one with the lowest whole-pool loss there is used
    rates: list[float] = field(default_factory=lambda: [0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 0.5, 0.7, 0.9])

    def check(self, path: str) -> None:
        super().check(path)
        if not self.rates or any(not 0 <= r < 1 for r in self.rates):
            raise MMCError(f"{path}.rates={list(self.rates)}; give one or more switching rates in [0, 1)")

    def check_data(self, split: TextSplit, has_texts: bool, has_tokens: bool, data_kind: str) -> None:
        super().check_data(split, has_texts, has_tokens, data_kind)
        if len(split.train) == 0:
            raise MMCError("ensemble=switching_mixture chooses its rate on training texts, and the split has none; "
                           "raise ensemble.train_fraction or use a larger corpus")


@dataclass
class PrefixRouterEnsemble(EnsembleConfig):
    kind: str = "prefix_router"
    prefix_bytes: int = 128  # every member reads this much of a text (up to a common boundary)

    def check(self, path: str) -> None:
        super().check(path)
        if self.prefix_bytes < 0:
            raise MMCError(f"{path}.prefix_bytes={self.prefix_bytes}; use 0 or more bytes")

    def check_data(self, split: TextSplit, has_texts: bool, has_tokens: bool, data_kind: str) -> None:
        super().check_data(split, has_texts, has_tokens, data_kind)
        if not has_tokens:
            raise MMCError(f"ensemble=prefix_router {NO_TOKENS}")


@dataclass
class OracleLossEnsemble(EnsembleConfig):
    kind: str = "oracle_loss"

    data_kinds = ("choices",)


@dataclass
class VoteEnsemble(EnsembleConfig):
    kind: str = "vote"

    data_kinds = ("choices",)


@dataclass
class ConfidenceEnsemble(EnsembleConfig):
    kind: str = "confidence"

    data_kinds = ("choices",)


def oracle(cfg: OracleEnsemble, data: EnsembleData) -> Combiner:
    """Texts: the member of lowest loss per text. Items: MinCombiner on errors, so an item is solved when any
    member solves it."""
    return MinCombiner(data.eval_weighted())


def mixture(cfg: MixtureEnsemble, data: EnsembleData) -> Combiner:
    """Texts: the whole-text mixture. Items: the average of the members' distributions over the choices."""
    evaluation = data.split.evaluation
    if data.data_kind == "choices":
        return ChoiceMixtureCombiner(data.lm.choice_probabilities()[:, evaluation], data.lm.gold[evaluation],
                                     data.eval_weights())
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


def oracle_loss(cfg: OracleLossEnsemble, data: EnsembleData) -> Combiner:
    """Route each item to the member of highest score on the right choice (the paper's lowest loss), pay its error."""
    return RouterCombiner(-data.lm.gold_scores()[:, data.split.evaluation], data.eval_weighted())


def vote(cfg: VoteEnsemble, data: EnsembleData) -> Combiner:
    lm, evaluation = data.lm, data.split.evaluation
    rank = np.empty(lm.n_models, dtype=np.int64)
    rank[np.lexsort((np.arange(lm.n_models), -lm.params))] = np.arange(lm.n_models)  # largest first, then index
    return VoteCombiner(lm.answers()[:, evaluation], lm.loglik.shape[2], rank, lm.gold[evaluation],
                        data.eval_weights())


def confidence(cfg: ConfidenceEnsemble, data: EnsembleData) -> Combiner:
    """Route each item to the member whose answer has the highest probability among the item's choices (ties: the
    lower model index), pay its error."""
    sure = data.lm.choice_probabilities().max(axis=2)
    return RouterCombiner(-sure[:, data.split.evaluation], data.eval_weighted())


def segment_oracle(cfg: SegmentOracleEnsemble, data: EnsembleData) -> Combiner:
    nll, position, scale = data.segments_of(cfg.granularity, data.split.evaluation)
    return MinCombiner(nll * scale[position])


def switching_mixture(cfg: SwitchingMixtureEnsemble, data: EnsembleData) -> Combiner:
    """Fixed share at the rate whose whole-pool loss on the training texts is lowest (ties: the lower rate)."""
    train = data.segments_of(cfg.granularity, data.split.train)
    pool = np.ones((1, data.lm.n_models), dtype=bool)
    train_loss = [SwitchingMixtureCombiner(*train, rate).subset_losses(pool)[0] for rate in cfg.rates]
    rate = sorted(cfg.rates)[int(np.argmin([train_loss[cfg.rates.index(r)] for r in sorted(cfg.rates)]))]
    return SwitchingMixtureCombiner(*data.segments_of(cfg.granularity, data.split.evaluation), rate)


def prefix_router(cfg: PrefixRouterEnsemble, data: EnsembleData) -> Combiner:
    """Prefix and rest NLL of each evaluation text, cut at its first common boundary at or after prefix_bytes."""
    cuts, prefix_end = prefix_cuts(data.common, cfg.prefix_bytes)
    nll = segment_nll(data.tokens, cuts)
    first_segment = cuts.offsets[:-1] - np.arange(data.lm.n_texts)  # index of each text's first segment
    prefix = np.where(prefix_end > 0, nll[:, first_segment], 0.0)  # (the whole text when it is shorter)
    evaluation = data.split.evaluation
    rest = data.lm.nll[:, evaluation] - prefix[:, evaluation]
    share = prefix_end[evaluation] / data.lm.n_bytes[evaluation]
    return PrefixRouterCombiner(prefix[:, evaluation], rest, data.nats_scale(evaluation), share)


ENSEMBLES = Registry("ensemble", [
    Option("oracle", oracle, OracleEnsemble),
    Option("mixture", mixture, MixtureEnsemble),
    Option("domain_router", domain_router, DomainRouterEnsemble),
    Option("knn_router", knn_router, KnnRouterEnsemble),
    Option("segment_oracle", segment_oracle, SegmentOracleEnsemble),
    Option("switching_mixture", switching_mixture, SwitchingMixtureEnsemble),
    Option("prefix_router", prefix_router, PrefixRouterEnsemble),
    Option("oracle_loss", oracle_loss, OracleLossEnsemble),
    Option("vote", vote, VoteEnsemble),
    Option("confidence", confidence, ConfidenceEnsemble),
])


def build_combiner(cfg: EnsembleConfig, data: EnsembleData) -> Combiner:
    """The combiner of option `cfg` on the evaluation texts of `data`, after its data check."""
    cfg.check_data(data.split, data.texts is not None, data.tokens is not None, data.data_kind)
    return ENSEMBLES.run(cfg.kind)(cfg, data)
