"""ChoiceMatrix: every model's log-likelihood of every choice of every multiple-choice item, and its error rate.

It offers the LossMatrix interface the analysis reads (models, families, params, text ids, domains, per-text
losses and weights), so search, fits and figures run unchanged on it: an item's loss is its error, 1 if the
model's answer is wrong and 0 if right, and a subset's loss is an error rate. A model's answer is the choice of
highest score: its log-likelihood given the context, or that per byte of the choice with length_norm=bytes
(ties: the lower choice index, as numpy's and lm-evaluation-harness's argmax). A model's distribution over an
item's choices is the softmax of those scores (the choice mixture and the confidence router use it).
"""
from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmc.errors import MMCError
from mmc.losses import LossConfig, Measure, check_models, load_matrix
from mmc.tasks import LENGTH_NORMS

FIELDS = ("models", "families", "params", "item_ids", "domains", "loglik", "gold", "choice_bytes")
Z95 = 1.959963984540054  # two-sided 95 % normal quantile (Wilson intervals)


@dataclass
class ChoiceMatrix:
    """Models x items x choices log-likelihoods (nats, float64; NaN where an item has fewer choices)."""

    models: np.ndarray  # str (M,)
    families: np.ndarray  # str (M,)
    params: np.ndarray  # int64 (M,)
    item_ids: np.ndarray  # str (I,)
    domains: np.ndarray  # str (I,): each item's task
    loglik: np.ndarray  # float64 (M, I, C)
    gold: np.ndarray  # int64 (I,)
    choice_bytes: np.ndarray  # int64 (I, C): UTF-8 bytes of each choice (0 where there is none)
    length_norm: str = field(default="none")  # mmc.tasks.LENGTH_NORMS: how a model's answer is picked

    data_kind = "choices"  # what the ensemble options combine (mmc.ensemble)
    artifact = "choice_matrix.npz"  # what a run logs it as

    def __post_init__(self):
        self.models = np.asarray(self.models, dtype=str)
        self.families = np.asarray(self.families, dtype=str)
        self.params = np.asarray(self.params, dtype=np.int64)
        self.item_ids = np.asarray(self.item_ids, dtype=str)
        self.domains = np.asarray(self.domains, dtype=str)
        self.loglik = np.asarray(self.loglik, dtype=np.float64)
        self.gold = np.asarray(self.gold, dtype=np.int64)
        self.choice_bytes = np.asarray(self.choice_bytes, dtype=np.int64)
        self.length_norm = str(self.length_norm)  # a 0-d array when loaded
        self.validate()

    @property
    def text_ids(self) -> np.ndarray:
        """The item ids: what the analysis calls its texts."""
        return self.item_ids

    @property
    def n_models(self) -> int:
        return len(self.models)

    @property
    def n_texts(self) -> int:
        return len(self.item_ids)

    @property
    def n_bytes(self) -> np.ndarray:
        """(I,) UTF-8 bytes of each item's choices (the matrix does not hold its contexts)."""
        return self.choice_bytes.sum(axis=1)

    @property
    def present(self) -> np.ndarray:
        """bool (I, C): which choices each item has."""
        return ~np.isnan(self.loglik[0])

    @property
    def n_choices(self) -> np.ndarray:
        return self.present.sum(axis=1)

    def validate(self) -> None:
        m, n = len(self.models), len(self.item_ids)
        if m == 0 or n == 0:
            raise MMCError(f"choice matrix is empty ({m} models x {n} items); score a non-empty pool and task corpus")
        c = self.loglik.shape[2] if self.loglik.ndim == 3 else 0
        for name, arr, shape in [("families", self.families, (m,)), ("params", self.params, (m,)),
                                 ("domains", self.domains, (n,)), ("loglik", self.loglik, (m, n, c)),
                                 ("gold", self.gold, (n,)), ("choice_bytes", self.choice_bytes, (n, c))]:
            if arr.shape != shape:
                raise MMCError(f"choice matrix field {name} has shape {arr.shape}, expected {shape}")
        check_models(self.models, self.params)
        if self.length_norm not in LENGTH_NORMS:
            raise MMCError(f"length_norm={self.length_norm!r} is not one of {', '.join(LENGTH_NORMS)}")
        present = self.present
        if (np.isnan(self.loglik) != ~present[None]).any() or np.isinf(self.loglik).any():
            bad = np.flatnonzero((np.isnan(self.loglik) != ~present[None]).any(axis=(1, 2))
                                 | np.isinf(self.loglik).any(axis=(1, 2)))
            raise MMCError(f"models {self.models[bad].tolist()} have non-finite log-likelihoods or other choices than "
                           f"the first model; rescore them with scoring.force=true")
        counts = present.sum(axis=1)
        where = np.flatnonzero((counts < 2) | (present != (np.arange(c)[None, :] < counts[:, None])).any(axis=1))
        if len(where):
            raise MMCError(f"item {self.item_ids[where[0]]!r} has {counts[where[0]]} choices or a gap among them; "
                           "every item needs two or more choices, NaN only after its last")
        wrong = np.flatnonzero((self.gold < 0) | (self.gold >= counts))
        if len(wrong):
            raise MMCError(f"item {self.item_ids[wrong[0]]!r}: gold {self.gold[wrong[0]]} is out of range for its "
                           f"{counts[wrong[0]]} choices")
        if self.length_norm == "bytes" and (self.choice_bytes[present] <= 0).any():
            raise MMCError("length_norm=bytes divides by each choice's bytes, and some choices are empty; "
                           "use dataset.length_norm=none or drop those items")

    def scores(self) -> np.ndarray:
        """(M, I, C) what a model's answer maximises: log-likelihood (per byte with length_norm=bytes); -inf
        where an item has no such choice."""
        scores = self.loglik / self.choice_bytes[None] if self.length_norm == "bytes" else self.loglik.copy()
        scores[:, ~self.present] = -np.inf
        return scores

    def answers(self) -> np.ndarray:
        """(M, I) each model's chosen choice (ties: the lower index)."""
        return self.scores().argmax(axis=2)

    def choice_probabilities(self) -> np.ndarray:
        """(M, I, C) each model's softmax over an item's choice scores; 0 where there is no choice."""
        scores = self.scores()
        weights = np.exp(scores - scores.max(axis=2, keepdims=True))
        return weights / weights.sum(axis=2, keepdims=True)

    def gold_scores(self) -> np.ndarray:
        """(M, I) each model's score of the right choice."""
        return np.take_along_axis(self.scores(), self.gold[None, :, None], axis=2)[:, :, 0]

    def per_text_loss(self, unit: str = "bits_per_byte", ref_bytes_per_token: float = 4.0) -> np.ndarray:
        """(M, I) float64 errors: 1 where a model's answer is wrong. An error has no unit: `unit` does not apply."""
        return (self.answers() != self.gold[None, :]).astype(np.float64)

    def text_weights(self, aggregate: str = "mean") -> np.ndarray:
        """Every item counts once, so a mean of errors and a ratio of their sums are both the share of items
        answered wrongly, whatever `aggregate`."""
        return np.full(self.n_texts, 1.0 / self.n_texts)

    def weighted_losses(self, loss: LossConfig | None = None) -> np.ndarray:
        """C (M, I): errors times item weights; the oracle's error rate of S is C[S].min(0).sum()."""
        return self.per_text_loss() * self.text_weights()[None, :]

    def measure(self, loss: LossConfig) -> Measure:
        return Measure("acc", "error rate", accuracy=True)

    def summary_tables(self) -> dict[str, list[dict]]:
        return {"accuracy_table.csv": accuracy_table(self)}

    def select_models(self, index) -> "ChoiceMatrix":
        index = np.asarray(index)
        return ChoiceMatrix(self.models[index], self.families[index], self.params[index], self.item_ids,
                            self.domains, self.loglik[index], self.gold, self.choice_bytes, self.length_norm)

    def select_texts(self, index) -> "ChoiceMatrix":
        index = np.asarray(index)
        return ChoiceMatrix(self.models, self.families, self.params, self.item_ids[index], self.domains[index],
                            self.loglik[:, index], self.gold[index], self.choice_bytes[index], self.length_norm)

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, length_norm=np.array(self.length_norm),
                            **{name: getattr(self, name) for name in FIELDS})

    @classmethod
    def load(cls, path: str | Path) -> "ChoiceMatrix":
        return load_matrix(cls, path, FIELDS)


