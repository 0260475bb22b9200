"""The hub pools: base71.yaml, the one list of public base models, and the family pools that select from it."""
from __future__ import annotations

import re
from fnmatch import fnmatchcase

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mmc.config import register_configs
from mmc.pool import LocalModelConfig, LocalPool
from mmc.paths import CONF_DIR

POOL_DIR = CONF_DIR / "pool"
FAMILY_POOLS = sorted(p.stem for p in POOL_DIR.glob("*.yaml")
                      if "base71" in (yaml.safe_load(p.read_text()) or {}).get("defaults", []))
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
TUNED = re.compile(r"instruct|chat|-it\b|-sft|-dpo|rlhf", re.IGNORECASE)
SIZE_IN_NAME = re.compile(r"-(\d+(?:\.\d+)?)([mb])\b")


def compose_pool(name: str) -> LocalPool:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"pool={name}"])
    return OmegaConf.to_object(cfg).pool


@pytest.fixture(scope="module")
def base71() -> LocalPool:
    return compose_pool("base71")


def test_family_pools_exist():
    assert len(FAMILY_POOLS) >= 10, FAMILY_POOLS


def test_base71_composes_into_local_models(base71):
    assert base71.kind == "local" and base71.only is None
    assert all(isinstance(m, LocalModelConfig) for m in base71.models)


def test_base71_is_broad(base71):
    assert len(base71.models) >= 65
    assert len({m.family for m in base71.models}) >= 10


def test_base71_entries_are_well_formed_base_models(base71):
    names = [m.name for m in base71.models]
    paths = [m.path for m in base71.models]
    assert len(set(names)) == len(names), "duplicate names"
    assert len(set(paths)) == len(paths), "duplicate hub ids"
    for m in base71.models:
        assert HUB_ID.fullmatch(m.path), m.path
        assert not TUNED.search(m.path) and not TUNED.search(m.name), m.path
        assert m.family and m.revision, m.name
        assert isinstance(m.params, int) and m.params > 0, m.name


def test_params_agree_with_the_size_in_the_name(base71):
    """A size in a name (`-1.4b`, `-350m`) and the count agree within 2x: catches a dropped or extra digit."""
    for m in base71.models:
        size = SIZE_IN_NAME.search(m.name)
        if size:
            nominal = float(size[1]) * (1e6 if size[2] == "m" else 1e9)
            assert 0.5 < m.params / nominal < 2.0, (m.name, m.params)


@pytest.mark.parametrize("family", FAMILY_POOLS)
def test_family_pool_selects_exactly_its_family(family, base71):
    pool = compose_pool(family)
    assert pool.kind == "local" and pool.models == base71.models
    selected = {m.name for m in pool.models if fnmatchcase(m.name, pool.only)}
    assert selected == {m.name for m in base71.models if m.family == family}
    assert selected


def test_every_family_of_base71_has_its_pool(base71):
    assert {m.family for m in base71.models} == set(FAMILY_POOLS)
