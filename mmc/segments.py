"""Collaboration finer than a text: token byte spans, boundaries common to a pool, and segment losses.

Byte spans. A token's span is assigned so that, for every (model, text), the spans partition the text's
UTF-8 bytes in order: token t ends where its offset mapping ends (in bytes), never before token t-1
ends, and starts where token t-1 ended; the last token ends at the text's end. So bytes that no token
covers (whitespace a tokenizer drops or normalises away) go to the next token, trailing ones to the
last, and when a byte-level tokenizer splits one character over several tokens the first of them
takes the character and the others get empty spans at its end. Only `byte_end` is stored: byte_start
is the previous token's end.

Boundaries. A model can switch at byte position p when p ends one of its tokens (its distinct
byte_ends, plus 0). Segments of a pool cut a text at positions that are boundaries for every member:
a segment's loss under a model is the sum of the NLLs of that model's tokens ending inside it (an
empty-span token belongs with the token before it, whose character it completes). Granularity
`text` cuts nowhere; `paragraph`, `line` and `word` cut at the common boundary at or after each
unit boundary (after a blank line; after a newline; where a word starts, or a line), so coarser
granularities' cuts are subsets of finer ones' and the segment oracle can only fall as they get finer.
"""
from __future__ import annotations

import re

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


def boundaries(ends: np.ndarray) -> np.ndarray:
    """Positions where a model can switch: 0 and every distinct token end."""
    return np.union1d([0], ends)


def common_boundaries(per_model_ends: list[np.ndarray]) -> np.ndarray:
    """Positions that are boundaries for every model (always 0 and the text's end)."""
    out = boundaries(per_model_ends[0])
    for ends in per_model_ends[1:]:
        out = np.intersect1d(out, boundaries(ends), assume_unique=True)
    return out


def cuts(text: str, common: np.ndarray, granularity: str) -> np.ndarray:
    """Segment cut positions of a text at `granularity`: 0, the common boundary at or after each unit
    boundary, and the text's end; sorted and unique."""
    n_bytes = int(common[-1])
    if granularity == "text":
        return np.array([0, n_bytes], dtype=np.int64)
    units = np.array([m.end() for m in re.finditer(UNIT_PATTERNS[granularity], text.encode("utf-8"))], dtype=np.int64)
    snapped = common[np.minimum(np.searchsorted(common, units, side="left"), len(common) - 1)]
    return np.union1d([0, n_bytes], snapped)


def segment_nll(nll: np.ndarray, ends: np.ndarray, cut_positions: np.ndarray) -> np.ndarray:
    """Per segment [cut_k, cut_k+1), the sum of the NLLs of the tokens ending in it (float64, len(cuts) - 1).

    Every cut must be a boundary of this model; a token with an empty span at a cut belongs to the
    segment before it (it completes that segment's last character)."""
    total = np.concatenate([[0.0], np.cumsum(np.asarray(nll, dtype=np.float64))])
    index = np.searchsorted(ends, cut_positions, side="right")
    index[0] = 0  # the first segment starts with the first token, even one with an empty span at byte 0
    return np.diff(total[index])


def prefix_cut(common: np.ndarray, prefix_bytes: int) -> int:
    """The first common boundary at or after `prefix_bytes` (the text's end for a shorter text)."""
    return int(common[min(np.searchsorted(common, prefix_bytes, side="left"), len(common) - 1)])
