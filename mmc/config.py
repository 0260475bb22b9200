"""Structured-config schemas: a misspelt key or a wrong type fails when Hydra composes the config.

Each group's YAML (conf/<group>/<option>.yaml) is merged into the dataclass of that group; the
dataclasses are closed, so only the fields below exist. Registered in Hydra's ConfigStore as
`base_config` (the first entry of conf/config.yaml's defaults list).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class DatasetConfig:
    kind: str = "builtin"  # builtin | files | hf
    path: Optional[str] = None  # files: a file or a directory of .txt/.jsonl/.csv/.parquet files
    text_field: str = "text"  # files (.jsonl/.csv/.parquet) and hf
    domain_field: Optional[str] = None  # files and hf; null: the file's sub-directory (files), "all" (hf)
    txt_split: str = "file"  # files .txt: file (one text per file) | blocks (blank-line-separated texts)
    name: Optional[str] = None  # hf: dataset name
    config_name: Optional[str] = None  # hf: dataset config
    split: str = "eval"  # builtin: eval | train | all (train: what the zoo trains on); hf: the split name
    max_texts: Optional[int] = 150  # drawn evenly across domains; null: all
    seed: int = 0
    min_chars: int = 200  # shorter texts are dropped
    max_chars: Optional[int] = 1000  # longer texts are dropped (builtin: the longest document assembled)
    dedupe: bool = True


@dataclass
class LocalModelConfig:
    name: str = "???"
    path: str = "???"  # anything from_pretrained takes: a local directory or a hub id
    family: str = "???"
    revision: Optional[str] = None
    params: Optional[int] = None  # from the loaded model when null


@dataclass
class TinyRandomConfig:
    """Random-initialised tiny causal LMs, one per (architecture, width): plumbing tests and benchmarks."""

    architectures: list[str] = field(default_factory=lambda: ["gpt2", "llama", "gpt_neox", "qwen2"])
    widths: list[int] = field(default_factory=lambda: [32, 64])  # hidden sizes
    n_layers: int = 2
    context: int = 256  # max_position_embeddings
    vocab_size: int = 512
    tokenizer: str = "bpe"  # bpe | byte | wordpiece (see mmc.tokenizer)
    bos: str = "token"  # token: a BOS token | none: EOS only | template: the tokenizer prepends BOS itself
    seed: int = 0


@dataclass
class ZooSizeConfig:
    """One size of a zoo family: the model is named <family>-<name>."""

    name: str = "???"
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    intermediate: Optional[int] = None  # MLP width; null: 4 * hidden
    lr: float = 3e-3  # peak learning rate (warm-up, then cosine decay): wider models need lower ones


@dataclass
class ZooFamilyConfig:
    """A family: one architecture, one tokenizer, one training mixture, several sizes."""

    name: str = "???"
    arch: str = "gpt2"  # a transformers model_type: gpt2 | llama | gpt_neox | qwen2 | mistral | ...
    tokenizer: str = "bpe"  # bpe | byte | wordpiece (mmc.tokenizer), trained on the mixture
    vocab_size: int = 2048  # ignored by byte
    kv_heads: Optional[int] = None  # grouped-query attention (llama, qwen2, ...); null: as many as heads
    mixture: dict[str, float] = field(default_factory=lambda: {"prose": 1.0, "code": 1.0, "docstrings": 1.0})
    sizes: list[ZooSizeConfig] = field(default_factory=list)


@dataclass
class ZooConfig:
    """Tiny causal LMs trained here on the builtin corpus's training split (mmc.zoo.build_zoo)."""

    families: list[ZooFamilyConfig] = field(default_factory=list)
    steps: int = 300  # optimiser steps per model
    batch_size: int = 8  # sequences per step
    context: int = 128  # tokens per sequence, and the models' max_position_embeddings
    tokenizer_chars: int = 400_000  # characters of its mixture each family's tokenizer trains on
    seed: int = 0
    threads: int = 1  # torch threads per model (part of the cache key: results depend on it)
    workers: Optional[int] = None  # models trained at once in separate processes; null: one per CPU core


