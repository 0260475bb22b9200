"""The scoring stage: every model of a pool on every text of a corpus, through the cache: the LossMatrix, each
model's record (commit, dtype, attention, library versions) and, when asked, the token losses."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from tqdm.auto import tqdm

from mmc.data import Corpus
from mmc.errors import MMCError
from mmc.losses import LossMatrix
from mmc.models import ModelSpec, check_specs, count_params, load_model, pinned
from mmc.paths import cache_root
from mmc.pool import PARAM_COUNTS
from mmc.registry import check_node
from mmc.scoring import cache as score_cache
from mmc.scoring.config import DTYPES, ScoringConfig
from mmc.scoring.engine import resolve_device, resolve_dtype, score_sequences
from mmc.scoring.windows import context_length, resolve_window, tokenise, tokenise_with_spans
from mmc.token_losses import TokenLosses

log = logging.getLogger(__name__)


@dataclass
class Scores:
    """What scoring gives a run."""

    matrix: LossMatrix  # or a mmc.choices.ChoiceMatrix (mmc.scoring.choices)
    records: list[dict]  # per model, the matrix's order: the meta.json of the cache entry its row comes from
    token_losses: TokenLosses | None  # when scoring.token_losses


def _root(cfg: ScoringConfig):
    return cache_root(cfg.cache_dir) if cfg.cache_dir else cache_root() / "scores"


def _check(specs: list[ModelSpec], corpus: Corpus, cfg: ScoringConfig, param_count: str) -> None:
    PARAM_COUNTS[param_count]  # an unknown name raises, listing the known ones
    if not specs or not len(corpus):
        raise MMCError(f"nothing to score ({len(specs)} models, {len(corpus)} texts); check the pool and dataset")
    check_node(cfg, "scoring")
    check_specs(specs)


def _model_dir(identity: dict, root, cfg: ScoringConfig, scored: str):
    """Texts: keyed by window, stride and prefix token; choices (mmc.scoring.choices): by window and prefix token."""
    return score_cache.model_dir(root, identity, cfg.window, cfg.stride if scored == "texts" else None,
                                 cfg.prefix_token, scored)


def _load_recorded(spec, identity, entry, cfg, device, dtype, attention):
    """(model, tokenizer, record): the model loaded, its record (meta.json) written into its entry."""
    model, tokenizer = load_model(spec, device=str(device), dtype=getattr(torch, dtype), device_map=cfg.device_map,
                                  attn_implementation=attention)
    if model.config._attn_implementation != attention:
        raise MMCError(f"model {spec.name!r} loaded with attention {model.config._attn_implementation}, not the "
                       f"{attention} its cache entry is keyed on; set scoring.attn_implementation explicitly")
    window, stride = resolve_window(cfg.window, cfg.stride, context_length(model.config, tokenizer))
    versions = score_cache.library_versions()
    meta = {"name": spec.name, "source": spec.source, "revision": spec.revision, "dtype": dtype,
            "attn_implementation": attention, "window": window, "stride": stride, "versions": versions,
            "identity": identity,
            "params": {"total": count_params(model), "non_embedding": count_params(model, non_embedding=True)}}
    score_cache.write_meta(entry, meta)
    return model, tokenizer, meta


def _score_texts(texts: list[str], hashes: np.ndarray, cfg: ScoringConfig, model, tokenizer, meta: dict, entry,
                 todo: np.ndarray) -> None:
    """score_entries' fill for texts: the texts `todo` chunk by chunk (with their token losses when asked)."""
    window, stride, versions = meta["window"], meta["stride"], meta["versions"]
    chosen = [texts[i] for i in todo]
    if cfg.token_losses:
        seqs, ends = tokenise_with_spans(tokenizer, chosen, cfg.prefix_token)
    else:
        seqs, ends = tokenise(tokenizer, chosen, cfg.prefix_token), None
    order = np.argsort([len(s) for s in seqs], kind="stable")  # similar lengths per chunk: little padding
    with tqdm(total=sum(len(s) - 1 for s in seqs), unit="tok", unit_scale=True, desc=meta["name"]) as bar:
        for start in range(0, len(order), cfg.chunk_texts):
            chunk = order[start:start + cfg.chunk_texts]
            scored = score_sequences(model, [seqs[i] for i in chunk], window, stride, cfg.batch_tokens, bar,
                                     cfg.compile)
            spans = {} if ends is None else {"token_nll": scored.token_nll,
                                             "token_byte_end": np.concatenate([ends[i] for i in chunk])}
            score_cache.write_chunk(entry, hashes[todo[chunk]], scored.nll, scored.n_tokens, versions, **spans)


def score_pool(specs: list[ModelSpec], corpus: Corpus, cfg: ScoringConfig, param_count: str = "total") -> Scores:
    """Score what the cache lacks (everything with cfg.force; a text cached without token losses again when they
    are asked for), model by model; fully cached models are not loaded. Hub models are scored at the commit
    their revision points to now."""
    _check(specs, corpus, cfg, param_count)
    hashes = score_cache.text_hashes(corpus.texts)
    rows = score_entries(specs, hashes, cfg, "texts", partial(_score_texts, corpus.texts, hashes, cfg))
    return _scores(corpus, rows, param_count, cfg.token_losses)


