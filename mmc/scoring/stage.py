"""The scoring stage: every model of a pool on every text of a corpus, through the cache, as a LossMatrix."""
from __future__ import annotations

import logging

import numpy as np
import torch
from tqdm.auto import tqdm

from mmc.data import Corpus
from mmc.errors import MMCError
from mmc.losses import LossMatrix
from mmc.models import ModelSpec, check_specs, count_params, load_model
from mmc.paths import cache_root
from mmc.pool import PARAM_COUNTS
from mmc.registry import check_node
from mmc.scoring import cache as score_cache
from mmc.scoring.config import DTYPES, ScoringConfig
from mmc.scoring.engine import resolve_device, resolve_dtype, score_sequences
from mmc.scoring.windows import context_length, resolve_window, tokenise

log = logging.getLogger(__name__)


def _root(cfg: ScoringConfig):
    return cache_root(cfg.cache_dir) if cfg.cache_dir else cache_root() / "scores"


def _check(specs: list[ModelSpec], corpus: Corpus, cfg: ScoringConfig, param_count: str) -> None:
    PARAM_COUNTS[param_count]  # an unknown name raises, listing the known ones
    if not specs or not len(corpus):
        raise MMCError(f"nothing to score ({len(specs)} models, {len(corpus)} texts); check the pool and dataset")
    check_node(cfg, "scoring")
    check_specs(specs)


def _row(spec: ModelSpec, meta: dict, scores: score_cache.CachedScores, hashes, param_count: str):
    nll, n_tokens, _ = scores.lookup(hashes)
    params = int(meta["params"][param_count])
    if spec.params and abs(spec.params - meta["params"]["total"]) > 0.1 * spec.params:
        log.warning("model %s: pool config says %d parameters, the loaded model has %d (total); using the latter",
                    spec.name, spec.params, meta["params"]["total"])
    return nll, n_tokens, params


def _score_missing(spec, entry, texts, hashes, missing, cfg, device, dtype) -> dict:
    """Load the model, record its parameter counts, score the missing texts chunk by chunk."""
    model, tokenizer = load_model(spec, device=str(device), dtype=getattr(torch, dtype), device_map=cfg.device_map,
                                  attn_implementation=cfg.attn_implementation)
    meta = {"name": spec.name, "source": spec.source, "revision": spec.revision, "dtype": dtype,
            "params": {"total": count_params(model), "non_embedding": count_params(model, non_embedding=True)}}
    score_cache.write_meta(entry, meta)
    window, stride = resolve_window(cfg.window, cfg.stride, context_length(model.config, tokenizer))
    todo = np.flatnonzero(missing)
    seqs = tokenise(tokenizer, [texts[i] for i in todo], cfg.prefix_token)
    order = np.argsort([len(s) for s in seqs], kind="stable")  # similar lengths per chunk: little padding
    with tqdm(total=sum(len(s) - 1 for s in seqs), unit="tok", unit_scale=True, desc=spec.name) as bar:
        for start in range(0, len(order), cfg.chunk_texts):
            chunk = order[start:start + cfg.chunk_texts]
            nll, n_tokens = score_sequences(model, [seqs[i] for i in chunk], window, stride, cfg.batch_tokens,
                                            bar, cfg.compile)
            score_cache.write_chunk(entry, hashes[todo[chunk]], nll, n_tokens)
    del model
    return meta


def score_pool(specs: list[ModelSpec], corpus: Corpus, cfg: ScoringConfig, param_count: str = "total") -> LossMatrix:
    """Score what the cache lacks (everything with cfg.force), model by model; fully cached models are not loaded."""
    _check(specs, corpus, cfg, param_count)
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    root, hashes = _root(cfg), score_cache.text_hashes(corpus.texts)
    rows = []
    for spec in specs:
        entry = score_cache.entry_dir(root, spec, dtype, cfg.window, cfg.stride, cfg.prefix_token)
        if cfg.force:
            score_cache.clear_scores(entry)
        meta = score_cache.read_meta(entry)
        _, _, found = score_cache.read_scores(entry).lookup(hashes)
        if meta is None or not found.all():
            log.info("model %s: scoring %d of %d texts", spec.name, (~found).sum(), len(found))
            meta = _score_missing(spec, entry, corpus.texts, hashes, ~found, cfg, device, dtype)
        rows.append(_row(spec, meta, score_cache.read_scores(entry), hashes, param_count))
    return _matrix(specs, corpus, rows)


def cached_loss_matrix(specs: list[ModelSpec], corpus: Corpus, cfg: ScoringConfig,
                       param_count: str = "total") -> LossMatrix:
    """The LossMatrix from the cache alone (stage=analyze). With dtype auto, any dtype the cache holds in full
    does (this machine's auto dtype first), so scores made on a GPU can be analysed on a laptop."""
    _check(specs, corpus, cfg, param_count)
    preferred = resolve_dtype(cfg.dtype, resolve_device(cfg.device))
    dtypes = [preferred] + ([d for d in DTYPES if d not in ("auto", preferred)] if cfg.dtype == "auto" else [])
    root, hashes = _root(cfg), score_cache.text_hashes(corpus.texts)
    rows = []
    for spec in specs:
        for dtype in dtypes:
            entry = score_cache.entry_dir(root, spec, dtype, cfg.window, cfg.stride, cfg.prefix_token)
            meta, scores = score_cache.read_meta(entry), score_cache.read_scores(entry)
            if meta is not None and scores.lookup(hashes)[2].all():
                break
        else:
            found = scores.lookup(hashes)[2].sum() if meta is not None else 0
            raise MMCError(f"model {spec.name!r} has {found} of {len(hashes)} texts in the score cache {root}; "
                           f"score it first: python launch.py stage=score pool.only={spec.name}")
        rows.append(_row(spec, meta, scores, hashes, param_count))
    return _matrix(specs, corpus, rows)


def _matrix(specs: list[ModelSpec], corpus: Corpus, rows: list) -> LossMatrix:
    nll, n_tokens, params = zip(*rows)
    return LossMatrix(
        models=[s.name for s in specs], families=[s.family for s in specs], params=list(params),
        text_ids=corpus.ids, nll=np.stack(nll), n_tokens=np.stack(n_tokens), n_bytes=corpus.n_bytes,
        n_chars=corpus.n_chars, domains=corpus.domains,
    )
