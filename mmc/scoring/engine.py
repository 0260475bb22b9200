"""The scoring engine: total NLL (nats, float64), scored tokens and every token's NLL of each text under one causal LM.

Windows are sorted by length and cut into batches whose padded size fits a token budget, right-padded
(causal attention never looks right, so padding needs no mask and never counts). Only the scored
positions go through the output head, in row chunks, and the head runs in float32 whatever the model's
dtype (a bf16 head rounds every logit): a [batch, length, vocab] float32 tensor is never built, whatever
the vocabulary. Index tensors go where their data is: with device_map=auto the input embedding and the
last layer sit on different devices.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from mmc.errors import MMCError
from mmc.scoring.config import ScoringConfig
from mmc.scoring.windows import Windows, context_length, plan_windows, resolve_window, tokenise

HEAD_CHUNK_ELEMENTS = 2**25  # logits per head chunk: 128 MiB in float32


def resolve_device(name: str) -> torch.device:
    """A scoring.device name (mmc.scoring.config.DEVICES) as a torch device; auto: cuda, else mps, else cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> str:
    """A scoring.dtype name (mmc.scoring.config.DTYPES) made concrete: auto is bfloat16 on GPUs that support it."""
    if name == "auto":
        return "bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    return name


# Default token budgets per batch: on CPUs, cache-sized batches run fastest (1,024 tokens: 1.7x faster
# than 16,384 in bench/scoring.py); GPUs want large ones.
CPU_BATCH_TOKENS, GPU_BATCH_TOKENS = 1024, 16384


