"""Collaboration finer than a text: corpus-wide boundaries, cuts and segment losses against per-text plain loops;
segment_oracle, switching_mixture and prefix_router against their definitions; bad inputs."""
from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest

from mmc.ensemble import ENSEMBLES, EnsembleData, build_combiner
from mmc.ensemble.split import split_texts
from mmc.errors import MMCError
from mmc.losses import LossConfig, LossMatrix
from mmc.segments import GRANULARITIES, UNIT_PATTERNS, byte_ends, common_boundaries, prefix_cuts, segment_nll, unit_cuts
from mmc.synthetic import synthetic_texts
from mmc.token_losses import TokenLosses
from mmc.tokenizer import KINDS, train_tokenizer

TEXTS = ["plain ascii text", "Ünïcödé — naïve café, 🙂🙃 emoji and 中文字符",
         "tabs\tand\t\ttabs, runs of     spaces,\n\nblank lines\n   indented\r\nwindows line", "x", "🙂",
         "  leading and trailing spaces  ", "one\n\ntwo paragraphs\nand lines\n"]


@pytest.fixture(scope="module")
def pool():
    """Token spans of three tokenizers (BPE, byte, WordPiece) on texts, random token NLLs: (texts, ends, nlls)
    with ends[i][n] and nlls[i][n] model i's arrays on text n."""
    texts = TEXTS + synthetic_texts(30, seed=4, min_words=3, max_words=40)
    rng = np.random.default_rng(0)
    ends, nlls = [], []
    for kind in KINDS:
        tokenizer = train_tokenizer(synthetic_texts(200) + TEXTS, 320, kind)
        per_text = [byte_ends(t, np.array(tokenizer(t, add_special_tokens=False, return_offsets_mapping=True)
                                          ["offset_mapping"])) for t in texts]
        ends.append(per_text)
        nlls.append([rng.uniform(0.01, 6, len(e)) for e in per_text])
    return texts, ends, nlls


def token_losses(texts, ends, nlls) -> TokenLosses:
    arrays = [(np.concatenate([[0], np.cumsum([len(e) for e in per_text])]), np.concatenate(per_text),
               np.concatenate(per_nll)) for per_text, per_nll in zip(ends, nlls)]
    return TokenLosses([f"m{i}" for i in range(len(ends))], [f"t{n}" for n in range(len(texts))],
                       [lambda a=a: a for a in arrays])


def pool_data(pool, train_fraction=0.5, unit="bits_per_byte", domains=None):
    texts, ends, nlls = pool
    n_bytes = np.array([len(t.encode("utf-8")) for t in texts])
    nll = np.array([[per_nll.sum() for per_nll in model] for model in nlls])
    lm = LossMatrix(models=[f"m{i}" for i in range(len(ends))], families=["a", "b", "c"], params=[10, 20, 40],
                    text_ids=[f"t{n}" for n in range(len(texts))], nll=nll, n_tokens=np.ones(nll.shape, dtype=int),
                    n_bytes=n_bytes, n_chars=n_bytes, domains=domains if domains is not None else ["d"] * len(texts))
    split = split_texts(lm.domains, train_fraction, 0)
    return EnsembleData(lm, LossConfig(unit=unit), split, texts, token_losses(texts, ends, nlls))


def naive_cuts(text, common, granularity):
    """Per text: 0, each unit boundary moved to the first common boundary at or after it, the end."""
    n_bytes = len(text.encode("utf-8"))
    if granularity == "text":
        return sorted({0, n_bytes})
    units = [m.end() for m in re.finditer(UNIT_PATTERNS[granularity], text.encode("utf-8"))]
    return sorted({0, n_bytes} | {min(c for c in common if c >= u) for u in units})


def naive_segment_nll(nll, ends, cut_positions):
    """Each token to the segment holding its last byte (an empty span: the segment before its end)."""
    out = [0.0] * (len(cut_positions) - 1)
    for value, end in zip(nll, ends):
        k = max(i for i in range(len(cut_positions) - 1) if cut_positions[i] < end or i == 0)
        out[k] += value
    return out


def test_common_boundaries_cuts_and_segments_equal_per_text_loops(pool):
    texts, ends, nlls = pool
    tokens = token_losses(texts, ends, nlls)
    n_bytes = [len(t.encode("utf-8")) for t in texts]
    common = common_boundaries(tokens, n_bytes)
    for n, text in enumerate(texts):
        want = set.intersection(*({0, *e[n].tolist()} for e in ends))
        assert common.of_text(n).tolist() == sorted(want | {n_bytes[n]})
    previous = None
    for granularity in GRANULARITIES:
        cuts = unit_cuts(texts, common, granularity)
        got = segment_nll(tokens, cuts)
        column = 0
        for n, text in enumerate(texts):
            cut = naive_cuts(text, common.of_text(n).tolist(), granularity)
            assert cuts.of_text(n).tolist() == cut, (granularity, text)
            for i in range(len(ends)):
                want = naive_segment_nll(nlls[i][n], ends[i][n], cut)
                np.testing.assert_allclose(got[i, column:column + len(want)], want, rtol=1e-12, atol=1e-12)
            if previous is not None:  # finer granularities only add cuts
                assert set(previous.of_text(n).tolist()) <= set(cut)
            column += len(cut) - 1
        assert column == got.shape[1]
        previous = cuts


def test_prefix_cut_is_the_first_common_boundary_at_or_after_the_prefix(pool):
    texts, ends, nlls = pool
    common = common_boundaries(token_losses(texts, ends, nlls), [len(t.encode("utf-8")) for t in texts])
    for prefix_bytes in (0, 1, 5, 20, 10_000):
        cuts, prefix = prefix_cuts(common, prefix_bytes)
        for n in range(len(texts)):
            boundaries = common.of_text(n).tolist()
            want = min(c for c in boundaries if c >= min(prefix_bytes, boundaries[-1]))
            assert prefix[n] == want
            assert cuts.of_text(n).tolist() == sorted({0, want, boundaries[-1]})


