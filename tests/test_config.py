"""The config tree: every option composes and validates, every registered option has its YAML, and defaults
live in one place only (the schemas): no option file restates a default."""
from __future__ import annotations

import dataclasses
import typing

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import MISSING, OmegaConf

from mmc.config import GROUPS, Config, register_configs, validate
from mmc.fit import FitConfig
from mmc.paths import CONF_DIR

REQUIRED = {"dataset=files": ["dataset.path=/data/texts"], "dataset=choices_files": ["dataset.path=/data/tasks"],
            "pool=matrix": ["pool.path=/runs/loss_matrix.npz"]}
OPTION_FILES = sorted(p.relative_to(CONF_DIR).with_suffix("").as_posix()
                      for group in (*GROUPS, "fit") for p in (CONF_DIR / group).glob("*.yaml"))


def composed(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.mark.parametrize("option", OPTION_FILES)
def test_every_option_composes_and_validates(option):
    override = option.replace("/", "=")
    config = validate(composed(override, *REQUIRED.get(override, [])))
    assert isinstance(config, Config)


@pytest.mark.parametrize("group", GROUPS)
def test_every_registered_option_has_a_yaml_file(group):
    files = {p.stem for p in (CONF_DIR / group).glob("*.yaml")}
    assert set(GROUPS[group]) <= files, f"conf/{group}/ lacks {set(GROUPS[group]) - files}"


def schema_of(option: str):
    """The dataclass an option file extends: its `/schema/<group>/<name>` entry, or its group's base file's."""
    group, name = option.split("/")
    if group == "fit":
        return FitConfig
    for entry in OmegaConf.load(CONF_DIR / f"{option}.yaml").get("defaults", []):
        if str(entry).startswith("/schema/"):
            return GROUPS[group][str(entry).split("/")[3].split("@")[0]].schema
        if entry != "_self_":
            return schema_of(f"{group}/{entry}")
    raise AssertionError(f"conf/{option}.yaml extends no schema")


def restated(values, schema, path: str) -> list[str]:
    """Keys whose value equals the schema's default, walking nested dataclasses and lists of them."""
    out = []
    hints = typing.get_type_hints(schema)
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else
                (f.default_factory() if f.default_factory is not dataclasses.MISSING else MISSING)
                for f in dataclasses.fields(schema)}
    for key, value in values.items():
        if key == "defaults":
            continue
        kind = hints[key]
        item = typing.get_args(kind)[0] if typing.get_origin(kind) is list else None
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            out += restated(value, kind, f"{path}.{key}")
        elif dataclasses.is_dataclass(item) and isinstance(value, list):
            for i, element in enumerate(value):
                out += restated(element, item, f"{path}.{key}.{i}")
        elif defaults[key] is not MISSING and value == defaults[key]:
            out.append(f"{path}.{key}")
    return out


@pytest.mark.parametrize("option", OPTION_FILES)
def test_no_option_file_restates_a_default(option):
    raw = OmegaConf.to_container(OmegaConf.load(CONF_DIR / f"{option}.yaml"))
    assert restated(raw, schema_of(option), option) == []


def test_a_restated_default_is_caught():
    """The check above can fail: defaults repeated at the top, in a nested schema and in a list of them."""
    from mmc.pool import ZooPool

    assert restated({"bootstrap": 200, "seed": 3}, FitConfig, "fit") == ["fit.bootstrap"]
    zoo = {"zoo": {"steps": 300, "batch_size": 4, "families": [{"name": "a", "kv_heads": None}]}}
    assert restated(zoo, ZooPool, "pool") == ["pool.zoo.steps", "pool.zoo.families.0.kv_heads"]
