"""A rerun: the config a logged run was launched with, and the command line's overrides on top of it.

`python launch.py rerun=ID search=greedy fit.bootstrap=0` starts from the run's logged config; a group
given an option (search=greedy) takes that option as a fresh launch composes it, then each key=value is
set, in the order Hydra applies them. Hydra composes the command line against the defaults before
launch.py sees it, and there a key of the logged run's option can be missing (search.time_limit of a
logged search=exact, while the default search has none): the start-up check (mmc.cli) writes such
overrides `++key=value`, which Hydra adds as they are; `apply` sets them on the logged config, whose
check (mmc.config.validate) then catches any misspelt key.
"""
from __future__ import annotations

from hydra import compose
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mmc.errors import MMCError, first_line
from mmc.paths import CONF_DIR


def parse(overrides: list[str]) -> list[Override]:
    return OverridesParser.create().parse_overrides(overrides)


def is_rerun(overrides: list[str]) -> bool:
    return any(o.key_or_group == "rerun" for o in parse(overrides))


def is_group_choice(override: Override) -> bool:
    """`group=option` (search=greedy, fit=robust, hydra/launcher=slurm), not `key=value`."""
    key = override.key_or_group
    return "/" in key or ("." not in key and (CONF_DIR / key).is_dir())


def applied(override: Override) -> bool:
    """An override the rerun applies to the logged config (Hydra's own keys and rerun= itself it does not)."""
    key = override.key_or_group
    return key != "rerun" and key != "hydra" and not key.startswith(("hydra.", "hydra/"))


def lacking(overrides: list[str], defaults: DictConfig) -> set[str]:
    """The key=value overrides whose key `defaults` (the defaults with the command line's group options,
    composed) lacks: Hydra lets them through to `apply` when they are written `++key=value`."""
    return {o.input_line for o in parse(overrides) if applied(o) and not is_group_choice(o)
            and o.type == OverrideType.CHANGE and not has_key(defaults, o.key_or_group)}


def has_key(cfg: DictConfig, key: str) -> bool:
    parent, _, last = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, throw_on_missing=False) if parent else cfg
    return not isinstance(node, DictConfig) or last in node.keys()


def apply(logged: DictConfig, overrides: list[str]) -> DictConfig:
    """The logged config (typed, mmc.config.from_container) with the overrides applied; group options first.

    Runs inside the Hydra app (launch.py main), which `compose` needs."""
    parsed = [o for o in parse(overrides) if applied(o)]
    for override in sorted(parsed, key=lambda o: not is_group_choice(o)):  # stable: command-line order kept
        key, value = override.key_or_group, override.value()
        if override.is_delete():
            raise MMCError(f"{override.input_line}: a rerun cannot delete keys; set them instead")
        if key == "experiment":
            raise MMCError(f"{override.input_line} on a rerun: an experiment sets many groups at once; "
                           "launch it with its overrides instead of rerun=")
        try:
            if is_group_choice(override):
                logged[key] = compose("config", overrides=[override.input_line])[key]
            else:
                OmegaConf.update(logged, key, value, merge=True, force_add=True)  # unknown keys: caught by check_keys
        except OmegaConfBaseException as e:
            raise MMCError(f"bad override {override.input_line} on the rerun: {first_line(e)}") from e
    return logged
