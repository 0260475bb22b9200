import json
import logging

import numpy as np
import pytest

from mmc.errors import MMCError
from mmc.fit import compare_floor, fit_power_law, fit_table

P = np.geomspace(1e6, 1e9, 25)  # three decades of raw parameter counts


def curve(A, alpha, L_inf, params=P):
    return A * params ** -alpha + L_inf


@pytest.mark.parametrize("A, alpha, L_inf", [(400.0, 0.35, 1.2), (30.0, 0.15, 2.0), (5e3, 0.6, 0.5)])
@pytest.mark.parametrize("residuals, robust", [("log", "linear"), ("relative", "linear"), ("log", "soft_l1")])
def test_noiseless_recovery_within_one_percent(A, alpha, L_inf, residuals, robust):
    fit = fit_power_law(P, curve(A, alpha, L_inf), residuals=residuals, robust=robust)
    assert fit.A == pytest.approx(A, rel=0.01)  # A is for raw P, not the internal scale
    assert fit.alpha == pytest.approx(alpha, rel=0.01)
    assert fit.L_inf == pytest.approx(L_inf, rel=0.01)
    assert fit.predict(3e9) == pytest.approx(curve(A, alpha, L_inf, 3e9), rel=1e-4)
    assert fit.n_points == len(P)


def test_noiseless_recovery_without_floor():
    fit = fit_power_law(P, curve(50.0, 0.2, 0.0), floor=False)
    assert (fit.A, fit.alpha, fit.L_inf) == (pytest.approx(50.0, rel=0.01), pytest.approx(0.2, rel=0.01), 0.0)


def test_ci_covers_truth_in_most_seeds():
    truth = {"A": 400.0, "alpha": 0.35, "L_inf": 1.2}
    hits = {name: 0 for name in truth}
    n_seeds = 40
    for seed in range(n_seeds):
        noisy = curve(**truth) * np.exp(np.random.default_rng(seed).normal(0.0, 0.01, len(P)))
        fit = fit_power_law(P, noisy, warn=False)
        for name, value in truth.items():
            lo, hi = getattr(fit, f"{name}_ci")
            hits[name] += lo <= value <= hi
    assert all(h >= 0.8 * n_seeds for h in hits.values()), hits


def test_ci_width_matches_spread_over_seeds():
    # the reported stderr should match the scatter of the estimates across noise draws
    fits = [fit_power_law(P, curve(400.0, 0.35, 1.2) * np.exp(np.random.default_rng(s).normal(0, 0.01, len(P))),
                          warn=False) for s in range(40)]
    spread = np.std([f.alpha for f in fits])
    reported = np.median([f.alpha_stderr for f in fits])
    assert 0.6 < reported / spread < 1.6


def test_aic_prefers_no_floor_on_data_without_floor():
    wins = 0
    for seed in range(20):
        noisy = curve(50.0, 0.2, 0.0) * np.exp(np.random.default_rng(seed).normal(0.0, 0.01, len(P)))
        wins += compare_floor(P, noisy)["preferred"] == "no_floor"
    assert wins >= 15


def test_aic_prefers_floor_on_data_with_floor():
    noisy = curve(400.0, 0.35, 1.2) * np.exp(np.random.default_rng(0).normal(0.0, 0.01, len(P)))
    result = compare_floor(P, noisy)
    assert result["preferred"] == "floor" and result["delta_aic"] > 10 and result["delta_bic"] > 10
    assert result["aic_floor"] == result["floor"]["aic"]


def test_aic_matches_closed_form():
    noisy = curve(400.0, 0.35, 1.2) * np.exp(np.random.default_rng(1).normal(0.0, 0.01, len(P)))
    fit = fit_power_law(P, noisy)
    rss = np.sum((np.log(fit.predict(P)) - np.log(noisy)) ** 2)
    n = len(P)
    assert fit.aic == pytest.approx(n * np.log(rss / n) + 2 * 3)
    assert fit.bic == pytest.approx(n * np.log(rss / n) + 3 * np.log(n))


@pytest.mark.parametrize("params, losses, match", [
    ([1e6, 1e7], [3.0, 2.0], "distinct param counts"),
    ([1e6, 1e6, 1e6, 1e6], [3.0, 2.5, 2.0, 1.5], "distinct param counts"),
    ([1e6, 1e7, 1e8, 1e9], [2.0, 2.0, 2.0, 2.0], "all 4 losses are equal"),
    ([1e6, 1e7, 1e8, 1e9], [1.0, 1.5, 2.0, 2.5], "do not fall"),
    ([0.0, 1e7, 1e8, 1e9], [3.0, 2.5, 2.0, 1.5], "non-positive params"),
    ([1e6, 1e7, 1e8, 1e9], [3.0, 2.5, 2.0, 0.0], "non-positive loss"),
    ([1e6, 1e7, 1e8, 1e9], [3.0, 2.5, np.nan, 1.5], "non-finite"),
    ([1e6, 1e7, 1e8], [3.0, 2.5, 2.0, 1.5], "differ in length"),
])
def test_bad_input_raises(params, losses, match):
    with pytest.raises(MMCError, match=match):
        fit_power_law(params, losses)


