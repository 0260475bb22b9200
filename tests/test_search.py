"""Search strategies against an itertools brute force and against each other."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from mmc.ensemble.combiners import MinCombiner
from mmc.errors import MMCError
from mmc.losses import LossMatrix
from mmc.pareto import REL_TOL, pareto_front
from mmc.search import STRATEGIES, compare_to_exact, run_search, select_families


def naive_pareto(cost, loss):
    """O(n^2) loop: i is kept when it is lower than every cheaper point by more than REL_TOL (relative) and not
    more than REL_TOL above any point of its own cost: losses equal up to rounding are ties."""
    kept = []
    for i in range(len(cost)):
        cheaper = [j for j in range(len(cost)) if cost[j] < cost[i]]
        same = [j for j in range(len(cost)) if cost[j] == cost[i]]
        if all(loss[i] < loss[j] - REL_TOL * abs(loss[j]) for j in cheaper) and \
                all(loss[i] <= loss[j] + REL_TOL * abs(loss[j]) for j in same):
            kept.append(i)
    return sorted(kept, key=lambda i: (cost[i], loss[i]))


@pytest.mark.parametrize("seed", range(6))
def test_pareto_front_equals_a_quadratic_loop(seed):
    rng = np.random.default_rng(seed)
    cost = rng.integers(1, 12, 60).astype(float)  # many equal costs
    loss = rng.choice(rng.random(25), 60)  # many equal losses
    loss[::7] *= 1 + rng.uniform(-3, 3, len(loss[::7])) * REL_TOL  # and losses equal up to rounding
    assert pareto_front(cost, loss).tolist() == naive_pareto(cost, loss)


def test_pareto_front_ignores_rounding_level_improvements():
    # a costlier subset whose loss is lower only in the last bits (the same minima summed in another order)
    cost, loss = np.array([1.0, 2.0, 3.0]), np.array([0.3, 0.3 - 1e-16, 0.2])
    assert pareto_front(cost, loss).tolist() == [0, 2]


def brute_force(weighted, params, max_k=None):
    """Frontier (params, loss) of all subsets: one itertools loop and the quadratic Pareto loop, no package code."""
    m = len(params)
    subsets = [s for k in range(1, (max_k or m) + 1) for s in itertools.combinations(range(m), k)]
    cost = np.array([sum(int(params[i]) for i in s) for s in subsets], dtype=float)
    loss = np.array([sum(min(weighted[i, x] for i in s) for x in range(weighted.shape[1])) for s in subsets])
    front = naive_pareto(cost, loss)
    return cost[front], loss[front], [subsets[i] for i in front]


def random_pool(seed, m, n, max_params=100):
    rng = np.random.default_rng(seed)
    return rng.random((m, n)) / n, rng.integers(1, max_params, m), np.array([f"model{i}" for i in range(m)])


def search(strategy, weighted, params, models, **kw):
    return run_search(MinCombiner(weighted), params, models, STRATEGIES[strategy].schema(exact_check=False, **kw))


def naive_oracle_losses(weighted, members):
    """Per subset, the sum over texts of its best member's loss: plain loops."""
    return np.array([sum(min(weighted[i, x] for i in np.flatnonzero(row)) for x in range(weighted.shape[1]))
                     for row in members])


@pytest.mark.parametrize("seed,m,n,max_k", [(0, 9, 30, None), (1, 11, 20, None), (2, 10, 25, 3), (3, 1, 5, None)])
def test_exhaustive_equals_brute_force(seed, m, n, max_k):
    weighted, params, models = random_pool(seed, m, n)
    cost, loss, subsets = brute_force(weighted, params, max_k)
    result = search("exhaustive", weighted, params, models, max_k=max_k)
    np.testing.assert_array_equal(result.frontier_params, cost)
    np.testing.assert_allclose(result.frontier_loss, loss, rtol=1e-12)
    assert [tuple(np.flatnonzero(row)) for row in result.frontier_members] == subsets
    assert result.n_explored == sum(len(list(itertools.combinations(range(m), k))) for k in range(1, (max_k or m) + 1))


def test_exhaustive_chunks_span_several_high_subsets(monkeypatch):
    """Force a tiny low table so the depth-first high part does most of the work."""
    import mmc.search.exhaustive as ex

    monkeypatch.setattr(ex, "CHUNK_BYTES", 8 * 30 * 4)
    weighted, params, models = random_pool(4, 9, 30)
    cost, loss, _ = brute_force(weighted, params)
    result = search("exhaustive", weighted, params, models)
    np.testing.assert_array_equal(result.frontier_params, cost)
    np.testing.assert_allclose(result.frontier_loss, loss, rtol=1e-12)


