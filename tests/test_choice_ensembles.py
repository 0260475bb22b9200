"""Ensembles on multiple-choice items: every combiner against plain loops over subsets and items, the oracle's
bounds, hand-computed cases with their ties, and which options refuse which data."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from mmc.choices import ChoiceMatrix
from mmc.ensemble import ENSEMBLES, EnsembleData, build_combiner
from mmc.ensemble.split import split_texts
from mmc.errors import MMCError
from mmc.losses import LossConfig, LossMatrix

CHOICE_OPTIONS = ("oracle", "mixture", "domain_router", "oracle_loss", "vote", "confidence")


def random_matrix(seed: int, m: int = 5, n: int = 40, c: int = 4, ties: bool = False, norm: str = "none"):
    """Random log-likelihoods; some items have fewer choices; with `ties`, values from a small set (so that answers,
    votes and confidences tie) and two models of equal size."""
    rng = np.random.default_rng(seed)
    loglik = -(rng.integers(1, 4, (m, n, c)).astype(float) if ties else rng.gamma(2.0, 3.0, (m, n, c)))
    counts = rng.integers(2, c + 1, n)
    loglik[:, np.arange(c)[None, :] >= counts[:, None]] = np.nan
    gold = rng.integers(0, counts)
    params = rng.choice([100, 200, 200, 400, 800, 1600], m, replace=False) if not ties else [100, 200, 200, 400, 800][:m]
    return ChoiceMatrix([f"m{i}" for i in range(m)], ["f", "g", "f", "g", "h"][:m], params, [f"i{k}" for k in range(n)],
                        np.where(np.arange(n) % 2, "t1", "t2"), loglik, gold, rng.integers(1, 30, (n, c)), norm)


def data_of(cm: ChoiceMatrix, seed: int = 0) -> EnsembleData:
    return EnsembleData(cm, LossConfig(), split_texts(cm.domains, 0.5, seed))


def combiner(name: str, cm: ChoiceMatrix, seed: int = 0):
    return build_combiner(ENSEMBLES[name].schema(seed=seed), data_of(cm, seed))


# ---- the references: from the raw log-likelihoods, one item at a time -----------------------------------------

def item_scores(cm, i, x) -> list[float]:
    """Model i's scores of item x's choices (per byte with length_norm=bytes)."""
    out = []
    for j in range(cm.loglik.shape[2]):
        value = cm.loglik[i, x, j]
        if math.isnan(value):
            break
        out.append(value / cm.choice_bytes[x, j] if cm.length_norm == "bytes" else value)
    return out


def first_max(values) -> int:
    best = 0
    for j, v in enumerate(values):
        if v > values[best]:
            best = j
    return best


def answer(cm, i, x) -> int:
    return first_max(item_scores(cm, i, x))


def softmax(values) -> list[float]:
    top = max(values)
    weights = [math.exp(v - top) for v in values]
    return [w / sum(weights) for w in weights]


def oracle_errs(cm, members, x) -> int:
    return 0 if any(answer(cm, i, x) == cm.gold[x] for i in members) else 1


def vote_errs(cm, members, x) -> int:
    votes = {}
    for i in members:
        votes.setdefault(answer(cm, i, x), []).append(i)
    most = max(len(v) for v in votes.values())
    tied = {choice: voters for choice, voters in votes.items() if len(voters) == most}
    largest = min((i for voters in tied.values() for i in voters), key=lambda i: (-cm.params[i], i))
    return int(answer(cm, largest, x) != cm.gold[x])


def mixture_errs(cm, members, x) -> int:
    average = [sum(col) / len(members) for col in zip(*(softmax(item_scores(cm, i, x)) for i in members))]
    return int(first_max(average) != cm.gold[x])


def routed_errs(cm, members, x, prediction) -> int:
    """Error of the member with the lowest prediction (ties: the lower index)."""
    chosen = min(members, key=lambda i: (prediction(i, x), i))
    return int(answer(cm, chosen, x) != cm.gold[x])


def domain_router_errs(cm, members, x, train) -> int:
    def train_error(i, _):
        rows = [t for t in train if cm.domains[t] == cm.domains[x]]
        return sum(answer(cm, i, t) != cm.gold[t] for t in rows) / len(rows)
    return routed_errs(cm, members, x, train_error)


REFERENCES = {
    "oracle": lambda cm, s, x, train: oracle_errs(cm, s, x),
    "vote": lambda cm, s, x, train: vote_errs(cm, s, x),
    "mixture": lambda cm, s, x, train: mixture_errs(cm, s, x),
    "confidence": lambda cm, s, x, train: routed_errs(cm, s, x, lambda i, y: -max(softmax(item_scores(cm, i, y)))),
    "oracle_loss": lambda cm, s, x, train: routed_errs(cm, s, x, lambda i, y: -item_scores(cm, i, y)[cm.gold[y]]),
    "domain_router": lambda cm, s, x, train: domain_router_errs(cm, s, x, train),
}


@pytest.mark.parametrize("ties, norm", [(False, "none"), (True, "none"), (False, "bytes")])
@pytest.mark.parametrize("name", CHOICE_OPTIONS)
def test_every_choice_combiner_matches_a_loop_over_subsets_and_items(name, ties, norm):
    cm = random_matrix(3, ties=ties, norm=norm)
    split = split_texts(cm.domains, 0.5, 0)
    subsets = [s for k in range(1, cm.n_models + 1) for s in itertools.combinations(range(cm.n_models), k)]
    members = np.zeros((len(subsets), cm.n_models), dtype=bool)
    for row, s in enumerate(subsets):
        members[row, list(s)] = True
    built = combiner(name, cm)
    folded = built.subset_losses(members)  # merged member by member
    expected = [np.mean([REFERENCES[name](cm, s, x, split.train) for x in split.evaluation]) for s in subsets]
    np.testing.assert_allclose(folded, expected, rtol=0, atol=1e-12)
    merged = built.loss(built.merge(*(tuple(a[[j]] for a in built.singles()) for j in (4, 1))))  # any order
    assert merged[0] == pytest.approx(np.mean([REFERENCES[name](cm, (1, 4), x, split.train) for x in split.evaluation]))


def test_the_oracle_beats_every_member_and_a_pool_of_one_is_that_model():
    for seed in range(5):
        cm = random_matrix(seed)
        errors = cm.per_text_loss()
        oracle = combiner("oracle", cm, seed)
        evaluation = split_texts(cm.domains, 0.5, seed).evaluation
        subsets = np.array([row for row in itertools.product([False, True], repeat=cm.n_models) if any(row)])
        loss = oracle.subset_losses(subsets)
        for s, row in zip(loss, subsets):  # the oracle's accuracy is at least every member's
            assert s <= errors[row][:, evaluation].mean(axis=1).min() + 1e-12
        for i in range(cm.n_models):  # one model alone is that model: same error rate on every item
            one = cm.select_models([i])
            alone = combiner("oracle", one, seed)
            np.testing.assert_array_equal(alone.per_text(alone.singles())[0] > 0, errors[i, evaluation] == 1)


def hand_matrix(loglik, gold, params, norm="none", choice_bytes=None):
    loglik = np.asarray(loglik, dtype=float)
    m, n, c = loglik.shape
    choice_bytes = np.ones((n, c), dtype=int) if choice_bytes is None else choice_bytes
    return ChoiceMatrix([f"m{i}" for i in range(m)], ["f"] * m, params, [f"i{k}" for k in range(n)], ["t"] * n,
                        loglik, gold, choice_bytes, norm)


def whole_pool_errors(name: str, cm: ChoiceMatrix) -> np.ndarray:
    """Per-item errors of the whole pool under option `name`, on all items (a split with no training item)."""
    data = EnsembleData(cm, LossConfig(), split_texts(cm.domains, 0.5, 0))
    data.split.train, data.split.evaluation = np.zeros(0, dtype=np.int64), np.arange(cm.n_texts)
    built = ENSEMBLES.run(name)(ENSEMBLES[name].schema(), data)
    (_, pool), = built.fold(np.ones((1, cm.n_models), dtype=bool))
    return built.per_text(pool)[0] * cm.n_texts


LN = math.log


def voting(answers, gold, params):
    """A matrix in which model i answers item x with answers[x][i] (probability 0.8 of three choices)."""
    loglik = np.full((len(answers[0]), len(answers), 3), LN(0.1))
    for x, row in enumerate(answers):
        for i, choice in enumerate(row):
            loglik[i, x, choice] = LN(0.8)
    return hand_matrix(loglik, gold, params)


def test_vote_by_hand_majority_then_the_largest_voter():
    # item 0: models 0 and 1 vote choice 1, the largest (model 2) choice 0: the majority wins, 1
    # item 1: one vote each for 0, 1 and 2: the largest voter's, model 2's choice 2
    answers = [[1, 1, 0], [0, 1, 2]]
    np.testing.assert_array_equal(whole_pool_errors("vote", voting(answers, [1, 2], [400, 500, 1000])), [0, 0])
    np.testing.assert_array_equal(whole_pool_errors("vote", voting(answers, [0, 0], [400, 500, 1000])), [1, 1])
    # two voters of equal size, one vote each: the lower model index counts as the larger
    np.testing.assert_array_equal(whole_pool_errors("vote", voting([[0, 1]], [0], [400, 400])), [0])
    np.testing.assert_array_equal(whole_pool_errors("vote", voting([[0, 1]], [0], [400, 401])), [1])


def test_mixture_by_hand_averages_probabilities_not_answers():
    # model 0 is sure of choice 0 (0.9), models 1 and 2 lean to choice 1 (0.55): votes say 1, the average says 0
    p = np.array([[0.9, 0.1], [0.45, 0.55], [0.45, 0.55]])
    cm = hand_matrix(np.log(p)[:, None, :], gold=[0], params=[100, 200, 300])
    assert whole_pool_errors("mixture", cm)[0] == 0
    assert whole_pool_errors("vote", cm)[0] == 1
    # an exact tie of the average goes to the lower choice index
    tie = hand_matrix(np.log([[[0.4, 0.4, 0.2]], [[0.4, 0.4, 0.2]]]), gold=[1], params=[100, 200])
    assert whole_pool_errors("mixture", tie)[0] == 1


def test_confidence_by_hand_follows_the_surest_member():
    # model 0 says choice 0 with 0.6, model 1 says choice 2 with 0.7: model 1 is surer
    p = np.array([[[0.6, 0.3, 0.1]], [[0.2, 0.1, 0.7]]])
    cm = hand_matrix(np.log(p), gold=[2], params=[100, 200])
    assert whole_pool_errors("confidence", cm)[0] == 0
    cm = hand_matrix(np.log(p), gold=[0], params=[100, 200])
    assert whole_pool_errors("confidence", cm)[0] == 1
    # equally sure: the lower model index
    even = hand_matrix(np.log([[[0.5, 0.25, 0.25]], [[0.25, 0.25, 0.5]]]), gold=[0], params=[100, 200])
    assert whole_pool_errors("confidence", even)[0] == 0


def test_oracle_loss_routes_by_the_gold_choice_and_length_norm_changes_answers():
    # model 0 gives the right answer more probability but answers wrong; model 1 answers right with less
    p = np.array([[[0.45, 0.55]], [[0.4, 0.3]]])  # scores need not be normalised
    cm = hand_matrix(np.log(p), gold=[0], params=[100, 200])
    assert whole_pool_errors("oracle_loss", cm)[0] == 1  # routed to model 0 (log 0.45 > log 0.4): wrong
    assert whole_pool_errors("oracle", cm)[0] == 0  # model 1 is right
    # per byte: choice 1 (log 0.55 over 10 bytes) beats choice 0 (log 0.45 over 1 byte) for model 0
    per_byte = hand_matrix(np.log(p), gold=[1], params=[100, 200], norm="bytes", choice_bytes=np.array([[1, 10]]))
    np.testing.assert_array_equal(per_byte.answers()[:, 0], [1, 1])


@pytest.mark.parametrize("name", ["knn_router", "segment_oracle", "switching_mixture", "prefix_router"])
def test_text_only_options_refuse_items_in_one_line(name):
    with pytest.raises(MMCError, match=f"ensemble={name} does not apply to multiple-choice items; use one of oracle"):
        combiner(name, random_matrix(0))


@pytest.mark.parametrize("name", ["oracle_loss", "vote", "confidence"])
def test_item_only_options_refuse_texts_in_one_line(name):
    rng = np.random.default_rng(0)
    lm = LossMatrix(["a", "b"], ["f", "g"], [10, 20], ["x", "y", "z", "w"], rng.uniform(1, 2, (2, 4)),
                    np.ones((2, 4), int), [5, 6, 7, 8], [5, 6, 7, 8], ["d", "d", "e", "e"])
    with pytest.raises(MMCError, match=f"ensemble={name} does not apply to texts; use one of oracle, mixture"):
        build_combiner(ENSEMBLES[name].schema(), EnsembleData(lm, LossConfig(), split_texts(lm.domains, 0.5, 0)))
