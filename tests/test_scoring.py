"""The engine against an independent naive reference: one text at a time, float64 log-softmax."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmc.scoring.config import ScoringConfig
from mmc.errors import MMCError
from mmc.scoring.engine import score_texts
from mmc.scoring.engine import _Scorer, padding_fraction
from mmc.scoring.windows import plan_windows
from mmc.synthetic import synthetic_texts

TEXTS = [
    "a",  # a single token
    " leading space and trailing space ",
    "Ünïcödé — 🙂 emoji,\nnew lines\tand tabs.",
    *synthetic_texts(6, seed=3, min_words=1, max_words=9),
]


def naive_nll(model, tokenizer, text: str, window: int | None = None, stride: int | None = None) -> tuple[float, int]:
    """Token by token: target i sees the tokens the window rules give it, log-softmax in float64.

    The prefix comes from the tokenizer itself when its template adds BOS, else BOS, else EOS."""
    ids = tokenizer(text, split_special_tokens=True)["input_ids"]
    if not ids or ids[0] != tokenizer.bos_token_id:
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        ids = [prefix] + ids
    n = len(ids) - 1
    window = window or n
    stride = stride or window
    total = 0.0
    with torch.no_grad():
        if window >= n:  # one forward pass over the whole text
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
            return -logp[torch.arange(n), torch.tensor(ids[1:])].sum().item(), n
        for i in range(1, n + 1):  # target ids[i], scored in window k, whose inputs start at `begin`
            k = 0 if i <= window else math.ceil((i - window) / stride)
            begin = max(0, min(window + k * stride, n) - window)
            logits = model(torch.tensor([ids[begin:i]])).logits[0, -1].double()
            total -= torch.log_softmax(logits, -1)[ids[i]].item()
    return total, n


@pytest.mark.parametrize("arch,bos", [("gpt2", "token"), ("llama", "token"), ("gpt_neox", "token"),
                                      ("gpt2", "none"), ("llama", "template")])
def test_matches_naive_reference(tiny_model, arch, bos):
    model, tokenizer = tiny_model(arch, bos)
    nll, n_tokens = score_texts(model, tokenizer, TEXTS, ScoringConfig(batch_tokens=256), progress=False)
    reference = np.array([naive_nll(model, tokenizer, t) for t in TEXTS])
    np.testing.assert_allclose(nll, reference[:, 0], rtol=1e-5)
    assert nll.dtype == np.float64 and n_tokens.dtype == np.int64
    # every token of the text is scored, the first included, BOS never twice
    content = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in TEXTS]
    np.testing.assert_array_equal(n_tokens, content)
    np.testing.assert_array_equal(n_tokens, reference[:, 1])


def test_batch_size_and_padding_invariance(tiny_model):
    model, tokenizer = tiny_model("llama")
    texts = synthetic_texts(12, seed=5, min_words=1, max_words=30)
    results = [score_texts(model, tokenizer, texts, ScoringConfig(batch_tokens=b, window=32), progress=False)
               for b in (1, 40, 100, 10**6)]  # 1: one window per batch, no padding at all
    for nll, n_tokens in results[1:]:
        np.testing.assert_allclose(nll, results[0][0], rtol=1e-5)
        np.testing.assert_array_equal(n_tokens, results[0][1])


def test_window_covering_the_text_equals_full_context(tiny_model):
    model, tokenizer = tiny_model("gpt_neox")
    texts = synthetic_texts(4, seed=7, min_words=3, max_words=8)
    longest = max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    nll, _ = score_texts(model, tokenizer, texts, ScoringConfig(window=longest, stride=3), progress=False)
    np.testing.assert_allclose(nll, [naive_nll(model, tokenizer, t)[0] for t in texts], rtol=1e-5)


@pytest.mark.parametrize("window,stride", [(16, 16), (16, 5), (7, 1)])
def test_long_texts_windowed(tiny_model, window, stride):
    """Texts several windows long: every token scored once, with the context the window rules give it."""
    model, tokenizer = tiny_model("gpt2")
    texts = synthetic_texts(3, seed=11, min_words=15, max_words=25)
    nll, n_tokens = score_texts(model, tokenizer, texts, ScoringConfig(window=window, stride=stride),
                                progress=False)
    reference = np.array([naive_nll(model, tokenizer, t, window, stride) for t in texts])
    assert (reference[:, 1] > 2 * window).all()
    np.testing.assert_array_equal(n_tokens, reference[:, 1])
    np.testing.assert_allclose(nll, reference[:, 0], rtol=1e-5)


@pytest.mark.parametrize("window,stride", [(1, 1), (8, 8), (8, 3), (8, 1), (64, 32)])
def test_windows_partition_every_text(window, stride):
    lengths = np.array([1, 2, 7, 8, 9, 17, 100])
    w = plan_windows(lengths, window, stride)
    assert (w.length <= window).all() and (w.begin >= 0).all()
    for text, n in enumerate(lengths):
        rows = np.flatnonzero(w.text == text)
        scored = np.concatenate([np.arange(e - s + 1, e + 1) for e, s in zip(w.end[rows], w.n_scored[rows])])
        np.testing.assert_array_equal(scored, np.arange(1, n + 1))  # each target exactly once, in order


def test_disjoint_windows_are_lm_eval_rolling_windows():
    utils = pytest.importorskip("lm_eval.utils")
    tokens = list(range(100, 137))
    for window in (1, 5, 8, 37, 40):
        w = plan_windows(np.array([len(tokens)]), window, window)
        seq = [0] + tokens
        ours = [(seq[b:e], seq[e - n + 1:e + 1]) for b, e, n in zip(w.begin, w.end, w.n_scored)]
        theirs = list(utils.get_rolling_token_windows(tokens, 0, window, 1))
        assert ours == [(list(a), list(b)) for a, b in theirs]


def test_head_transformed_logits_use_the_full_model():
    """Gemma-2 soft-caps its logits after the head: the split path would be wrong, the engine must notice."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from mmc.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(synthetic_texts(50), 300, "bpe")
    config = AutoConfig.for_model("gemma2", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                  max_position_embeddings=64, final_logit_softcapping=0.05)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    assert not _Scorer(model).split
    nll, _ = score_texts(model, tokenizer, TEXTS[:4], ScoringConfig(), progress=False)
    np.testing.assert_allclose(nll, [naive_nll(model, tokenizer, t)[0] for t in TEXTS[:4]], rtol=1e-5)