def test_unknown_options_raise():
    with pytest.raises(MMCError, match="unknown residuals"):
        fit_power_law(P, curve(400.0, 0.35, 1.2), residuals="squared")
    with pytest.raises(MMCError, match="unknown robust"):
        fit_power_law(P, curve(400.0, 0.35, 1.2), robust="l2")


def test_exact_fit_warns_and_has_no_uncertainty(caplog):
    params = np.array([1e6, 1e7, 1e8])
    with caplog.at_level(logging.WARNING, logger="mmc.fit"):
        fit = fit_power_law(params, curve(400.0, 0.35, 1.2, params))
    assert "no uncertainties" in caplog.text
    assert np.isnan(fit.alpha_stderr) and fit.notes
    assert fit.to_dict()["alpha_stderr"] is None


def test_floor_at_zero_bound_warns(caplog):
    bending_down = curve(50.0, 0.2, 0.0) * (1 - 0.1 * np.log10(P / P[0]) / 3)  # falls faster than any power law
    with caplog.at_level(logging.WARNING, logger="mmc.fit"):
        fit = fit_power_law(P, bending_down)
    assert "L_inf at its bound 0" in caplog.text and fit.L_inf == pytest.approx(0.0, abs=1e-9)


def test_to_dict_is_the_fits_json_contract():
    fit = fit_power_law(P, curve(400.0, 0.35, 1.2) * np.exp(np.random.default_rng(0).normal(0, 0.01, len(P))))
    d = json.loads(json.dumps(fit.to_dict(), allow_nan=False))
    for name in ("A", "alpha", "L_inf"):
        assert d[name] == pytest.approx(getattr(fit, name))
        assert d[f"{name}_stderr"] == pytest.approx(getattr(fit, f"{name}_stderr")) and d[f"{name}_stderr"] > 0
        assert d[f"{name}_ci"] == pytest.approx(list(getattr(fit, f"{name}_ci")))
    assert d["n_points"] == len(P) and d["param_unit"] == "parameters (raw count)"


def test_warm_start_reaches_the_same_fit():
    noisy = curve(400.0, 0.35, 1.2) * np.exp(np.random.default_rng(2).normal(0, 0.01, len(P)))
    cold = fit_power_law(P, noisy)
    far = fit_power_law(P, curve(100.0, 0.5, 0.5))
    warm = fit_power_law(P, noisy, start=far)
    assert warm.alpha == pytest.approx(cold.alpha, rel=1e-4) and warm.L_inf == pytest.approx(cold.L_inf, rel=1e-4)


def test_fit_table_floor_reduction():
    single = fit_power_law(P, curve(400.0, 0.35, 2.21))
    ensemble = fit_power_law(P, curve(400.0, 0.35, 1.25))
    rows = {row["setting"]: row for row in fit_table({"single": single, "ensemble": ensemble})}
    assert rows["single"]["floor_reduction_pct"] is None
    assert rows["ensemble"]["floor_reduction_pct"] == pytest.approx(100 * (1 - 1.25 / 2.21), abs=0.1)
    assert rows["ensemble"]["alpha"] == pytest.approx(0.35, rel=0.01)
    with pytest.raises(MMCError, match="reference curve"):
        fit_table({"ensemble": ensemble})


@pytest.mark.parametrize("residuals, robust", [("log", "linear"), ("relative", "linear"), ("log", "soft_l1")])
def test_refit_gives_the_constants_of_fit_power_law_to_the_last_bit(residuals, robust):
    """The bootstrap's fast refit solves the very problem fit_power_law hands lmfit: same constants, same notes."""
    from mmc.fit import refit

    start = fit_power_law(P, curve(400.0, 0.35, 1.2), residuals, robust)
    for seed in range(10):
        noisy = curve(400.0, 0.35, 1.2) * np.exp(np.random.default_rng(seed).normal(0.0, 0.02, len(P)))
        full = fit_power_law(P, noisy, residuals, robust, start=start, warn=False)
        constants, notes = refit(P, noisy, start, residuals, robust)
        assert constants == (full.A, full.alpha, full.L_inf) and notes == full.notes
