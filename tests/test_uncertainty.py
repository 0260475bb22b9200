import itertools

import numpy as np
import pytest

from mmc.errors import MMCError
from mmc.fit import fit_power_law
from mmc.pareto import pareto_front
from mmc.uncertainty import (bootstrap_fits, extrapolation_check, floor_reduction, heldout_optimism,
                             resampled_losses)


def tiny_pool(n_models=6, n_texts=40, seed=0):
    """Per-text losses L (M, N) that follow a power law in params with per-text noise, and params."""
    rng = np.random.default_rng(seed)
    params = np.geomspace(1e6, 1e9, n_models)
    noise = np.exp(rng.normal(0, 0.5, (n_models, n_texts)))
    loss = 1.0 + 0.2 * rng.random(n_texts) + 40 * params[:, None] ** -0.3 * noise
    return loss, params


def all_subsets(n_models):
    return np.array([[i in s for i in range(n_models)] for k in range(1, n_models + 1)
                     for s in itertools.combinations(range(n_models), k)])


def naive_oracle_loss(loss, weights, subset, texts):
    """Weighted mean over `texts` (with repeats) of the best member's loss, text by text."""
    total = norm = 0.0
    for x in texts:
        total += weights[x] * min(loss[i, x] for i in np.flatnonzero(subset))
        norm += weights[x]
    return total / norm


@pytest.mark.parametrize("uniform", [True, False])
def test_resampled_losses_match_naive_loop(uniform):
    loss, _ = tiny_pool(n_models=4, n_texts=15)
    rng = np.random.default_rng(1)
    weights = np.full(15, 1 / 15) if uniform else rng.random(15) / 7.5
    members = all_subsets(4)
    draws = [rng.integers(0, 15, size=15) for _ in range(5)]
    counts = np.stack([np.bincount(d, minlength=15) for d in draws], axis=1)
    got = resampled_losses(loss * weights, members, counts, None if uniform else weights, chunk=4)
    want = np.array([[naive_oracle_loss(loss, weights, s, d) for d in draws] for s in members])
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_bootstrap_matches_naive_per_resample_pipeline():
    loss, params = tiny_pool()
    n_texts, n_resamples, seed = loss.shape[1], 4, 7
    weights = np.full(n_texts, 1 / n_texts)
    members = all_subsets(len(params))
    boots = bootstrap_fits(loss * weights, params, members, n_resamples=n_resamples, seed=seed)
    draws = np.random.default_rng(seed).multinomial(n_texts, np.full(n_texts, 1 / n_texts), size=n_resamples)
    cost = members @ params
    for b in range(n_resamples):
        texts = np.repeat(np.arange(n_texts), draws[b])
        losses = np.array([naive_oracle_loss(loss, weights, s, texts) for s in members])
        for curve, rows in (("ensemble", slice(None)), ("single", members.sum(1) == 1)):
            front = pareto_front(cost[rows], losses[rows])
            fit = fit_power_law(cost[rows][front], losses[rows][front], warn=False)
            assert boots[curve].alpha[b] == pytest.approx(fit.alpha, rel=1e-3)
            assert boots[curve].L_inf[b] == pytest.approx(fit.L_inf, rel=1e-3, abs=1e-6)
    assert boots["ensemble"].n_failed == 0 and len(boots["ensemble"].alpha) == n_resamples


def test_bootstrap_of_identical_texts_has_zero_width_intervals():
    loss, params = tiny_pool(n_texts=1)
    loss = np.repeat(loss, 30, axis=1)  # every resample is the same corpus
    boots = bootstrap_fits(loss / 30, params, all_subsets(len(params)), n_resamples=5)
    for boot in boots.values():
        lo, hi = boot.interval("alpha")
        assert lo == pytest.approx(boot.fit.alpha, rel=1e-6) and hi == pytest.approx(boot.fit.alpha, rel=1e-6)
    reduction = floor_reduction(boots)
    assert reduction["ci"][0] == pytest.approx(reduction["floor_reduction_pct"], rel=1e-4, abs=1e-6)


