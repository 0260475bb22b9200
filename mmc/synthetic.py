"""Synthetic data: a loss matrix at the paper's scale (71 models, 10 families), for search and fit work
without scoring anything, and pseudo-prose texts for tests and benchmarks.

Per-text loss in nats per byte = irreducible entropy of the text
    + reducible part: difficulty(text) * quality(family) * affinity(family, domain) * (P / 1e8)^-alpha
      times log-normal noise shared within a family (correlated errors) and per model.
Raw totals come out (nll in nats, n_bytes, n_chars, n_tokens), so every unit works.
"""
from __future__ import annotations

import numpy as np

from mmc.errors import MMCError
from mmc.losses import LossMatrix

# name, smallest and largest size (parameters), bytes per token of the family's tokenizer
FAMILIES = (
    ("pythia", 14e6, 12e9, 3.9), ("gpt2", 124e6, 1.5e9, 3.7), ("opt", 125e6, 30e9, 3.7),
    ("qwen2.5", 0.5e9, 72e9, 4.3), ("llama3", 1e9, 70e9, 4.4), ("gemma2", 2e9, 27e9, 4.2),
    ("phi", 1.3e9, 14e9, 3.8), ("mistral", 7e9, 24e9, 4.0), ("smollm2", 135e6, 1.7e9, 4.1),
    ("bloom", 560e6, 7.1e9, 3.6),
)
DOMAINS = ("web", "code", "math", "books", "wiki", "news")
ALPHA = 0.3
SEPARATORS = (" ",) * 12 + (", ", ". ", ".\n", "; ", " - ", "? ")  # after each word of the pseudo-prose
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "ba", "do", "fu", "ga", "hi", "jo", "pe",
              "qu", "we", "xi", "yu", "an", "el", "in", "on", "ur", "st", "tr", "ch", "sh", "th", "ée", "ñu")


def synthetic_loss_matrix(n_models: int = 71, n_texts: int = 2000, seed: int = 0) -> LossMatrix:
    """Deterministic for a seed; models are spread over the families as evenly as possible."""
    if n_models < 1 or n_texts < 1:
        raise MMCError(f"synthetic pool needs n_models >= 1 and n_texts >= 1, got {n_models} x {n_texts}")
    rng = np.random.default_rng(seed)
    n_fam = len(FAMILIES)

    # models: family f gets sizes spaced geometrically over its range, jittered so counts differ
    fam_of_model = np.sort(np.arange(n_models) % n_fam)
    names, params = [], []
    for f, (fam, lo, hi, _) in enumerate(FAMILIES):
        count = int((fam_of_model == f).sum())
        sizes = np.geomspace(lo, hi, count) if count > 1 else np.full(count, np.sqrt(lo * hi))
        params += (sizes * rng.uniform(0.97, 1.03, count)).astype(np.int64).tolist()
        names += [f"{fam}-{_size_label(p)}" for p in sizes]
    params = np.array(params, dtype=np.int64)

    # texts: domain, length, entropy floor and difficulty
    domain = rng.integers(len(DOMAINS), size=n_texts)
    n_bytes = rng.integers(200, 4000, size=n_texts)
    n_chars = np.maximum(1, (n_bytes / rng.uniform(1.0, 1.15, n_texts)).astype(np.int64))
    floor = 0.35 + 0.25 * rng.gamma(2.0, 0.5, n_texts)
    difficulty = rng.lognormal(0.0, 0.35, n_texts)

    quality = rng.lognormal(0.0, 0.12, n_fam)
    affinity = rng.lognormal(0.0, 0.4, (n_fam, len(DOMAINS)))
    family_noise = rng.normal(0.0, 0.3, (n_fam, n_texts))  # shared by a family: correlated errors
    model_noise = rng.normal(0.0, 0.12, (n_models, n_texts))
    scale = (params / 1e8) ** -ALPHA
    reducible = (difficulty[None, :] * (quality[fam_of_model] * scale)[:, None]
                 * affinity[fam_of_model][:, domain] * np.exp(family_noise[fam_of_model] + model_noise))
    nats_per_byte = floor[None, :] + 0.8 * reducible

    bytes_per_token = np.array([b for *_, b in FAMILIES])[fam_of_model]
    n_tokens = np.maximum(1, np.rint(n_bytes[None, :] / bytes_per_token[:, None])).astype(np.int64)
    return LossMatrix(
        models=np.array(names), families=np.array([FAMILIES[f][0] for f in fam_of_model]), params=params,
        text_ids=np.array([f"synthetic-{i:06d}" for i in range(n_texts)]), nll=nats_per_byte * n_bytes,
        n_tokens=n_tokens, n_bytes=n_bytes, n_chars=n_chars, domains=np.array(DOMAINS)[domain],
    )


