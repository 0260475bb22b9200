"""Combiners against plain per-text loops, and every search strategy under non-oracle combiners against brute force."""
from __future__ import annotations

import itertools
import math
from decimal import Decimal, getcontext

import numpy as np
import pytest

from mmc.ensemble.combiners import (MinCombiner, MixtureCombiner, PrefixRouterCombiner, RouterCombiner,
                                    SwitchingMixtureCombiner)
from mmc.errors import MMCError
from mmc.search import STRATEGIES, run_search


def naive_router(predicted, weighted, subset) -> float:
    """Per text, the first member (in index order) with the lowest prediction; sum of what it pays."""
    total = 0.0
    for x in range(weighted.shape[1]):
        best = None
        for i in subset:
            if best is None or predicted[i, x] < predicted[best, x]:
                best = i
        total += weighted[best, x]
    return total


def naive_mixture(nll, scale, subset) -> float:
    """Per text, -log of the mean of the members' probabilities exp(-NLL), in exact decimal arithmetic."""
    getcontext().prec = 50
    total = 0.0
    for x in range(nll.shape[1]):
        mean = sum(Decimal(-float(nll[i, x])).exp() for i in subset) / len(subset)
        total += float(-mean.ln()) * scale[x]
    return total


def naive_prefix_router(prefix, rest, scale, subset) -> float:
    """Per text: the members' mixture on the prefix, then the rest from the first member with the lowest prefix NLL."""
    total = 0.0
    for x in range(prefix.shape[1]):
        mixture = naive_mixture(prefix[:, [x]], [1.0], subset)
        best = min(subset, key=lambda i: (prefix[i, x], i))
        total += (mixture + rest[best, x]) * scale[x]
    return total


def naive_switching(segments, segment_text, scale, rate, subset) -> float:
    """Fixed share, text by text and segment by segment, in plain floats."""
    total = 0.0
    for x in range(len(scale)):
        weights = {i: 1 / len(subset) for i in subset}
        nll = 0.0
        for g in np.flatnonzero(segment_text == x):
            p = sum(w * math.exp(-segments[i, g]) for i, w in weights.items())
            nll -= math.log(p)
            weights = {i: (1 - rate) * w * math.exp(-segments[i, g]) / p + rate / len(subset)
                       for i, w in weights.items()}
        total += nll * scale[x]
    return total


def naive_min(weighted, subset) -> float:
    return sum(min(weighted[i, x] for i in subset) for x in range(weighted.shape[1]))


def random_pool(seed, m=7, n=12):
    """Per-segment NLLs of n texts (1 to 5 segments each), their totals, a prefix/rest split, a predictor."""
    rng = np.random.default_rng(seed)
    segment_text = np.repeat(np.arange(n), rng.integers(1, 6, n))
    segments = rng.uniform(0.5, 12, (m, len(segment_text)))
    nll = np.stack([np.bincount(segment_text, weights=row, minlength=n) for row in segments])
    prefix = nll * rng.uniform(0.1, 0.6, (m, n))  # shares differ by model: prefix and rest rank models differently
    scale = rng.uniform(0.01, 0.1, n)
    predicted = np.round(rng.uniform(0, 3, (m, n)), 1)  # coarse: many ties
    return (nll, scale, predicted, rng.integers(1, 1000, m), np.array([f"m{i}" for i in range(m)]), segments,
            segment_text, prefix)


def combiners(seed):
    nll, scale, predicted, params, models, segments, segment_text, prefix = random_pool(seed)
    weighted = nll * scale
    naive = {"min": lambda s: naive_min(weighted, s), "router": lambda s: naive_router(predicted, weighted, s),
             "mixture": lambda s: naive_mixture(nll, scale, s),
             "prefix": lambda s: naive_prefix_router(prefix, nll - prefix, scale, s),
             "switching": lambda s: naive_switching(segments, segment_text, scale, 0.2, s)}
    built = {"min": MinCombiner(weighted), "router": RouterCombiner(predicted, weighted),
             "mixture": MixtureCombiner(nll, scale), "prefix": PrefixRouterCombiner(prefix, nll - prefix, scale, np.full(len(scale), 0.3)),
             "switching": SwitchingMixtureCombiner(segments, segment_text, scale, 0.2)}
    return built, naive, params, models


