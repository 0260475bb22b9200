"""ChoiceMatrix: answers and errors against a plain loop, the artifact round trip, its checks, the accuracy table
against scipy's Wilson interval, and fits on error rates (a floor within [0, 1]; saturated or flat: reported)."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy import stats

from mmc.analysis import analyze
from mmc.choices import ChoiceMatrix, accuracy_table, is_choice_matrix
from mmc.errors import MMCError
from mmc.fit import FitConfig
from mmc.losses import LossConfig, LossMatrix
from mmc.search.exhaustive import ExhaustiveSearch


def skilled_matrix(seed: int = 0, n: int = 400, m: int = 6, skill=None, c: int = 4) -> ChoiceMatrix:
    """Models whose log-likelihood of the right choice rises with their size; items of 3 or 4 choices."""
    rng = np.random.default_rng(seed)
    params = (1000 * 3.0 ** np.arange(m)).astype(int)
    skill = np.linspace(0.0, 3.0, m) if skill is None else np.asarray(skill, dtype=float)
    loglik = -rng.gamma(2.0, 2.0, (m, n, c))
    counts = np.where(np.arange(n) % 5 == 0, c - 1, c)
    gold = rng.integers(0, counts)
    loglik[:, np.arange(n), gold] += skill[:, None] * rng.uniform(0, 2, (m, n))
    loglik[:, np.arange(c)[None, :] >= counts[:, None]] = np.nan
    return ChoiceMatrix([f"m{i}" for i in range(m)], (["f", "g"] * m)[:m], params, [f"i{k}" for k in range(n)],
                        np.where(np.arange(n) % 2, "t1", "t2"), loglik, gold, rng.integers(1, 20, (n, c)))


def test_errors_are_wrong_answers_by_a_plain_loop():
    for norm in ("none", "bytes"):
        cm = skilled_matrix(1)
        cm.length_norm = norm
        errors = cm.per_text_loss()
        for i in range(cm.n_models):
            for x in range(cm.n_texts):
                best, best_score = None, -math.inf
                for j in range(cm.loglik.shape[2]):
                    if math.isnan(cm.loglik[i, x, j]):
                        continue
                    score = cm.loglik[i, x, j] / (cm.choice_bytes[x, j] if norm == "bytes" else 1)
                    if score > best_score:
                        best, best_score = j, score
                assert errors[i, x] == (best != cm.gold[x])
        assert cm.weighted_losses().sum(axis=1) == pytest.approx(errors.mean(axis=1))


def test_choice_probabilities_are_a_softmax_over_the_items_choices():
    cm = skilled_matrix(2, n=20)
    p = cm.choice_probabilities()
    for i, x in [(0, 0), (3, 7), (5, 19)]:
        present = ~np.isnan(cm.loglik[i, x])
        e = np.exp(cm.loglik[i, x, present])
        np.testing.assert_allclose(p[i, x, present], e / e.sum(), rtol=1e-12)
        assert (p[i, x, ~present] == 0).all()


def test_the_artifact_round_trips_with_its_fields(tmp_path):
    cm = skilled_matrix(3, n=30)
    cm.length_norm = "bytes"
    cm.save(tmp_path / "choice_matrix.npz")
    assert is_choice_matrix(tmp_path / "choice_matrix.npz")
    with np.load(tmp_path / "choice_matrix.npz") as z:
        assert {"models", "families", "params", "item_ids", "domains", "loglik", "gold", "choice_bytes"} <= set(z.files)
        assert z["loglik"].dtype == np.float64 and z["loglik"].shape == (6, 30, 4)
        assert np.isnan(z["loglik"][:, 0, 3]).all() and z["gold"].dtype == np.int64
    back = ChoiceMatrix.load(tmp_path / "choice_matrix.npz")
    np.testing.assert_array_equal(back.loglik, cm.loglik)
    assert back.length_norm == "bytes" and back.item_ids.tolist() == cm.item_ids.tolist()


@pytest.mark.parametrize("change, expected", [
    (lambda ll, gold: gold.__setitem__(0, 3), "gold 3 is out of range for its 3 choices"),
    (lambda ll, gold: ll.__setitem__((slice(None), 1, slice(1, None)), np.nan), "has 1 choices or a gap"),
    (lambda ll, gold: ll.__setitem__((slice(None), 1, 1), np.nan), "has 3 choices or a gap"),
    (lambda ll, gold: ll.__setitem__((2, 1, 1), np.inf), "non-finite log-likelihoods"),
])
def test_a_bad_matrix_fails_in_one_line(change, expected):
    cm = skilled_matrix(4, n=10)
    loglik, gold = cm.loglik.copy(), cm.gold.copy()
    change(loglik, gold)
    with pytest.raises(MMCError, match=expected):
        ChoiceMatrix(cm.models, cm.families, cm.params, cm.item_ids, cm.domains, loglik, gold, cm.choice_bytes)


def test_the_accuracy_table_has_wilson_intervals_and_chance():
    cm = skilled_matrix(5)
    rows = {(r["name"], r["task"]): r for r in accuracy_table(cm)}
    correct = cm.per_text_loss() == 0
    for i, name in enumerate(cm.models):
        for task in ("t1", "t2", "all"):
            mask = np.ones(cm.n_texts, bool) if task == "all" else cm.domains == task
            row = rows[name, task]
            k, n = int(correct[i, mask].sum()), int(mask.sum())
            ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
            assert (row["accuracy"], row["n_items"]) == (k / n, n)
            assert row["accuracy_lo"] == pytest.approx(ci.low, abs=1e-12)
            assert row["accuracy_hi"] == pytest.approx(ci.high, abs=1e-12)
            n_choices = (~np.isnan(cm.loglik[0][mask])).sum(axis=1)
            assert row["chance"] == pytest.approx(np.mean(1 / n_choices))


QUICK = dict(bootstrap=0, heldout=False, extrapolation=False, groups=False)


def test_fits_on_error_rates_have_a_floor_within_0_and_1():
    a = analyze(skilled_matrix(6), LossConfig(), ExhaustiveSearch(), FitConfig(**QUICK))
    errors = a.lm.per_text_loss()
    assert a.metrics["acc.best_single"] == pytest.approx(1 - errors.mean(axis=1).min())
    assert a.metrics["acc.oracle_all"] == pytest.approx(1 - errors.min(axis=0).mean())
    assert a.metrics["acc.oracle_all"] >= a.metrics["acc.best_single"]
    assert "loss.best_single" not in a.metrics and "ensemble" in a.fits
    for fit in a.fits.values():
        assert 0 <= fit.L_inf <= 1 and 0 <= fit.L_inf_ci[0] <= fit.L_inf_ci[1] <= 1


def test_a_saturated_or_flat_error_rate_is_reported_not_fitted(caplog):
    saturated = skilled_matrix(7, skill=[0, 1, 2, 3, 40, 60])  # the two largest models answer every item right
    a = analyze(saturated, LossConfig(), ExhaustiveSearch(), FitConfig(**QUICK))
    assert a.ensemble.frontier_loss.min() == 0
    assert a.fit_skipped["ensemble"].startswith("saturated: the frontier reaches an error rate of 0 at")
    assert "ensemble" not in a.fits and "fit.ensemble.alpha" not in a.metrics
    assert "no ensemble fit: saturated" in caplog.text
    same = skilled_matrix(8)
    same = ChoiceMatrix(same.models, same.families, same.params, same.item_ids, same.domains,
                        np.broadcast_to(same.loglik[3], same.loglik.shape), same.gold, same.choice_bytes)
    a = analyze(same, LossConfig(), ExhaustiveSearch(), FitConfig(**QUICK))  # six copies of one model
    for curve in ("single", "ensemble"):
        assert a.fit_skipped[curve].startswith("flat: the error rate stays at")


@pytest.mark.parametrize("write, expected", [
    (lambda path, cm: path.write_text("not a zip archive"), "is not a readable .npz file"),
    (lambda path, cm: np.savez(path, **{**arrays_of(cm), "models": np.array([{"a": 1}] * 6, dtype=object)}),
     "is not a readable .npz file (Object arrays cannot be loaded when allow_pickle=False)"),
    (lambda path, cm: np.savez(path, **{k: v for k, v in arrays_of(cm).items() if k != "gold"}),
     "lacks fields ['gold']; it is not an mmc choice_matrix.npz"),
    (lambda path, cm: np.savez(path, **{**arrays_of(cm), "gold": cm.gold[:3]}), "field gold has shape (3,)"),
    (lambda path, cm: np.savez(path, **{**arrays_of(cm), "params": np.array(["x"] * 6)}),
     "it is not an mmc choice_matrix.npz"),
])
def test_a_bad_choice_matrix_file_fails_in_one_line_naming_it(tmp_path, write, expected):
    path = tmp_path / "choice_matrix.npz"
    write(path, skilled_matrix(9, n=10))
    with pytest.raises(MMCError, match=re.escape(expected)) as error:
        (ChoiceMatrix.load if is_choice_matrix(path) else LossMatrix.load)(path)  # as pool=matrix reads it
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def arrays_of(cm: ChoiceMatrix) -> dict:
    return {name: getattr(cm, name) for name in ("models", "families", "params", "item_ids", "domains", "loglik",
                                                 "gold", "choice_bytes")}