def test_bfloat16_model_scores_close_to_float32(tiny_model):
    model, tokenizer = tiny_model("llama")
    reference, _ = score_texts(model, tokenizer, TEXTS, ScoringConfig(), progress=False)
    nll, _ = score_texts(model.to(torch.bfloat16), tokenizer, TEXTS, ScoringConfig(), progress=False)
    model.to(torch.float32)
    np.testing.assert_allclose(nll, reference, rtol=2e-2)


def test_bad_inputs_raise_one_line_errors(tiny_model, tiny_specs):
    model, tokenizer = tiny_model("gpt2")
    cases = [
        (["fine", ""], ScoringConfig(), "empty"),
        (["fine"], ScoringConfig(window=65), "window=65"),
        (["fine"], ScoringConfig(window=8, stride=9), "stride=9"),
        (["fine"], ScoringConfig(window=0), "window=0"),
    ]
    for texts, cfg, message in cases:
        with pytest.raises(MMCError, match=message):
            score_texts(model, tokenizer, texts, cfg, progress=False)


def test_over_long_word_mapped_to_unknown_is_refused(tiny_specs):
    from mmc.models import load_model

    (spec,) = tiny_specs(["gpt2"], tokenizer="wordpiece")
    model, tokenizer = load_model(spec)
    nll, _ = score_texts(model, tokenizer, ["short words"], ScoringConfig(), progress=False)
    with pytest.raises(MMCError, match="unknown token"):
        score_texts(model, tokenizer, ["short words", "x" * 300], ScoringConfig(), progress=False)


def test_prefix_token_when_neither_bos_nor_eos(tiny_model):
    model, tokenizer = tiny_model("gpt2", "none")
    tokenizer = type(tokenizer).from_pretrained(tokenizer.name_or_path, eos_token=None)
    assert tokenizer.bos_token_id is None and tokenizer.eos_token_id is None
    with pytest.raises(MMCError, match="prefix_token"):
        score_texts(model, tokenizer, ["text"], ScoringConfig(), progress=False)
    nll, n = score_texts(model, tokenizer, ["text"], ScoringConfig(prefix_token="<|pad|>"), progress=False)
    pad = tokenizer.convert_tokens_to_ids("<|pad|>")
    ids = [pad] + tokenizer("text", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    assert nll[0] == pytest.approx(-logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum().item(), rel=1e-5)


def test_padding_fraction_of_sorted_batches():
    assert padding_fraction(np.array([4, 4, 4, 4]), 8) == 0.0
    assert padding_fraction(np.array([4, 2]), 8) == pytest.approx(2 / 8)  # one batch of 2 rows x 4
