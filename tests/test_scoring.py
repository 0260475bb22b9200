"""The engine against independent references: float64 log-softmax over the whole text, and the sliding-window
loop of the transformers perplexity guide (the model's own loss with labels -100)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mmc.errors import MMCError
from mmc.scoring.config import ScoringConfig
from mmc.scoring.engine import _Scorer, padding_fraction, score_texts
from mmc.scoring.windows import plan_windows
from mmc.synthetic import synthetic_texts

TEXTS = [
    "a",  # a single token
    " leading space and trailing space ",
    "Ünïcödé — 🙂 emoji,\nnew lines\tand tabs.",
    *synthetic_texts(6, seed=3, min_words=1, max_words=9),
]


def reference_ids(tokenizer, text: str) -> list[int]:
    """The prefix and the text's tokens: the tokenizer's own template when it adds BOS, else BOS, else EOS."""
    ids = tokenizer(text, split_special_tokens=True)["input_ids"]
    if not ids or ids[0] != tokenizer.bos_token_id:
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        ids = [prefix] + ids
    return ids


def full_context_nll(model, ids: list[int]) -> float:
    """Every target from all the tokens before it, in one forward pass, log-softmax in float64."""
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    return -logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum().item()


def guide_nll(model, ids: list[int], window: int, stride: int) -> tuple[float, int]:
    """Total NLL and scored tokens by the loop of the transformers guide "Perplexity of fixed-length models":
    windows every `stride` tokens, labels -100 but for the trg_len tokens new to the window, the model's own
    loss times the tokens it averages. Its max_length counts the last target too (window inputs predict window
    targets). One difference, mmc's choice: a last window that would run past the text ends at the text's end
    with a full window of context (the guide starts it at begin_loc, with less)."""
    input_ids = torch.tensor([ids])
    seq_len, max_length = input_ids.size(1), window + 1
    nll_sum, n_tokens, prev_end_loc = 0.0, 0, 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc  # may be different from stride on the last loop
        begin_loc = max(end_loc - max_length, 0)  # mmc's last window (see the docstring)
        window_ids = input_ids[:, begin_loc:end_loc]
        target_ids = window_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(window_ids, labels=target_ids).loss
        n_loss = int((target_ids[:, 1:] != -100).sum())  # the model shifts the labels by one
        nll_sum += loss.double().item() * n_loss
        n_tokens += n_loss
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    return nll_sum, n_tokens


@pytest.mark.parametrize("arch,bos", [("gpt2", "token"), ("llama", "token"), ("gpt_neox", "token"),
                                      ("gpt2", "none"), ("llama", "template")])
def test_matches_full_context_reference(tiny_model, arch, bos):
    model, tokenizer = tiny_model(arch, bos)
    scored = score_texts(model, tokenizer, TEXTS, ScoringConfig(batch_tokens=256), progress=False)
    ids = [reference_ids(tokenizer, t) for t in TEXTS]
    np.testing.assert_allclose(scored.nll, [full_context_nll(model, i) for i in ids], rtol=1e-5)
    assert scored.nll.dtype == np.float64 and scored.n_tokens.dtype == np.int64
    # every token of the text is scored, the first included, BOS never twice
    content = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in TEXTS]
    np.testing.assert_array_equal(scored.n_tokens, content)
    np.testing.assert_array_equal(scored.n_tokens, [len(i) - 1 for i in ids])


def test_token_nlls_are_each_targets_loss(tiny_model):
    """Token NLLs, in text order: against the float64 log-softmax of each target (texts shorter than the
    context, so every target sees all tokens before it); they add up to the totals."""
    model, tokenizer = tiny_model("llama")
    scored = score_texts(model, tokenizer, TEXTS, ScoringConfig(batch_tokens=40), progress=False)
    assert scored.token_nll.dtype == np.float32 and len(scored.token_nll) == scored.n_tokens.sum()
    start = 0
    for text, n in zip(TEXTS, scored.n_tokens):
        ids = reference_ids(tokenizer, text)
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
        expected = -logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
        np.testing.assert_allclose(scored.token_nll[start:start + n], expected.numpy(), rtol=1e-5, atol=1e-6)
        start += n
    totals = np.add.reduceat(scored.token_nll.astype(np.float64), np.r_[0, np.cumsum(scored.n_tokens)[:-1]])
    np.testing.assert_allclose(totals, scored.nll, rtol=1e-12)


def test_batch_size_and_padding_invariance(tiny_model):
    model, tokenizer = tiny_model("llama")
    texts = synthetic_texts(12, seed=5, min_words=1, max_words=30)
    results = [score_texts(model, tokenizer, texts, ScoringConfig(batch_tokens=b, window=32), progress=False)
               for b in (1, 40, 100, 10**6)]  # 1: one window per batch, no padding at all
    for scored in results[1:]:
        np.testing.assert_allclose(scored.nll, results[0].nll, rtol=1e-5)
        np.testing.assert_allclose(scored.token_nll, results[0].token_nll, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(scored.n_tokens, results[0].n_tokens)


def test_window_covering_the_text_equals_full_context(tiny_model):
    model, tokenizer = tiny_model("gpt_neox")
    texts = synthetic_texts(4, seed=7, min_words=3, max_words=8)
    longest = max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    scored = score_texts(model, tokenizer, texts, ScoringConfig(window=longest, stride=3), progress=False)
    np.testing.assert_allclose(scored.nll, [full_context_nll(model, reference_ids(tokenizer, t)) for t in texts],
                               rtol=1e-5)


@pytest.mark.parametrize("arch,window,stride", [("gpt2", 16, 16), ("gpt2", 7, 1), ("llama", 12, 5),
                                                ("gpt_neox", 24, 10)])
def test_long_texts_against_the_perplexity_guide_loop(tiny_model, arch, window, stride):
    """Texts several windows long, stride = window and stride < window: every token scored once, with the
    context the guide's sliding windows give it."""
    model, tokenizer = tiny_model(arch)
    texts = synthetic_texts(3, seed=11, min_words=15, max_words=25)
    scored = score_texts(model, tokenizer, texts, ScoringConfig(window=window, stride=stride), progress=False)
    reference = np.array([guide_nll(model, reference_ids(tokenizer, t), window, stride) for t in texts])
    assert (reference[:, 1] > 2 * window).all()
    np.testing.assert_array_equal(scored.n_tokens, reference[:, 1])
    np.testing.assert_allclose(scored.nll, reference[:, 0], rtol=1e-5)


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


