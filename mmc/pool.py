"""Pools: the kinds of pool (POOLS), each with its schema, and how each becomes models or a loss matrix.

A scored pool (zoo, local, tiny_random) gives ModelSpecs to score; a matrix pool (matrix, synthetic)
gives a LossMatrix directly. `pool.only` (globs over names) keeps part of either.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Optional

from omegaconf import MISSING

from mmc.errors import MMCError
from mmc.losses import LossMatrix
from mmc.models import ModelSpec, check_specs
from mmc.registry import Option, Registry, choices
from mmc.synthetic import synthetic_loss_matrix
from mmc.tiny_random import TinyRandomConfig, build_tiny_random
from mmc.zoo.config import ZooConfig

# What a model's `params` counts (mmc.models.count_params): run = its non_embedding flag
PARAM_COUNTS = Registry("parameter count", [Option("total", False), Option("non_embedding", True)])


@dataclass
class LocalModelConfig:
    name: str = MISSING
    path: str = MISSING  # anything from_pretrained takes: a local directory or a hub id
    family: str = MISSING
    revision: Optional[str] = None
    params: Optional[int] = None  # from the loaded model when null


@dataclass
class PoolConfig:
    kind: str = MISSING  # set by the option: pool=zoo, pool=local, ...
    only: Optional[str] = None  # comma-separated globs over model names: this job takes the matching models


@dataclass
class ScoredPoolConfig(PoolConfig):
    param_count: str = field(default="total", metadata=choices(PARAM_COUNTS))
    keeps_token_losses: ClassVar[bool] = False  # scoring.token_losses=null on this kind: keep them? (small models: yes)


@dataclass
class ZooPool(ScoredPoolConfig):
    kind: str = "zoo"
    keeps_token_losses: ClassVar[bool] = True
    zoo: ZooConfig = field(default_factory=ZooConfig)  # families and sizes to train (conf/pool/zoo.yaml)


@dataclass
class LocalPool(ScoredPoolConfig):
    kind: str = "local"
    models: list[LocalModelConfig] = field(default_factory=list)


@dataclass
class TinyRandomPool(ScoredPoolConfig):
    kind: str = "tiny_random"
    keeps_token_losses: ClassVar[bool] = True
    tiny_random: TinyRandomConfig = field(default_factory=TinyRandomConfig)


@dataclass
class MatrixPool(PoolConfig):
    kind: str = "matrix"
    path: str = MISSING  # a loss_matrix.npz written by an earlier run


@dataclass
class SyntheticPool(PoolConfig):
    kind: str = "synthetic"
    n_models: int = 71
    n_texts: int = 2000
    seed: int = 0


def zoo_models(cfg: ZooPool, cache_dir: Path) -> list[ModelSpec]:
    from mmc.zoo.build import build_zoo  # torch, transformers, tokenizers: loaded only when a zoo is built

    return build_zoo(cfg.zoo, cache_dir / "zoo")


def local_models(cfg: LocalPool, cache_dir: Path) -> list[ModelSpec]:
    if not cfg.models:
        raise MMCError("pool=local has no models; add {name, path, family} entries to pool.models")
    return [ModelSpec(m.name, m.family, m.path, m.revision, m.params) for m in cfg.models]


def tiny_random_models(cfg: TinyRandomPool, cache_dir: Path) -> list[ModelSpec]:
    return build_tiny_random(cfg.tiny_random, cache_dir / "tiny_random")


def matrix_losses(cfg: MatrixPool) -> LossMatrix:
    return LossMatrix.load(cfg.path)


def synthetic_losses(cfg: SyntheticPool) -> LossMatrix:
    return synthetic_loss_matrix(cfg.n_models, cfg.n_texts, cfg.seed)


POOLS = Registry("pool kind", [
    Option("zoo", zoo_models, ZooPool),
    Option("local", local_models, LocalPool),
    Option("tiny_random", tiny_random_models, TinyRandomPool),
    Option("matrix", matrix_losses, MatrixPool),
    Option("synthetic", synthetic_losses, SyntheticPool),
])


def is_scored(cfg: PoolConfig) -> bool:
    """A pool of models to score (else it comes as a loss matrix)."""
    return isinstance(cfg, ScoredPoolConfig)


def token_losses(cfg: ScoredPoolConfig, asked: bool | None) -> bool:
    """scoring.token_losses resolved: as asked, else by the pool's kind (on for zoo and tiny_random)."""
    return type(cfg).keeps_token_losses if asked is None else asked


def build_pool(cfg: ScoredPoolConfig, cache_dir: Path) -> list[ModelSpec]:
    """The models of a scored pool, `only` applied, checked before any scoring."""
    specs = POOLS.run(cfg.kind)(cfg, cache_dir)
    specs = [specs[i] for i in matching([s.name for s in specs], cfg.only)]
    check_specs(specs)
    return specs


def matrix_pool(cfg: PoolConfig) -> LossMatrix:
    """The LossMatrix of a pool that needs no scoring (kind matrix or synthetic), `only` applied."""
    lm = POOLS.run(cfg.kind)(cfg)
    return lm.select_models(matching(lm.models.tolist(), cfg.only)) if cfg.only else lm


def matching(names: list[str], only: str | None) -> list[int]:
    """Indices of the names matching one of the comma-separated globs in `only` (all when None)."""
    if not only:
        return list(range(len(names)))
    patterns = [p.strip() for p in only.split(",") if p.strip()]
    chosen = [i for i, name in enumerate(names) if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
    if not chosen:
        raise MMCError(f"pool.only={only!r} matches no model; the pool has: {', '.join(names)}")
    return chosen
