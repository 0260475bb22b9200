"""Ensemble options (oracle, mixture, domain_router, knn_router) against plain loops, closed-form bounds and
constructed pools; the split; routers that must not peek at evaluation texts."""
from __future__ import annotations

import itertools
import math
from collections import Counter
from decimal import Decimal, getcontext

import numpy as np
import pytest

from mmc.ensemble import ENSEMBLES, EnsembleData, build_combiner
from mmc.ensemble.combiners import MinCombiner, MixtureCombiner
from mmc.ensemble.routers import NGRAMS, knn_predictor, nearest_training_texts, ngram_counts
from mmc.ensemble.split import split_texts
from mmc.errors import MMCError
from mmc.losses import LossConfig, LossMatrix
from mmc.synthetic import synthetic_domain_texts


def matrix(nll, domains, n_bytes=None, params=None):
    m, n = nll.shape
    n_bytes = np.full(n, 100) if n_bytes is None else n_bytes
    return LossMatrix(models=[f"m{i}" for i in range(m)], families=["f"] * m,
                      params=params if params is not None else np.arange(1, m + 1) * 10,
                      text_ids=[f"t{x}" for x in range(n)], nll=nll, n_tokens=np.ones((m, n), dtype=int),
                      n_bytes=n_bytes, n_chars=n_bytes, domains=domains)


def random_data(seed, m=5, n=40, kinds=("a", "b", "c"), unit="bits_per_byte", aggregate="mean", texts=None):
    rng = np.random.default_rng(seed)
    domains = rng.choice(kinds, n)
    lm = matrix(rng.uniform(50, 400, (m, n)), domains, n_bytes=rng.integers(50, 300, n))
    loss = LossConfig(unit=unit, aggregate=aggregate)
    return EnsembleData(lm, loss, split_texts(domains, 0.5, seed), texts)


def subsets(m):
    return [s for k in range(1, m + 1) for s in itertools.combinations(range(m), k)]


def members_of(all_subsets, m):
    out = np.zeros((len(all_subsets), m), dtype=bool)
    for row, s in enumerate(all_subsets):
        out[row, list(s)] = True
    return out


def per_text_loss(lm, loss, i, x):
    """Model i's loss on text x in the run's unit, written out per unit."""
    nats = lm.nll[i, x]
    return {"bits_per_byte": nats / lm.n_bytes[x] / math.log(2), "nats_per_byte": nats / lm.n_bytes[x],
            "nats_per_char": nats / lm.n_chars[x]}[loss.unit]


def text_weight(lm, loss, x, texts):
    """Weight of text x among `texts` (the aggregate): uniform, or its share of their bytes."""
    return 1 / len(texts) if loss.aggregate == "mean" else lm.n_bytes[x] / lm.n_bytes[texts].sum()


def naive_loss(option, data, subset):
    """The option's loss of `subset` on the evaluation texts, text by text, from its definition."""
    lm, loss, split = data.lm, data.loss, data.split
    train, evaluation = split.train.tolist(), split.evaluation.tolist()
    total = 0.0
    for x in evaluation:
        w = text_weight(lm, loss, x, evaluation)
        if option == "oracle":
            total += w * min(per_text_loss(lm, loss, i, x) for i in subset)
        elif option == "mixture":
            p = sum(math.exp(-(lm.nll[i, x] - lm.nll[subset[0], x])) for i in subset) / len(subset)
            nats = lm.nll[subset[0], x] - math.log(p)
            total += w * per_text_loss(matrix(np.array([[nats]]), ["a"], lm.n_bytes[[x]]), loss, 0, 0)
        elif option == "domain_router":
            same = [t for t in train if split.domains[t] == split.domains[x]]
            def domain_mean(i):
                return sum(text_weight(lm, loss, t, same) * per_text_loss(lm, loss, i, t) for t in same)
            best = min(subset, key=lambda i: (domain_mean(i), i))
            total += w * per_text_loss(lm, loss, best, x)
    return total


