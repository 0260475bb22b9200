"""The keys every search strategy has; each strategy's module extends them with its own."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from omegaconf import MISSING

from mmc.errors import MMCError


@dataclass
class SearchConfig:
    strategy: str = MISSING  # set by the option: search=pareto_prune, search=exact, ...
    families: Optional[list[str]] = None  # null: all families (heterogeneous); else only these
    max_k: Optional[int] = None  # largest subset size explored
    exact_check: bool = True  # compare with the exhaustive frontier where that is cheap
    exact_check_max_evals: int = 2**25  # ... at most this many (subset, text) evaluations; raise it to check more

    needs_monotone: ClassVar[bool] = False  # the strategy's bounds assume the oracle (a monotone combiner)

    def check_pool(self, n_models: int) -> None:
        """What can be checked once the pool's size is known, before any scoring (exhaustive: its subsets)."""

    def check(self, path: str) -> None:
        if self.max_k is not None and self.max_k < 1:
            raise MMCError(f"{path}.max_k={self.max_k}; use null (all sizes) or a size >= 1")
        if self.exact_check_max_evals < 0:
            raise MMCError(f"{path}.exact_check_max_evals={self.exact_check_max_evals}; use 0 or more")


@dataclass
class SolverSearch(SearchConfig):
    """The exact strategies (exact, milp): bounds that assume the oracle, a time limit and a gap."""

    time_limit: float = 60.0  # seconds: for the whole search (exact), for each budget point (milp)
    mip_rel_gap: float = 0.0  # relative optimality gap at which a subtree is pruned (exact) or a point accepted (milp)

    needs_monotone = True  # the bounds hold for the oracle only

    def check(self, path: str) -> None:
        super().check(path)
        if self.time_limit <= 0:
            raise MMCError(f"{path}.time_limit={self.time_limit}; give the solver a positive number of seconds")
        if not 0 <= self.mip_rel_gap < 1:
            raise MMCError(f"{path}.mip_rel_gap={self.mip_rel_gap}; use a gap in [0, 1)")