def is_choice_matrix(path: str | Path) -> bool:
    """An .npz file holding choice log-likelihoods (else, for mmc, a loss matrix: unreadable files too, whose
    error LossMatrix.load reports)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return "loglik.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def wilson_interval(correct: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion correct / n."""
    p, z2 = correct / n, Z95 ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_table(cm: ChoiceMatrix) -> list[dict]:
    """accuracy_table.csv: per model and task (and "all"), the accuracy with its 95 % Wilson interval, the number
    of items and the chance level (the mean of 1 / choices over those items), sorted by family then params."""
    correct = cm.per_text_loss() == 0
    tasks = sorted(set(cm.domains.tolist()))
    rows = []
    for i in sorted(range(cm.n_models), key=lambda i: (cm.families[i], cm.params[i], cm.models[i])):
        for task in tasks + ["all"]:
            mask = np.ones(cm.n_texts, dtype=bool) if task == "all" else cm.domains == task
            right, n = int(correct[i, mask].sum()), int(mask.sum())
            lo, hi = wilson_interval(right, n)
            rows.append({"name": str(cm.models[i]), "family": str(cm.families[i]), "params": int(cm.params[i]),
                         "task": task, "n_items": n, "accuracy": right / n, "accuracy_lo": lo, "accuracy_hi": hi,
                         "chance": float((1.0 / cm.n_choices[mask]).mean())})
    return rows
