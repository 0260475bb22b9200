"""Model pools: ModelSpec, and loading any `from_pretrained` source (local directory or hub id)."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from mmc.errors import MMCError

SCORED_KINDS = ("zoo", "local", "tiny_random")  # pools of models to score
MATRIX_KINDS = ("matrix", "synthetic")  # pools that come as a loss matrix, no scoring


@dataclass(frozen=True)
class ModelSpec:
    """One model of a pool. `source` is what `from_pretrained` takes: a local directory or a hub id."""

    name: str
    family: str
    source: str
    revision: str | None = None
    params: int | None = None  # filled from the loaded model when None


def is_local(source: str) -> bool:
    return source.startswith(("/", ".", "~")) or Path(source).expanduser().exists()


def check_sources(specs: list[ModelSpec]) -> None:
    """Fail before any scoring on duplicate names or local paths that do not exist."""
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise MMCError(f"duplicate model names {dupes} in the pool; give every model a unique name")
    for s in specs:
        if is_local(s.source) and not Path(s.source).expanduser().is_dir():
            raise MMCError(f"model {s.name!r}: path {s.source} does not exist; fix its `path` in the pool config")


def load_model(spec: ModelSpec, device: str = "cpu", dtype=None, device_map: str | None = None,
               attn_implementation: str | None = "sdpa"):
    """(model, tokenizer) through the same `from_pretrained` path for local and hub models."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = str(Path(spec.source).expanduser()) if is_local(spec.source) else spec.source
    kwargs = dict(revision=spec.revision, dtype=dtype or torch.float32)
    if device_map:
        kwargs["device_map"] = device_map
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=spec.revision)
        try:
            model = AutoModelForCausalLM.from_pretrained(source, attn_implementation=attn_implementation, **kwargs)
        except (ValueError, ImportError):  # architecture without SDPA support: fall back to its default
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as e:
        raise MMCError(f"model {spec.name!r}: cannot load {source!r} ({str(e).splitlines()[0]}); "
                       "check the path or hub id, and the network for hub models") from e
    if not device_map:
        model.to(device)
    model.eval()
    return model, tokenizer


def count_params(model, non_embedding: bool = False) -> int:
    """Total parameters (tied weights once); without input/position embeddings on request."""
    total = sum(p.numel() for p in model.parameters())
    if not non_embedding:
        return int(total)
    import torch

    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    return int(total - sum(p.numel() for p in model.parameters() if id(p) in embeddings))


def build_pool(cfg, cache_dir: Path) -> list[ModelSpec]:
    """The models of a scored pool (PoolConfig of kind zoo, local or tiny_random), `only` applied."""
    if cfg.kind == "local":
        if not cfg.models:
            raise MMCError("pool=local has no models; add {name, path, family} entries to pool.models")
        specs = [ModelSpec(m.name, m.family, m.path, m.revision, m.params) for m in cfg.models]
    elif cfg.kind == "zoo":
        from mmc.zoo import build_zoo

        specs = build_zoo(cfg.zoo, cache_dir / "zoo")
    elif cfg.kind == "tiny_random":
        from mmc.tiny_random import build_tiny_random

        specs = build_tiny_random(cfg.tiny_random, cache_dir / "tiny_random")
    else:
        raise MMCError(f"unknown pool kind {cfg.kind!r}; use one of {', '.join(SCORED_KINDS + MATRIX_KINDS)}")
    specs = [specs[i] for i in matching([s.name for s in specs], cfg.only)]
    check_sources(specs)
    return specs


def matching(names: list[str], only: str | None) -> list[int]:
    """Indices of the names matching one of the comma-separated globs in `only` (all when None)."""
    if not only:
        return list(range(len(names)))
    patterns = [p.strip() for p in only.split(",") if p.strip()]
    chosen = [i for i, name in enumerate(names) if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
    if not chosen:
        raise MMCError(f"pool.only={only!r} matches no model; the pool has: {', '.join(names)}")
    return chosen


def matrix_pool(cfg):
    """The LossMatrix of a pool that needs no scoring (kind matrix or synthetic)."""
    from mmc.losses import LossMatrix

    if cfg.kind == "matrix":
        if not cfg.path:
            raise MMCError("pool=matrix needs pool.path=<a loss_matrix.npz written by an earlier run>")
        lm = LossMatrix.load(cfg.path)
    else:
        from mmc.synthetic import synthetic_loss_matrix

        lm = synthetic_loss_matrix(n_models=cfg.n_models, n_texts=cfg.n_texts, seed=cfg.seed)
    return lm.select_models(matching(lm.models.tolist(), cfg.only)) if cfg.only else lm