def batch_stop(lengths: np.ndarray, start: int, budget: int) -> int:
    """End of the batch starting at `start` (lengths sorted descending): as many rows as fit the budget."""
    return min(len(lengths), start + max(1, budget // int(lengths[start])))


def padding_fraction(lengths: np.ndarray, budget: int) -> float:
    """Share of padded tokens in the batches the engine builds for these window lengths."""
    lengths = np.sort(np.asarray(lengths))[::-1]
    padded, start = 0, 0
    while start < len(lengths):
        stop = batch_stop(lengths, start, budget)
        padded += int(lengths[start]) * (stop - start)
        start = stop
    return 1.0 - lengths.sum() / padded


class _Scorer:
    """Forward pass + per-target NLL for one model. Uses the base model and the output head separately
    (only scored rows reach the head, in float32) when that reproduces the model's own logits, else the
    full model (its logits in its own dtype)."""

    def __init__(self, model, compile: bool = False):
        self.model = model
        self.device = model.get_input_embeddings().weight.device  # where the input ids go
        self.vocab = model.get_input_embeddings().num_embeddings
        self.head = model.get_output_embeddings()
        self.split = self.head is not None and self._split_matches()
        self.head_float32 = self._float32_head() if self.split else None
        body = model.base_model if self.split else model
        self.body = torch.compile(body, dynamic=True) if compile else body

    def _split_matches(self) -> bool:
        """Models that transform logits after the head (soft-capping, scaling) fail this and use the full model."""
        ids = torch.arange(min(16, self.vocab), device=self.device)[None]
        full = self.model(input_ids=ids, use_cache=False).logits.float()
        split = self.head(self.model.base_model(input_ids=ids, use_cache=False).last_hidden_state).float()
        return torch.allclose(full, split, rtol=1e-3, atol=1e-3 * full.abs().max().item())

    def _float32_head(self):
        """(weight, bias) of a linear head in float32 (the same tensors for a float32 model), or None for a head
        that is no plain linear layer or whose weight is offloaded (on the meta device until its hook loads it)."""
        if not isinstance(self.head, torch.nn.Linear) or self.head.weight.device.type == "meta":
            return None
        bias = self.head.bias
        return self.head.weight.float(), None if bias is None else bias.float()

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """float32 logits of scored rows: hidden states through the float32 head, or the full model's logits."""
        if self.head_float32 is None:
            return (self.head(hidden) if self.split else hidden).float()
        weight, bias = self.head_float32
        return torch.nn.functional.linear(hidden.to(weight.device, torch.float32), weight, bias)

    def token_nll(self, ids: np.ndarray, rows: np.ndarray, cols: np.ndarray, targets: np.ndarray) -> torch.Tensor:
        """NLL (float32, on the head's device) of targets[i] predicted at position (rows[i], cols[i]) of the batch `ids`."""
        out = self.body(input_ids=torch.from_numpy(ids).to(self.device), use_cache=False)
        hidden = out.last_hidden_state if self.split else out.logits
        selected = hidden[torch.from_numpy(rows).to(hidden.device), torch.from_numpy(cols).to(hidden.device)]
        del out, hidden
        targets = torch.from_numpy(targets)
        chunk = max(1, HEAD_CHUNK_ELEMENTS // self.vocab)
        parts = []
        for s in range(0, len(targets), chunk):
            logits = self.logits(selected[s:s + chunk])
            target = targets[s:s + chunk, None].to(logits.device)
            parts.append(torch.logsumexp(logits, dim=-1) - logits.gather(1, target)[:, 0])
        return torch.cat(parts)


def _batch_arrays(seqs: list[np.ndarray], windows: Windows, idx: np.ndarray):
    """Right-padded input ids and the (row, column, target) of every scored position of the windows `idx`."""
    lengths, n_scored = windows.length[idx], windows.n_scored[idx]
    ids = np.zeros((len(idx), lengths.max()), dtype=np.int64)  # pad id 0: never attended to, never scored
    targets = np.zeros_like(ids)
    for row, w in enumerate(idx):
        seq, b, e = seqs[windows.text[w]], windows.begin[w], windows.end[w]
        ids[row, :e - b] = seq[b:e]
        targets[row, :e - b] = seq[b + 1:e + 1]
    rows = np.repeat(np.arange(len(idx)), n_scored)
    offset_in_window = np.arange(n_scored.sum()) - np.repeat(np.cumsum(n_scored) - n_scored, n_scored)
    cols = np.repeat(lengths - n_scored, n_scored) + offset_in_window  # the last n_scored positions
    return ids, rows, cols, targets[rows, cols]


@dataclass
class TextScores:
    """Scores of N token sequences: totals and every scored token's NLL, texts one after the other."""

    nll: np.ndarray  # float64 (N,), total nats per text
    n_tokens: np.ndarray  # int64 (N,), scored tokens per text (the prefix excluded)
    token_nll: np.ndarray  # float32 (n_tokens.sum(),): text n's tokens in order, after those of texts < n


@torch.inference_mode()
def score_sequences(model, seqs: list[np.ndarray], window: int, stride: int, batch_tokens: int | None,
                    bar=None, compile: bool = False) -> TextScores:
    """Totals and token NLLs of each prefixed token sequence (the prefix is context, never a target)."""
    scorer = _Scorer(model, compile)
    too_large = [i for i, s in enumerate(seqs) if s.max() >= scorer.vocab]
    if too_large:
        raise MMCError(f"text #{too_large[0]} has token ids beyond the model's {scorer.vocab} embeddings; "
                       "the tokenizer does not belong to this model")
    n_tokens = np.array([len(s) - 1 for s in seqs], dtype=np.int64)
    first_token = np.concatenate([[0], np.cumsum(n_tokens)[:-1]])  # of each text in token_nll
    windows = plan_windows(n_tokens, window, stride)
    order = np.argsort(-windows.length, kind="stable")  # longest first: an OOM shows up at once
    lengths = windows.length[order]
    nll = np.zeros(len(seqs), dtype=np.float64)
    token_nll = np.zeros(n_tokens.sum(), dtype=np.float32)
    windows_left = np.bincount(windows.text, minlength=len(seqs))
    default = CPU_BATCH_TOKENS if scorer.device.type == "cpu" else GPU_BATCH_TOKENS
    budget, start, t0 = batch_tokens or default, 0, time.perf_counter()
    while start < len(order):
        stop = batch_stop(lengths, start, budget)
        idx = order[start:stop]
        ids, rows, cols, targets = _batch_arrays(seqs, windows, idx)
        try:
            batch_nll = scorer.token_nll(ids, rows, cols, targets)
        except torch.cuda.OutOfMemoryError:
            if stop - start == 1:
                raise MMCError(f"one window of {lengths[start]} tokens does not fit in GPU memory; lower "
                               "scoring.window, or use scoring.dtype=bfloat16 or scoring.device_map=auto") from None
            torch.cuda.empty_cache()
            budget = (stop - start) // 2 * int(lengths[start])  # half the rows, then go on
            continue
        per_window = torch.zeros(len(idx), dtype=torch.float64, device=batch_nll.device)
        per_window.index_add_(0, torch.from_numpy(rows).to(batch_nll.device), batch_nll.double())
        np.add.at(nll, windows.text[idx], per_window.cpu().numpy())
        # the target at (row, col) is s[begin + col + 1], the text's token begin + col
        text = windows.text[idx][rows]
        token_nll[first_token[text] + windows.begin[idx][rows] + cols] = batch_nll.cpu().numpy()
        np.subtract.at(windows_left, windows.text[idx], 1)
        if bar is not None:
            bar.update(int(windows.n_scored[idx].sum()))
            rate = (windows_left == 0).sum() / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(texts_per_s=f"{rate:.1f}", refresh=False)
        start = stop
    return TextScores(nll, n_tokens, token_nll)


def score_texts(model, tokenizer, texts: list[str], cfg: ScoringConfig, progress: bool = True) -> TextScores:
    """Scores of each text, with the model where and as it is loaded."""
    seqs = tokenise(tokenizer, texts, cfg.prefix_token)
    window, stride = resolve_window(cfg.window, cfg.stride, context_length(model.config, tokenizer))
    with tqdm(total=sum(len(s) - 1 for s in seqs), unit="tok", unit_scale=True, desc="scoring",
              disable=not progress) as bar:
        return score_sequences(model, seqs, window, stride, cfg.batch_tokens, bar, cfg.compile)