def test_special_token_strings_are_scored_as_plain_text(tiny_model):
    """'<|eos|>' inside a text is seven characters of text, not the EOS token: the reference tokenises with the
    tokenizer's pre-tokenizer and BPE model alone, which know nothing of special tokens."""
    model, tokenizer = tiny_model("gpt2")
    texts = ["before <|eos|> after", "<|bos|><|pad|>", "x<|eos|>", "<|endoftext|> [CLS] </s>"]
    backend = tokenizer.backend_tokenizer

    def plain_ids(text: str) -> list[int]:
        return [t.id for piece, _ in backend.pre_tokenizer.pre_tokenize_str(text) for t in backend.model.tokenize(piece)]

    specials = set(tokenizer.all_special_ids)
    scored = score_texts(model, tokenizer, texts, ScoringConfig(), progress=False)
    for text, nll, n in zip(texts, scored.nll, scored.n_tokens):
        ids = plain_ids(text)
        assert not specials & set(ids) and n == len(ids)
        assert nll == pytest.approx(full_context_nll(model, [tokenizer.bos_token_id] + ids), rel=1e-5)


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
    scored = score_texts(model, tokenizer, TEXTS[:4], ScoringConfig(), progress=False)
    np.testing.assert_allclose(scored.nll, [full_context_nll(model, reference_ids(tokenizer, t)) for t in TEXTS[:4]],
                               rtol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gpt_neox"])  # a tied head, an untied one
def test_bfloat16_head_runs_in_float32(tiny_model, arch):
    """On a private bf16 copy (the session's float32 model is shared by other tests), against two references:
    the bf16 model's own hidden states through a float64 head, which a float32 head matches (a bf16 head was
    off by 1e-4 to 5e-4 per text on the trained zoo, docs/benchmarks.md); and the float32 model, which bf16
    stays within 5e-4 of (the bf16 body's error: at most 1.6e-4 measured on these tiny models)."""
    model, tokenizer = tiny_model(arch)
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    # one window per batch, the inputs without the last target: the reference's shapes, so that the bf16
    # hidden states are the same (bf16 rounding depends on the shapes)
    scored = score_texts(bf16, tokenizer, TEXTS, ScoringConfig(batch_tokens=1), progress=False)
    head = bf16.get_output_embeddings()
    expected = []
    for text in TEXTS:
        ids = reference_ids(tokenizer, text)
        with torch.no_grad():
            hidden = bf16.base_model(torch.tensor([ids[:-1]])).last_hidden_state[0].double()
        logp = torch.log_softmax(hidden @ head.weight.double().T, -1)
        expected.append(-logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum().item())
    np.testing.assert_allclose(scored.nll, expected, rtol=1e-6)
    float32 = score_texts(model, tokenizer, TEXTS, ScoringConfig(), progress=False)
    np.testing.assert_allclose(scored.nll, float32.nll, rtol=5e-4)
    assert next(model.parameters()).dtype == torch.float32


def test_out_of_memory_halves_the_batch_and_changes_no_number(tiny_model, monkeypatch):
    """A GPU out-of-memory error (simulated) halves the batch's rows and scoring goes on, with the numbers of a
    run that never ran out; a single window that does not fit is a one-line error."""
    model, tokenizer = tiny_model("llama")
    texts = synthetic_texts(12, seed=5, min_words=5, max_words=30)
    cfg = ScoringConfig(window=16, batch_tokens=16 * 16)
    plain = score_texts(model, tokenizer, texts, cfg, progress=False)
    real, rows_tried = _Scorer.token_nll, []

    def out_of_memory_above_3_rows(self, ids, *args):
        rows_tried.append(len(ids))
        if len(ids) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, ids, *args)

    monkeypatch.setattr(_Scorer, "token_nll", out_of_memory_above_3_rows)
    halved = score_texts(model, tokenizer, texts, cfg, progress=False)
    assert rows_tried[:3] == [16, 8, 4] and max(rows_tried[3:]) <= 3
    np.testing.assert_allclose(halved.nll, plain.nll, rtol=1e-6)
    np.testing.assert_allclose(halved.token_nll, plain.token_nll, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(_Scorer, "token_nll", lambda self, *a: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError()))
    with pytest.raises(MMCError, match="one window of 16 tokens does not fit"):
        score_texts(model, tokenizer, texts, cfg, progress=False)