def score_entries(specs: list[ModelSpec], hashes: np.ndarray, cfg: ScoringConfig, scored: str, fill) -> list:
    """Per model (spec, record, CachedScores, index of each of `hashes` in them) after fill(model, tokenizer, record,
    entry, todo) has scored and cached what the cache lacks (`todo`: indices into hashes). `scored` ("texts" or
    "choices") says which cache the scores go to."""
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    root = _root(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rows = []
    for spec in specs:
        spec = pinned(spec)
        identity = score_cache.model_identity(spec, root)
        attention = score_cache.attention(spec, root, cfg.attn_implementation, dtype)
        entry = score_cache.entry_dir(_model_dir(identity, root, cfg, scored), dtype, attention)
        if cfg.force:
            score_cache.clear_scores(entry)
        meta, scores = score_cache.read_meta(entry), score_cache.read_scores(entry)
        index = scores.find(hashes)
        todo = ~scores.with_tokens(index) if cfg.token_losses else index < 0
        if meta is None or todo.any():
            log.info("model %s: scoring %d of %d %s", spec.name, todo.sum(), len(todo), scored)
            model, tokenizer, meta = _load_recorded(spec, identity, entry, cfg, device, dtype, attention)
            fill(model, tokenizer, meta, entry, np.flatnonzero(todo))
            del model
            scores = score_cache.read_scores(entry)
            index = scores.find(hashes)
        rows.append((spec, meta, scores, index))
    return rows


def cached_loss_matrix(specs: list[ModelSpec], corpus: Corpus, cfg: ScoringConfig, param_count: str = "total") -> Scores:
    """Scores from the cache alone (stage=analyze), as cached_entries finds them."""
    _check(specs, corpus, cfg, param_count)
    rows = cached_entries(specs, score_cache.text_hashes(corpus.texts), cfg, "texts")
    return _scores(corpus, rows, param_count, cfg.token_losses)


def cached_entries(specs: list[ModelSpec], hashes: np.ndarray, cfg: ScoringConfig, scored: str) -> list:
    """score_entries' rows from the cache alone. With dtype auto, any dtype the cache holds in full for every
    model does (this machine's auto dtype first), so scores made on a GPU can be analysed on a laptop; rows of
    different dtypes are never mixed in one matrix. Any attention implementation does (the requested one first)."""
    preferred = resolve_dtype(cfg.dtype, resolve_device(cfg.device))
    dtypes = [preferred] + ([d for d in DTYPES if d not in ("auto", preferred)] if cfg.dtype == "auto" else [])
    root = _root(cfg)
    complete = []  # per model: {dtype: (spec, meta, scores, index)} of the entries holding every text
    for spec in specs:
        spec = pinned(spec)
        found, held = {}, 0
        metas = [(entry, score_cache.read_meta(entry))
                 for entry in score_cache.entries(_model_dir(score_cache.model_identity(spec, root), root, cfg, scored))]
        metas.sort(key=lambda em: em[1]["attn_implementation"] != cfg.attn_implementation)  # the requested first
        for entry, meta in metas:
            scores = score_cache.read_scores(entry)
            index = scores.find(hashes)
            held_here = scores.with_tokens(index) if cfg.token_losses else index >= 0
            held = max(held, int(held_here.sum()))
            if meta["dtype"] in dtypes and held_here.all():
                found.setdefault(meta["dtype"], (spec, meta, scores, index))
        if not found:
            what = f"{scored} with token losses" if cfg.token_losses else scored
            raise MMCError(f"model {spec.name!r} has {held} of {len(hashes)} {what} in the score cache {root}; "
                           f"score it first: python launch.py stage=score pool.only={spec.name}"
                           + (" scoring.token_losses=true" if cfg.token_losses else ""))
        complete.append(found)
    common = [d for d in dtypes if all(d in found for found in complete)]
    if not common:
        raise MMCError(_mixed_dtypes(specs, complete, dtypes))
    return [found[common[0]] for found in complete]


def _mixed_dtypes(specs: list[ModelSpec], complete: list[dict], dtypes: list[str]) -> str:
    """One line: which models the cache holds in which dtype, and how to rescore the others in one."""
    held = {d: [s.name for s, found in zip(specs, complete) if d in found] for d in dtypes}
    target = max(dtypes, key=lambda d: len(held[d]))  # the dtype most models have (this machine's first on ties)
    others = [s.name for s, found in zip(specs, complete) if target not in found]
    listing = "; ".join(f"{d}: {', '.join(names)}" for d, names in held.items() if names)
    return (f"the score cache holds these models in different dtypes ({listing}) and one loss matrix must not mix "
            f"them; rescore the others: python launch.py stage=score scoring.dtype={target} "
            f"\"pool.only='{','.join(others)}'\"")


def _scores(corpus: Corpus, rows: list, param_count: str, token_losses: bool) -> Scores:
    specs = [spec for spec, *_ in rows]
    matrix = LossMatrix(
        models=[s.name for s in specs], families=[s.family for s in specs],
        params=[_params(spec, meta, param_count) for spec, meta, *_ in rows], text_ids=corpus.ids,
        nll=np.stack([scores.nll[index] for *_, scores, index in rows]),
        n_tokens=np.stack([scores.n_tokens[index] for *_, scores, index in rows]),
        n_bytes=corpus.n_bytes, n_chars=corpus.n_chars, domains=corpus.domains,
    )
    tokens = None
    if token_losses:
        tokens = TokenLosses(matrix.models, matrix.text_ids, [
            partial(score_cache.read_tokens, scores.paths, scores.chunk[index], scores.row[index])
            for *_, scores, index in rows])
    return Scores(matrix, [meta for _, meta, *_ in rows], tokens)


def _params(spec: ModelSpec, meta: dict, param_count: str) -> int:
    if spec.params and abs(spec.params - meta["params"]["total"]) > 0.1 * spec.params:
        log.warning("model %s: pool config says %d parameters, the loaded model has %d (total); using the latter",
                    spec.name, spec.params, meta["params"]["total"])
    return int(meta["params"][param_count])
