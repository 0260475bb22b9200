"""The common result of every search strategy."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mmc.pareto import pareto_front


@dataclass
class SearchResult:
    """What a strategy explored and the Pareto frontier among it.

    `explored_params` / `explored_loss` hold every subset the strategy evaluated (for counts and the
    faint cloud in plots); only frontier subsets keep their members (bool (F, M), rows sorted by params).
    """

    strategy: str
    models: np.ndarray  # str (M,), the pool the members index into
    explored_params: np.ndarray  # float64 (S,)
    explored_loss: np.ndarray  # float64 (S,)
    frontier_members: np.ndarray  # bool (F, M)
    frontier_params: np.ndarray  # float64 (F,)
    frontier_loss: np.ndarray  # float64 (F,)
    stats: dict = field(default_factory=dict)  # n_explored, wall_s, mip gaps, ...

    @property
    def n_explored(self) -> int:
        return len(self.explored_loss)

    @property
    def n_frontier(self) -> int:
        return len(self.frontier_loss)

    def frontier_names(self) -> list[str]:
        """'+'-joined sorted member names per frontier point (the frontier.csv `members` column)."""
        return ["+".join(sorted(self.models[row].tolist())) for row in self.frontier_members]

    @classmethod
    def from_candidates(cls, strategy, models, members, params, loss, explored_params=None,
                        explored_loss=None, stats=None) -> "SearchResult":
        """Build from candidate subsets (members bool (S, M)); the frontier is extracted here."""
        members = np.asarray(members, dtype=bool)
        params = np.asarray(params, dtype=np.float64)
        loss = np.asarray(loss, dtype=np.float64)
        front = pareto_front(params, loss)
        return cls(
            strategy=strategy, models=np.asarray(models, dtype=str),
            explored_params=params if explored_params is None else np.asarray(explored_params, float),
            explored_loss=loss if explored_loss is None else np.asarray(explored_loss, float),
            frontier_members=members[front], frontier_params=params[front], frontier_loss=loss[front],
            stats=dict(stats or {}),
        )