@pytest.mark.parametrize("strategy", ["milp", "exact"])
@pytest.mark.parametrize("seed,m,n,max_k", [(5, 8, 12, None), (6, 12, 10, None), (7, 10, 15, 2), (15, 14, 40, 4)])
def test_exact_strategies_equal_exhaustive(strategy, seed, m, n, max_k):
    weighted, params, models = random_pool(seed, m, n)
    exact = search("exhaustive", weighted, params, models, max_k=max_k)
    result = search(strategy, weighted, params, models, max_k=max_k, time_limit=30)
    np.testing.assert_array_equal(result.frontier_params, exact.frontier_params)
    np.testing.assert_allclose(result.frontier_loss, exact.frontier_loss, rtol=1e-9)
    np.testing.assert_array_equal(result.frontier_params, result.frontier_members @ params)
    assert result.frontier_members.sum(axis=1).max() <= (max_k or m)
    assert result.stats["max_mip_gap"] <= 1e-6 and result.stats["proven_optimal"]


@pytest.mark.parametrize("strategy", ["milp", "exact"])
def test_exact_strategies_equal_brute_force_on_a_correlated_pool(strategy):
    """The synthetic pool (families share errors, sizes span 14M to 72B): the case the bound is tuned for."""
    from mmc.synthetic import synthetic_loss_matrix

    lm = synthetic_loss_matrix(13, 25, seed=3)
    weighted = lm.weighted_losses()
    cost, loss, _ = brute_force(weighted, lm.params)
    result = search(strategy, weighted, lm.params, lm.models)
    np.testing.assert_array_equal(result.frontier_params, cost)
    np.testing.assert_allclose(result.frontier_loss, loss, rtol=1e-12)


@pytest.mark.parametrize("strategy", ["milp", "exact"])
def test_exact_strategies_with_realistic_parameter_counts(strategy):
    """Counts in the billions, two of them equal: the budget steps must still resolve neighbouring subsets."""
    weighted, _, models = random_pool(8, 9, 10)
    params = np.array([124_439_808, 354_823_168, 774_030_080, 1_557_611_200, 6_738_415_616,
                       13_015_864_320, 70_553_706_496, 410_000_000, 354_823_168])
    exact = search("exhaustive", weighted, params, models)
    result = search(strategy, weighted, params, models)
    np.testing.assert_array_equal(result.frontier_params, exact.frontier_params)
    np.testing.assert_allclose(result.frontier_loss, exact.frontier_loss, rtol=1e-9)


def test_exact_time_limit_reports_gaps():
    """Stopped before the end: every point is a real subset, gaps bound the open nodes, nothing claimed proven."""
    weighted, params, models = random_pool(16, 16, 30)
    exact = search("exhaustive", weighted, params, models)
    result = search("exact", weighted, params, models, time_limit=1e-9)
    assert not result.stats["proven_optimal"] and result.stats["n_open_nodes"] > 0
    np.testing.assert_allclose(result.frontier_loss, naive_oracle_losses(weighted, result.frontier_members), rtol=1e-12)
    gaps = np.array(result.stats["mip_gaps"])
    at = np.searchsorted(exact.frontier_params, result.frontier_params, side="right") - 1
    true_gap = 1 - exact.frontier_loss[at] / result.frontier_loss  # the best any subset could do at that cost
    assert (gaps >= true_gap - 1e-12).all() and result.stats["max_mip_gap"] == pytest.approx(gaps.max())


@pytest.mark.parametrize("strategy", ["pareto_prune", "greedy", "random"])
def test_heuristics_report_no_dominated_point(strategy):
    weighted, params, models = random_pool(9, 12, 40)
    cost, loss, _ = brute_force(weighted, params)
    kw = {"n_random": 20} if strategy == "random" else {}
    result = run_search(MinCombiner(weighted), params, models, STRATEGIES[strategy].schema(**kw))
    for p, l in zip(result.frontier_params, result.frontier_loss):  # each frontier point is a real subset value
        others = (result.explored_params <= p) & (result.explored_loss <= l)
        strict = (result.explored_params < p) | (result.explored_loss < l)
        assert not (others & strict).any()
    members_loss = np.array([weighted[row].min(axis=0).sum() for row in result.frontier_members])
    np.testing.assert_allclose(result.frontier_loss, members_loss, rtol=1e-12)
    np.testing.assert_array_equal(result.frontier_params, result.frontier_members @ params)
    # no heuristic point beats the exact frontier
    at = np.searchsorted(cost, result.frontier_params, side="right") - 1
    assert (result.frontier_loss >= loss[at] * (1 - 1e-12)).all()
    assert {"n_explored", "n_frontier", "wall_s", "missed_points", "max_missed_gap"} <= set(result.stats)


