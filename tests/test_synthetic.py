"""The synthetic pool: scale, determinism, and the structure the search relies on."""
from __future__ import annotations

import numpy as np
import pytest

from mmc.errors import MMCError
from mmc.losses import UNITS
from mmc.synthetic import synthetic_loss_matrix


def test_paper_scale_and_units():
    lm = synthetic_loss_matrix(71, 300, seed=0)
    assert lm.n_models == 71 and lm.n_texts == 300 and len(set(lm.families)) == 10
    assert lm.params.min() < 5e7 and lm.params.max() > 3e10  # tens of millions to tens of billions
    for unit in UNITS:
        assert np.isfinite(lm.per_text_loss(unit)).all()
    loss = lm.per_text_loss().mean(axis=1)
    for fam in set(lm.families):  # within a family, bigger is better on average
        rows = np.flatnonzero(lm.families == fam)
        assert np.corrcoef(np.log(lm.params[rows]), loss[rows])[0, 1] < -0.9 if len(rows) > 2 else True
    assert lm.per_text_loss().min(axis=0).mean() < loss.min()  # the oracle beats every single model


def test_deterministic_per_seed():
    a, b, c = (synthetic_loss_matrix(12, 50, seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.nll, b.nll)
    assert not np.array_equal(a.nll, c.nll)


def test_errors_correlate_within_families():
    lm = synthetic_loss_matrix(40, 2000, seed=0)
    loss = lm.per_text_loss()
    residual = loss - loss.mean(axis=1, keepdims=True)
    corr = np.corrcoef(residual)
    same = lm.families[:, None] == lm.families[None, :]
    off_diagonal = ~np.eye(len(corr), dtype=bool)
    assert corr[same & off_diagonal].mean() > corr[~same].mean() + 0.1


def test_bad_sizes_raise():
    with pytest.raises(MMCError, match="n_models"):
        synthetic_loss_matrix(0, 10)