def subsets(m):
    return [list(s) for k in range(1, m + 1) for s in itertools.combinations(range(m), k)]


def members_of(all_subsets, m):
    out = np.zeros((len(all_subsets), m), dtype=bool)
    for row, s in enumerate(all_subsets):
        out[row, s] = True
    return out


def losses(data, option, **kwargs):
    combiner = build_combiner(ENSEMBLES[option].schema(**kwargs), data)
    return combiner, combiner.subset_losses(members_of(subsets(3), 3))


def test_segment_oracle_is_the_oracle_at_granularity_text_and_falls_as_segments_get_finer(pool):
    data = pool_data(pool)
    _, oracle = losses(data, "oracle")
    previous = None
    for granularity in GRANULARITIES:
        _, got = losses(data, "segment_oracle", granularity=granularity)
        if granularity == "text":
            np.testing.assert_allclose(got, oracle, rtol=1e-12)
        else:
            assert (got <= previous * (1 + 1e-12)).all()
        previous = got


def test_segment_oracle_equals_a_loop_over_segments(pool):
    texts, ends, nlls = pool
    data = pool_data(pool)
    _, got = losses(data, "segment_oracle", granularity="word")
    common = common_boundaries(data.tokens, data.lm.n_bytes)
    evaluation = data.split.evaluation.tolist()
    for row, subset in enumerate(subsets(3)):
        total = 0.0
        for n in evaluation:
            cut = naive_cuts(texts[n], common.of_text(n).tolist(), "word")
            per_model = [naive_segment_nll(nlls[i][n], ends[i][n], cut) for i in subset]
            nats = sum(min(values) for values in zip(*per_model))
            total += nats / data.lm.n_bytes[n] / math.log(2) / len(evaluation)
        assert got[row] == pytest.approx(total, rel=1e-10)


def test_switching_mixture_at_rate_zero_is_the_mixture_and_its_rate_is_the_best_on_training_texts(pool):
    data = pool_data(pool)
    _, mixture = losses(data, "mixture")
    for granularity in GRANULARITIES:
        combiner, got = losses(data, "switching_mixture", granularity=granularity, rates=[0.0])
        np.testing.assert_allclose(got, mixture, rtol=1e-10)
    rates = [0.0, 0.05, 0.2, 0.6]
    combiner, _ = losses(data, "switching_mixture", granularity="word", rates=rates)
    texts, ends, nlls = pool
    common = common_boundaries(data.tokens, data.lm.n_bytes)
    train = data.split.train.tolist()

    def train_loss(rate):  # fixed share over all three models, text by text, in plain floats
        total = 0.0
        for n in train:
            cut = naive_cuts(texts[n], common.of_text(n).tolist(), "word")
            segments = [naive_segment_nll(nlls[i][n], ends[i][n], cut) for i in range(3)]
            weights, nats = [1 / 3] * 3, 0.0
            for g in range(len(cut) - 1):
                p = sum(w * math.exp(-segments[i][g]) for i, w in enumerate(weights))
                nats -= math.log(p)
                weights = [(1 - rate) * w * math.exp(-segments[i][g]) / p + rate / 3 for i, w in enumerate(weights)]
            total += nats / data.lm.n_bytes[n] / math.log(2)
        return total

    assert combiner.rate == min(rates, key=train_loss)


def test_prefix_router_equals_its_definition(pool):
    texts, ends, nlls = pool
    data = pool_data(pool)
    params = data.lm.params
    prefix_bytes = 6
    combiner, got = losses(data, "prefix_router", prefix_bytes=prefix_bytes)
    active = combiner.evaluate(members_of(subsets(3), 3), params)[1]
    common = common_boundaries(data.tokens, data.lm.n_bytes)
    evaluation = data.split.evaluation.tolist()
    for row, subset in enumerate(subsets(3)):
        total = run = 0.0
        for n in evaluation:
            boundaries = common.of_text(n).tolist()
            cut = min(c for c in boundaries if c >= min(prefix_bytes, boundaries[-1]))
            prefix = [sum(v for v, e in zip(nlls[i][n], ends[i][n]) if (e <= cut and cut > 0)) for i in range(3)]
            rest = [nlls[i][n].sum() - prefix[i] for i in range(3)]
            low = min(prefix[i] for i in subset)
            mixture = low - math.log(sum(math.exp(low - prefix[i]) for i in subset) / len(subset))
            best = min(subset, key=lambda i: (prefix[i], i))
            total += (mixture + rest[best]) / data.lm.n_bytes[n] / math.log(2) / len(evaluation)
            share = cut / data.lm.n_bytes[n]
            run += (share * sum(params[i] for i in subset) + (1 - share) * params[best]) / len(evaluation)
        assert got[row] == pytest.approx(total, rel=1e-10)
        assert active[row] == pytest.approx(run, rel=1e-10)


@pytest.mark.parametrize("option", ["segment_oracle", "switching_mixture", "prefix_router"])
def test_token_options_refuse_a_matrix_without_token_losses(pool, option):
    data = pool_data(pool)
    data.tokens = None
    with pytest.raises(MMCError, match="needs per-token losses"):
        build_combiner(ENSEMBLES[option].schema(), data)


def test_finer_granularities_need_the_texts(pool):
    data = pool_data(pool)
    data.texts = None
    with pytest.raises(MMCError, match="texts are not at hand"):
        build_combiner(ENSEMBLES["segment_oracle"].schema(granularity="line"), data)
    build_combiner(ENSEMBLES["segment_oracle"].schema(granularity="text"), data)  # needs none