def test_pareto_prune_matches_exact_when_frontier_is_nested():
    """Models ordered so the best subset of every budget extends a best subset one smaller:
    each model is best on its own block of texts, and blocks grow faster than costs."""
    m = 6
    weighted = np.ones((m, m * 4))
    for i in range(m):
        weighted[i, i * 4: (i + 1) * 4] = 0.1 / (i + 1)
    params = np.arange(1, m + 1) * 10
    models = np.array([f"m{i}" for i in range(m)])
    result = run_search(MinCombiner(weighted), params, models, STRATEGIES["pareto_prune"].schema())
    cost, loss, _ = brute_force(weighted, params)
    np.testing.assert_array_equal(result.frontier_params, cost)
    np.testing.assert_allclose(result.frontier_loss, loss)
    assert result.stats["missed_points"] == 0
    assert result.stats["n_pareto_configs"] == len(cost)


def test_compare_to_exact_counts_missed_points():
    weighted, params, models = random_pool(10, 10, 30)
    exact = search("exhaustive", weighted, params, models)
    singles = search("exhaustive", weighted, params, models, max_k=1)
    report = compare_to_exact(singles, exact)
    best_single_within = [singles.frontier_loss[singles.frontier_params <= p].min() for p in exact.frontier_params]
    gaps = np.array(best_single_within) - exact.frontier_loss
    assert report["missed_points"] == int((gaps > 1e-12).sum())
    assert report["max_missed_gap"] == pytest.approx(gaps.max())
    assert compare_to_exact(exact, exact)["missed_points"] == 0


def test_ties_in_cost_and_loss():
    """Identical models with equal costs: both singles are kept, as is every tie on cost or loss."""
    weighted = np.array([[0.3, 0.1], [0.3, 0.1], [0.1, 0.3], [0.2, 0.2]])
    params = np.array([1, 1, 2, 2])
    models = np.array(["a", "a_copy", "b", "c"])
    cost, loss, subsets = brute_force(weighted, params)
    for strategy in ["exhaustive", "milp", "exact", "pareto_prune"]:
        result = search(strategy, weighted, params, models)
        assert {(p, round(l, 12)) for p, l in zip(result.frontier_params, result.frontier_loss)} == \
            {(p, round(l, 12)) for p, l in zip(cost, loss)}
    exhaustive = search("exhaustive", weighted, params, models)
    assert sorted(exhaustive.frontier_names()) == sorted("+".join(models[list(s)]) for s in subsets)
    assert {"a", "a_copy"} <= set(exhaustive.frontier_names())


@pytest.mark.parametrize("strategy", ["exhaustive", "pareto_prune", "greedy", "milp", "exact", "random"])
def test_single_model_pool(strategy):
    result = search(strategy, np.array([[0.5, 0.25]]), np.array([7]), np.array(["only"]))
    assert result.frontier_names() == ["only"]
    assert result.frontier_params.tolist() == [7.0] and result.frontier_loss.tolist() == [0.75]


def test_identical_models_add_nothing():
    weighted, params, models = random_pool(11, 5, 20)
    weighted = np.vstack([weighted, weighted[2]])
    params, models = np.append(params, params[2] + 5), np.append(models, "clone")
    for strategy in ["exhaustive", "pareto_prune", "greedy", "milp", "exact"]:
        result = search(strategy, weighted, params, models)
        assert not any("clone" in name for name in result.frontier_names())
        assert not any({"model2", "clone"} <= set(name.split("+")) for name in result.frontier_names())


class RecordingCombiner(MinCombiner):
    """The oracle, remembering every subset it is asked to evaluate."""

    def subset_losses(self, members):
        self.evaluated = np.asarray(members, dtype=bool).copy()
        return super().subset_losses(members)