def test_bootstrap_bad_input():
    loss, params = tiny_pool()
    members = all_subsets(len(params))
    with pytest.raises(MMCError, match="at least 1"):
        bootstrap_fits(loss, params, members, n_resamples=0)
    with pytest.raises(MMCError, match="members has shape"):
        bootstrap_fits(loss, params, members[:, :3])
    with pytest.raises(MMCError, match="empty"):
        bootstrap_fits(loss, params, np.zeros_like(members))
    with pytest.raises(MMCError, match="params"):
        bootstrap_fits(loss, params[:3], members)
    with pytest.raises(MMCError, match="text weights"):
        bootstrap_fits(loss, params, members, weights=np.ones(3))


def test_heldout_renormalises_each_half_and_reports_optimism():
    loss, params = tiny_pool(n_texts=60)
    weights = np.random.default_rng(2).random(60)
    weights /= weights.sum()  # ratio_of_sums-like weights
    members = all_subsets(len(params))
    seen = {}

    def search_fn(weighted_a):  # exact frontier on half A, remembering what it saw
        seen["weighted_a"] = weighted_a
        subset_loss = np.array([weighted_a[s].min(0).sum() for s in members])
        return members[pareto_front(members @ params, subset_loss)]

    out = heldout_optimism(loss * weights, params, search_fn, seed=3, weights=weights)
    # recover half A from the columns search_fn saw (row ratios are weight-free), B is the rest
    ratio = loss[0] / loss[1]
    wa = seen["weighted_a"]
    half_a = np.array([np.argmin(np.abs(ratio - r)) for r in wa[0] / wa[1]])
    half_b = np.setdiff1d(np.arange(60), half_a)
    assert len(half_a) == out["n_texts_a"] == 30 and out["n_texts_b"] == 30
    front = members[pareto_front(members @ params, [naive_oracle_loss(loss, weights, s, half_a) for s in members])]
    want_in = [naive_oracle_loss(loss, weights, s, half_a) for s in front]
    want_out = [naive_oracle_loss(loss, weights, s, half_b) for s in front]
    np.testing.assert_allclose(out["loss_in"], want_in, rtol=1e-12)
    np.testing.assert_allclose(out["loss_out"], want_out, rtol=1e-12)
    assert out["optimism_mean"] == pytest.approx(np.mean(np.subtract(want_out, want_in)))


def test_heldout_selection_is_optimistic_on_exchangeable_models():
    # ten equally good models: whichever wins on half A won by luck, so it is worse on half B
    rng = np.random.default_rng(0)
    loss = 2.0 + rng.normal(0, 0.3, (10, 400)) ** 2
    params = np.full(10, 1e6)

    def best_single(weighted_a):
        return np.eye(10, dtype=bool)[[weighted_a.sum(1).argmin()]]

    out = heldout_optimism(loss / 400, params, best_single, seed=0)
    assert out["optimism_mean"] > 0 and out["fit_in_sample"] is None  # one point: no fit, warned


def test_extrapolation_check():
    params = np.geomspace(1e6, 1e10, 30)
    exact = extrapolation_check(params, 400 * params ** -0.35 + 1.2, decades=1.0)
    assert exact["n_train"] == int((params <= 1e9).sum()) and exact["n_test"] == int((params > 1e9).sum())
    assert exact["max_abs_rel_error"] < 1e-5
    bent = 400 * params ** -0.35 + 1.2 - 0.3 * (params > 1e9) * np.log10(params / 1e9)
    assert extrapolation_check(params, bent, decades=1.0)["max_abs_rel_error"] > 0.1
    with pytest.raises(MMCError, match="decade"):
        extrapolation_check(params, 400 * params ** -0.35 + 1.2, decades=5.0)
