"""Structured-config schemas: a misspelt key or a wrong type fails when Hydra composes the config.

Each group's YAML (conf/<group>/<option>.yaml) is merged into the dataclass of that group; the
dataclasses are closed, so only the fields below exist. Registered in Hydra's ConfigStore as
`base_config` (the first entry of conf/config.yaml's defaults list).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class DatasetConfig:
    kind: str = "builtin"  # builtin | files | hf
    path: Optional[str] = None  # files: a file or a directory
    text_field: str = "text"  # files (.jsonl/.csv/.parquet) and hf
    name: Optional[str] = None  # hf: dataset name
    config_name: Optional[str] = None  # hf: dataset config
    split: str = "eval"  # builtin: eval | train | all; hf: the split name
    max_texts: Optional[int] = 600
    seed: int = 0
    min_chars: int = 200
    max_chars: int = 4000
    dedupe: bool = True
    eval_fraction: float = 0.5  # builtin: share of documents held out from zoo training


@dataclass
class LocalModelConfig:
    name: str = "???"
    path: str = "???"  # anything from_pretrained takes: a local directory or a hub id
    family: str = "???"
    revision: Optional[str] = None
    params: Optional[int] = None  # from the loaded model when null


@dataclass
class PoolConfig:
    kind: str = "zoo"  # zoo | local | tiny_random | matrix | synthetic
    models: list[LocalModelConfig] = field(default_factory=list)  # local
    only: Optional[str] = None  # glob over model names: restrict this job to matching models
    param_count: str = "total"  # total | non_embedding
    path: Optional[str] = None  # matrix: a loss_matrix.npz
    n_models: int = 71  # synthetic
    n_texts: int = 2000  # synthetic
    seed: int = 0  # synthetic, tiny_random, zoo
    zoo: Any = None  # zoo / tiny_random: the model specs (see conf/pool/zoo.yaml)


@dataclass
class ScoringConfig:
    device: str = "auto"  # auto | cpu | cuda | mps
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    batch_tokens: int = 16384  # token budget of one batch (padded tokens included)
    window: Optional[int] = None  # tokens per forward pass; null: the model's context length
    stride: Optional[int] = None  # tokens the window advances by; null: window // 2
    prefix_token: Optional[str] = None  # used when the tokenizer has neither BOS nor EOS
    force: bool = False  # rescore even what the cache holds
    cache_dir: Optional[str] = None  # null: <user cache>/mmc/scores
    device_map: Optional[str] = None  # e.g. auto (accelerate) for models larger than one GPU
    attn_implementation: str = "sdpa"
    compile: bool = False


@dataclass
class SearchConfig:
    strategy: str = "pareto_prune"  # exhaustive | pareto_prune | greedy | milp | random
    unit: str = "bits_per_byte"
    aggregate: str = "mean"  # mean | ratio_of_sums
    ref_bytes_per_token: float = 4.0  # nats_per_token_ref: bytes per reference token
    families: Optional[list[str]] = None  # null: all families (heterogeneous)
    max_k: Optional[int] = None  # largest subset size explored
    time_limit: float = 60.0  # milp: seconds per budget point
    n_random: int = 200  # random: subsets per size
    seed: int = 0
    exact_check: bool = True  # compare with the exact frontier when the pool is small enough


@dataclass
class FitConfig:
    residuals: str = "log"  # log | relative
    robust: str = "linear"  # linear | soft_l1 | huber | cauchy (scipy least_squares losses)
    bootstrap: int = 200  # resamples over texts; 0 to skip
    heldout: bool = True
    extrapolation: bool = True
    groups: bool = True  # also fit each family alone, family pairs and all families
    seed: int = 0


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: Optional[str] = None  # null: sqlite:///<repo>/mlruns/mlflow.db
    experiment_name: Optional[str] = None  # null: the experiment's name


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    name: str = "default"  # the experiment's name: MLflow experiment and run tag
    stage: str = "all"  # all | score | analyze
    cache_dir: Optional[str] = None  # null: the user's cache dir (~/.cache/mmc)
    rerun: Optional[str] = None  # an MLflow run id: re-launch it with its logged config


def register_configs() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)
