"""Ensembles: how a subset's members are combined on a text (conf/ensemble/<name>.yaml selects one).

ENSEMBLES is the one list of options. Each builds a combiner (mmc.ensemble.combiners) from the run's
losses; search strategies, tables and fits then treat every option alike. `oracle` is the paper's:
per text, the member with the lowest loss.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from omegaconf import MISSING

from mmc.ensemble.combiners import Combiner, MinCombiner
from mmc.registry import Option, Registry


@dataclass
class EnsembleConfig:
    kind: str = MISSING  # set by the option: ensemble=oracle, ...

    monotone: ClassVar[bool] = False  # adding a member never raises the loss (search=exact and milp need it)


@dataclass
class OracleEnsemble(EnsembleConfig):
    kind: str = "oracle"

    monotone = True


def oracle(cfg: OracleEnsemble, weighted: np.ndarray) -> Combiner:
    return MinCombiner(weighted)


ENSEMBLES = Registry("ensemble", [
    Option("oracle", oracle, OracleEnsemble),
])