def test_random_is_seeded_and_distinct():
    weighted, params, models = random_pool(12, 10, 10)
    draws = {}
    for seed in (3, 3, 4):
        combiner = RecordingCombiner(weighted)
        result = run_search(combiner, params, models, STRATEGIES["random"].schema(n_random=15, seed=seed))
        draws.setdefault(seed, []).append(combiner.evaluated)
        subsets = [tuple(np.flatnonzero(row)) for row in combiner.evaluated]
        assert len(set(subsets)) == len(subsets)  # distinct
        sizes = [len(s) for s in subsets]
        for k in range(1, 11):  # n_random of each size, or all of them where there are fewer
            assert sizes.count(k) == min(15, len(list(itertools.combinations(range(10), k))))
        np.testing.assert_allclose(result.explored_loss, naive_oracle_losses(weighted, combiner.evaluated), rtol=1e-12)
    np.testing.assert_array_equal(draws[3][0], draws[3][1])  # seeded
    assert {tuple(np.flatnonzero(r)) for r in draws[3][0]} != {tuple(np.flatnonzero(r)) for r in draws[4][0]}


@pytest.mark.parametrize("change,message", [
    (lambda w, p, m: (np.where(np.arange(w.size).reshape(w.shape) == 3, np.nan, w), p, m), "non-finite"),
    (lambda w, p, m: (w, np.r_[0, p[1:]], m), "parameter count"),
    (lambda w, p, m: (w, p[:-1], m), "params"),
    (lambda w, p, m: (w, p, np.append(m[:-1], m[0])), "duplicate"),
    (lambda w, p, m: (w[:, :0], p, m), "texts"),
])
def test_bad_inputs_raise(change, message):
    weighted, params, models = change(*random_pool(13, 4, 5))
    with pytest.raises(MMCError, match=message):
        search("greedy", weighted, params, models)


def test_bad_config_raises_before_work():
    weighted, params, models = random_pool(14, 60, 2)
    with pytest.raises(MMCError, match="exhaustive search over 60 models"):
        search("exhaustive", weighted, params, models)
    with pytest.raises(MMCError, match="unknown search strategy"):
        search("beam", weighted, params, models)
    with pytest.raises(MMCError, match="max_k"):
        search("greedy", weighted, params, models, max_k=0)
    search("exhaustive", weighted, params, models, max_k=2)  # 1,830 subsets: fine


def test_select_families():
    lm = LossMatrix(models=["a1", "a2", "b1"], families=["a", "a", "b"], params=[1, 2, 3], text_ids=["t"],
                    nll=[[1.0], [2.0], [3.0]], n_tokens=[[1], [1], [1]], n_bytes=[4], n_chars=[4])
    assert select_families(lm, None) is lm
    assert select_families(lm, ["a"]).models.tolist() == ["a1", "a2"]
    with pytest.raises(MMCError, match="available: a, b"):
        select_families(lm, ["c"])
    with pytest.raises(MMCError, match="available"):
        select_families(lm, [])


def naive_pareto_prune(weighted, params, per_size, max_k=None):
    """The paper's procedure on frozensets, both readings: (frontier (cost, loss) pairs, subsets explored)."""
    m = len(params)

    def value(s):
        return float(sum(params[i] for i in s)), sum(min(weighted[i, x] for i in s) for x in range(weighted.shape[1]))

    def pareto(subsets):
        points = {s: value(s) for s in subsets}
        return {s for s, (c, l) in points.items()
                if not any(c2 <= c and l2 <= l and (c2 < c or l2 < l) for c2, l2 in points.values())}

    level = pareto({frozenset([i]) for i in range(m)})
    kept, explored = set(level), m
    for _ in range(2, (max_k or m) + 1):
        children = {s | {j} for s in level for j in range(m) if j not in s}
        explored += len(children)
        if per_size:  # the Pareto set within this size
            level = pareto(children)
            kept |= level
        else:
            front = pareto(kept | children)
            level, kept = front & children, front
        if not level:
            break
    return sorted({value(s) for s in pareto(kept)}), explored


@pytest.mark.parametrize("prune", ["global", "per_size"])
@pytest.mark.parametrize("seed,m,n,max_k", [(20, 8, 15, None), (21, 9, 10, 4), (22, 7, 30, None)])
def test_pareto_prune_readings_equal_a_naive_implementation(prune, seed, m, n, max_k):
    weighted, params, models = random_pool(seed, m, n)
    want, explored = naive_pareto_prune(weighted, params, prune == "per_size", max_k)
    result = search("pareto_prune", weighted, params, models, prune=prune, max_k=max_k)
    assert result.frontier_params.tolist() == [c for c, _ in want]
    np.testing.assert_allclose(result.frontier_loss, [l for _, l in want], rtol=1e-12)
    assert result.n_explored == explored

