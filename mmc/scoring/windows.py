"""From texts to scored windows: tokenisation with one prefix token, and windows that partition the text.

A text of T tokens becomes the sequence s = [prefix, t_1, ..., t_T]; every t_i is scored, from the
tokens before it. Window k feeds s[b_k:e_k] to the model and scores the targets s[e_{k-1}+1 .. e_k],
with e_k = min(window + k * stride, T) and b_k = max(e_k - window, 0): the first window scores up to
`window` tokens, each later one `stride` new tokens after `window - stride` tokens of context. With
stride = window this is lm-evaluation-harness's `get_rolling_token_windows` (context_len=1) exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmc.errors import MMCError
from mmc.segments import byte_ends


def prefix_token_id(tokenizer, prefix_token: str | None = None) -> int:
    """BOS when the tokenizer has one, else EOS, else `prefix_token`."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    if prefix_token is not None:
        token_id = tokenizer.convert_tokens_to_ids(prefix_token)
        if token_id is not None and token_id != tokenizer.unk_token_id:
            return int(token_id)
        raise MMCError(f"scoring.prefix_token {prefix_token!r} is not in the tokenizer's vocabulary; name one that is")
    raise MMCError("the tokenizer has neither a BOS nor an EOS token; set scoring.prefix_token to a token of its vocabulary")


def tokenise(tokenizer, texts: list[str], prefix_token: str | None = None) -> list[np.ndarray]:
    """[prefix] + the text's tokens, for each text. The tokenizer's own special tokens are never added
    (so BOS is never doubled), and special-token strings inside a text are scored as plain text."""
    return _encode(tokenizer, texts, prefix_token, offsets=False)[0]


def tokenise_with_spans(tokenizer, texts: list[str], prefix_token: str | None = None):
    """(tokenise's sequences, the UTF-8 byte end of each text token (int64, mmc.segments.byte_ends)), both from
    one tokenisation; the prefix covers no bytes. Needs a fast tokenizer (a slow one gives no offsets)."""
    if not getattr(tokenizer, "is_fast", False):
        raise MMCError(f"the tokenizer {type(tokenizer).__name__} is not a fast (Rust) tokenizer and gives no offsets, "
                       "so no token byte spans; set scoring.token_losses=false")
    seqs, offsets = _encode(tokenizer, texts, prefix_token, offsets=True)
    return seqs, [byte_ends(text, np.asarray(o, dtype=np.int64).reshape(-1, 2)) for text, o in zip(texts, offsets)]


def _encode(tokenizer, texts: list[str], prefix_token: str | None, offsets: bool):
    prefix = prefix_token_id(tokenizer, prefix_token)
    empty = [i for i, t in enumerate(texts) if not t]
    if empty:
        raise MMCError(f"{len(empty)} empty texts (first: #{empty[0]}); drop empty texts from the corpus")
    encoded = tokenizer(texts, add_special_tokens=False, split_special_tokens=True, verbose=False,
                        return_offsets_mapping=offsets)
    unk = tokenizer.unk_token_id
    unk_is_special = unk in (tokenizer.bos_token_id, tokenizer.eos_token_id)  # GPT-2: one id for all three
    seqs = []
    for i, ids in enumerate(encoded["input_ids"]):
        if not ids:
            raise MMCError(f"text #{i} ({texts[i][:30]!r}) has no tokens; drop it from the corpus")
        if unk is not None and not unk_is_special and unk in ids:
            raise MMCError(f"text #{i} contains text the tokenizer maps to its unknown token {tokenizer.unk_token!r} "
                           f"(e.g. a word too long for it); its loss would not be the text's, drop the text or the model")
        seqs.append(np.asarray([prefix, *ids], dtype=np.int64))
    return seqs, encoded["offset_mapping"] if offsets else None


def context_length(model_config, tokenizer) -> int | None:
    """The model's context length: its position limit, else the tokenizer's declared maximum; None when neither
    tells (e.g. ALiBi models such as BLOOM)."""
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length", "max_sequence_length"):
        value = getattr(model_config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    if 0 < getattr(tokenizer, "model_max_length", 0) < 10**7:
        return int(tokenizer.model_max_length)
    return None


def resolve_window(window: int | None, stride: int | None, context: int | None) -> tuple[int, int]:
    if window is None and context is None:
        raise MMCError("cannot tell the model's context length; set scoring.window")
    window = context if window is None else window
    stride = max(1, window // 2) if stride is None else stride
    if not 1 <= window <= (context or window):
        raise MMCError(f"scoring.window={window} is outside 1..{context} (the model's context length); lower it")
    if not 1 <= stride <= window:
        raise MMCError(f"scoring.stride={stride} is outside 1..window ({window}); use stride <= window")
    return window, stride


@dataclass
class Windows:
    """One row per window: the text it belongs to and the slice s[begin:end] fed to the model, whose
    last `n_scored` predictions (targets s[end - n_scored + 1 .. end]) are scored."""

    text: np.ndarray  # int64 (W,)
    begin: np.ndarray
    end: np.ndarray
    n_scored: np.ndarray

    @property
    def length(self) -> np.ndarray:
        return self.end - self.begin


def plan_windows(n_tokens: np.ndarray, window: int, stride: int) -> Windows:
    """Windows of all texts (n_tokens: tokens per text, prefix excluded), vectorised."""
    n_tokens = np.asarray(n_tokens, dtype=np.int64)
    n_windows = 1 + np.maximum(0, -(-(n_tokens - window) // stride))  # 1 + ceil((T - window) / stride)
    text = np.repeat(np.arange(len(n_tokens)), n_windows)
    k = np.arange(len(text)) - np.repeat(np.cumsum(n_windows) - n_windows, n_windows)  # window index in its text
    end = np.minimum(window + k * stride, n_tokens[text])
    previous_end = np.where(k == 0, 0, np.minimum(window + (k - 1) * stride, n_tokens[text]))
    return Windows(text=text, begin=np.maximum(end - window, 0), end=end, n_scored=end - previous_end)
