"""The scoring stage for multiple-choice items: every model's log-likelihood of every choice given its context,
through the same cache, resume and model loading as texts (mmc.scoring.stage), as a ChoiceMatrix.

A (context, continuation) pair is keyed by its content (pair_hashes), in cache dirs of its own (scored
"choices"); a chunk holds up to scoring.chunk_texts items' pairs, so a killed run loses at most one chunk. Each pair
is split into tokens as lm-evaluation-harness splits it (mmc.scoring.windows.encode_pairs); a pair longer than the
window keeps its last window + 1 tokens, as lm-eval truncates, and is scored whole by the text engine; the others go
through the context-sharing engine (mmc.scoring.continuations). A choice's log-likelihood is minus the sum of its
continuation tokens' NLLs.
"""
from __future__ import annotations

import hashlib
import json
from functools import partial

import numpy as np
from tqdm.auto import tqdm

from mmc.choices import ChoiceMatrix
from mmc.errors import MMCError
from mmc.models import ModelSpec
from mmc.scoring import cache as score_cache
from mmc.scoring.config import ScoringConfig
from mmc.scoring.continuations import score_continuations
from mmc.scoring.engine import score_sequences
from mmc.scoring.stage import Scores, _check, _params, cached_entries, score_entries
from mmc.scoring.windows import encode_pairs
from mmc.tasks import Items, refuse_token_losses


def pair_hashes(pairs: list[tuple[str, str]]) -> np.ndarray:
    return np.array([hashlib.sha256(json.dumps(pair).encode("utf-8")).hexdigest()[:32] for pair in pairs])


def _check_items(specs: list[ModelSpec], items: Items, cfg: ScoringConfig, param_count: str) -> None:
    _check(specs, items, cfg, param_count)
    refuse_token_losses(cfg.token_losses)


def score_pairs(model, tokenizer, pairs: list[tuple[str, str]], window: int, cfg: ScoringConfig
                ) -> tuple[np.ndarray, np.ndarray]:
    """(NLL (float64), continuation tokens (int64)) of each pair, with the model where and as it is loaded."""
    contexts, continuations = encode_pairs(tokenizer, pairs, cfg.prefix_token)
    n_tokens = np.array([len(k) for k in continuations], dtype=np.int64)
    if n_tokens.max() > window:
        i = int(n_tokens.argmax())
        raise MMCError(f"choice {pairs[i][1][:30]!r} has {n_tokens[i]} tokens, more than the model's window of "
                       f"{window}; shorten the choices or raise scoring.window")
    nll = np.empty(len(pairs))
    too_long = np.array([len(c) + len(k) - 1 > window for c, k in zip(contexts, continuations)], dtype=bool)
    if too_long.any():  # lm-eval's truncation: the last window + 1 tokens, the first of them context only
        where = np.flatnonzero(too_long)
        seqs = [np.concatenate([contexts[i], continuations[i]])[-(window + 1):] for i in where]
        scored = score_sequences(model, seqs, window, window, cfg.batch_tokens, compile=cfg.compile)
        ends = np.cumsum(scored.n_tokens)
        nll[where] = [scored.token_nll[end - n_tokens[i]:end].sum(dtype=np.float64) for i, end in zip(where, ends)]
    keep = np.flatnonzero(~too_long)
    if len(keep):
        groups: dict[bytes, list[int]] = {}  # the pairs of each context, in order
        for i in keep:
            groups.setdefault(contexts[i].tobytes(), []).append(i)
        members = list(groups.values())
        shared = score_continuations(model, [contexts[g[0]] for g in members],
                                     [[continuations[i] for i in g] for g in members], cfg.batch_tokens,
                                     compile=cfg.compile)
        for g, values in zip(members, shared):
            nll[g] = values
    return nll, n_tokens


def _score_items(pairs: list[tuple[str, str]], item_of: np.ndarray, hashes: np.ndarray, cfg: ScoringConfig, model,
                 tokenizer, meta: dict, entry, todo: np.ndarray) -> None:
    """score_entries' fill for choices: the pairs `todo`, chunk_texts items at a time, each chunk cached whole."""
    items = np.unique(item_of[todo])
    with tqdm(total=len(todo), unit="choice", desc=meta["name"]) as bar:
        for start in range(0, len(items), cfg.chunk_texts):
            chunk = todo[np.isin(item_of[todo], items[start:start + cfg.chunk_texts])]
            nll, n_tokens = score_pairs(model, tokenizer, [pairs[i] for i in chunk], meta["window"], cfg)
            score_cache.write_chunk(entry, hashes[chunk], nll, n_tokens, meta["versions"])
            bar.update(len(chunk))


def score_choices(specs: list[ModelSpec], items: Items, cfg: ScoringConfig, param_count: str = "total") -> Scores:
    """Score what the cache lacks (everything with cfg.force), model by model; fully cached models are not loaded."""
    _check_items(specs, items, cfg, param_count)
    pairs, item_of = items.pairs(), np.repeat(np.arange(len(items)), items.n_choices)
    hashes = pair_hashes(pairs)
    rows = score_entries(specs, hashes, cfg, "choices", partial(_score_items, pairs, item_of, hashes, cfg))
    return _choice_scores(items, rows, param_count)


def cached_choice_matrix(specs: list[ModelSpec], items: Items, cfg: ScoringConfig, param_count: str = "total"
                         ) -> Scores:
    """Scores from the cache alone (stage=analyze), as mmc.scoring.stage.cached_entries finds them."""
    _check_items(specs, items, cfg, param_count)
    return _choice_scores(items, cached_entries(specs, pair_hashes(items.pairs()), cfg, "choices"), param_count)


def _choice_scores(items: Items, rows: list, param_count: str) -> Scores:
    present = np.arange(items.choice_bytes.shape[1])[None, :] < items.n_choices[:, None]  # (I, C)
    loglik = np.full((len(rows), *present.shape), np.nan)
    for m, (_, _, scores, index) in enumerate(rows):
        loglik[m][present] = -scores.nll[index]  # pairs run item by item, choice by choice: row-major order
    specs = [spec for spec, *_ in rows]
    matrix = ChoiceMatrix([s.name for s in specs], [s.family for s in specs],
                          [_params(spec, meta, param_count) for spec, meta, *_ in rows], items.ids, items.domains,
                          loglik, items.gold, items.choice_bytes, items.length_norm)
    return Scores(matrix, [meta for _, meta, *_ in rows], None)
