"""LossMatrix: raw per-(model, text) totals, units derived at analysis time (see DESIGN, Units)."""
from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmc.errors import MMCError, first_line
from mmc.models import duplicates
from mmc.registry import Option, Registry, choices

# Loss of every (model, text) from the raw totals, per unit: the text's NLL in nats divided by a per-text
# length, f(lm, ref_bytes_per_token) -> (N,). Every unit is linear in the NLL, so a mixture's NLL converts alike.
UNITS = Registry("unit", [
    Option("bits_per_byte", lambda lm, ref: lm.n_bytes * math.log(2)),
    Option("nats_per_byte", lambda lm, ref: lm.n_bytes.astype(np.float64)),
    Option("nats_per_char", lambda lm, ref: lm.n_chars.astype(np.float64)),
    Option("nats_per_token_ref", lambda lm, ref: lm.n_bytes / ref),  # per reference token
])
# Weights w (N,), summing to 1, such that a loss over texts is sum_x w_x * L(x). `mean` averages per-text
# losses; `ratio_of_sums` (total NLL / total length) is a length-weighted mean. The oracle's per-text choice
# does not depend on them, since w_x > 0.
AGGREGATES = Registry("aggregate", [
    Option("mean", lambda lm: np.full(lm.n_texts, 1.0 / lm.n_texts)),
    Option("ratio_of_sums", lambda lm: lm.n_bytes / lm.n_bytes.sum()),
])


@dataclass(frozen=True)
class Measure:
    """What the analysis of a matrix measures, named in one place: its headline metrics are `<metric>.<name>`
    (loss.best_single, or acc.best_single for accuracy, which reports 1 - the error rate), its curves are
    labelled `label`, and an error rate's frontier that reaches 0 or is flat is reported, not fitted."""

    metric: str  # "loss" or "acc"
    label: str  # the unit of the y axes: "bits per byte", "error rate", ...
    accuracy: bool = False  # the loss is an error rate in [0, 1]: headlines report 1 - it

    def headline(self, name: str, loss: float) -> dict[str, float]:
        """{metric key: value} of a headline loss, e.g. the best single model's."""
        return {f"{self.metric}.{name}": 1.0 - loss if self.accuracy else loss}

    def unfit_reason(self, params: np.ndarray, losses: np.ndarray) -> str | None:
        """Why a frontier of error rates has no power law to fit (None: fit it); losses have mmc.fit's checks."""
        if not self.accuracy or len(losses) == 0:
            return None
        losses = np.asarray(losses, dtype=np.float64)
        if losses.min() <= 0:
            return (f"saturated: the frontier reaches an error rate of 0 at {int(np.min(np.asarray(params)[losses <= 0])):,}"
                    " parameters, so no floor above 0 is measurable; use harder items")
        if np.ptp(losses) == 0:
            return (f"flat: the error rate stays at {losses[0]:.4g} over the {len(losses)} frontier point(s): no larger "
                    "subset answers fewer items wrongly; use items the pool can tell apart")
        return None


@dataclass
class LossConfig:
    """How per-text losses are measured and averaged (see DESIGN, Units)."""

    unit: str = field(default="bits_per_byte", metadata=choices(UNITS))
    aggregate: str = field(default="mean", metadata=choices(AGGREGATES))
    ref_bytes_per_token: float = 4.0  # nats_per_token_ref: bytes per reference token


def check_models(models: np.ndarray, params: np.ndarray) -> None:
    """Unique names and a positive integer parameter count per model: the one check of a pool's identity."""
    dupes = duplicates(np.asarray(models).tolist())
    if dupes:
        raise MMCError(f"duplicate model names {dupes}; give every model of the pool a unique name")
    params = np.asarray(params, dtype=np.float64)
    bad = ~(np.isfinite(params) & (params > 0) & (params == np.round(params)))
    if bad.any():
        raise MMCError(f"models {np.asarray(models)[bad].tolist()} have no positive integer parameter count; "
                       "set their `params`")


def check_finite(models: np.ndarray, losses: np.ndarray) -> None:
    """Finite losses for every model (a row per model): the one check that no NaN or inf reaches the analysis."""
    bad = ~np.isfinite(losses).all(axis=1)
    if bad.any():
        raise MMCError(f"non-finite losses for models {np.asarray(models)[bad].tolist()}; "
                       "rescore them with scoring.force=true")


