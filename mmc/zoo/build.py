"""Build the zoo once: check the config, train each family's tokenizer, then every model, and cache them.

Layout: <cache_dir>/<config hash>/tokenizers/<family>/ and <cache_dir>/<config hash>/<family>-<size>/.
A model directory appears only when complete (atomic rename), so an interrupted build resumes with
the models already finished.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from mmc.data import load_builtin
from mmc.errors import MMCError
from mmc.models import ModelSpec
from mmc.registry import check_node
from mmc.tokenizer import train_tokenizer
from mmc.workers import exit_with_parent
from mmc.zoo.config import ZooConfig
from mmc.zoo.train import INFO_FILE, train_model

VERSION = 1  # bump when the same config would train different models
TRAIN_MIN_CHARS, TRAIN_MAX_CHARS = 200, 4000  # training documents; their split is fixed by block, not by length
STREAM_CHARS_PER_TOKEN = 8  # characters encoded per token trained on (a token holds 1 to ~4 characters)


def build_zoo(cfg: ZooConfig, cache_dir: Path) -> list[ModelSpec]:
    """Train (or reuse) every model of the zoo under cache_dir/<config hash>; one spec per model."""
    check(cfg)
    root = Path(cache_dir) / config_hash(cfg)
    jobs = [(f, s) for f in cfg.families for s in f.sizes]
    todo = [(f, s) for f, s in jobs if not (root / f"{f.name}-{s.name}" / INFO_FILE).is_file()]
    if todo:
        texts, domains = load_builtin("train", TRAIN_MIN_CHARS, TRAIN_MAX_CHARS)
        families = {f.name: f for f, _ in todo}
        streams = {name: family_streams(f, texts, domains, cfg, root / "tokenizers" / name)
                   for name, f in tqdm(families.items(), desc="zoo tokenizers", leave=False)}
        train_all(todo, cfg, streams, root)
    return [ModelSpec(name=f"{f.name}-{s.name}", family=f.name, source=str(root / f"{f.name}-{s.name}"),
                      params=json.loads((root / f"{f.name}-{s.name}" / INFO_FILE).read_text())["params"])
            for f, s in jobs]


def check(cfg: ZooConfig) -> None:
    """Every bad zoo setting, before any training: the schema's rules, and architectures transformers knows."""
    from transformers import CONFIG_MAPPING

    check_node(cfg, "pool.zoo")
    for f in cfg.families:
        if f.arch not in CONFIG_MAPPING:
            raise MMCError(f"zoo family {f.name!r}: unknown arch {f.arch!r}; use a transformers model_type such as "
                           "gpt2, llama, gpt_neox, qwen2")


def config_hash(cfg: ZooConfig) -> str:
    """Key of everything that changes the trained models: the config (less `workers`), the Python version
    (the builtin corpus comes from its standard library) and VERSION."""
    settings = {k: v for k, v in asdict(cfg).items() if k != "workers"}
    key = json.dumps([VERSION, sys.version_info[:2], settings], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def family_streams(family, texts: list[str], domains: list[str], cfg: ZooConfig, tokenizer_dir: Path):
    """Train (or reuse) the family's tokenizer on its mixture; return one token stream per domain:
    [BOS] + tokens of each training document, concatenated, from a seeded random subset of documents
    (STREAM_CHARS_PER_TOKEN characters per token trained on: mostly fresh windows, bounded encoding time)."""
    from transformers import AutoTokenizer

    rng = np.random.default_rng(cfg.seed)
    weights = {d: w for d, w in family.mixture.items() if w > 0}
    by_domain = {d: [texts[i] for i in rng.permutation(len(texts)) if domains[i] == d] for d in sorted(weights)}
    share = {d: w / sum(weights.values()) for d, w in weights.items()}
    if not (tokenizer_dir / "tokenizer.json").is_file():
        sample = [t for d, docs in by_domain.items() for t in first_chars(docs, cfg.tokenizer_chars * share[d])]
        tokenizer = train_tokenizer(sample, family.vocab_size, family.tokenizer, add_bos=True)
        tokenizer.model_max_length = cfg.context
        tmp = tokenizer_dir.with_name(f".{tokenizer_dir.name}.{os.getpid()}.tmp")
        tokenizer.save_pretrained(tmp)
        tokenizer_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, tokenizer_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    streams = {}
    for d, docs in by_domain.items():
        budget = STREAM_CHARS_PER_TOKEN * cfg.steps * cfg.batch_size * cfg.context * share[d]
        encoded = tokenizer.backend_tokenizer.encode_batch(first_chars(docs, budget), add_special_tokens=False)
        streams[d] = np.concatenate([np.asarray([tokenizer.bos_token_id] + e.ids, dtype=np.int64) for e in encoded])
        if len(streams[d]) <= cfg.context + 1:
            raise MMCError(f"zoo domain {d!r} has {len(streams[d])} training tokens, fewer than one "
                           f"context ({cfg.context}); lower pool.zoo.context")
    return {"tokenizer_dir": tokenizer_dir, "streams": streams}


def first_chars(docs: list[str], n_chars: float) -> list[str]:
    """The first documents holding n_chars characters (at least one)."""
    return docs[: max(1, int(np.searchsorted(np.cumsum([len(t) for t in docs]), n_chars)) + 1)]


def train_all(todo, cfg: ZooConfig, streams: dict, root: Path) -> None:
    """Train the missing models, in separate processes when `workers` > 1; each is saved when done."""
    workers = min(cfg.workers or os.cpu_count() or 1, len(todo))
    todo = sorted(todo, key=lambda job: -job[1].layers * job[1].hidden ** 2)  # largest first: balanced workers
    jobs = [(f, s, cfg, streams[f.name]["streams"], streams[f.name]["tokenizer_dir"], root / f"{f.name}-{s.name}")
            for f, s in todo]
    bar = tqdm(total=len(jobs), desc=f"zoo: training {len(jobs)} models")
    if workers == 1:
        for job in jobs:
            train_model(*job)
            bar.update()
    else:  # spawn: a fresh interpreter per worker, no forked torch thread pools; workers die with this process
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
            futures = [pool.submit(train_model, *job, show_progress=False) for job in jobs]
            for future in as_completed(futures):
                future.result()
                bar.update()
    bar.close()