@pytest.mark.parametrize("option", ["oracle", "mixture", "domain_router"])
@pytest.mark.parametrize("unit, aggregate", [("bits_per_byte", "mean"), ("nats_per_char", "ratio_of_sums")])
def test_options_equal_plain_loops_on_every_subset(option, unit, aggregate):
    data = random_data(1, unit=unit, aggregate=aggregate)
    combiner = build_combiner(ENSEMBLES[option].schema(), data)
    all_subsets = subsets(5)
    got = combiner.subset_losses(members_of(all_subsets, 5))
    np.testing.assert_allclose(got, [naive_loss(option, data, s) for s in all_subsets], rtol=1e-10)


def test_knn_router_equals_a_plain_loop_given_the_neighbours():
    texts = synthetic_domain_texts(np.repeat(["a", "b"], 20), seed=3)
    data = random_data(2, n=40, texts=texts)
    k = 4
    combiner = build_combiner(ENSEMBLES["knn_router"].schema(k=k), data)
    neighbours = nearest_training_texts(texts, data.split.train, data.split.evaluation, k)
    lm, loss, train, evaluation = data.lm, data.loss, data.split.train, data.split.evaluation
    for subset in subsets(5):
        total = 0.0
        for e, x in enumerate(evaluation):
            near = train[neighbours[e]].tolist()
            def predicted(i):
                return sum(text_weight(lm, loss, t, near) * per_text_loss(lm, loss, i, t) for t in near)
            best = min(subset, key=lambda i: (predicted(i), i))
            total += per_text_loss(lm, loss, best, x) / len(evaluation)
        assert combiner.subset_losses(members_of([subset], 5))[0] == pytest.approx(total, rel=1e-10)


def test_knn_predictor_is_the_neighbours_weighted_mean():
    rng = np.random.default_rng(0)
    train_loss, weights = rng.random((3, 6)), rng.random(6)
    neighbours = np.array([[0, 2], [5, 5], [1, 4]])
    want = np.array([[sum(weights[t] * train_loss[i, t] for t in row) / sum(weights[t] for t in row)
                      for row in neighbours] for i in range(3)])
    np.testing.assert_allclose(knn_predictor(train_loss, weights, neighbours), want, rtol=1e-12)


