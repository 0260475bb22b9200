"""LossMatrix: raw per-(model, text) totals, units derived at analysis time (see DESIGN, Units)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmc.errors import MMCError

UNITS = ("bits_per_byte", "nats_per_byte", "nats_per_char", "nats_per_token_ref")
AGGREGATES = ("mean", "ratio_of_sums")


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
        dupes = sorted({x for x in self.models.tolist() if self.models.tolist().count(x) > 1})
        if dupes:
            raise MMCError(f"duplicate model names {dupes}; give every model of the pool a unique name")
        bad = self.models[self.params <= 0]
        if len(bad):
            raise MMCError(f"models {bad.tolist()} have no positive parameter count; set `params` for them")
        if not np.isfinite(self.nll).all():
            rows = self.models[~np.isfinite(self.nll).all(axis=1)]
            raise MMCError(f"non-finite NLL for models {rows.tolist()}; rescore them with scoring.force=true")
        if (self.n_bytes <= 0).any() or (self.n_chars <= 0).any():
            raise MMCError("texts with zero length in the loss matrix; drop empty texts from the corpus")

    def per_text_loss(self, unit: str = "bits_per_byte", ref_bytes_per_token: float = 4.0) -> np.ndarray:
        """Loss of every (model, text) in `unit`, float64 (M, N)."""
        if unit == "bits_per_byte":
            return self.nll / self.n_bytes / math.log(2)
        if unit == "nats_per_byte":
            return self.nll / self.n_bytes
        if unit == "nats_per_char":
            return self.nll / self.n_chars
        if unit == "nats_per_token_ref":
            return self.nll / (self.n_bytes / ref_bytes_per_token)
        raise MMCError(f"unknown unit {unit!r}; use one of {', '.join(UNITS)}")

    def text_weights(self, aggregate: str = "mean") -> np.ndarray:
        """Weights w (N,), summing to 1, such that a loss over texts is sum_x w_x * L(x).

        `mean` averages per-text losses; `ratio_of_sums` (total NLL / total length) is the same as a
        length-weighted mean, and the oracle's per-text choice is unchanged because w_x > 0.
        """
        if aggregate == "mean":
            return np.full(self.n_texts, 1.0 / self.n_texts)
        if aggregate == "ratio_of_sums":
            return self.n_bytes / self.n_bytes.sum()
        raise MMCError(f"unknown aggregate {aggregate!r}; use one of {', '.join(AGGREGATES)}")

    def weighted_losses(self, unit="bits_per_byte", aggregate="mean", ref_bytes_per_token=4.0) -> np.ndarray:
        """C (M, N) with C[i, x] = w_x * L_i(x): the oracle loss of S is C[S].min(0).sum()."""
        return self.per_text_loss(unit, ref_bytes_per_token) * self.text_weights(aggregate)[None, :]

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
        path = Path(path)
        if not path.is_file():
            raise MMCError(f"loss matrix file {path} does not exist; pass pool.path=<a loss_matrix.npz>")
        with np.load(path, allow_pickle=False) as z:
            missing = {"models", "families", "params", "text_ids", "nll", "n_tokens", "n_bytes", "n_chars"} - set(z)
            if missing:
                raise MMCError(f"{path} lacks fields {sorted(missing)}; it is not an mmc loss_matrix.npz")
            return cls(**{k: z[k] for k in z.files if k in cls.__dataclass_fields__})


def oracle_losses(weighted: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Oracle loss of each subset: members is bool (S, M); returns (S,) = sum_x min_{i in S} C[i, x]."""
    members = np.asarray(members, dtype=bool)
    out = np.empty(len(members))
    for s, row in enumerate(members):  # one (k, N) min per subset; S is small wherever this is used
        out[s] = weighted[row].min(axis=0).sum()
    return out