def all_subsets(m):
    return [s for k in range(1, m + 1) for s in itertools.combinations(range(m), k)]


def brute_force(naive, params, m):
    """Frontier (cost, loss) of every subset, with an O(n^2) dominance loop."""
    points = [(float(sum(params[i] for i in s)), naive(s)) for s in all_subsets(m)]
    front = [(c, l) for c, l in points
             if not any(c2 <= c and l2 <= l and (c2 < c or l2 < l) for c2, l2 in points)]
    return sorted(set(front))


@pytest.mark.parametrize("kind", ["min", "router", "mixture", "prefix", "switching"])
def test_subset_losses_match_loops(kind):
    built, naive, _, _ = combiners(0)
    subsets = all_subsets(7)
    members = np.zeros((len(subsets), 7), dtype=bool)
    for row, s in enumerate(subsets):
        members[row, list(s)] = True
    np.testing.assert_allclose(built[kind].subset_losses(members), [naive[kind](s) for s in subsets], rtol=1e-10)


@pytest.mark.parametrize("kind", ["router", "mixture", "prefix"])
def test_merge_order_does_not_matter(kind):
    built, naive, _, _ = combiners(1)
    comb, singles = built[kind], built[kind].singles()
    for subset in [(0, 3, 5), (1, 2, 4, 6), (0, 1, 2, 3, 4, 5, 6)]:
        for order in itertools.islice(itertools.permutations(subset), 12):
            state = tuple(a[[order[0]]] for a in singles)
            for i in order[1:]:
                state = comb.merge(state, tuple(a[[i]] for a in singles))
            assert comb.loss(state)[0] == pytest.approx(naive[kind](subset), rel=1e-10)


@pytest.mark.parametrize("kind", ["min", "router", "mixture", "prefix", "switching"])
def test_merging_two_subsets_gives_their_union(kind):
    built, naive, _, _ = combiners(6)
    comb, singles = built[kind], built[kind].singles()

    def state_of(subset):
        state = tuple(a[[subset[0]]] for a in singles)
        for i in subset[1:]:
            state = comb.merge(state, tuple(a[[i]] for a in singles))
        return state

    for left, right in [((0, 2), (1, 5, 6)), ((3,), (0, 1, 2)), ((4, 5, 6), (0, 1, 2, 3))]:
        union = comb.merge(state_of(left), state_of(right))
        assert comb.loss(union)[0] == pytest.approx(naive[kind](tuple(sorted(left + right))), rel=1e-10)


def test_mixture_lies_within_log_size_of_the_oracle():
    """0 <= NLL_mix - NLL_oracle <= log|S| nats on every text, for random matrices and subsets."""
    rng = np.random.default_rng(2)
    for _ in range(20):
        m, n = rng.integers(1, 9), rng.integers(1, 30)
        nll = rng.exponential(rng.uniform(1, 500), (m, n))
        comb = MixtureCombiner(nll, np.ones(n))
        subset = rng.random(m) < 0.6
        subset[rng.integers(m)] = True
        state = tuple(a[subset][:1] for a in comb.singles())
        for i in np.flatnonzero(subset)[1:]:
            state = comb.merge(state, tuple(a[[i]] for a in comb.singles()))
        gap = comb.mixture_nll(state)[0] - nll[subset].min(axis=0)
        assert (gap >= -1e-9).all() and (gap <= math.log(subset.sum()) + 1e-9).all()


def test_mixture_of_texts_thousands_of_nats_long():
    """No underflow: two models 5,000 and 6,000 nats on one text; exp(-5000) is 0 in float64."""
    comb = MixtureCombiner(np.array([[5000.0], [6000.0]]), np.ones(1))
    merged = comb.merge(*(tuple(a[[i]] for a in comb.singles()) for i in (0, 1)))
    assert comb.loss(merged)[0] == pytest.approx(naive_mixture(np.array([[5000.0], [6000.0]]), [1.0], (0, 1)),
                                                 rel=1e-12)