def test_mixture_is_within_log_size_nats_of_the_oracle():
    rng = np.random.default_rng(5)
    for trial in range(20):
        m, n = rng.integers(2, 8), 30
        lm = matrix(rng.uniform(0, 2000, (m, n)) * rng.choice([1e-3, 1, 10], (m, 1)), np.full(n, "a"))
        data = EnsembleData(lm, LossConfig(unit="nats_per_byte"), split_texts(lm.domains, 0.5, trial))
        combiner = build_combiner(ENSEMBLES["mixture"].schema(), data)
        for subset in subsets(m)[:: max(1, len(subsets(m)) // 25)]:
            state = combiner.fold(members_of([subset], m)).__next__()[1]
            mixture_nats = combiner.mixture_nll(state)[0]
            oracle_nats = lm.nll[list(subset)][:, data.split.evaluation].min(axis=0)
            excess = mixture_nats - oracle_nats
            assert (excess >= -1e-9).all() and (excess <= math.log(len(subset)) + 1e-9).all()


def test_domain_router_equals_the_oracle_when_the_domain_decides_the_best_model():
    rng = np.random.default_rng(0)
    domains = np.repeat(["a", "b", "c"], 30)
    ranks = {d: rng.permutation(4) for d in "abc"}  # within a domain, the models rank alike on every text
    nll = rng.uniform(0, 40, (4, 90)) + 50 * np.stack([ranks[d] for d in domains], axis=1)
    data = EnsembleData(matrix(nll, domains), LossConfig(), split_texts(domains, 0.5, 0))
    members = members_of(subsets(4), 4)
    router = build_combiner(ENSEMBLES["domain_router"].schema(), data).subset_losses(members)
    oracle = build_combiner(ENSEMBLES["oracle"].schema(), data).subset_losses(members)
    np.testing.assert_allclose(router, oracle, rtol=1e-12)


def disagreeing_data(texts=None):
    """Training texts say model 0 is best on every domain, evaluation texts say model 1: a router that read
    evaluation losses would equal the oracle there."""
    domains = np.repeat(["a", "b"], 20)
    split = split_texts(domains, 0.5, 0)
    nll = np.full((2, 40), 100.0)
    nll[0, split.train], nll[1, split.train] = 50.0, 150.0
    nll[0, split.evaluation], nll[1, split.evaluation] = 150.0, 50.0
    return EnsembleData(matrix(nll, domains), LossConfig(unit="nats_per_byte"), split, texts)


@pytest.mark.parametrize("option", ["domain_router", "knn_router"])
def test_routers_learn_from_training_texts_only(option):
    data = disagreeing_data(synthetic_domain_texts(np.repeat(["a", "b"], 20), seed=1))
    both = np.ones((1, 2), dtype=bool)
    routed = build_combiner(ENSEMBLES[option].schema(k=3) if option == "knn_router" else
                            ENSEMBLES[option].schema(), data).subset_losses(both)[0]
    oracle = build_combiner(ENSEMBLES["oracle"].schema(), data).subset_losses(both)[0]
    assert oracle == pytest.approx(0.5) and routed == pytest.approx(1.5)  # model 0, worst on every evaluation text


@pytest.mark.parametrize("option", ["domain_router", "knn_router"])
def test_routing_does_not_change_when_evaluation_losses_do(option):
    texts = synthetic_domain_texts(np.random.default_rng(3).choice(["a", "b", "c"], 40), seed=2)
    data = random_data(4, texts=texts)
    lm, evaluation = data.lm, data.split.evaluation
    shuffled = lm.nll.copy()
    shuffled[:, evaluation] = np.random.default_rng(9).permutation(shuffled[:, evaluation].T).T[::-1]
    other = EnsembleData(matrix(shuffled, lm.domains, lm.n_bytes), data.loss, data.split, texts)
    cfg = ENSEMBLES[option].schema()
    members = members_of(subsets(5), 5)
    chosen = [combiner.chosen(state) for combiner in (build_combiner(cfg, data), build_combiner(cfg, other))
              for _, state in combiner.fold(members)]
    np.testing.assert_array_equal(chosen[0], chosen[1])


def test_active_params_of_a_router_is_the_mean_size_of_the_chosen_member():
    data = disagreeing_data()
    params = np.array([10, 30])
    router = build_combiner(ENSEMBLES["domain_router"].schema(), data)
    assert router.evaluate(np.ones((1, 2), dtype=bool), params)[1][0] == pytest.approx(10)
    mixture = build_combiner(ENSEMBLES["mixture"].schema(), data)
    assert mixture.evaluate(np.ones((1, 2), dtype=bool), params)[1][0] == pytest.approx(40)


def test_split_is_stratified_seeded_and_keeps_an_evaluation_text_per_domain():
    domains = np.array(["a"] * 10 + ["b"] * 3 + ["c"] * 1 + ["d"] * 2)
    split = split_texts(domains, 0.5, 0)
    train, evaluation = set(split.train.tolist()), set(split.evaluation.tolist())
    assert train.isdisjoint(evaluation) and train | evaluation == set(range(len(domains)))
    counts = Counter(domains[sorted(train)].tolist())
    assert counts == {"a": 5, "b": 2, "d": 1}  # round(0.5 * n), but never a domain's last text: c has none
    assert split.domains_without_training() == ["c"]
    assert split_texts(domains, 0.5, 0).train.tolist() == split.train.tolist()
    assert split_texts(domains, 0.5, 1).train.tolist() != split.train.tolist()
    assert len(split_texts(domains, 0.99, 0).evaluation) == 4  # one per domain, whatever the fraction


def exact_ngram_cosine(a: str, b: str) -> float:
    """Cosine of raw byte n-gram counts (NGRAMS lengths), without hashing: plain Counters."""
    def grams(text):
        data = text.encode("utf-8")
        return Counter(data[i:i + n] for n in NGRAMS for i in range(len(data) - n + 1))
    ga, gb = grams(a), grams(b)
    dot = sum(ga[g] * gb[g] for g in ga)
    return dot / math.sqrt(sum(v * v for v in ga.values()) * sum(v * v for v in gb.values()))


def test_hashed_ngram_counts_keep_every_ngram_and_approximate_the_exact_cosine():
    texts = synthetic_domain_texts(np.repeat(["a", "b", "c"], 8), seed=4) + ["ab", "é🙂x"]
    counts = ngram_counts(texts)
    for text, row in zip(texts, counts):
        n_bytes = len(text.encode("utf-8"))
        assert row.sum() == sum(max(n_bytes - n + 1, 0) for n in NGRAMS)
    hashed = counts[:24] / np.linalg.norm(counts[:24], axis=1, keepdims=True)
    pairs = list(itertools.combinations(range(24), 2))
    exact = [exact_ngram_cosine(texts[i], texts[j]) for i, j in pairs]
    approx = [float(hashed[i] @ hashed[j]) for i, j in pairs]
    assert np.corrcoef(exact, approx)[0, 1] > 0.95


def test_nearest_training_texts_find_texts_of_the_same_domain():
    domains = np.repeat(["a", "b", "c"], 12)
    texts = synthetic_domain_texts(domains, seed=6)
    split = split_texts(domains, 0.5, 0)
    neighbours = nearest_training_texts(texts, split.train, split.evaluation, 3)
    same = domains[split.train][neighbours] == domains[split.evaluation][:, None]
    assert same.mean() > 0.9


@pytest.mark.parametrize("option, kwargs, texts, message", [
    ("domain_router", {}, None, "one"),
    ("knn_router", {}, None, "without them"),
    ("knn_router", {"k": 50}, ["x"] * 6, "larger than the 3 training texts"),
])
def test_options_refuse_data_they_cannot_run_on(option, kwargs, texts, message):
    domains = np.full(6, "only")
    lm = matrix(np.ones((2, 6)), domains)
    data = EnsembleData(lm, LossConfig(), split_texts(domains, 0.5, 0), texts)
    with pytest.raises(MMCError, match=message):
        build_combiner(ENSEMBLES[option].schema(**kwargs), data)


def test_domain_router_refuses_a_domain_without_training_texts():
    domains = np.array(["a"] * 5 + ["b"])
    data = EnsembleData(matrix(np.ones((2, 6)), domains), LossConfig(), split_texts(domains, 0.5, 0))
    with pytest.raises(MMCError, match=r"domains \['b'\] without training texts"):
        build_combiner(ENSEMBLES["domain_router"].schema(), data)


def test_mixture_product_falls_back_where_probabilities_underflow():
    # model 0 is thousands of nats better on every text: subsets without it underflow the one-product path
    getcontext().prec = 60
    rng = np.random.default_rng(7)
    nll = rng.uniform(10, 30, (4, 6))
    nll[1:] += 3000
    scale = rng.uniform(0.1, 1, 6)
    combiner = MixtureCombiner(nll, scale)
    all_subsets = subsets(4)
    want = [sum(float(-(sum(Decimal(-float(nll[i, x])).exp() for i in s) / len(s)).ln()) * scale[x]
                for x in range(6)) for s in all_subsets]
    np.testing.assert_allclose(combiner.subset_losses(members_of(all_subsets, 4)), want, rtol=1e-12)


def test_fold_builds_every_subset_whatever_their_nesting():
    # subsets that contain each other, share nothing, or repeat: the block fold starts each from an earlier one
    rng = np.random.default_rng(8)
    weighted = rng.random((9, 5))
    members = rng.random((300, 9)) < rng.uniform(0.1, 0.9, (300, 1))
    members[members.sum(axis=1) == 0, 0] = True
    members = np.vstack([members, members[:20]])
    want = [weighted[row].min(axis=0).sum() for row in members]
    np.testing.assert_allclose(MinCombiner(weighted).subset_losses(members), want, rtol=1e-12)
