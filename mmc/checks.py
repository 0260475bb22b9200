"""Start-up check of the composed config's named choices, so a typo fails before any work starts.

The schemas (mmc/config.py) already reject unknown keys and wrong types; this adds the values that
are names of things (strategies, units, pool kinds, ...). Each module keeps the list it dispatches on.
"""
from __future__ import annotations

from mmc.config import Config
from mmc.data import KINDS as DATASET_KINDS
from mmc.errors import MMCError
from mmc.fit import RESIDUALS, ROBUST
from mmc.losses import AGGREGATES, UNITS
from mmc.pool import MATRIX_KINDS, SCORED_KINDS
from mmc.scoring.engine import DTYPES
from mmc.scoring.stage import PARAM_COUNTS
from mmc.search import STRATEGIES


def check_config(config: Config) -> None:
    for key, value, choices in [
        ("dataset.kind", config.dataset.kind, DATASET_KINDS),
        ("pool.kind", config.pool.kind, SCORED_KINDS + MATRIX_KINDS),
        ("pool.param_count", config.pool.param_count, PARAM_COUNTS),
        ("scoring.dtype", config.scoring.dtype, ("auto", *DTYPES)),
        ("search.strategy", config.search.strategy, STRATEGIES),
        ("search.unit", config.search.unit, UNITS),
        ("search.aggregate", config.search.aggregate, AGGREGATES),
        ("fit.residuals", config.fit.residuals, RESIDUALS),
        ("fit.robust", config.fit.robust, ROBUST),
    ]:
        if value not in choices:
            raise MMCError(f"{key}={value!r} is not one of {', '.join(choices)}; fix the override or config")
