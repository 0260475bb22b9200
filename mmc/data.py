"""Corpus: the texts every model is scored on."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass
class Corpus:
    """Evaluation texts with stable ids (content hashes) and domain labels."""

    ids: list[str]
    texts: list[str]
    domains: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def n_bytes(self) -> np.ndarray:
        """UTF-8 bytes of exactly the strings that are scored."""
        return np.array([len(t.encode("utf-8")) for t in self.texts], dtype=np.int64)

    @property
    def n_chars(self) -> np.ndarray:
        return np.array([len(t) for t in self.texts], dtype=np.int64)

    @property
    def hash(self) -> str:
        """Hash of the ordered text ids: two corpora with the same hash hold the same texts."""
        return hashlib.sha256("\n".join(self.ids).encode()).hexdigest()[:16]


def text_id(text: str) -> str:
    """Stable content id of a text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