@pytest.mark.parametrize("chunk_bytes", [None, 64])
@pytest.mark.parametrize("kind", ["router", "mixture", "prefix", "switching"])
def test_exhaustive_equals_brute_force_for_any_combiner(kind, chunk_bytes, monkeypatch):
    """chunk_bytes=64: a low table of one model, so most subsets come from merging two multi-member states."""
    import mmc.search.exhaustive as exhaustive

    if chunk_bytes:
        monkeypatch.setattr(exhaustive, "CHUNK_BYTES", chunk_bytes)
    built, naive, params, models = combiners(3)
    result = run_search(built[kind], params, models, STRATEGIES["exhaustive"].schema())
    want = brute_force(naive[kind], params, 7)
    got = sorted(zip(result.frontier_params.tolist(), result.frontier_loss.tolist()))
    assert [c for c, _ in got] == [c for c, _ in want]
    np.testing.assert_allclose([l for _, l in got], [l for _, l in want], rtol=1e-10)


@pytest.mark.parametrize("kind", ["router", "mixture", "prefix", "switching"])
@pytest.mark.parametrize("strategy", ["pareto_prune", "greedy", "random"])
def test_heuristics_for_any_combiner(kind, strategy):
    """Every reported point is its members' true loss, none beats the exact frontier, and the check says how
    many exact points were missed."""
    built, naive, params, models = combiners(4)
    cfg = STRATEGIES[strategy].schema(**({"n_random": 10} if strategy == "random" else {}))
    result = run_search(built[kind], params, models, cfg)
    for row, loss, cost in zip(result.frontier_members, result.frontier_loss, result.frontier_params):
        assert loss == pytest.approx(naive[kind](tuple(np.flatnonzero(row))), rel=1e-10)
        assert cost == params[row].sum()
    exact = brute_force(naive[kind], params, 7)
    for cost, loss in zip(result.frontier_params, result.frontier_loss):
        best = min(l for c, l in exact if c <= cost)
        assert loss >= best * (1 - 1e-10)
    assert result.stats["missed_points"] == sum(
        1 for c, l in exact if min(result.frontier_loss[result.frontier_params <= c], default=np.inf) > l * (1 + 1e-9))


@pytest.mark.parametrize("strategy", ["exact", "milp"])
@pytest.mark.parametrize("kind", ["router", "mixture", "prefix", "switching"])
def test_bounded_strategies_refuse_non_monotone_combiners(strategy, kind):
    built, _, params, models = combiners(5)
    with pytest.raises(MMCError, match=f"search={strategy} bounds assume the oracle"):
        run_search(built[kind], params, models, STRATEGIES[strategy].schema())


def test_switching_at_rate_zero_is_the_whole_text_mixture():
    nll, scale, _, _, _, segments, segment_text, _ = random_pool(7)
    members = np.array([[True, False, True, True, False, False, True], [True] * 7, [False] * 6 + [True]])
    switching = SwitchingMixtureCombiner(segments, segment_text, scale, 0.0).subset_losses(members)
    np.testing.assert_allclose(switching, MixtureCombiner(nll, scale).subset_losses(members), rtol=1e-12)


def test_fixed_share_regret_bound_on_random_paths():
    """Per text, for any path through the members with m switches over T segments:
    NLL_fixed_share <= NLL_path + ln k + m ln(k / rate) + (T - 1 - m) ln(1 / (1 - rate))."""
    rng = np.random.default_rng(8)
    for rate in (0.01, 0.1, 0.5):
        for _ in range(30):
            k, t = int(rng.integers(1, 6)), int(rng.integers(1, 12))
            segments = rng.exponential(rng.uniform(0.5, 20), (k, t))
            comb = SwitchingMixtureCombiner(segments, np.zeros(t, dtype=int), np.ones(1), rate)
            got = comb.subset_losses(np.ones((1, k), dtype=bool))[0]
            path = rng.integers(0, k, t)
            switches = int((path[1:] != path[:-1]).sum())
            bound = (segments[path, np.arange(t)].sum() + math.log(k) + switches * math.log(k / rate)
                     + (t - 1 - switches) * math.log(1 / (1 - rate)))
            assert got <= bound + 1e-9
            best = segments.min(axis=0)  # the segment oracle's path (any switches) bounds it too
            switches = int((segments.argmin(axis=0)[1:] != segments.argmin(axis=0)[:-1]).sum())
            assert got <= best.sum() + math.log(k) + switches * math.log(k / rate) + \
                (t - 1 - switches) * math.log(1 / (1 - rate)) + 1e-9
