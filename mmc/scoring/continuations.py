"""The engine for multiple-choice items: the NLL of each continuation given its context, the context run once.

An item's choices share its context, so each batch runs its items' contexts once (right-padded; causal
attention needs no mask there), keeps their key-value caches, copies each context's cache for every one of its
continuations and runs all continuations at once on top: an attention mask hides the context's padding and the
position ids go on from each context's own length. The context's last position predicts a continuation's first
token, the continuation's positions the rest. The same head (float32, chunked rows) as texts (mmc.scoring.engine);
the numbers are those of running context + continuation whole (tests/test_choice_scoring.py checks it against a
float64 loop and lm-evaluation-harness).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from mmc.errors import MMCError
from mmc.scoring.engine import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS, _Scorer, at


def batch_cost(chosen: np.ndarray, context_lengths: np.ndarray, longest_continuation: np.ndarray,
               n_continuations: np.ndarray) -> int:
    """Padded tokens of a batch: B items x (longest context) + (their continuations) x (longest continuation)."""
    return int(len(chosen) * context_lengths[chosen].max()
               + n_continuations[chosen].sum() * longest_continuation[chosen].max())


def plan_batches(items: np.ndarray, budget: int, *lengths: np.ndarray) -> list[np.ndarray]:
    """The items in batches, longest contexts first, each within `budget` padded tokens (batch_cost of `lengths`:
    context lengths, longest continuations, continuation counts); an item alone may exceed it."""
    order = items[np.argsort(-lengths[0][items], kind="stable")]
    batches, start = [], 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and batch_cost(order[start:stop + 1], *lengths) <= budget:
            stop += 1
        batches.append(order[start:stop])
        start = stop
    return batches


def _padded(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded ids (pad 0) and their lengths."""
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    ids = np.zeros((len(rows), lengths.max()), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
    return ids, lengths


def _batch_nll(scorer: _Scorer, contexts: list[np.ndarray], continuations: list[np.ndarray],
               item: np.ndarray) -> torch.Tensor:
    """float64 NLL of each continuation given contexts[item[r]] (contexts of this batch, with their prefix)."""
    ids, context_length = _padded(contexts)
    conts, length = _padded(continuations)
    hidden, out = scorer.forward(ids, use_cache=True)
    cache = getattr(out, scorer.cache_name)
    first = scorer.nll(at(hidden, item, context_length[item] - 1), conts[:, 0]).double()
    del out, hidden
    rows = np.repeat(np.arange(len(conts)), length - 1)  # continuation positions that predict a next token
    if not len(rows):
        return first
    cols = np.arange(len(rows)) - np.repeat(np.cumsum(length - 1) - (length - 1), length - 1)
    cache.batch_select_indices(torch.from_numpy(item).to(scorer.device))  # one copy per continuation
    # every continuation token but the last is input (as lm-eval feeds context + continuation minus its last
    # token): the positions stay below the window; padding repeats a row's last real position, never beyond it
    inputs, steps = conts[:, :-1], np.arange(conts.shape[1] - 1)[None, :]
    seen = np.arange(ids.shape[1])[None, :] < context_length[item, None]
    mask = np.concatenate([seen, steps < length[:, None] - 1], axis=1)
    positions = context_length[item, None] + np.minimum(steps, length[:, None] - 2)
    hidden, out = scorer.forward(inputs, attention_mask=torch.from_numpy(mask.astype(np.int64)).to(scorer.device),
                                 position_ids=torch.from_numpy(positions).to(scorer.device), use_cache=True,
                                 **{scorer.cache_name: cache})
    rest = scorer.nll(at(hidden, rows, cols), conts[rows, cols + 1]).double()
    del out, hidden, cache
    return first.index_add(0, torch.from_numpy(rows).to(first.device), rest.to(first.device))


@torch.inference_mode()
def score_continuations(model, contexts: list[np.ndarray], continuations: list[list[np.ndarray]],
                        batch_tokens: int | None, bar=None, compile: bool = False) -> list[np.ndarray]:
    """NLL (float64, nats) of each of continuations[i] (non-empty token ids) after contexts[i] (token ids, the
    prefix first), per item. Every context + continuation must fit the model's window (the caller truncates)."""
    scorer = _Scorer(model, compile)
    biggest = max(max(int(c.max()) for c in contexts), max(int(k.max()) for ks in continuations for k in ks))
    if biggest >= scorer.vocab:
        raise MMCError(f"token id {biggest} is beyond the model's {scorer.vocab} embeddings; the tokenizer does not "
                       "belong to this model")
    context_lengths = np.array([len(c) for c in contexts], dtype=np.int64)
    longest = np.array([max(len(k) for k in ks) for ks in continuations], dtype=np.int64)
    counts = np.array([len(ks) for ks in continuations], dtype=np.int64)
    default = CPU_BATCH_TOKENS if scorer.device.type == "cpu" else GPU_BATCH_TOKENS
    budget, out, t0, done = batch_tokens or default, [None] * len(contexts), time.perf_counter(), 0
    lengths = (context_lengths, longest, counts)
    todo = plan_batches(np.arange(len(contexts)), budget, *lengths)
    while todo:
        batch = todo.pop(0)
        item = np.repeat(np.arange(len(batch)), counts[batch])
        flat = [k for i in batch for k in continuations[i]]
        try:
            nll = _batch_nll(scorer, [contexts[i] for i in batch], flat, item).cpu().numpy()
        except torch.cuda.OutOfMemoryError:
            if len(batch) == 1:
                raise MMCError(f"one item of {context_lengths[batch[0]]} context tokens and {counts[batch[0]]} "
                               "choices does not fit in GPU memory; use scoring.dtype=bfloat16 or "
                               "scoring.device_map=auto") from None
            torch.cuda.empty_cache()  # half the batch's budget from now on, then go on
            budget = batch_cost(batch[:len(batch) // 2], *lengths)
            todo = plan_batches(np.concatenate([batch, *todo]), budget, *lengths)
            continue
        for position, i in enumerate(batch):
            out[i] = nll[item == position]
        done += len(batch)
        if bar is not None:
            bar.update(int(sum(len(k) for k in flat)))
            bar.set_postfix(items_per_s=f"{done / max(time.perf_counter() - t0, 1e-9):.1f}", refresh=False)
    return out