@dataclass
class LossMatrix:
    """Models x texts totals. `nll` in nats (float64), lengths as integers; `domains` is optional."""

    models: np.ndarray  # str (M,)
    families: np.ndarray  # str (M,)
    params: np.ndarray  # int64 (M,)
    text_ids: np.ndarray  # str (N,)
    nll: np.ndarray  # float64 (M, N), total nats per text
    n_tokens: np.ndarray  # int64 (M, N)
    n_bytes: np.ndarray  # int64 (N,)
    n_chars: np.ndarray  # int64 (N,)
    domains: np.ndarray = field(default=None)  # str (N,) or None

    def __post_init__(self):
        self.models = np.asarray(self.models, dtype=str)
        self.families = np.asarray(self.families, dtype=str)
        self.params = np.asarray(self.params, dtype=np.int64)
        self.text_ids = np.asarray(self.text_ids, dtype=str)
        self.nll = np.asarray(self.nll, dtype=np.float64)
        self.n_tokens = np.asarray(self.n_tokens, dtype=np.int64)
        self.n_bytes = np.asarray(self.n_bytes, dtype=np.int64)
        self.n_chars = np.asarray(self.n_chars, dtype=np.int64)
        if self.domains is None:
            self.domains = np.full(len(self.text_ids), "all")
        self.domains = np.asarray(self.domains, dtype=str)
        self.validate()

    @property
    def n_models(self) -> int:
        return len(self.models)

    @property
    def n_texts(self) -> int:
        return len(self.text_ids)

    def validate(self) -> None:
        m, n = len(self.models), len(self.text_ids)
        if m == 0 or n == 0:
            raise MMCError(f"loss matrix is empty ({m} models x {n} texts); score a non-empty pool and corpus")
        for name, arr, shape in [
            ("families", self.families, (m,)),
            ("params", self.params, (m,)),
            ("nll", self.nll, (m, n)),
            ("n_tokens", self.n_tokens, (m, n)),
            ("n_bytes", self.n_bytes, (n,)),
            ("n_chars", self.n_chars, (n,)),
            ("domains", self.domains, (n,)),
        ]:
            if arr.shape != shape:
                raise MMCError(f"loss matrix field {name} has shape {arr.shape}, expected {shape}")
        check_models(self.models, self.params)
        check_finite(self.models, self.nll)
        if (self.n_bytes <= 0).any() or (self.n_chars <= 0).any():
            raise MMCError("texts with zero length in the loss matrix; drop empty texts from the corpus")

    data_kind = "texts"  # what the ensemble options combine (mmc.ensemble)
    artifact = "loss_matrix.npz"  # what a run logs it as

    def measure(self, loss: LossConfig) -> Measure:
        return Measure("loss", loss.unit.replace("_", " "))

    def summary_tables(self) -> dict[str, list[dict]]:
        """Tables a run logs beside single_model_table.csv: none for texts."""
        return {}

    def per_text_loss(self, unit: str = "bits_per_byte", ref_bytes_per_token: float = 4.0) -> np.ndarray:
        """Loss of every (model, text) in `unit`, float64 (M, N)."""
        return self.nll / self.unit_length(unit, ref_bytes_per_token)

    def unit_length(self, unit: str = "bits_per_byte", ref_bytes_per_token: float = 4.0) -> np.ndarray:
        """(N,) what a text's NLL in nats is divided by to give its loss in `unit` (see UNITS)."""
        return UNITS.run(unit)(self, ref_bytes_per_token)

    def text_weights(self, aggregate: str = "mean") -> np.ndarray:
        """Weights w (N,), summing to 1, such that a loss over texts is sum_x w_x * L(x) (see AGGREGATES)."""
        return AGGREGATES.run(aggregate)(self)

    def weighted_losses(self, loss: LossConfig | None = None) -> np.ndarray:
        """C (M, N) with C[i, x] = w_x * L_i(x): the oracle loss of S is C[S].min(0).sum()."""
        loss = loss or LossConfig()
        return self.per_text_loss(loss.unit, loss.ref_bytes_per_token) * self.text_weights(loss.aggregate)[None, :]

    def select_models(self, index) -> "LossMatrix":
        index = np.asarray(index)
        return LossMatrix(
            self.models[index], self.families[index], self.params[index], self.text_ids,
            self.nll[index], self.n_tokens[index], self.n_bytes, self.n_chars, self.domains,
        )

    def select_texts(self, index) -> "LossMatrix":
        index = np.asarray(index)
        return LossMatrix(
            self.models, self.families, self.params, self.text_ids[index], self.nll[:, index],
            self.n_tokens[:, index], self.n_bytes[index], self.n_chars[index], self.domains[index],
        )

    def save(self, path: str | Path) -> None:
        np.savez_compressed(
            path, models=self.models, families=self.families, params=self.params, text_ids=self.text_ids,
            nll=self.nll, n_tokens=self.n_tokens, n_bytes=self.n_bytes, n_chars=self.n_chars,
            domains=self.domains,
        )

    @classmethod
    def load(cls, path: str | Path) -> "LossMatrix":
        return load_matrix(cls, path, ("models", "families", "params", "text_ids", "nll", "n_tokens", "n_bytes",
                                       "n_chars"))


def load_matrix(cls, path: str | Path, required: tuple[str, ...]):
    """A matrix of class `cls` (LossMatrix, mmc.choices.ChoiceMatrix) from its .npz artifact, or one-line MMCError
    naming the file: missing, not an npz (or object arrays), fields missing or not of their kind."""
    path, artifact = Path(path), cls.artifact
    if not path.is_file():
        raise MMCError(f"{artifact} file {path} does not exist; pass pool.path=<a {artifact}>")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k in cls.__dataclass_fields__}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:  # not an npz, or object arrays
        raise MMCError(f"{path} is not a readable .npz file ({first_line(e)}); pass pool.path=<the {artifact} "
                       "artifact of a run>") from e
    missing = set(required) - set(arrays)
    if missing:
        raise MMCError(f"{path} lacks fields {sorted(missing)}; it is not an mmc {artifact}")
    try:
        return cls(**arrays)
    except MMCError as e:
        raise MMCError(f"{path}: {e}") from e
    except (ValueError, TypeError) as e:  # arrays that do not convert, e.g. text where numbers belong
        raise MMCError(f"{path}: {first_line(e)}; it is not an mmc {artifact}") from e