def test_index_tensors_follow_the_data_across_devices(tiny_specs):
    """device_map=auto can put the input embedding on one device and the last layers on another. Here the
    embedding of an untied model runs on torch's lazy device and hands its output to the CPU: ids must go to
    the lazy device, the rows, columns and targets to where the hidden states and logits are."""
    ts_backend = pytest.importorskip("torch._lazy.ts_backend")
    from mmc.models import load_model

    ts_backend.init()
    (spec,) = tiny_specs(["gpt_neox"])
    model, tokenizer = load_model(spec)
    split, _ = load_model(spec)
    split.get_input_embeddings().to("lazy").register_forward_hook(lambda module, args, out: out.cpu())
    assert _Scorer(split).device.type == "lazy"
    cfg = ScoringConfig(batch_tokens=256)
    np.testing.assert_allclose(score_texts(split, tokenizer, TEXTS, cfg, progress=False).nll,
                               score_texts(model, tokenizer, TEXTS, cfg, progress=False).nll, rtol=1e-6)


def test_bad_inputs_raise_one_line_errors(tiny_model):
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
    score_texts(model, tokenizer, ["short words"], ScoringConfig(), progress=False)
    with pytest.raises(MMCError, match="unknown token"):
        score_texts(model, tokenizer, ["short words", "x" * 300], ScoringConfig(), progress=False)


def test_prefix_token_when_neither_bos_nor_eos(tiny_model):
    model, tokenizer = tiny_model("gpt2", "none")
    tokenizer = type(tokenizer).from_pretrained(tokenizer.name_or_path, eos_token=None)
    assert tokenizer.bos_token_id is None and tokenizer.eos_token_id is None
    with pytest.raises(MMCError, match="prefix_token"):
        score_texts(model, tokenizer, ["text"], ScoringConfig(), progress=False)
    scored = score_texts(model, tokenizer, ["text"], ScoringConfig(prefix_token="<|pad|>"), progress=False)
    pad = tokenizer.convert_tokens_to_ids("<|pad|>")
    ids = [pad] + tokenizer("text", add_special_tokens=False)["input_ids"]
    assert scored.nll[0] == pytest.approx(full_context_nll(model, ids), rel=1e-5)


def test_padding_fraction_of_sorted_batches():
    assert padding_fraction(np.array([4, 4, 4, 4]), 8) == 0.0
    assert padding_fraction(np.array([4, 2]), 8) == pytest.approx(2 / 8)  # one batch of 2 rows x 4