@dataclass
class PoolConfig:
    kind: str = "zoo"  # zoo | local | tiny_random | matrix | synthetic
    models: list[LocalModelConfig] = field(default_factory=list)  # local
    only: Optional[str] = None  # comma-separated globs over model names: this job takes the matching models
    param_count: str = "total"  # total | non_embedding
    path: Optional[str] = None  # matrix: a loss_matrix.npz
    n_models: int = 71  # synthetic
    n_texts: int = 2000  # synthetic
    seed: int = 0  # synthetic (the zoo and tiny_random have their own seeds)
    zoo: Optional[ZooConfig] = None  # zoo: families and sizes to train (see conf/pool/zoo.yaml)
    tiny_random: TinyRandomConfig = field(default_factory=TinyRandomConfig)  # tiny_random


@dataclass
class ScoringConfig:
    device: str = "auto"  # auto (cuda, mps, cpu) | cpu | cuda | mps
    dtype: str = "auto"  # auto (bfloat16 on GPUs that support it, else float32) | float32 | bfloat16 | float16
    batch_tokens: Optional[int] = None  # padded tokens per batch; null: 1024 on CPU, 16384 on GPUs; halved on OOM
    window: Optional[int] = None  # tokens per forward pass; null: the model's context length
    stride: Optional[int] = None  # tokens the window advances by; null: window // 2; window: disjoint windows
    prefix_token: Optional[str] = None  # used when the tokenizer has neither BOS nor EOS
    force: bool = False  # rescore even what the cache holds
    cache_dir: Optional[str] = None  # null: <mmc cache>/scores
    chunk_texts: int = 256  # texts per cache file: a killed run loses at most one chunk
    device_map: Optional[str] = None  # e.g. auto (accelerate) for models larger than one GPU
    attn_implementation: str = "sdpa"
    compile: bool = False  # torch.compile the model (dynamic shapes)


@dataclass
class SearchConfig:
    strategy: str = "pareto_prune"  # exhaustive | pareto_prune | greedy | milp | exact | random
    unit: str = "bits_per_byte"
    aggregate: str = "mean"  # mean | ratio_of_sums
    ref_bytes_per_token: float = 4.0  # nats_per_token_ref: bytes per reference token
    families: Optional[list[str]] = None  # null: all families (heterogeneous)
    max_k: Optional[int] = None  # largest subset size explored
    time_limit: float = 60.0  # milp: seconds per budget point; exact: seconds for the whole search
    n_random: int = 200  # random: subsets per size
    seed: int = 0
    exact_check: bool = True  # compare with the exact frontier when the pool is small enough
    exact_max_models: int = 20  # exact_check: largest pool compared with an exhaustive search
    max_subsets: int = 2**24  # exhaustive: refuse pools with more subsets than this (2^24: 24 models)
    mip_rel_gap: float = 0.0  # milp: relative optimality gap at which a budget point is accepted


@dataclass
class FitConfig:
    residuals: str = "log"  # log | relative
    robust: str = "linear"  # linear | soft_l1 | huber | cauchy (scipy least_squares losses)
    bootstrap: int = 200  # resamples over texts; 0 to skip
    heldout: bool = True
    extrapolation: bool = True
    extrapolation_decades: float = 1.0  # fit below the top decade(s) of params, predict them
    groups: bool = True  # also fit each family alone, family pairs and all families
    seed: int = 0


@dataclass
class TrackingConfig:
    uri: Optional[str] = None  # null: sqlite:///<repo>/mlruns/mlflow.db
    experiment_name: Optional[str] = None  # null: the experiment's name


class Stage(str, Enum):
    all = "all"  # score, then analyse
    score = "score"  # fill the score cache only
    analyze = "analyze"  # analyse cached scores only


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    name: str = "default"  # the experiment's name: MLflow experiment and run tag
    stage: Stage = Stage.all
    cache_dir: Optional[str] = None  # null: the user's cache dir (~/.cache/mmc)
    rerun: Optional[str] = None  # an MLflow run id: re-launch it with its logged config


def register_configs() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)
