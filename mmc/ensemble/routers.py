"""Routers' predictors: from the training texts' losses, a predicted loss of every model on every evaluation text.

A router sends text x to the member of S with the lowest prediction Â[i, x] and pays its true loss there
(RouterCombiner). A predictor is given the training texts' losses and nothing of the evaluation texts but
their domain or their bytes, so no router can peek.
- domain: Â[i, x] is model i's mean loss over the training texts of x's domain (weighted as the run's
  aggregate weighs texts), so x goes to the member best on its domain's training texts.
- knn: Â[i, x] is model i's mean loss over the k training texts nearest to x. Texts are compared by the
  cosine similarity of TF-IDF vectors of their byte 3-, 4- and 5-grams, hashed into FEATURES buckets; the
  inverse document frequencies come from the training texts.
"""
from __future__ import annotations

import numpy as np

NGRAMS = (3, 4, 5)  # byte n-gram lengths
FEATURES = 2**10  # hash buckets: small dense vectors, so neighbours are one BLAS product per chunk of texts
CHUNK_TEXTS = 1024  # texts hashed, or compared with every training text, at once


def domain_predictor(train_loss: np.ndarray, train_weights: np.ndarray, train_domains: np.ndarray,
                     eval_domains: np.ndarray) -> np.ndarray:
    """Â (M, E): each model's weighted mean loss over the training texts of each evaluation text's domain.
    Every evaluation domain must have training texts (EnsembleConfig.check_data says so first)."""
    predicted = np.empty((len(train_loss), len(eval_domains)))
    for domain in np.unique(eval_domains):
        rows = train_domains == domain
        mean = train_loss[:, rows] @ train_weights[rows] / train_weights[rows].sum()
        predicted[:, eval_domains == domain] = mean[:, None]
    return predicted


def ngram_counts(texts: list[str]) -> np.ndarray:
    """float32 (N, FEATURES): counts of each text's hashed byte n-grams (NGRAMS), vectorised per chunk of texts."""
    out = np.empty((len(texts), FEATURES), dtype=np.float32)
    shift = np.uint64(64 - int(np.log2(FEATURES)))
    for first in range(0, len(texts), CHUNK_TEXTS):
        encoded = [t.encode("utf-8") for t in texts[first:first + CHUNK_TEXTS]]
        lengths = np.array([len(b) for b in encoded])
        data = np.frombuffer(b"".join(encoded), dtype=np.uint8).astype(np.uint64)
        doc = np.repeat(np.arange(len(encoded)), lengths)
        ends = np.cumsum(lengths)
        keys = []
        with np.errstate(over="ignore"):  # the hash wraps around 2^64 on purpose
            for n in NGRAMS:
                starts = np.arange(max(len(data) - n + 1, 0))
                starts = starts[starts + n <= ends[doc[starts]]]  # n-grams inside one text
                code = np.zeros(len(starts), dtype=np.uint64)
                for j in range(n):
                    code = code * np.uint64(257) + data[starts + j] + np.uint64(1)
                bucket = ((code * np.uint64(n) * np.uint64(0x9E3779B97F4A7C15)) >> shift).astype(np.int64)
                keys.append(doc[starts] * FEATURES + bucket)
        counts = np.bincount(np.concatenate(keys), minlength=len(encoded) * FEATURES)
        out[first:first + len(encoded)] = counts.reshape(len(encoded), FEATURES)
    return out


def tfidf(counts: np.ndarray, fit_rows: np.ndarray) -> np.ndarray:
    """L2-normalised TF-IDF rows; smoothed idf = ln((1 + n) / (1 + df)) + 1 from the texts `fit_rows`."""
    df = (counts[fit_rows] > 0).sum(axis=0)
    vectors = counts * (np.log((1 + len(fit_rows)) / (1 + df)) + 1).astype(np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def nearest_training_texts(texts: list[str], train: np.ndarray, evaluation: np.ndarray, k: int) -> np.ndarray:
    """(E, k) indices into `train` of each evaluation text's k most similar training texts."""
    vectors = tfidf(ngram_counts(texts), train)
    train_vectors = vectors[train]
    out = np.empty((len(evaluation), k), dtype=np.int64)
    for start in range(0, len(evaluation), CHUNK_TEXTS):
        similarity = vectors[evaluation[start:start + CHUNK_TEXTS]] @ train_vectors.T  # (chunk, T)
        out[start:start + CHUNK_TEXTS] = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    return out


def knn_predictor(train_loss: np.ndarray, train_weights: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Â (M, E): each model's weighted mean loss over each evaluation text's neighbours (E, k), given as
    indices into the training texts."""
    weights = train_weights[neighbours]  # (E, k)
    return np.einsum("mek,ek->me", train_loss[:, neighbours], weights) / weights.sum(axis=1)[None, :]
