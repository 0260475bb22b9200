"""Token byte spans, common boundaries, granularities and segment losses against plain-Python references."""
from __future__ import annotations

import numpy as np
import pytest

from mmc.segments import GRANULARITIES, boundaries, byte_ends, common_boundaries, cuts, prefix_cut, segment_nll
from mmc.synthetic import synthetic_texts
from mmc.tokenizer import KINDS, train_tokenizer

TEXTS = [
    "plain ascii text",
    "Ünïcödé — naïve café, 🙂🙃 emoji and 中文字符",
    "tabs\tand\t\ttabs, runs of     spaces,\n\nblank lines\n   indented\r\nwindows line",
    "x",
    "🙂",
    "  leading and trailing spaces  ",
]


def reference_ends(text: str, offsets) -> list[int]:
    """The documented rule, written out: a token ends at the byte where its offsets end, never before the
    previous token's end; the last token ends at the text's end."""
    ends, previous = [], 0
    for _, char_end in offsets:
        previous = max(previous, len(text[:char_end].encode("utf-8")))
        ends.append(previous)
    ends[-1] = len(text.encode("utf-8"))
    return ends


@pytest.fixture(scope="module", params=KINDS)
def tokenizer(request):
    return train_tokenizer(synthetic_texts(200) + TEXTS, 320, request.param)


def test_spans_partition_every_text(tokenizer):
    for text in TEXTS:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ends = byte_ends(text, np.array(encoded["offset_mapping"]))
        assert ends.tolist() == reference_ends(text, encoded["offset_mapping"])
        starts = np.r_[0, ends[:-1]]
        assert (ends >= starts).all() and ends[-1] == len(text.encode("utf-8"))  # in order, covering every byte
        assert len(ends) == len(encoded["input_ids"])


def test_a_character_split_over_tokens_goes_to_its_first_token():
    """Byte-level pieces of one 4-byte emoji: the first takes the character, the others get empty spans."""
    text = "a🙂b"
    offsets = np.array([[0, 1], [1, 2], [1, 2], [1, 2], [1, 2], [2, 3]])  # a, 4 byte pieces of the emoji, b
    assert byte_ends(text, offsets).tolist() == [1, 5, 5, 5, 5, 6]
    nll = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert segment_nll(nll, byte_ends(text, offsets), np.array([0, 1, 5, 6])).tolist() == [1.0, 14.0, 6.0]


def test_an_empty_first_token_stays_in_the_first_segment():
    ends = np.array([0, 3, 7])
    assert segment_nll(np.array([1.0, 2.0, 4.0]), ends, np.array([0, 3, 7])).tolist() == [3.0, 4.0]


def naive_segment_nll(nll, ends, cut_positions):
    """Each token to the segment holding its last byte (an empty span: the segment before its end)."""
    out = [0.0] * (len(cut_positions) - 1)
    for value, end in zip(nll, ends):
        k = max(i for i in range(len(cut_positions) - 1) if cut_positions[i] < end or i == 0)
        out[k] += value
    return out


def test_segment_losses_sum_tokens_inside_and_add_up_to_the_text():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n_bytes = int(rng.integers(1, 60))
        ends = np.sort(rng.integers(0, n_bytes + 1, int(rng.integers(1, 25))))
        ends[-1] = n_bytes
        nll = rng.uniform(0, 5, len(ends))
        common = boundaries(ends)
        cut_positions = np.union1d([0, n_bytes], rng.choice(common, min(len(common), 4)))
        got = segment_nll(nll, ends, cut_positions)
        np.testing.assert_allclose(got, naive_segment_nll(nll, ends, cut_positions), rtol=1e-12)
        assert got.sum() == pytest.approx(nll.sum(), rel=1e-12)


def test_cuts_are_common_boundaries_and_nest():
    tokenizers = [train_tokenizer(synthetic_texts(200) + TEXTS, 320, kind) for kind in KINDS]
    for text in TEXTS + synthetic_texts(20, seed=5):
        per_model = [byte_ends(text, np.array(t(text, add_special_tokens=False, return_offsets_mapping=True)
                                              ["offset_mapping"])) for t in tokenizers]
        common = common_boundaries(per_model)
        assert set(common) == set.intersection(*(set([0, *e.tolist()]) for e in per_model))
        previous = None
        for granularity in GRANULARITIES:  # text, paragraph, line, word: each finer than the last
            c = cuts(text, common, granularity)
            assert c[0] == 0 and c[-1] == len(text.encode("utf-8")) and set(c) <= set(common)
            if previous is not None:
                assert set(previous) <= set(c), (granularity, text)
            previous = c


def test_unit_boundaries_snap_forward_to_the_next_common_boundary():
    text = "ab cd\nef"  # bytes: word starts at 3 and 6, a line starts at 6
    common = np.array([0, 2, 4, 6, 8])
    assert cuts(text, common, "word").tolist() == [0, 4, 6, 8]
    assert cuts(text, common, "line").tolist() == [0, 6, 8]
    assert cuts(text, common, "paragraph").tolist() == [0, 8]
    assert prefix_cut(common, 3) == 4 and prefix_cut(common, 100) == 8 and prefix_cut(common, 0) == 0
