"""Token byte spans against the documented rule written out; hand-worked segment cases (the corpus-wide functions
against per-text loops: test_segment_ensembles.py)."""
from __future__ import annotations

import numpy as np
import pytest

from mmc.segments import Cuts, byte_ends, common_boundaries, prefix_cuts, segment_nll, unit_cuts
from mmc.token_losses import TokenLosses
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


def one_text(ends, nll) -> TokenLosses:
    """One model's tokens on one text."""
    arrays = (np.array([0, len(ends)]), np.asarray(ends, dtype=np.int64), np.asarray(nll, dtype=float))
    return TokenLosses(["m"], ["t"], [lambda: arrays])


def test_a_character_split_over_tokens_goes_to_its_first_token():
    """Byte-level pieces of one 4-byte emoji: the first takes the character, the others get empty spans."""
    text = "a🙂b"
    offsets = np.array([[0, 1], [1, 2], [1, 2], [1, 2], [1, 2], [2, 3]])  # a, 4 byte pieces of the emoji, b
    ends = byte_ends(text, offsets)
    assert ends.tolist() == [1, 5, 5, 5, 5, 6]
    got = segment_nll(one_text(ends, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), Cuts(np.array([0, 4]), np.array([0, 1, 5, 6])))
    assert got.tolist() == [[1.0, 14.0, 6.0]]


def test_an_empty_first_token_stays_in_the_first_segment():
    got = segment_nll(one_text([0, 3, 7], [1.0, 2.0, 4.0]), Cuts(np.array([0, 3]), np.array([0, 3, 7])))
    assert got.tolist() == [[3.0, 4.0]]


def test_unit_boundaries_snap_forward_to_the_next_common_boundary():
    text = "ab cd\nef"  # bytes: words start at 3 and 6, a line starts at 6; the model's tokens end at 2, 4, 6, 8
    common = common_boundaries(one_text([2, 4, 6, 8], [1.0] * 4), [8])
    assert common.of_text(0).tolist() == [0, 2, 4, 6, 8]
    assert unit_cuts([text], common, "word").of_text(0).tolist() == [0, 4, 6, 8]
    assert unit_cuts([text], common, "line").of_text(0).tolist() == [0, 6, 8]
    assert unit_cuts([text], common, "paragraph").of_text(0).tolist() == [0, 8]
    assert [prefix_cuts(common, b)[1][0] for b in (3, 100, 0)] == [4, 8, 0]
