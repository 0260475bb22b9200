"""Registries: the one list of each kind of option (search strategies, pool kinds, units, ...).

The config check, the dispatch, Hydra's config groups and the error messages all read the same
registry, so an option exists in exactly one place. An option of a config group (search, pool,
dataset, ensemble) also has a schema, the dataclass of its keys and defaults; `mmc.config` stores
it in Hydra's ConfigStore as `schema/<group>/<name>`, which conf/<group>/<option>.yaml extends.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Callable

from mmc.errors import MMCError


@dataclass(frozen=True)
class Option:
    """A named choice: what it does (`run`, a function or a value) and, for a config group, its schema."""

    name: str
    run: Any
    schema: type | None = None


class Registry(Mapping):
    """Options by name; looking up an unknown name raises one line that lists the known ones."""

    def __init__(self, what: str, options: list[Option], key: str = "kind"):
        self.what = what  # how error messages name the kind, e.g. "search strategy"
        self.key = key  # for a config group: the schema field holding the option's name
        self._options = {o.name: o for o in options}

    def __getitem__(self, name: str) -> Option:
        if name not in self._options:
            raise MMCError(f"unknown {self.what} {name!r}; use one of {', '.join(self._options)}")
        return self._options[name]

    def __contains__(self, name) -> bool:
        return name in self._options

    def __iter__(self) -> Iterator[str]:
        return iter(self._options)

    def __len__(self) -> int:
        return len(self._options)

    def run(self, name: str) -> Callable:
        return self[name].run

    def name_of(self, schema: type) -> str:
        """The option whose schema is `schema` (the class of a composed group node)."""
        return next(o.name for o in self._options.values() if o.schema is schema)


def choices(registry: Mapping | tuple) -> dict:
    """Field metadata saying which registry a config value must name: `field(default=..., metadata=choices(UNITS))`."""
    return {"choices": registry}


def check_node(node, path: str) -> None:
    """A config dataclass and the ones nested in it: every field that names a registry's option names a known
    one (a list names one per element), and the schema's own `check()`, where it has one, passes.

    Raises MMCError naming the key, the value and the fix. The start-up check and the functions that take
    a config from Python both call this, so each rule is written once, on its schema."""
    for f in fields(node):
        value, key = getattr(node, f.name), f"{path}.{f.name}"
        allowed = f.metadata.get("choices")
        if allowed is not None:
            for item in value if isinstance(value, list) else [value]:
                if item is not None and item not in allowed:
                    raise MMCError(f"{key}={item!r} is not one of {', '.join(allowed)}; fix the override or config")
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            if is_dataclass(item):
                check_node(item, f"{key}.{i}" if isinstance(value, list) else key)
    if hasattr(node, "check"):
        node.check(path)
