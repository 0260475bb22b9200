"""Collaboration finer than a text: token byte spans, boundaries common to a pool, segments and their losses.

Byte spans. A token's span is assigned so that, for every (model, text), the spans partition the text's
UTF-8 bytes in order: token t ends where its offset mapping ends (in bytes), never before token t-1
ends, and starts where token t-1 ended; the last token ends at the text's end. So bytes that no token
covers (whitespace a tokenizer drops or normalises away) go to the next token, trailing ones to the
last, and when a byte-level tokenizer splits one character over several tokens the first of them
takes the character and the others get empty spans at its end. Only `byte_end` is stored: byte_start
is the previous token's end.

Boundaries. A model can switch at byte position p of a text when p ends one of its tokens (or p = 0).
The common boundaries of a pool are the positions that are boundaries for every member.

Segments. A text is cut at some of its common boundaries (always 0 and its end): a segment's loss under a
model is the sum of the NLLs of that model's tokens ending inside it (an empty-span token at a cut belongs
with the token before it, whose character it completes; at byte 0, to the first segment). Granularity
`text` cuts nowhere; `paragraph`, `line` and `word` cut at the common boundary at or after each unit
boundary (after a blank line; after a newline; where a word starts, or a line), so coarser granularities'
cuts are subsets of finer ones' and the segment oracle can only fall as they get finer. The prefix cut of
a text is its first common boundary at or after `prefix_bytes` bytes (its end for a shorter text).

Every function works on all texts at once: text n's positions are offset by base[n] (the lengths of the
texts before it plus one byte of gap each), so that the positions of a corpus form one sorted array.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

GRANULARITIES = ("text", "paragraph", "line", "word")
UNIT_PATTERNS = {  # byte regexes whose match ends are the unit boundaries; coarser units are subsets of finer
    "paragraph": rb"\n[ \t\r\f\v]*\n",
    "line": rb"\n",
    "word": rb"\n|\s(?=\S)",
}


def byte_ends(text: str, char_offsets: np.ndarray) -> np.ndarray:
    """int64 (T,) end byte of each token's span (see the module docstring), from (T, 2) character offsets."""
    char_to_byte = np.concatenate([[0], np.cumsum([len(c.encode("utf-8")) for c in text])]).astype(np.int64)
    ends = np.maximum.accumulate(char_to_byte[np.asarray(char_offsets, dtype=np.int64)[:, 1]])
    ends[-1] = char_to_byte[-1]
    return ends


@dataclass
class Cuts:
    """Sorted byte positions per text: text n's are positions[offsets[n]:offsets[n + 1]], from 0 to its length.
    As segment cuts, text n has offsets[n + 1] - offsets[n] - 1 segments, numbered in text order."""

    offsets: np.ndarray  # int64 (N + 1,)
    positions: np.ndarray  # int64 (K,)

    @property
    def text(self) -> np.ndarray:
        """(K,) the text of each position."""
        return np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))

    @property
    def segment_text(self) -> np.ndarray:
        """(G,) the text of each segment."""
        return np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets) - 1)

    def of_text(self, n: int) -> np.ndarray:
        return self.positions[self.offsets[n]:self.offsets[n + 1]]


def _base(n_bytes: np.ndarray) -> np.ndarray:
    """(N,) where each text starts when the texts are laid end to end with one byte of gap."""
    n_bytes = np.asarray(n_bytes, dtype=np.int64)
    return np.concatenate([[0], np.cumsum(n_bytes + 1)[:-1]])


def _cuts(global_positions: np.ndarray, base: np.ndarray) -> Cuts:
    """Cuts from sorted unique positions in the laid-out corpus."""
    text = np.searchsorted(base, global_positions, side="right") - 1
    offsets = np.concatenate([[0], np.cumsum(np.bincount(text, minlength=len(base)))])
    return Cuts(offsets.astype(np.int64), (global_positions - base[text]).astype(np.int64))


def common_boundaries(tokens, n_bytes: np.ndarray) -> Cuts:
    """Per text, the positions that are boundaries of every model of `tokens` (a TokenLosses: one model's
    (offsets, byte_end, nll) at a time), always 0 and the text's end."""
    n_bytes = np.asarray(n_bytes, dtype=np.int64)
    base = _base(n_bytes)
    count = np.zeros(int(base[-1] + n_bytes[-1] + 1), dtype=np.int32)
    for i in range(len(tokens.models)):
        offsets, ends, _ = tokens.model(i)
        text = np.repeat(np.arange(len(n_bytes)), np.diff(offsets))
        count[np.unique(base[text] + ends)] += 1
    count[base] = count[base + n_bytes] = len(tokens.models)
    return _cuts(np.flatnonzero(count == len(tokens.models)), base)


def unit_cuts(texts: list[str], common: Cuts, granularity: str) -> Cuts:
    """Segment cuts at `granularity` (GRANULARITIES): 0, the common boundary at or after each unit boundary, and
    each text's end."""
    ends = common.positions[common.offsets[1:] - 1]  # each text's length: its last common boundary
    base = _base(ends)
    starts_and_ends = np.concatenate([base, base + ends])
    if granularity == "text":
        return _cuts(np.unique(starts_and_ends), base)
    unit = np.concatenate([base[n] + np.array([m.end() for m in re.finditer(UNIT_PATTERNS[granularity],
                                                                             text.encode("utf-8"))], dtype=np.int64)
                           for n, text in enumerate(texts)] or [np.zeros(0, dtype=np.int64)])
    return _cuts(np.unique(np.concatenate([starts_and_ends, _snap(common, base, unit)])), base)


def prefix_cuts(common: Cuts, prefix_bytes: int) -> tuple[Cuts, np.ndarray]:
    """(cuts 0, the prefix cut and the end per text, the prefix cut (N,)): the first common boundary at or
    after `prefix_bytes`, 0 for prefix_bytes = 0 and the text's end for a shorter text."""
    ends = common.positions[common.offsets[1:] - 1]
    base = _base(ends)
    prefix = _snap(common, base, base + np.minimum(prefix_bytes, ends))
    return _cuts(np.unique(np.concatenate([base, prefix, base + ends])), base), prefix - base


def _snap(common: Cuts, base: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Each laid-out position moved to the first common boundary at or after it (in its text: a text's end is
    always one)."""
    laid = common.positions + base[common.text]
    return laid[np.searchsorted(laid, positions, side="left")]


def segment_nll(tokens, cuts: Cuts) -> np.ndarray:
    """(M, G) each model's NLL per segment: the sum of its tokens ending inside the segment (see the module
    docstring), one model's tokens in memory at a time. Every cut must be a boundary of every model."""
    ends_of_text = cuts.positions[cuts.offsets[1:] - 1]
    base = _base(ends_of_text)
    laid_cuts = cuts.positions + base[cuts.text]
    first_cut = cuts.offsets[:-1]  # index of each text's cut 0
    out = np.zeros((len(tokens.models), len(cuts.positions) - len(ends_of_text)))
    for i in range(len(tokens.models)):
        offsets, ends, nll = tokens.model(i)
        text = np.repeat(np.arange(len(ends_of_text)), np.diff(offsets))
        right = np.searchsorted(laid_cuts, base[text] + ends, side="left")  # the first cut at or after the end
        right = np.maximum(right, first_cut[text] + 1)  # an empty span at byte 0: the first segment
        out[i] = np.bincount(right - 1 - text, weights=nll, minlength=out.shape[1])  # one cut more per text
    return out
