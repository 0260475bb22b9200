"""Choice scoring against independent references: a float64 loop that splits each pair as lm-evaluation-harness's
_encode_pair does (written here) and runs context + continuation whole, and lm-eval's own HFLM.loglikelihood;
batching, simulated out-of-memory, truncation, the cache and resume."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mmc.errors import MMCError
from mmc.scoring import stage
from mmc.scoring.choices import cached_choice_matrix, score_choices, score_pairs
from mmc.scoring.config import ScoringConfig
from mmc.scoring.engine import _Scorer
from mmc.tasks import Items

PAIRS = [
    ("The cat sat on ", "the mat"),  # trailing space: moves to the continuation
    ("The cat sat on ", "a hat that was red and large"),
    ("The cat sat on", " the mat"),
    ("def f(x):\n", "    return x"),  # trailing newline: moves too
    ("A", " b"),  # one-token context and continuation
    ("Ünïcödé — 🙂", " emoji and more"),
    ("", "no context at all"),  # scored after the prefix alone
    ("x y " * 30, " past the window"),  # context + continuation longer than the 64-token window: truncated
]


def lm_eval_split(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's rule, from its documentation: trailing whitespace of the context goes to the continuation; encode
    context + continuation whole; the continuation is what follows the context's own encoding."""
    n = len(context) - len(context.rstrip())
    if n:
        context, continuation = context[:-n], context[-n:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    own = tokenizer(context, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    return own, whole[len(own):]


def filling_the_window(tokenizer, window: int = 64) -> list[tuple[str, str]]:
    """Pairs whose context + continuation, minus the continuation's last token, fill the window exactly (its last
    position is window - 1); scored in one batch with longer continuations, so padding runs past their ends."""
    for n in range(10, 400):
        context = " ".join("xy"[i % 2] for i in range(n))
        for continuation in (" up to the end", " up to the ends"):
            own, cont = lm_eval_split(tokenizer, context, continuation)
            if 1 + len(own) + len(cont) - 1 == window and len(cont) >= 2:
                return [(context, continuation), (context, " up")]
    raise AssertionError("no context fills the window exactly")


def reference_nll(model64, tokenizer, context: str, continuation: str, window: int = 64) -> float:
    """The prefix (BOS), the context's and the continuation's tokens in one float64 forward pass, the last
    window + 1 tokens kept when longer (lm-eval's truncation); minus the continuation tokens' log-probabilities."""
    own, cont = lm_eval_split(tokenizer, context, continuation)
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    seq = ([prefix] + own + cont)[-(window + 1):]
    with torch.no_grad():
        logp = torch.log_softmax(model64(torch.tensor([seq[:-1]])).logits[0], -1)
    return -sum(logp[p - 1, seq[p]].item() for p in range(len(seq) - len(cont), len(seq)))


@pytest.mark.parametrize("arch,bos", [("gpt2", "token"), ("llama", "token"), ("gpt_neox", "token"),
                                      ("qwen2", "token"), ("gpt2", "none"), ("llama", "template")])
def test_choice_nll_matches_a_float64_loop(tiny_model, arch, bos):
    model, tokenizer = tiny_model(arch, bos)
    model64 = copy.deepcopy(model).double()
    pairs = PAIRS + filling_the_window(tokenizer)
    expected = [reference_nll(model64, tokenizer, c, k) for c, k in pairs]
    for budget in (1, 50, None):  # 1: an item per batch; 50: a few per batch; None: the default
        nll, n_tokens = score_pairs(model, tokenizer, pairs, 64, ScoringConfig(batch_tokens=budget))
        np.testing.assert_allclose(nll, expected, rtol=2e-6)
        assert nll.dtype == np.float64
        assert n_tokens.tolist() == [len(lm_eval_split(tokenizer, c, k)[1]) for c, k in pairs]


@pytest.mark.parametrize("arch,bos", [("gpt2", "token"), ("llama", "template"), ("gpt_neox", "token"),
                                      ("qwen2", "token")])
def test_choice_loglik_matches_lm_evaluation_harness(tiny_specs, tiny_model, arch, bos):
    """lm-eval's HFLM loads the saved model from its directory as it loads a hub name. Our prefix (BOS) before every
    context is what HFLM(add_bos_token=True) puts there, whether the tokenizer adds BOS itself (bos=template) or
    only on request (bos=token); before an empty context both put the prefix alone. Its window is the model's 64
    positions (lm-eval reads it from the config), so the long pair is truncated by both."""
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    (spec,) = tiny_specs([arch], bos)
    model, tokenizer = tiny_model(arch, bos)
    assert len(tokenizer(PAIRS[-1][0] + PAIRS[-1][1], add_special_tokens=False)["input_ids"]) > 64
    lm = HFLM(pretrained=spec.source, batch_size=3, add_bos_token=True, device="cpu")
    assert lm.max_length == 64
    pairs = PAIRS + filling_the_window(tokenizer)
    requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    theirs = np.array([loglik for loglik, _ in lm.loglikelihood(requests, disable_tqdm=True)])
    ours = -score_pairs(model, tokenizer, pairs, 64, ScoringConfig())[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)


def test_out_of_memory_halves_the_batch_and_changes_no_number(tiny_model, monkeypatch):
    model, tokenizer = tiny_model("llama")
    pairs = [(f"item {i} says", f" choice {j}") for i in range(8) for j in range(3)]
    plain = score_pairs(model, tokenizer, pairs, 64, ScoringConfig(batch_tokens=10**6))[0]
    real, rows = _Scorer.forward, []

    def out_of_memory_above_2_items(self, ids, **kwargs):
        if "attention_mask" not in kwargs:  # a batch of contexts
            rows.append(len(ids))
            if len(ids) > 2:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, ids, **kwargs)

    monkeypatch.setattr(_Scorer, "forward", out_of_memory_above_2_items)
    halved = score_pairs(model, tokenizer, pairs, 64, ScoringConfig(batch_tokens=10**6))[0]
    assert rows[:3] == [8, 4, 2] and max(rows[3:]) <= 2
    np.testing.assert_allclose(halved, plain, rtol=1e-6)
    monkeypatch.setattr(_Scorer, "forward", lambda self, ids, **kwargs: (_ for _ in ()).throw(
        torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")))
    with pytest.raises(MMCError, match="one item of [0-9]+ context tokens and 3 choices does not fit in GPU memory"):
        score_pairs(model, tokenizer, pairs, 64, ScoringConfig(batch_tokens=10**6))


def test_bad_pairs_fail_in_one_line(tiny_model):
    model, tokenizer = tiny_model("gpt2")
    with pytest.raises(MMCError, match="more than the model's window of 8"):
        score_pairs(model, tokenizer, [("a", " b c d e f g h i j k l m n o p")], 8, ScoringConfig())


def items_of(pairs_by_item: list[tuple[str, list[str]]], gold: list[int], length_norm: str = "none") -> Items:
    return Items([f"t/{i}" for i in range(len(pairs_by_item))], [c for c, _ in pairs_by_item],
                 [ch for _, ch in pairs_by_item], np.array(gold), ["t"] * len(pairs_by_item), " ", length_norm)


ITEMS = items_of([("The capital of France is", ["Paris", "Rome", "Berlin"]), ("Two and two make", ["four", "five"]),
                  ("def f(x):\n", ["    return x", "pass", "  yield", "import os"])], [0, 0, 0])


def test_a_choice_matrix_from_the_stage_resumes_from_the_cache(tiny_specs, tmp_path, monkeypatch):
    specs = tiny_specs(["gpt2", "qwen2"])
    cfg = ScoringConfig(cache_dir=str(tmp_path / "scores"), chunk_texts=2, token_losses=False)
    cm = score_choices(specs, ITEMS, cfg).matrix
    assert cm.loglik.shape == (2, 3, 4) and np.isnan(cm.loglik[:, 0, 3]).all() and np.isnan(cm.loglik[:, 1, 2:]).all()
    for m, spec in enumerate(specs):  # every choice as the reference loop scores it
        model, tokenizer = stage.load_model(spec)
        model64 = copy.deepcopy(model).double()
        for i, (context, choices) in enumerate(zip(ITEMS.contexts, ITEMS.choices)):
            for j, choice in enumerate(choices):
                assert -cm.loglik[m, i, j] == pytest.approx(reference_nll(model64, tokenizer, context, " " + choice),
                                                            rel=2e-6)
    np.testing.assert_array_equal(cm.choice_bytes[2], [12, 4, 7, 9])
    monkeypatch.setattr(stage, "load_model", lambda *a, **k: pytest.fail("a cached model was loaded"))
    again = cached_choice_matrix(specs, ITEMS, cfg).matrix
    np.testing.assert_array_equal(again.loglik, cm.loglik)
    np.testing.assert_array_equal(score_choices(specs, ITEMS, cfg).matrix.loglik, cm.loglik)
    with pytest.raises(MMCError, match="has 0 of 9 choices in the score cache"):
        cached_choice_matrix(specs, items_of([("new", ["a", "b"])] * 1 + [("x", ["c"] * 7)], [0, 0]), cfg)
    with pytest.raises(MMCError, match="a task corpus has none"):
        score_choices(specs, ITEMS, ScoringConfig(token_losses=True))


def test_a_lost_chunk_rescores_only_its_items(tiny_specs, tmp_path, monkeypatch):
    from mmc.scoring import choices

    specs = tiny_specs(["llama"])
    cfg = ScoringConfig(cache_dir=str(tmp_path / "scores"), chunk_texts=1, token_losses=False)
    first = score_choices(specs, ITEMS, cfg).matrix
    chunks = sorted((tmp_path / "scores").rglob("chunk-*.npz"))
    assert len(chunks) == 3  # an item per chunk
    chunks[0].unlink()
    real, scored = choices.score_pairs, []
    monkeypatch.setattr(choices, "score_pairs", lambda model, tok, pairs, *a: scored.append(pairs) or real(model, tok, pairs, *a))
    again = score_choices(specs, ITEMS, cfg).matrix
    assert len(scored) == 1 and len(scored[0]) in (2, 3, 4)  # one item's choices
    np.testing.assert_allclose(again.loglik, first.loglik, rtol=1e-6)


def test_per_byte_answers_divide_each_choice_by_its_utf8_bytes(tiny_specs, tmp_path):
    """dataset.length_norm=bytes: a model answers the choice of highest log-likelihood per UTF-8 byte of the choice
    as given (the delimiter not counted, as lm-eval's acc_norm counts the choice alone; bytes, not characters)."""
    items = items_of([("The cat sat on the", ["mat", "Ünïcödé hat"]),
                      ("Two and two make", ["four", "a number larger than three and smaller than five", "4"]),
                      ("x", ["y", "z z z z z z z z z z z z"])], [0, 0, 1], "bytes")
    by_hand = np.array([[3, 15, 0], [4, 48, 1], [1, 23, 0]])  # "Ünïcödé hat": 11 characters, 15 bytes
    specs = tiny_specs(["gpt2", "qwen2"])
    cm = score_choices(specs, items, ScoringConfig(cache_dir=str(tmp_path / "scores"), token_losses=False)).matrix
    np.testing.assert_array_equal(cm.choice_bytes, by_hand)
    per_byte, plain = [], []
    for spec in specs:
        model, tokenizer = stage.load_model(spec)
        model64 = copy.deepcopy(model).double()
        loglik = [[-reference_nll(model64, tokenizer, c, " " + k) for k in ks] for c, ks in zip(items.contexts,
                                                                                               items.choices)]
        per_byte.append([int(np.argmax(np.array(ll) / by_hand[i, :len(ll)])) for i, ll in enumerate(loglik)])
        plain.append([int(np.argmax(ll)) for ll in loglik])
    assert cm.length_norm == "bytes" and cm.answers().tolist() == per_byte
    assert per_byte != plain  # the normalisation changes some answers here, so the test tells them apart
    np.testing.assert_array_equal(cm.per_text_loss(), np.array(per_byte) != items.gold[None, :])
