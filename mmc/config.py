"""The composed config: one schema per group, checked at start-up before any work.

Defaults live in one place, the dataclasses: the top-level Config below for single-schema groups
(scoring, loss, fit, tracking), and each option's schema for the config groups whose options differ in
their keys (dataset, pool, ensemble, search: the registries DATASETS, POOLS, ENSEMBLES, STRATEGIES).
register_configs() stores those schemas in Hydra's ConfigStore as `schema/<group>/<name>`; each
conf/<group>/<option>.yaml extends one of them and sets only what differs, so a key the chosen option
does not have (search=greedy search.time_limit=5) fails when Hydra composes. `validate` then catches
what composition lets through: keys added with `+`, and values that must name a registry's option.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from mmc.data import DATASETS
from mmc.ensemble import ENSEMBLES
from mmc.errors import MMCError
from mmc.fit import FitConfig
from mmc.losses import LossConfig
from mmc.pool import POOLS
from mmc.registry import check_node
from mmc.scoring.config import ScoringConfig
from mmc.search import STRATEGIES, check_monotone

GROUPS = {"dataset": DATASETS, "pool": POOLS, "ensemble": ENSEMBLES, "search": STRATEGIES}  # group -> registry


@dataclass
class TrackingConfig:
    uri: Optional[str] = None  # null: sqlite:///<repo>/mlruns/mlflow.db (or $MLFLOW_TRACKING_URI)
    experiment_name: Optional[str] = None  # null: the experiment's name
    # MLflow's system metrics (CPU, memory, GPU): null: on when scoring runs on a GPU; true/false forces it
    system_metrics: Optional[bool] = None


class Stage(str, Enum):
    all = "all"  # score, then analyse
    score = "score"  # fill the score cache only
    analyze = "analyze"  # analyse cached scores only


@dataclass
class Config:
    dataset: Any = MISSING  # a DatasetConfig subclass, chosen by dataset=<option>
    pool: Any = MISSING  # a PoolConfig subclass
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    ensemble: Any = MISSING  # an EnsembleConfig subclass
    search: Any = MISSING  # a SearchConfig subclass
    fit: FitConfig = field(default_factory=FitConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    name: str = "default"  # the experiment's name: MLflow experiment and run tag
    stage: Stage = Stage.all
    cache_dir: Optional[str] = None  # null: $MMC_CACHE_DIR, else ~/.cache/mmc
    rerun: Optional[str] = None  # an MLflow run id: re-launch it with its logged config


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(name="base_config", node=Config)
    for group, registry in GROUPS.items():
        for option in registry.values():
            store.store(group=f"schema/{group}", name=option.name, node=option.schema)


def validate(cfg: DictConfig) -> Config:
    """The typed config of a composed one, or one-line MMCError: an unknown key, a value naming no option,
    an option key that contradicts the option chosen, or a search that cannot serve the ensemble."""
    check_keys(cfg, "")
    config = OmegaConf.to_object(cfg)
    for group, registry in GROUPS.items():
        node = getattr(config, group)
        check_node(node, group)
        key = registry.key
        if registry[getattr(node, key)].schema is not type(node):
            raise MMCError(f"{group}.{key}={getattr(node, key)!r} contradicts {group}={registry.name_of(type(node))}; "
                           f"choose the option with {group}={getattr(node, key)}")
    for name in ("scoring", "loss", "fit"):
        check_node(getattr(config, name), name)
    check_monotone(config.search, type(config.ensemble).monotone)
    return config


def check_keys(node, path: str) -> None:
    """No key that the node's schema lacks: Hydra lets `+group.key=value` add one to a typed node."""
    if isinstance(node, DictConfig):
        schema = OmegaConf.get_type(node)
        known = {f.name for f in fields(schema)} if schema is not None and is_dataclass(schema) else None
        for key in node.keys():
            where = f"{path}.{key}" if path else str(key)
            if known is not None and key not in known:
                raise MMCError(f"unknown key {where}: {schema.__name__} has {', '.join(sorted(known))}; "
                               "fix the spelling (`python launch.py --cfg job` prints every key)")
            if not OmegaConf.is_missing(node, key):
                check_keys(node[key], where)
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            check_keys(item, f"{path}.{i}")


def from_container(data: dict) -> DictConfig:
    """A logged config (plain dict, as config.yaml holds it) typed again: each group by its option's schema."""
    cfg = OmegaConf.structured(Config)
    for group, registry in GROUPS.items():
        node = data.get(group) or {}
        if registry.key not in node:
            raise MMCError(f"the logged config has no {group}.{registry.key}; it predates this version of mmc, "
                           "launch it again with its overrides instead of rerun=")
        cfg[group] = OmegaConf.merge(OmegaConf.structured(registry[node[registry.key]].schema), node)
    return OmegaConf.merge(cfg, {k: v for k, v in data.items() if k not in GROUPS})