def _size_label(params: float) -> str:
    return f"{params / 1e9:.3g}b" if params >= 1e9 else f"{params / 1e6:.3g}m"


def _vocabulary(rng: np.random.Generator) -> np.ndarray:
    """2,000 pseudo-words of 2 to 4 syllables."""
    lengths = rng.integers(2, 5, size=2000)
    syllables = rng.integers(0, len(_SYLLABLES), size=(2000, 4))
    return np.array(["".join(_SYLLABLES[s] for s in row[:k]) for row, k in zip(syllables, lengths)])


def synthetic_texts(n_texts: int, seed: int = 0, min_words: int = 5, max_words: int = 200) -> list[str]:
    """Deterministic pseudo-prose: Zipf-distributed words, punctuation, line breaks, a few non-ASCII letters."""
    rng = np.random.default_rng(seed)
    words = _vocabulary(rng)
    zipf = 1.0 / np.arange(1, len(words) + 1)
    return [_sentence(rng, words, zipf / zipf.sum(), n) for n in rng.integers(min_words, max_words + 1, size=n_texts)]


def synthetic_domain_texts(domains, seed: int = 0, min_words: int = 20, max_words: int = 60) -> list[str]:
    """Pseudo-prose per text whose word frequencies depend on its domain (each domain ranks the vocabulary
    in its own order, Zipf-distributed), so that comparing texts recovers domains: the texts of
    pool=synthetic, which routers such as knn_router read. Their lengths are not the loss matrix's n_bytes
    (drawn separately). Drawn all at once: 10,000 texts take a fraction of a second."""
    domains = np.asarray(domains, dtype=str)
    rng = np.random.default_rng([seed, 1])  # its own stream: the loss matrix's draws stay as they were
    words = _vocabulary(rng)
    names, domain_index = np.unique(domains, return_inverse=True)
    ranking = np.stack([rng.permutation(len(words)) for _ in names])  # (domains, vocabulary)
    zipf = 1.0 / np.arange(1, len(words) + 1)
    lengths = rng.integers(min_words, max_words + 1, size=len(domains))
    text_of_word = np.repeat(np.arange(len(domains)), lengths)
    ranks = rng.choice(len(words), size=len(text_of_word), p=zipf / zipf.sum())
    chosen = words[ranking[domain_index[text_of_word], ranks]]
    separators = np.array(SEPARATORS)[rng.integers(0, len(SEPARATORS), len(chosen))]
    tokens = np.char.add(chosen, separators)
    ends = np.cumsum(lengths)
    texts = ["".join(tokens[end - n:end]).strip() for end, n in zip(ends, lengths)]
    return [t[0].upper() + t[1:] + "." for t in texts]


def _sentence(rng: np.random.Generator, words: np.ndarray, p: np.ndarray, n_words: int) -> str:
    separators = np.array(SEPARATORS)
    chosen = rng.choice(words, size=n_words, p=p)
    seps = rng.choice(separators, size=n_words)
    text = "".join(w + s for w, s in zip(chosen, seps)).strip()
    return text[0].upper() + text[1:] + "."
